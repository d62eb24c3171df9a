"""The flow's own events (``run.started``, ``round.started``, ``round.completed``,
``run.completed``, as docs/observability.md lists them) name, bound and end the run and
round spans, ahead of what the observer derives from the execution."""

from __future__ import annotations

from typing import Any

import anyio
from agently_core_otel import attributes as attr
from agently_core_otel import observe
from opentelemetry.trace import StatusCode

from agently_core import ApprovalRequest, EventCenter


def play(center: EventCenter, events: list[tuple[str, dict[str, Any]]]) -> None:
    async def main() -> None:
        for event_type, payload in events:
            await center.emit(event_type, "flow", **payload)
            await anyio.sleep(0.001)

    anyio.run(main)


def test_flow_events_shape_the_tree(exporter, read_tree) -> None:
    provider, memory = exporter
    center = EventCenter()
    observer = observe(center, tracer_provider=provider)
    run = {"run_id": "exec_1"}
    play(center, [
        ("run.started", {**run, "agent_name": "analyst", "max_rounds": 5,
                          "planning_protocol": "native_tool_calls"}),
        ("round.started", {**run, "round_index": 0}),
        ("model.request", {**run, "round_index": 0, "planner": "anthropic_compatible",
                           "model": "claude-x", "messages": 1, "tools": 2, "stream": False}),
        ("model.response", {**run, "round_index": 0, "planner": "anthropic_compatible",
                            "model": "claude-x", "latency_ms": 9.0, "input_tokens": 50,
                            "output_tokens": 5, "tool_calls": 1, "finish_reason": "tool_use"}),
        ("action.started", {**run, "call_id": "toolu_1", "action": "q"}),
        ("action.failed", {**run, "call_id": "toolu_1", "action": "q", "status": "failed",
                           "error_type": "TimeoutError"}),
        ("round.completed", {**run, "round_index": 0, "next_action": "execute",
                                  "calls": 1, "invalid": 0, "model": "claude-x"}),
        ("round.started", {**run, "round_index": 1}),
        ("model.request", {**run, "round_index": 1, "planner": "anthropic_compatible",
                           "model": "claude-x"}),
        ("model.failed", {**run, "round_index": 1, "planner": "anthropic_compatible",
                          "model": "claude-x", "error": "anthropic_compatible: 529 overloaded"}),
        ("round.completed", {**run, "round_index": 1, "next_action": None, "calls": 0,
                             "invalid": 0, "error_type": "ModelError"}),
        ("run.completed", {**run, "stop_reason": "failed", "error_type": "ModelError",
                           "rounds": 1, "records": 1, "input_tokens": 50, "output_tokens": 5,
                           "requests": 1}),
    ])
    assert observer.open_spans == 0  # ended by the events, no sweep needed
    tree = read_tree(memory)
    root = tree.one("invoke_agent")
    assert root.name == "invoke_agent analyst"
    assert root.attributes[attr.MAX_ROUNDS] == 5
    assert root.attributes[attr.PLANNING_PROTOCOL] == "native_tool_calls"
    assert root.attributes[attr.ROUNDS] == 1
    assert root.attributes[attr.RECORDS] == 1
    assert root.attributes[attr.MODEL_REQUESTS] == 1
    assert root.attributes[attr.INPUT_TOKENS] == 50
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes[attr.ERROR_TYPE] == "ModelError"
    rounds = tree.children(root)
    assert [r.attributes[attr.ROUND_INDEX] for r in rounds] == [0, 1]
    assert rounds[0].attributes[attr.NEXT_ACTION] == "execute"
    assert rounds[0].attributes[attr.ROUND_CALLS] == 1
    assert rounds[1].status.status_code == StatusCode.ERROR  # its planner raised
    assert rounds[1].attributes[attr.ERROR_TYPE] == "ModelError"
    chat, tool = tree.children(rounds[0])
    assert chat.attributes[attr.PROVIDER] == "anthropic"
    assert chat.attributes[attr.FINISH_REASONS] == ("tool_use",)
    assert tool.attributes[attr.ERROR_TYPE] == "TimeoutError"
    assert tool.status.description == "TimeoutError"


def test_a_failed_run_without_error_type_is_named_by_the_class_in_its_error(exporter, read_tree) -> None:
    provider, memory = exporter
    center = EventCenter()
    observe(center, tracer_provider=provider)
    play(center, [
        ("run.started", {"run_id": "r"}),
        ("run.completed", {"run_id": "r", "stop_reason": "failed",
                            "error": "planner failed in round 0: KeyError: 'x'"}),
    ])
    span = read_tree(memory).one("invoke_agent")
    assert span.status.description == "KeyError"  # the class name, never the message


def test_an_announced_run_ends_with_run_completed_not_with_the_pause(
        make_agent, exporter, read_tree) -> None:
    """At a pause the flow's run.completed ends the span (with its figures); the observer
    does not end it earlier from the paused execution. Closed without run.completed
    (cancelled), the run ends as aborted."""
    provider, memory = exporter
    agent = make_agent()
    observer = observe(agent.manager.events, tracer_provider=provider)
    paused, cancelled = agent.create_execution(), agent.create_execution()

    async def main() -> None:
        with paused.bind():
            await agent.events.emit("run.started", "flow", run_id=paused.id, agent_name="p")
        paused.suspend([ApprovalRequest(subject_type="action", subject="wipe")],
                       lambda decision: None)
        observer.flush()
        assert not read_tree(memory).named("invoke_agent")  # paused, not yet completed
        await agent.events.emit("run.completed", "flow", run_id=paused.id,
                                stop_reason="approval_required", rounds=1)
        with cancelled.bind():
            await agent.events.emit("run.started", "flow", run_id=cancelled.id,
                                    agent_name="c")
        await cancelled.async_close()

    try:
        anyio.run(main)
        observer.flush()
    finally:
        agent.close()
    tree = read_tree(memory)
    first = tree.one("invoke_agent p")
    assert first.attributes[attr.STOP_REASON] == "approval_required"
    assert first.attributes[attr.ROUNDS] == 1
    assert first.status.status_code == StatusCode.UNSET
    second = tree.one("invoke_agent c")
    assert second.attributes[attr.STOP_REASON] == "aborted"
    assert second.status.status_code == StatusCode.ERROR
    assert observer.open_spans == 0
