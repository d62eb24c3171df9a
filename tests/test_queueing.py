"""A shared resource's queue is bounded and visible, and a wait is never silently charged."""

from __future__ import annotations

import time

import anyio
import pytest

import agently_core
from agently_core.queueing import ResourceBusy, Turnstile


@pytest.fixture
def agent():
    agent = agently_core.create_agent(config={"providers": {}})
    turnstile = Turnstile("the shared test worker", max_waiting=2)

    @agent.action_func
    async def work(seconds: float, action_context=None) -> str:
        """Hold the shared worker for a while."""
        async with turnstile.turn(action_context):
            await anyio.sleep(seconds)
        return "done"

    agent.turnstile = turnstile
    yield agent
    agent.close()


@pytest.mark.anyio
async def test_a_call_that_times_out_in_the_queue_says_it_never_started(agent) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(agent.action.async_execute_action, "work", {"seconds": 0.6})
        await anyio.sleep(0.05)
        started = time.perf_counter()
        record = await agent.action.async_execute_action("work", {"seconds": 0.01},
                                                         timeout=0.2)
        assert time.perf_counter() - started < 0.5  # the record comes on time
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert "while it waited for the shared test worker" in record.error
    assert "never started" in record.error
    assert record.meta["queued_ms"] >= 150
    assert agent.turnstile.waiting == 0 and not agent.turnstile.busy


@pytest.mark.anyio
async def test_a_queued_call_reports_its_wait(agent) -> None:
    records = []

    async def run(seconds: float, timeout: float | None = None) -> None:
        records.append(await agent.action.async_execute_action(
            "work", {"seconds": seconds}, timeout=timeout))

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0.3)
        await anyio.sleep(0.05)
        group.start_soon(run, 0.3, 0.4)  # waits ~0.25 s, then needs 0.3 s: over 0.4 s
        group.start_soon(run, 0.01)
    first, late, quick = records[0], *sorted(records[1:], key=lambda r: r.status)
    assert first.status == "success" and "queued_ms" not in first.meta
    assert quick.status == "success" and quick.meta["queued_ms"] > 100
    assert late.status == "failed" and "s of it waiting for the shared test worker" in late.error


@pytest.mark.anyio
async def test_the_queue_is_bounded_and_a_busy_resource_fails_fast(agent) -> None:
    records = []

    async def run(seconds: float) -> None:
        records.append(await agent.action.async_execute_action("work", {"seconds": seconds}))

    async with anyio.create_task_group() as group:
        group.start_soon(run, 0.4)
        await anyio.sleep(0.05)
        group.start_soon(run, 0.01)
        group.start_soon(run, 0.01)
        await anyio.sleep(0.05)
        started = time.perf_counter()
        await run(0.01)  # the third waiter: refused at once
        assert time.perf_counter() - started < 0.1
    busy = [r for r in records if r.status == "failed"]
    assert len(busy) == 1 and busy[0].error_type == "ResourceBusy"
    assert "2 call(s) already wait" in busy[0].error and "nothing ran" in busy[0].error
    assert sum(r.status == "success" for r in records) == 3


def test_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError):
        Turnstile("x", max_waiting=-1)
    assert issubclass(ResourceBusy, agently_core.errors.ActionError)
