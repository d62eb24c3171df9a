"""The run and round events this plugin asks flows to emit (``run.started``,
``round.started``, ``round.completed``, ``run.completed``; see docs/observability.md):
when a flow emits them they name, bound and end the run and round spans, ahead of what
the observer derives from the execution."""

from __future__ import annotations

from typing import Any

import anyio
from agently_core_otel import attributes as attr
from agently_core_otel import observe
from opentelemetry.trace import StatusCode

from agently_core import EventCenter


def play(center: EventCenter, events: list[tuple[str, dict[str, Any]]]) -> None:
    async def main() -> None:
        for event_type, payload in events:
            await center.emit(event_type, "flow", **payload)
            await anyio.sleep(0.001)

    anyio.run(main)


def test_run_and_round_events_shape_the_tree(exporter, read_tree) -> None:
    provider, memory = exporter
    center = EventCenter()
    observer = observe(center, tracer_provider=provider)
    run = {"run_id": "exec_1"}
    play(center, [
        ("run.started", {**run, "agent_name": "analyst", "agent_id": "agent_9",
                         "planner": "anthropic_compatible", "max_rounds": 5,
                         "planning_protocol": "native_tool_calls", "resumed": False}),
        ("round.started", {**run, "round_index": 0}),
        ("model.request", {**run, "round_index": 0, "planner": "anthropic_compatible",
                           "model": "claude-x", "messages": 1, "tools": 2, "stream": False}),
        ("model.response", {**run, "round_index": 0, "planner": "anthropic_compatible",
                            "model": "claude-x", "latency_ms": 9.0, "input_tokens": 50,
                            "output_tokens": 5, "tool_calls": 1, "finish_reason": "tool_use"}),
        ("action.started", {**run, "round_index": 0, "call_id": "toolu_1", "action": "q"}),
        ("action.failed", {**run, "round_index": 0, "call_id": "toolu_1", "action": "q",
                           "status": "failed", "error_type": "TimeoutError"}),
        ("round.completed", {**run, "round_index": 0, "next_action": "execute", "calls": 1,
                             "invalid": 0}),
        ("round.started", {**run, "round_index": 1}),
        ("round.completed", {**run, "round_index": 1, "next_action": "response", "calls": 0,
                             "invalid": 0}),
        ("run.completed", {**run, "stop_reason": "failed", "error_type": "ModelError",
                           "rounds": 2, "input_tokens": 50, "output_tokens": 5,
                           "requests": 1}),
    ])
    assert observer.open_spans == 0  # ended by the events, no sweep needed
    tree = read_tree(memory)
    root = tree.one("invoke_agent")
    assert root.name == "invoke_agent analyst"
    assert root.attributes[attr.AGENT_ID] == "agent_9"
    assert root.attributes[attr.PLANNER] == "anthropic_compatible"
    assert root.attributes[attr.MAX_ROUNDS] == 5
    assert root.attributes[attr.PLANNING_PROTOCOL] == "native_tool_calls"
    assert root.attributes[attr.RUN_RESUMED] is False
    assert root.attributes[attr.ROUNDS] == 2
    assert root.attributes[attr.MODEL_REQUESTS] == 1
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes[attr.ERROR_TYPE] == "ModelError"
    rounds = tree.children(root)
    assert [r.attributes[attr.NEXT_ACTION] for r in rounds] == ["execute", "response"]
    assert rounds[0].attributes[attr.ROUND_CALLS] == 1
    chat, tool = tree.children(rounds[0])
    assert chat.attributes[attr.PROVIDER] == "anthropic"
    assert chat.attributes[attr.FINISH_REASONS] == ("tool_use",)
    assert tool.attributes[attr.ERROR_TYPE] == "TimeoutError"
    assert tool.status.description == "TimeoutError"


def test_a_started_run_is_not_ended_by_a_pause_but_by_its_completion(
        make_agent, exporter, read_tree) -> None:
    """A flow that emits run.completed at a pause owns the end of the run span: the
    observer does not end it early from the paused execution."""
    provider, memory = exporter
    agent = make_agent()
    observer = observe(agent.manager.events, tracer_provider=provider)

    @agent.action_func(approval_required=True)
    def wipe() -> str:
        """Needs approval."""
        return "wiped"

    agent.use_actions(["wipe"])
    agent.approval.register_handler("later", lambda context, request: "pending")
    agent.approval.set_default("later")

    async def plan(context: Any, request: Any) -> Any:
        run = {"run_id": context["execution_id"]}
        if context["round_index"] == 0:
            await agent.events.emit("run.started", "flow", agent_name="flowing", **run)
            return [{"action": "wipe", "kwargs": {}}]
        return "done"

    agent.register_action_planning_handler(plan)
    try:
        result = agent.run("wipe it")
        assert result.stop_reason == "approval_required"
        observer.flush()
        assert not read_tree(memory).named("invoke_agent")  # still open: no run.completed
        anyio.run(lambda: agent.events.emit("run.completed", "flow",
                                            run_id=result.execution_id,
                                            stop_reason="approval_required"))
    finally:
        agent.close()
    span = read_tree(memory).one("invoke_agent")
    assert span.name == "invoke_agent flowing"
    assert span.attributes[attr.STOP_REASON] == "approval_required"
    assert span.status.status_code == StatusCode.UNSET
