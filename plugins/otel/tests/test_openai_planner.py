"""End to end with real model planners: ``openai_compatible`` and ``openai_responses`` (the
``openai`` SDK) against a loopback stand-in server speaking the Chat Completions and
Responses wire formats, streamed. The spans carry what the planners' own ``model.*``
events say, and never the key the SDK sent."""

from __future__ import annotations

from typing import Any

import pytest
from agently_core_otel import attributes as attr
from agently_core_otel import observe
from opentelemetry.trace import SpanKind, StatusCode

from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

KEY = "sk-loopback-otel-planted-4d2e91"


@pytest.fixture
def agent(make_agent, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    agent = make_agent()

    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    agent.use_actions(["add"])
    yield agent
    agent.close()


@pytest.mark.parametrize(("planner", "path"), [("openai_compatible", "/chat/completions"),
                                               ("openai_responses", "/responses")])
def test_a_streamed_tool_call_round_trip(agent, exporter, read_tree, span_texts,
                                         planner: str, path: str) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider)
    replies = [Reply(text="adding them now", chunk_chars=4,
                     tool_calls=[ToolCall("add", {"a": 20, "b": 22}, id="call_lb_1")],
                     usage={"input_tokens": 120, "output_tokens": 17}),
               Reply(text="it is 42", usage={"input_tokens": 150, "output_tokens": 4})]
    with LoopbackModelServer(replies) as server:
        agent.set_planner(planner, model="stand-in-mini", base_url=server.base_url,
                          max_retries=0)
        result = agent.run("what is 20 + 22?", planning_protocol="native_tool_calls")
        sent = [r.headers.get("authorization") for r in server.requests_to(path)]
    assert result.stop_reason == "response" and result.response == "it is 42"
    assert sent == [f"Bearer {KEY}"] * 2  # the key was really in use
    observer.flush()
    tree = read_tree(memory)
    run = tree.one("invoke_agent")
    assert run.attributes[attr.INPUT_TOKENS] == 270
    assert run.attributes[attr.OUTPUT_TOKENS] == 21
    assert run.attributes[attr.MODEL_REQUESTS] == 2
    chats = tree.named("chat")
    assert [c.name for c in chats] == ["chat stand-in-mini"] * 2
    first = min(chats, key=lambda c: c.start_time)
    assert first.kind == SpanKind.CLIENT
    assert first.attributes[attr.PROVIDER] == "openai"
    assert first.attributes[attr.REQUEST_STREAM] is True
    assert first.attributes[attr.INPUT_TOKENS] == 120
    assert first.attributes[attr.OUTPUT_TOKENS] == 17
    assert first.attributes[attr.FINISH_REASONS]  # as the planner names it
    assert first.attributes[attr.DELTAS] >= 2  # "adding them now" in pieces of 4
    assert first.attributes[attr.TIME_TO_FIRST_CHUNK] > 0
    tool = tree.one("execute_tool add")
    assert tool.attributes[attr.TOOL_CALL_ID] == "call_lb_1"
    assert tree.parent(tool) is tree.parent(first)  # both in round 0
    for span in tree.spans:
        assert KEY not in " ".join(span_texts(span))


def test_a_refused_key_fails_the_run_span(agent, exporter, read_tree, span_texts) -> None:
    provider, memory = exporter
    observer = observe(agent.manager.events, tracer_provider=provider)
    with LoopbackModelServer([Reply.failure(401)]) as server:
        agent.set_planner("openai_compatible", model="stand-in-mini",
                          base_url=server.base_url, max_retries=0)
        result = agent.run("hello", planning_protocol="native_tool_calls")
    assert result.stop_reason == "failed" and "OPENAI_API_KEY" in result.error
    observer.flush()
    tree = read_tree(memory)
    run = tree.one("invoke_agent")
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description == "ModelError"
    assert attr.INPUT_TOKENS not in run.attributes  # nothing answered: no usage to report
    chat = tree.one("chat")
    assert chat.status.status_code == StatusCode.ERROR
    for span in tree.spans:
        text = " ".join(span_texts(span))
        assert KEY not in text and "refused" not in text  # the message stays out
