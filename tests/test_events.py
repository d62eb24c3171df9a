"""EventCenter: subscribe/unsubscribe, pattern matching, sync and async observers,
isolation of observers that fail, and emit_sync."""

from __future__ import annotations

import logging
import warnings

import pytest

from agently_core import Event, EventCenter


@pytest.mark.anyio
async def test_emit_reaches_subscribers_with_an_event() -> None:
    center = EventCenter()
    seen: list[Event] = []
    center.subscribe(seen.append)
    await center.emit("action.started", "dispatcher", call_id="c1", action="add")
    [event] = seen
    assert isinstance(event, Event)
    assert event.type == "action.started" and event.source == "dispatcher"
    assert event.payload == {"call_id": "c1", "action": "add"}
    assert event.id.startswith("evt_") and event.ts > 0
    assert Event.model_validate_json(event.model_dump_json()) == event


@pytest.mark.anyio
async def test_no_subscribers_is_inactive_and_cheap() -> None:
    center = EventCenter()
    assert center.active is False
    await center.emit("anything", payload_is="ignored")
    center.emit_sync("anything")


@pytest.mark.anyio
async def test_unsubscribe() -> None:
    center = EventCenter()
    seen = []
    unsubscribe = center.subscribe(lambda e: seen.append(e.type))
    other = center.subscribe(lambda e: seen.append("other:" + e.type))
    assert center.active
    await center.emit("one")
    unsubscribe()
    unsubscribe()  # harmless twice
    await center.emit("two")
    other()
    assert not center.active
    await center.emit("three")
    assert seen == ["one", "other:one", "other:two"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ("*", ["action.started", "action.completed", "policy.approval.requested", "x"]),
        ("action.*", ["action.started", "action.completed"]),
        (("action.completed", "policy.*"), ["action.completed", "policy.approval.requested"]),
        ("policy.approval.requested", ["policy.approval.requested"]),
        ("*.completed", ["action.completed"]),
        ("action.?tarted", ["action.started"]),
        ((), []),
    ],
)
async def test_patterns(patterns, expected) -> None:
    center = EventCenter()
    seen = []
    center.subscribe(lambda e: seen.append(e.type), patterns)
    for event_type in ("action.started", "action.completed", "policy.approval.requested", "x"):
        await center.emit(event_type)
    assert seen == expected


@pytest.mark.anyio
async def test_patterns_are_case_sensitive() -> None:
    center = EventCenter()
    seen = []
    center.subscribe(lambda e: seen.append(e.type), "Action.*")
    await center.emit("action.started")
    assert seen == []


@pytest.mark.anyio
async def test_async_observers_are_awaited_in_order() -> None:
    center = EventCenter()
    order = []

    async def first(event):
        order.append("async")

    class AsyncCallable:
        async def __call__(self, event):
            order.append("async-callable")

    center.subscribe(first)
    center.subscribe(lambda e: order.append("sync"))
    center.subscribe(AsyncCallable())
    await center.emit("x")
    assert order == ["async", "sync", "async-callable"]


@pytest.mark.anyio
async def test_sync_observer_returning_an_awaitable_is_awaited() -> None:
    center = EventCenter()
    done = []

    async def work(event):
        done.append(event.type)

    center.subscribe(lambda e: work(e))
    await center.emit("x")
    assert done == ["x"]


@pytest.mark.anyio
async def test_failing_observers_are_isolated_and_reported(caplog) -> None:
    center = EventCenter()
    seen = []

    def broken(event):
        raise ValueError("observer bug")

    async def broken_async(event):
        raise RuntimeError("async observer bug")

    center.subscribe(broken, name="broken")
    center.subscribe(broken_async, name="broken_async")
    center.subscribe(lambda e: seen.append(e.type))
    with caplog.at_level(logging.WARNING, logger="agently_core.events"):
        await center.emit("action.started")
    assert seen == ["action.started"]
    assert [(f.observer, f.event_type, f.error) for f in center.failures] == [
        ("broken", "action.started", "ValueError: observer bug"),
        ("broken_async", "action.started", "RuntimeError: async observer bug"),
    ]
    assert "observer bug" in caplog.text


@pytest.mark.anyio
async def test_default_observer_name_is_its_qualname() -> None:
    center = EventCenter()

    def noisy(event):
        raise KeyError("k")

    center.subscribe(noisy)
    await center.emit("x")
    assert center.failures[0].observer.endswith("noisy")


@pytest.mark.anyio
async def test_failures_are_capped() -> None:
    center = EventCenter(max_failures=3)
    center.subscribe(lambda e: 1 / 0)
    for _ in range(10):
        await center.emit("x")
    assert len(center.failures) == 3


def test_emit_sync_calls_sync_observers_and_skips_async_ones() -> None:
    center = EventCenter()
    seen = []
    called_async = []

    async def async_observer(event):
        called_async.append(event)

    def broken(event):
        raise ValueError("nope")

    center.subscribe(lambda e: seen.append((e.type, e.payload)), "job.*")
    center.subscribe(async_observer)
    center.subscribe(broken, name="broken")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        center.emit_sync("job.done", "test", n=1)
        center.emit_sync("other")
    assert seen == [("job.done", {"n": 1})]
    assert called_async == []
    errors = [f for f in center.failures if "skipped by emit_sync" not in f.error]
    skipped = [f for f in center.failures if "skipped by emit_sync" in f.error]
    assert [f.observer for f in errors] == ["broken", "broken"]
    assert [f.event_type for f in skipped] == ["job.done", "other"]


def test_emit_sync_closes_awaitables_from_sync_observers() -> None:
    center = EventCenter()
    ran = []

    async def work():
        ran.append(1)

    center.subscribe(lambda e: work())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        center.emit_sync("x")
    assert ran == []


def test_emit_sync_reports_skipped_async_observers(caplog) -> None:
    center = EventCenter()

    async def async_observer(event):
        pass

    center.subscribe(async_observer, name="async_observer")
    with caplog.at_level(logging.DEBUG, logger="agently_core.events"):
        center.emit_sync("x")
    assert center.failures or "async_observer" in caplog.text
