"""Issue 11, point 10: runs, rounds, model requests and action calls of real agents become
OpenTelemetry spans that follow the GenAI semantic conventions, with errors as span status.

Agents are real (the installed runtime and flow, function actions, the dispatcher's
approval gate); the model is a stand-in planner that emits the ``model.*`` events of the
issue 11 contract around each round, as the model planners do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import pytest
from agently_core_otel import attributes as attr
from agently_core_otel import observe
from opentelemetry.trace import SpanKind, StatusCode

from agently_core.errors import ModelError


class ContractPlanner:
    """A stand-in model planner. Round ``i`` plays ``steps[i]``: ``{"calls": [(id, action,
    kwargs), ...], "chunks": [...], "fail": message}``; past the end it answers "done".
    Around each round it emits ``model.request``, one ``model.delta`` per chunk, then
    ``model.response`` or ``model.failed`` (and raises :class:`ModelError`)."""

    def __init__(self, events: Any, steps: Sequence[Mapping[str, Any]], *,
                 model: str = "stand-in-1", name: str = "openai_compatible") -> None:
        self.events, self.steps, self.model, self.name = events, list(steps), model, name

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        events = context.get("events") or self.events
        index = context["round_index"]
        step = self.steps[index] if index < len(self.steps) else {"chunks": ["do", "ne"]}
        common = {"planner": self.name, "run_id": context.get("run_id")
                  or context.get("execution_id"), "round_index": index}
        await events.emit("model.request", "planner", model=self.model,
                          messages=1 + 2 * index, tools=len(request["action_list"]),
                          stream=True, **common)
        for chunk in step.get("chunks", ()):
            await anyio.sleep(0.002)
            await events.emit("model.delta", "planner", text=chunk, **common)
        if "fail" in step:
            await events.emit("model.failed", "planner", model=self.model, error=step["fail"],
                              **common)
            raise ModelError(step["fail"])
        calls = step.get("calls", ())
        await events.emit("model.response", "planner", model=f"{self.model}-0613",
                          latency_ms=4.5, input_tokens=100 + index, output_tokens=10 + index,
                          tool_calls=len(calls),
                          finish_reason="tool_calls" if calls else "stop", **common)
        import json

        return {"tool_calls": [{"id": call_id, "type": "function",
                                "function": {"name": action, "arguments": json.dumps(kwargs)}}
                               for call_id, action, kwargs in calls],
                "content": None if calls else "".join(step.get("chunks", ())),
                "model": self.model,
                "usage": {"input_tokens": 100 + index, "output_tokens": 10 + index}}


def mount(agent: Any) -> None:
    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @agent.action_func
    def explode(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(f"it broke: {reason}")

    @agent.action_func(approval_required=True)
    def drop_table(table: str) -> str:
        """Needs a person's approval."""
        return f"dropped {table}"

    agent.use_actions(["add", "explode", "drop_table"])


@pytest.fixture
def agent(make_agent: Any) -> Any:
    agent = make_agent()
    agent.name = "otel-test"
    mount(agent)
    yield agent
    agent.close()


def test_scripted_run_gives_a_run_span_with_tool_spans(agent, exporter, read_tree) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider)
    agent.approval.register_handler("deny", lambda context, request: "denied")
    agent.approval.set_default("deny")
    agent.set_planner([[("add", {"a": 1, "b": 2}), ("explode", {"reason": "r"}),
                        ("drop_table", {"table": "users"})], "all done"])
    result = agent.run("go")
    assert result.stop_reason == "response"
    observer.flush()
    tree = read_tree(memory)
    run = tree.one("invoke_agent")
    assert run.name == "invoke_agent otel-test"
    assert run.parent is None and run.kind == SpanKind.INTERNAL
    assert run.attributes[attr.OPERATION] == "invoke_agent"
    assert run.attributes[attr.AGENT_NAME] == "otel-test"
    assert run.attributes[attr.AGENT_ID] == agent.id
    assert run.attributes[attr.RUN_ID] == result.execution_id
    assert run.attributes[attr.STOP_REASON] == "response"
    assert run.attributes[attr.ROUNDS] == 2
    assert run.status.status_code == StatusCode.UNSET
    tools = {s.attributes[attr.TOOL_NAME]: s for s in tree.named("execute_tool")}
    assert set(tools) == {"add", "explode", "drop_table"}
    for span in tools.values():  # in the run, in a round span when the flow announces rounds
        parent = tree.parent(span)
        assert parent is run or (parent.name == "agently.round" and tree.parent(parent) is run)
        if parent is not run:
            assert parent.attributes[attr.ROUND_INDEX] == 0
    records = {r.action: r for r in result.records}
    for name, span in tools.items():
        assert span.name == f"execute_tool {name}"
        assert span.attributes[attr.OPERATION] == "execute_tool"
        assert span.attributes[attr.TOOL_CALL_ID] == records[name].call_id
        assert span.attributes[attr.ACTION_STATUS] == records[name].status
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    assert tools["add"].status.status_code == StatusCode.UNSET
    assert tools["explode"].status.status_code == StatusCode.ERROR
    assert tools["explode"].attributes[attr.ERROR_TYPE] in {"failed", records["explode"].error_type}
    blocked = tools["drop_table"]
    assert blocked.status.status_code == StatusCode.ERROR
    assert blocked.attributes[attr.ACTION_STATUS] == "blocked"
    assert [e.name for e in blocked.events] == ["agently.approval.requested",
                                                "agently.approval.denied"]
    assert observer.open_spans == 0


def test_model_driven_run_gives_rounds_chats_and_tools(agent, exporter, read_tree) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider)
    agent.set_planner(ContractPlanner(agent.events, [
        {"calls": [("call_a", "add", {"a": 2, "b": 3}), ("call_b", "explode", {"reason": "x"})],
         "chunks": ["let me ", "add"]},
        {"calls": [("call_c", "add", {"a": 5, "b": 1})]},
    ]))
    result = agent.run("add things", planning_protocol="native_tool_calls")
    assert result.stop_reason == "response", result.error
    observer.flush()
    tree = read_tree(memory)
    run = tree.one("invoke_agent")
    rounds = tree.children(run)
    assert [s.name for s in rounds] == ["agently.round"] * 3
    assert [s.attributes[attr.ROUND_INDEX] for s in rounds] == [0, 1, 2]
    assert rounds[0].end_time <= rounds[1].start_time <= rounds[1].end_time <= rounds[2].start_time
    first = tree.children(rounds[0])
    assert [s.name for s in first] == ["chat stand-in-1", "execute_tool add",
                                       "execute_tool explode"]
    chat = first[0]
    assert chat.kind == SpanKind.CLIENT
    assert chat.attributes[attr.OPERATION] == "chat"
    assert chat.attributes[attr.REQUEST_MODEL] == "stand-in-1"
    assert chat.attributes[attr.RESPONSE_MODEL] == "stand-in-1-0613"
    assert chat.attributes[attr.PROVIDER] == "openai"
    assert chat.attributes[attr.INPUT_TOKENS] == 100
    assert chat.attributes[attr.OUTPUT_TOKENS] == 10
    assert chat.attributes[attr.FINISH_REASONS] == ("tool_calls",)
    assert chat.attributes[attr.DELTAS] == 2
    assert chat.attributes[attr.REQUEST_STREAM] is True
    assert chat.attributes[attr.TOOLS] == 3
    assert 0 < chat.attributes[attr.TIME_TO_FIRST_CHUNK] < (chat.end_time - chat.start_time) / 1e9
    assert chat.end_time <= first[1].start_time  # the calls run after the model answered
    assert first[1].attributes[attr.TOOL_CALL_ID] == "call_a"
    assert first[2].attributes[attr.TOOL_CALL_ID] == "call_b"
    assert first[2].status.status_code == StatusCode.ERROR
    assert [s.name for s in tree.children(rounds[2])] == ["chat stand-in-1"]
    last_chat = tree.children(rounds[2])[0]
    assert last_chat.attributes[attr.FINISH_REASONS] == ("stop",)
    assert run.attributes[attr.MODEL_REQUESTS] == 3
    assert run.attributes[attr.INPUT_TOKENS] == 100 + 101 + 102
    assert run.attributes[attr.OUTPUT_TOKENS] == 10 + 11 + 12
    assert run.status.status_code == StatusCode.UNSET
    assert len(tree.spans) == 1 + 3 + 3 + 3  # run, rounds, chats, tools: nothing else


def test_model_error_ends_the_run_with_error_status(agent, exporter, read_tree) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider)
    agent.set_planner(ContractPlanner(agent.events, [
        {"calls": [("call_a", "add", {"a": 2, "b": 3})]},
        {"fail": "openai_compatible: the key in OPENAI_API_KEY was refused by "
                 "http://127.0.0.1:9/v1: 401 invalid key"},
    ]))
    result = agent.run("x", planning_protocol="native_tool_calls")
    assert result.stop_reason == "failed"
    observer.flush()
    tree = read_tree(memory)
    run = tree.one("invoke_agent")
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description == "ModelError"
    assert run.attributes[attr.ERROR_TYPE] == "ModelError"
    assert run.attributes[attr.STOP_REASON] == "failed"
    failed_chat = tree.children(tree.children(run)[1])[0]
    assert failed_chat.status.status_code == StatusCode.ERROR
    assert failed_chat.attributes[attr.ERROR_TYPE] == "ModelError"
    assert attr.INPUT_TOKENS not in failed_chat.attributes
    assert run.attributes[attr.INPUT_TOKENS] == 100  # the answered request only
    assert all(s.end_time is not None for s in tree.spans)
    assert observer.open_spans == 0


def test_paused_run_ends_and_its_resume_links_back(agent, exporter, read_tree) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider)
    agent.approval.register_handler("later", lambda context, request: "pending")
    agent.approval.set_default("later")
    agent.set_planner([[("drop_table", {"table": "logs"})], "dropped"])
    paused = agent.run("clean up")
    assert paused.stop_reason == "approval_required"
    observer.flush()
    first = read_tree(memory).one("invoke_agent")
    assert first.attributes[attr.STOP_REASON] == "approval_required"
    assert first.status.status_code == StatusCode.UNSET
    waiting = read_tree(memory).one("execute_tool")
    assert waiting.attributes[attr.ACTION_STATUS] == "approval_required"
    assert [e.name for e in waiting.events] == ["agently.approval.requested",
                                                "agently.approval.pending"]
    memory.clear()

    execution = agent.last_execution
    from agently_core._sync import run_sync

    async def resume() -> Any:
        return await execution.async_continue_with("approved", resume_request_id="r1")

    done = run_sync(resume)
    assert done.stop_reason == "response"
    observer.flush()
    tree = read_tree(memory)
    resumed = tree.one("invoke_agent")
    assert resumed.attributes[attr.RUN_RESUMED] is True
    assert resumed.attributes[attr.RUN_ID] == first.attributes[attr.RUN_ID]
    assert [link.context.span_id for link in resumed.links] == [first.context.span_id]
    assert resumed.attributes[attr.STOP_REASON] == "response"
    assert [e.name for e in resumed.events] == ["agently.approval.resumed"]
    assert resumed.events[0].attributes[attr.APPROVAL_DECISION] == "approved"
    ran = tree.one("execute_tool")
    assert tree.parent(ran) is resumed
    assert ran.attributes[attr.ACTION_STATUS] == "success"
    assert ran.attributes[attr.TOOL_CALL_ID] == waiting.attributes[attr.TOOL_CALL_ID]
    assert observer.open_spans == 0


def test_cancelled_run_ends_every_span(agent, exporter, read_tree, wait_until) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider, poll_interval=0.02)
    started = anyio.Event()

    @agent.action_func
    async def wait_forever() -> str:
        """Never returns."""
        started.set()
        await anyio.sleep(3600)
        return "never"

    agent.use_actions(["wait_forever"])
    agent.set_planner(ContractPlanner(agent.events, [
        {"calls": [("call_w", "wait_forever", {})]}]))

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: agent.async_run("wait",
                                                     planning_protocol="native_tool_calls"))
            await started.wait()
            group.cancel_scope.cancel()
        await agent.aclose()

    anyio.run(main)
    wait_until(lambda: observer.open_spans == 0)  # the reaper thread, not a flush, ends them
    tree = read_tree(memory)
    run = tree.one("invoke_agent")
    assert run.status.status_code == StatusCode.ERROR
    assert run.attributes[attr.STOP_REASON] == "aborted"
    tool = tree.one("execute_tool")
    assert tool.status.status_code == StatusCode.ERROR
    assert tool.attributes[attr.INCOMPLETE] is True
    assert tree.parent(tree.parent(tool)) is run
    assert all(s.end_time is not None for s in tree.spans)


def test_direct_calls_are_root_tool_spans(agent, exporter, read_tree) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider)
    record = agent.action.execute_action("add", {"a": 1, "b": 1})
    assert record.status == "success"
    tree = read_tree(memory)
    span = tree.one("execute_tool add")
    assert span.parent is None
    assert span.attributes[attr.TOOL_CALL_ID] == record.call_id
    assert observer.open_spans == 0
    assert not tree.named("invoke_agent")


def test_host_span_is_the_parent_of_the_run(agent, exporter, read_tree, wait_until) -> None:
    provider, memory = exporter
    observe(agent.manager.events, tracer_provider=provider, poll_interval=0.02)
    tracer = provider.get_tracer("host")
    agent.set_planner([[("add", {"a": 1, "b": 2})], "ok"])

    async def main() -> None:
        with tracer.start_as_current_span("host request"):
            await agent.async_run("go")

    anyio.run(main)
    agent.close()
    wait_until(lambda: read_tree(memory).named("invoke_agent"))
    tree = read_tree(memory)
    host = tree.one("host request")
    assert tree.parent(tree.one("invoke_agent")) is host
