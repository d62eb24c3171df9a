"""Dispatch through the agent: records for every outcome, timeouts that hold, worker
threads, concurrency limits, approval, policy narrowing, output caps, serialisation."""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import time
from typing import Any

import anyio
import pytest

from agently_core import ActionError, ActionRecord, ApprovalDecision
from agently_core.models import ActionCall


@pytest.fixture
def agent(make_agent):
    agent = make_agent()

    @agent.action_func
    def add(a: int, b: int = 0) -> int:
        """Add two integers.

        Args:
            a: First.
            b: Second.
        """
        return a + b

    @agent.action_func
    async def async_add(a: int, b: int = 0) -> int:
        await anyio.sleep(0)
        return a + b

    @agent.action_func
    def boom(message: str = "bad input") -> None:
        raise ValueError(message)

    @agent.action_func
    def refuse() -> None:
        raise ActionError("the disk is full")

    @agent.action_func(timeout=0.2)
    def blocking_sleeper(seconds: float = 1.0) -> str:
        time.sleep(seconds)
        return "woke"

    @agent.action_func(timeout=0.2)
    async def async_sleeper(seconds: float = 1.0) -> str:
        await anyio.sleep(seconds)
        return "woke"

    agent.use_actions(["add", "async_add", "blocking_sleeper", "async_sleeper"])
    return agent


# -- records for every outcome -----------------------------------------------------------
def test_sync_execute_action_returns_a_record(agent) -> None:
    record = agent.action.execute_action("add", {"a": 2, "b": 3}, purpose="sum")
    assert isinstance(record, ActionRecord)
    assert record.status == "success" and record.ok
    assert record.result == 5
    assert record.error is None and record.error_type is None
    assert record.action == "add" and record.kwargs == {"a": 2, "b": 3}
    assert record.purpose == "sum"
    assert record.call_id.startswith("call_")
    assert record.duration_ms >= 0 and record.started_at > 0


@pytest.mark.anyio
async def test_async_execute_action_returns_a_record(agent) -> None:
    record = await agent.action.async_execute_action("async_add", {"a": 2, "b": 5})
    assert record.status == "success" and record.result == 7
    record = await agent.action.async_execute_action("add", {"a": 1})
    assert record.result == 1


def test_kwargs_are_optional(agent) -> None:
    assert agent.action.execute_action("boom").error.endswith("ValueError: bad input")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "missing required argument 'a'"),
        ({"a": "two"}, "a: Input should be a valid integer"),
        ({"a": 1, "c": 3}, "unexpected argument 'c'"),
    ],
)
def test_invalid_arguments_give_a_failed_record(agent, kwargs, needle) -> None:
    calls = []

    @agent.action_func
    def spy(a: int) -> int:
        calls.append(a)
        return a

    for name in ("add", "spy"):
        record = agent.action.execute_action(name, kwargs)
        assert record.status == "failed"
        assert record.error_type == "ArgumentsError"
        assert record.error.startswith(f"invalid arguments for {name!r}: ")
        assert needle in record.error
    assert calls == []  # validation happens before the call


def test_unknown_action_gives_a_failed_record(agent) -> None:
    record = agent.action.execute_action("subtract", {"a": 1})
    assert record.status == "failed"
    assert record.error_type == "ActionNotFoundError"
    assert "unknown action 'subtract'" in record.error
    assert "add" in record.error  # lists what exists


def test_exception_gives_a_failed_record(agent) -> None:
    record = agent.action.execute_action("boom", {"message": "no way"})
    assert record.status == "failed"
    assert record.error_type == "ValueError"
    assert record.error == "action 'boom' raised ValueError: no way"
    assert record.result is None


def test_action_error_message_is_used_as_is(agent) -> None:
    record = agent.action.execute_action("refuse")
    assert record.status == "failed"
    assert (record.error_type, record.error) == ("ActionError", "the disk is full")


def test_unknown_executor_kind_gives_a_failed_record(agent) -> None:
    agent.action.register_action({"name": "cobol_job", "kind": "cobol"})
    record = agent.action.execute_action("cobol_job")
    assert record.status == "failed"
    assert record.error_type == "NotInstalledError"
    assert "kind 'cobol'" in record.error


def test_action_raising_timeout_error_without_a_timeout(agent) -> None:
    # regression: dispatch used to format policy.timeout_seconds (None) with :g -> TypeError
    @agent.action_func
    def socket_call() -> None:
        raise TimeoutError("socket timed out")

    record = agent.action.execute_action("socket_call")
    assert record.status == "failed"
    assert "socket timed out" in record.error


def test_action_raising_timeout_error_with_a_timeout_still_fails_cleanly(agent) -> None:
    @agent.action_func(timeout=5)
    def socket_call() -> None:
        raise TimeoutError("socket timed out")

    record = agent.action.execute_action("socket_call")
    assert record.status == "failed"
    assert record.error_type == "TimeoutError"
    assert "socket timed out" in record.error  # not mistaken for the policy's timeout


def test_action_calling_sys_exit_gives_a_failed_record(agent) -> None:
    import sys

    @agent.action_func
    def quitter() -> None:
        sys.exit(3)

    record = agent.action.execute_action("quitter")
    assert record.status == "failed"
    assert record.error_type == "SystemExit"
    assert agent.action.execute_action("add", {"a": 1}).result == 1


def test_bad_spec_policy_is_rejected_at_registration(agent) -> None:
    def typo() -> int:
        return 1

    with pytest.raises(ValueError, match="timeout"):
        agent.action_func(typo, policy={"timeout": 3})
    with pytest.raises(ValueError, match="timeout_seconds"):
        agent.action_func(typo, timeout=-1)
    with pytest.raises(ValueError):
        agent.action.register_action({"name": "raw", "policy": {"max_output_bytes": "lots"}})
    assert "typo" not in agent.registry and "raw" not in agent.registry


def test_failed_calls_do_not_break_later_calls(agent) -> None:
    assert agent.action.execute_action("boom").status == "failed"
    assert agent.action.execute_action("nope").status == "failed"
    assert agent.action.execute_action("add", {"a": 1, "b": 1}).result == 2


# -- timeouts ----------------------------------------------------------------------------
def test_timeout_holds_for_an_async_sleeper(agent) -> None:
    started = time.perf_counter()
    record = agent.action.execute_action("async_sleeper", {"seconds": 1.0})
    elapsed = time.perf_counter() - started
    assert record.status == "failed"
    assert record.error_type == "TimeoutError"
    assert record.error == "action 'async_sleeper' timed out after 0.2s"
    assert 0.15 <= elapsed < 0.7


def test_timeout_holds_for_a_blocking_sync_function(agent) -> None:
    started = time.perf_counter()
    record = agent.action.execute_action("blocking_sleeper", {"seconds": 1.0})
    elapsed = time.perf_counter() - started
    assert record.status == "failed"
    assert record.error_type == "TimeoutError"
    assert "timed out after 0.2s" in record.error
    assert 0.15 <= elapsed < 0.7


@pytest.mark.anyio
async def test_timeout_holds_in_async_code_too(agent) -> None:
    with anyio.fail_after(0.7):
        record = await agent.action.async_execute_action("blocking_sleeper", {"seconds": 1.0})
    assert record.error_type == "TimeoutError"


def test_per_call_timeout_from_the_host(agent) -> None:
    @agent.action_func
    async def slow() -> str:
        await anyio.sleep(1.0)
        return "late"

    started = time.perf_counter()
    record = agent.action.execute_action("slow", timeout=0.1)
    assert record.error_type == "TimeoutError"
    assert time.perf_counter() - started < 0.6
    # a call's timeout only narrows the action's own: the spec's 0.2 s still holds
    started = time.perf_counter()
    record = agent.action.execute_action("async_sleeper", {"seconds": 0.6}, timeout=2)
    assert record.error_type == "TimeoutError" and "0.2s" in record.error
    assert time.perf_counter() - started < 0.5


def test_fast_call_within_the_timeout_succeeds(agent) -> None:
    record = agent.action.execute_action("blocking_sleeper", {"seconds": 0.01})
    assert record.status == "success" and record.result == "woke"


def test_timeout_from_agent_policy(make_agent) -> None:
    agent = make_agent(policy={"timeout_seconds": 0.1})

    @agent.action_func
    async def slow() -> None:
        await anyio.sleep(1.0)

    assert agent.action.execute_action("slow").error_type == "TimeoutError"


# -- threads and the event loop ----------------------------------------------------------
@pytest.mark.anyio
async def test_sync_function_runs_in_a_worker_thread(agent) -> None:
    loop_thread = threading.get_ident()

    @agent.action_func
    def where() -> int:
        return threading.get_ident()

    @agent.action_func
    async def where_async() -> int:
        return threading.get_ident()

    assert (await agent.action.async_execute_action("where")).result != loop_thread
    assert (await agent.action.async_execute_action("where_async")).result == loop_thread


@pytest.mark.anyio
async def test_sync_action_does_not_block_the_event_loop(agent) -> None:
    ticks: list[float] = []

    @agent.action_func
    def block(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    async def heartbeat() -> None:
        while True:
            ticks.append(time.perf_counter())
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(heartbeat)
        await anyio.sleep(0)
        record = await agent.action.async_execute_action("block", {"seconds": 0.3})
        group.cancel_scope.cancel()
    assert record.result == "done"
    assert len(ticks) >= 10  # about 30 expected while the action slept
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.15


# -- concurrency -------------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_concurrency_limit_is_honoured(agent, kind) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1

    if kind == "async":
        @agent.action_func(name="work")
        async def work_async(i: int) -> int:
            enter()
            await anyio.sleep(0.05)
            leave()
            return i
    else:
        @agent.action_func(name="work")
        def work_sync(i: int) -> int:
            enter()
            time.sleep(0.05)
            leave()
            return i

    calls = [{"action": "work", "kwargs": {"i": i}} for i in range(6)]
    started = time.perf_counter()
    records = await agent.action.async_execute_actions(calls, concurrency=2)
    elapsed = time.perf_counter() - started
    assert [r.result for r in records] == list(range(6))  # call order kept
    assert state["max"] == 2
    assert elapsed >= 0.14  # three waves of two


@pytest.mark.anyio
async def test_default_concurrency_comes_from_configuration(make_agent) -> None:
    agent = make_agent(action={"concurrency": 3})
    state = {"now": 0, "max": 0}

    @agent.action_func
    async def work() -> None:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await anyio.sleep(0.03)
        state["now"] -= 1

    await agent.action.async_execute_actions([{"action": "work"}] * 7)
    assert state["max"] == 3


def test_execute_actions_mixes_outcomes_in_order(agent) -> None:
    records = agent.action.execute_actions([
        {"action": "add", "kwargs": {"a": 1}},
        {"action": "ghost"},
        {"action": "add", "kwargs": {"a": "x"}},
        ActionCall(action="boom"),
        {"action": "async_add", "kwargs": {"a": 4, "b": 4}},
    ])
    assert [r.status for r in records] == ["success", "failed", "failed", "failed", "success"]
    assert [r.error_type for r in records] == [None, "ActionNotFoundError", "ArgumentsError",
                                               "ValueError", None]
    assert agent.get_action_result() == records


# -- get_action_result -------------------------------------------------------------------
def test_get_action_result_returns_the_last_request(agent) -> None:
    assert agent.get_action_result() == []
    first = agent.action.execute_actions([{"action": "add", "kwargs": {"a": i}} for i in range(3)])
    assert [r.result for r in agent.get_action_result()] == [0, 1, 2]
    assert agent.get_action_result() == first
    second = agent.action.execute_action("add", {"a": 9})
    assert agent.get_action_result() == [second]
    agent.get_action_result().clear()  # a copy: the agent's records are untouched
    assert agent.get_action_result() == [second]


# -- approval ----------------------------------------------------------------------------
@pytest.fixture
def guarded(make_agent):
    def build(**settings: Any):
        agent = make_agent(**settings)
        ran: list[str] = []

        @agent.action_func(approval_required=True)
        def delete_everything() -> str:
            ran.append("deleted")
            return "deleted"

        @agent.action_func
        def harmless() -> str:
            ran.append("harmless")
            return "ok"

        agent.use_actions(["delete_everything", "harmless"])
        agent.ran = ran
        return agent

    return build


def test_approval_auto_approve(guarded) -> None:
    agent = guarded(approval_handler="auto_approve")
    record = agent.action.execute_action("delete_everything")
    assert record.status == "success" and agent.ran == ["deleted"]


def test_approval_fail_closed_leaves_it_pending(guarded) -> None:
    agent = guarded(approval_handler="fail_closed")
    record = agent.action.execute_action("delete_everything")
    assert record.status == "approval_required"
    assert record.error_type == "ApprovalRequired"
    assert record.approval_request_id and record.approval_request_id.startswith("apr_")
    assert agent.ran == []
    assert agent.action.execute_action("harmless").status == "success"  # no approval needed


def test_approval_denied_by_a_handler(guarded) -> None:
    agent = guarded()
    seen = []

    def deny(context, request):
        seen.append((request.subject_type, request.subject, request.details["source"], context))
        return ApprovalDecision(request_id=request.id, decision="denied", reason="not today")

    agent.approval.register_handler("deny", deny)
    agent.approval.set_default("deny")
    record = agent.action.execute_action("delete_everything")
    assert record.status == "blocked"
    assert record.error_type == "ApprovalDenied"
    assert "was denied: not today" in record.error
    assert agent.ran == []
    assert seen == [("action", "delete_everything", "host", agent)]


def test_default_handler_denies_without_a_terminal(guarded, monkeypatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    agent = guarded()
    assert agent.approval.default == "input_timeout_fail"
    started = time.perf_counter()
    record = agent.action.execute_action("delete_everything")
    assert record.status == "blocked"
    assert time.perf_counter() - started < 0.5
    assert agent.ran == []


def test_interactive_approval_waits_for_the_configured_timeout(guarded, monkeypatch) -> None:
    import io
    import sys

    class SilentTerminal(io.StringIO):
        def isatty(self) -> bool:
            return True

        def readline(self, *args) -> str:  # type: ignore[override]
            time.sleep(0.8)
            return "y\n"

    monkeypatch.setattr(sys, "stdin", SilentTerminal())
    agent = guarded(approval_timeout=0.1)
    assert agent.approval_timeout == 0.1
    started = time.perf_counter()
    record = agent.action.execute_action("delete_everything")
    assert record.status == "blocked"
    assert time.perf_counter() - started < 0.6
    assert agent.ran == []


def test_approval_mode_never_blocks(guarded) -> None:
    agent = guarded(approval_handler="auto_approve", policy={"approval_mode": "never"})
    record = agent.action.execute_action("delete_everything")
    assert record.status == "blocked"
    assert "approval_mode is 'never'" in record.error
    assert agent.action.execute_action("harmless").status == "success"
    assert agent.ran == ["harmless"]


def test_approval_mode_always_asks_for_every_call(guarded) -> None:
    agent = guarded(approval_handler="fail_closed")
    agent.set_policy(approval_mode="always")
    record = agent.action.execute_action("harmless")
    assert record.status == "approval_required"
    assert agent.ran == []
    asked = []
    agent.approval.register_handler("yes", lambda context, request: asked.append(
        request.subject) or True)
    agent.approval.set_default("yes")
    assert agent.action.execute_action("harmless").status == "success"
    assert asked == ["harmless"]


def test_approval_handler_that_raises_blocks_the_call(guarded) -> None:
    agent = guarded()

    def broken(context, request):
        raise ConnectionError("approval service down")

    agent.approval.register_handler("broken", broken)
    agent.approval.set_default("broken")
    record = agent.action.execute_action("delete_everything")
    assert record.status == "blocked"
    assert "approval handler failed: ConnectionError: approval service down" in record.error
    assert agent.ran == []


def test_approval_handler_answering_nonsense_never_crashes(guarded) -> None:
    agent = guarded()
    agent.approval.register_handler("chatty", lambda context, request: {"approved": True})
    agent.approval.set_default("chatty")
    record = agent.action.execute_action("delete_everything")
    assert record.status == "blocked"
    assert agent.ran == []


def test_approval_events(guarded) -> None:
    agent = guarded(approval_handler="fail_closed")
    events = []
    agent.events.subscribe(lambda e: events.append(e.type), "policy.*")
    agent.action.execute_action("delete_everything")
    assert events == ["policy.approval.requested", "policy.approval.pending"]


# -- policy from a model cannot widen ------------------------------------------------------
@pytest.mark.anyio
async def test_model_cannot_widen_the_timeout(agent) -> None:
    call = ActionCall(action="async_sleeper", kwargs={"seconds": 1.0}, source="model",
                      policy={"timeout_seconds": 100})
    started = time.perf_counter()
    record = await agent.dispatcher.dispatch(call)
    assert record.error_type == "TimeoutError"
    assert "0.2s" in record.error
    assert time.perf_counter() - started < 0.7


@pytest.mark.anyio
async def test_model_may_narrow_the_timeout(agent) -> None:
    call = ActionCall(action="async_sleeper", kwargs={"seconds": 1.0}, source="model",
                      policy={"timeout_seconds": 0.05})
    record = await agent.dispatcher.dispatch(call)
    assert "timed out after 0.05s" in record.error


@pytest.mark.anyio
async def test_host_only_approval_mode_is_ignored_from_a_model(guarded) -> None:
    agent = guarded(approval_handler="fail_closed", policy={"approval_mode": "always"})
    call = ActionCall(action="harmless", source="model", policy={"approval_mode": "auto"})
    record = await agent.dispatcher.dispatch(call)
    assert record.status == "approval_required"
    assert agent.ran == []
    # the same key from the host does apply
    call = ActionCall(action="delete_everything", source="host",
                      policy={"approval_mode": "never"})
    assert (await agent.dispatcher.dispatch(call)).status == "blocked"


@pytest.mark.anyio
async def test_model_cannot_raise_the_output_cap(make_agent) -> None:
    agent = make_agent()

    @agent.action_func(policy={"max_output_bytes": 10})
    def chatty() -> str:
        return "x" * 100

    agent.use_actions(chatty)
    call = ActionCall(action="chatty", source="model", policy={"max_output_bytes": 10_000})
    record = await agent.dispatcher.dispatch(call)
    assert record.meta["truncated"] is True
    assert record.result.startswith("x" * 10 + "\n[... truncated")


@pytest.mark.anyio
async def test_unknown_policy_key_from_a_call_is_a_failed_record(agent) -> None:
    call = ActionCall(action="add", kwargs={"a": 1}, source="model", policy={"sudo": True})
    record = await agent.dispatcher.dispatch(call)
    assert record.status == "failed" and record.error_type == "PolicyError"
    assert "sudo" in record.error


@pytest.mark.anyio
async def test_invalid_policy_value_from_a_model_is_a_failed_record(agent) -> None:
    call = ActionCall(action="add", kwargs={"a": 1}, source="model",
                      policy={"timeout_seconds": -1})
    record = await agent.dispatcher.dispatch(call)
    assert record.status == "failed" and record.error_type == "PolicyError"


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["soon", [1], {"s": 1}])
async def test_wrongly_typed_policy_from_a_model_never_crashes(agent, value) -> None:
    # regression: Policy._narrow called min(0.2, "soon") and the TypeError reached the caller
    call = ActionCall(action="async_sleeper", source="model", policy={"timeout_seconds": value})
    record = await agent.dispatcher.dispatch(call)
    assert record.status == "failed" and record.error_type == "PolicyError"


@pytest.mark.anyio
async def test_model_cannot_call_hidden_actions(agent) -> None:
    record = await agent.dispatcher.dispatch(ActionCall(action="boom", source="model"))
    assert record.status == "failed" and record.error_type == "ActionNotFoundError"
    assert "boom" not in record.error.split("available:")[1]  # hidden names are not leaked
    host = await agent.dispatcher.dispatch(ActionCall(action="boom", source="host"))
    assert host.error_type == "ValueError"  # the host may call it


# -- output cap and serialisation ------------------------------------------------------------
def test_max_output_bytes_truncates_strings_with_a_marker(make_agent) -> None:
    agent = make_agent(policy={"max_output_bytes": 100})

    @agent.action_func
    def long_text() -> str:
        return "a" * 1000

    @agent.action_func
    def short_text() -> str:
        return "a" * 100

    record = agent.action.execute_action("long_text")
    assert record.status == "success"
    assert record.result == "a" * 100 + "\n[... truncated: 900 of 1000 bytes omitted]"
    assert record.meta == {"truncated": True, "original_bytes": 1000}
    record = agent.action.execute_action("short_text")
    assert record.result == "a" * 100 and record.meta == {}


def test_max_output_bytes_on_structured_results_and_multibyte_text(make_agent) -> None:
    agent = make_agent()

    @agent.action_func(policy={"max_output_bytes": 20})
    def big_dict() -> dict:
        return {"rows": list(range(100))}

    @agent.action_func(policy={"max_output_bytes": 5})
    def accents() -> str:
        return "ééééé"  # 10 bytes in UTF-8

    record = agent.action.execute_action("big_dict")
    assert isinstance(record.result, str)
    assert record.result.startswith('{"rows": [0, 1, 2, 3')
    assert "[... truncated:" in record.result
    assert record.meta["original_bytes"] == len(json.dumps({"rows": list(range(100))}))
    record = agent.action.execute_action("accents")
    assert record.result.startswith("éé\n[... truncated: 6 of 10 bytes omitted]")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def test_non_json_results_are_made_serialisable(make_agent) -> None:
    agent = make_agent()

    @agent.action_func
    def odd() -> Any:
        return {
            "when": datetime.date(2024, 1, 2),
            "set": {3},
            "tuple": (1, 2),
            "bytes": b"raw",
            "object": Opaque(),
        }

    record = agent.action.execute_action("odd")
    assert record.status == "success"
    data = json.loads(record.model_dump_json())
    assert data["result"] == {"when": "2024-01-02", "set": [3], "tuple": [1, 2],
                              "bytes": "raw", "object": "<Opaque thing>"}


def test_every_kind_of_record_is_serialisable(guarded) -> None:
    agent = guarded(approval_handler="fail_closed")

    @agent.action_func
    def boom() -> None:
        raise RuntimeError("x")

    records = [
        agent.action.execute_action("harmless"),
        agent.action.execute_action("boom"),
        agent.action.execute_action("ghost"),
        agent.action.execute_action("harmless", {"unexpected": 1}),
        agent.action.execute_action("delete_everything"),
    ]
    for record in records:
        data = json.loads(record.model_dump_json())
        assert ActionRecord.model_validate(data) == record


def test_records_with_non_json_arguments_are_serialisable(make_agent) -> None:
    agent = make_agent()

    @agent.action_func
    def take(thing: Any) -> str:
        return "ok"

    record = agent.action.execute_action("take", {"thing": Opaque()})
    assert record.status == "success"
    json.loads(record.model_dump_json())


# -- events ------------------------------------------------------------------------------
def test_sync_and_async_observers_see_action_events(agent) -> None:
    sync_seen, async_seen = [], []
    agent.events.subscribe(lambda event: sync_seen.append((event.type, event.payload)))

    async def observe(event) -> None:
        await anyio.sleep(0)
        async_seen.append(event.type)

    agent.events.subscribe(observe, "action.*")
    record = agent.action.execute_action("add", {"a": 1})
    assert [t for t, _ in sync_seen] == ["action.started", "action.completed"]
    assert all(p["call_id"] == record.call_id and p["action"] == "add" for _, p in sync_seen)
    assert sync_seen[-1][1]["status"] == "success"
    assert async_seen == ["action.started", "action.completed"]
    agent.action.execute_action("boom")
    assert async_seen[-1] == "action.failed"


def test_observer_that_raises_is_isolated(agent) -> None:
    def broken(event) -> None:
        raise RuntimeError("observer bug")

    async def broken_async(event) -> None:
        raise KeyError("async observer bug")

    later = []
    agent.events.subscribe(broken, name="broken")
    agent.events.subscribe(broken_async, name="broken_async")
    agent.events.subscribe(lambda event: later.append(event.type))
    record = agent.action.execute_action("add", {"a": 1, "b": 1})
    assert record.status == "success" and record.result == 2
    assert later == ["action.started", "action.completed"]
    failures = {(f.observer, f.event_type) for f in agent.events.failures}
    assert ("broken", "action.started") in failures
    assert ("broken_async", "action.completed") in failures
    assert any("RuntimeError: observer bug" in f.error for f in agent.events.failures)
