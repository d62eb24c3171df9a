"""Issue 11, point 10: no secret in any span.

Secrets are planted where a real run carries them: a model key registered with the
redactor (as a model planner does), a host variable passed through to a sandboxed
``run_python`` call, call arguments (a secret-named one and a plain one), a model error
message, streamed model text, and fields a careless planner adds to its events (the
prompt, the messages themselves). No span name, attribute, event, link or status
description may hold any of them, and every attribute name is on the allowlist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from agently_core_otel import attributes as attr
from agently_core_otel import observe
from opentelemetry.trace import StatusCode

from agently_core import EventCenter
from agently_core.errors import ModelError
from agently_core.redaction import Redactor

KEY = "sk-otel-planted-key-7f3a9c"  # registered, like a model planner's API key
ENV_SECRET = "env-planted-secret-51b2e0"  # a passed-through host variable
PLAIN_ARG = "plain-argument-secret-c4d1"  # never registered: only the allowlist keeps it out
PASSWORD = "password-arg-secret-9e8d"  # under a secret-named argument
UNREGISTERED = "unregistered-prompt-secret-2a6f"  # in fields no span should copy
SECRETS = (KEY, ENV_SECRET, PLAIN_ARG, PASSWORD, UNREGISTERED)


class LeakyPlanner:
    """A model planner that does everything wrong that it may: its events carry the
    prompt and the messages, its streamed text repeats the key, its tool-call ids hold
    secrets, and its error message names the key."""

    def __init__(self, events: Any) -> None:
        self.events = events

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        events = context.get("events") or self.events
        index = context["round_index"]
        common = {"planner": "openai_compatible", "model": "stand-in-1", "round_index": index,
                  "run_id": context.get("run_id") or context.get("execution_id")}
        await events.emit("model.request", "planner", stream=True, tools=2,
                          messages=[{"role": "user", "content": f"{UNREGISTERED} {KEY}"}],
                          prompt=f"system: use {UNREGISTERED}", api_key=KEY,
                          headers={"Authorization": f"Bearer {KEY}"}, **common)
        await events.emit("model.delta", "planner", text=f"the key is {KEY} {UNREGISTERED}",
                          **common)
        if index == 2:
            message = f"openai_compatible: key {KEY} refused ({UNREGISTERED}); env {ENV_SECRET}"
            await events.emit("model.failed", "planner", error=message,
                              error_type=f"Bad {UNREGISTERED}", **common)
            raise ModelError(message)
        await events.emit("model.response", "planner", latency_ms=3.0, input_tokens=7,
                          output_tokens=3, tool_calls=2, finish_reason=f"stop {UNREGISTERED}",
                          content=UNREGISTERED, **common)
        if index == 0:
            calls = [
                (f"call_{KEY}", "run_python",
                 {"python_code": "import os\nprint(os.environ['OTEL_PLANTED_TOKEN'])"}),
                ("call_login", "login",
                 {"user": "ada", "note": PLAIN_ARG, "password": PASSWORD}),
            ]
        else:  # the model repeats what it should never have seen
            calls = [(f"call_{ENV_SECRET}", "login",
                      {"user": ENV_SECRET, "note": KEY, "password": PASSWORD})]
        return {"tool_calls": [{"id": call_id, "type": "function",
                                "function": {"name": name, "arguments": json.dumps(kwargs)}}
                               for call_id, name, kwargs in calls],
                "content": f"thinking about {UNREGISTERED}", "model": "stand-in-1"}


def assert_clean(spans: list[Any], span_texts: Any) -> None:
    assert spans
    for span in spans:
        found = " | ".join(span_texts(span))
        for secret in SECRETS:
            assert secret not in found, (span.name, secret)
        names = set(span.attributes)
        for event in span.events:
            names |= set(event.attributes)
        assert names <= attr.ALLOWED, names - attr.ALLOWED


def test_a_model_driven_run_leaks_no_secret(make_agent, exporter, read_tree, span_texts,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PLANTED_TOKEN", ENV_SECRET)
    provider, memory = exporter
    agent = make_agent()
    try:
        observer = observe(agent.manager.events, tracer_provider=provider)
        agent.add_secrets(KEY)  # what a model planner's bind(agent) does with its key
        agent.enable_python(env_passthrough=["OTEL_PLANTED_TOKEN"])

        @agent.action_func
        def login(user: str, note: str, password: str) -> str:
            """Log in."""
            return f"{user} {note} {password}"

        agent.use_actions(["login"])
        agent.set_planner(LeakyPlanner(agent.events))
        result = agent.run("go", planning_protocol="native_tool_calls", max_rounds=4)
        assert result.stop_reason == "failed"
        python = next(r for r in result.records if r.action == "run_python")
        assert python.status == "success", python.error  # the variable was really there
        observer.flush()
    finally:
        agent.close()
    tree = read_tree(memory)
    assert_clean(tree.spans, span_texts)
    ids = sorted(s.attributes[attr.TOOL_CALL_ID] for s in tree.named("execute_tool"))
    # the ids reached the observer masked: the event center redacted them first
    assert ids == ["call_***", "call_***", "call_login"]
    run = tree.one("invoke_agent")
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description == "ModelError"  # the malformed error_type was dropped
    chats = tree.named("chat")
    assert len(chats) == 3
    assert all(attr.MESSAGES not in c.attributes for c in chats)  # a list, not a count
    assert all(attr.FINISH_REASONS not in c.attributes for c in chats)  # not an identifier


def test_fields_outside_the_allowlist_never_reach_a_span(exporter, read_tree,
                                                         span_texts) -> None:
    """Without any redactor: the allowlist and the type checks alone keep them out."""
    import anyio

    provider, memory = exporter
    center = EventCenter()
    observer = observe(center, tracer_provider=provider)
    extra = {"kwargs": {"note": PLAIN_ARG}, "result": UNREGISTERED, "error": KEY,
             "text": ENV_SECRET, "password": PASSWORD, "arguments": PLAIN_ARG}

    async def main() -> None:
        await center.emit("run.started", "flow", run_id="run_1", agent_name="a",
                          planning_protocol=f"x {UNREGISTERED}", **extra)
        await center.emit("round.started", "flow", run_id="run_1", round_index=0,
                          **extra)
        await center.emit("model.request", "planner", run_id="run_1", round_index=0,
                          model="m", planner="p", messages=3, tools=True, **extra)
        await center.emit("model.response", "planner", run_id="run_1", round_index=0,
                          model="m", input_tokens=-5, output_tokens=2.5, latency_ms=float("nan"),
                          finish_reason="stop", **extra)
        await center.emit("policy.approval.requested", "dispatcher", run_id="run_1",
                          call_id="c1", action="act", request_id="apr_1", **extra)
        await center.emit("action.started", "dispatcher", run_id="run_1", call_id="c1",
                          action="act", **extra)
        await center.emit("action.failed", "dispatcher", run_id="run_1", call_id="c1",
                          action="act", status="failed", error_type=f"Boom: {PLAIN_ARG}",
                          **extra)
        await center.emit("round.completed", "flow", run_id="run_1", round_index=0,
                          next_action="execute", calls=1, **extra)
        await center.emit("run.completed", "flow", run_id="run_1", stop_reason="failed",
                          error_type="RuntimeError", **extra)

    anyio.run(main)
    assert not center.failures
    tree = read_tree(memory)
    assert len(tree.spans) == 4
    assert_clean(tree.spans, span_texts)
    chat = tree.one("chat")
    assert attr.INPUT_TOKENS not in chat.attributes  # negative
    assert attr.OUTPUT_TOKENS not in chat.attributes  # not an integer
    assert attr.LATENCY_MS not in chat.attributes  # not finite
    assert attr.TOOLS not in chat.attributes  # a bool is not a count
    tool = tree.one("execute_tool")
    assert tool.status.description == "failed"  # the error type held a message
    assert observer.open_spans == 0


def test_event_center_redacts_before_the_observer_sees_a_payload(exporter, read_tree) -> None:
    """The guarantee the spans rely on: observers get payloads already masked."""
    import anyio

    provider, memory = exporter
    redactor = Redactor()
    redactor.add(KEY)
    center = EventCenter(redactor=redactor)
    seen: list[Any] = []
    center.subscribe(seen.append, name="raw")
    observe(center, tracer_provider=provider)

    async def main() -> None:
        await center.emit("action.started", "dispatcher", call_id=f"id-{KEY}",
                          action=f"tool-{KEY}")
        await center.emit("action.completed", "dispatcher", call_id=f"id-{KEY}",
                          action=f"tool-{KEY}", status="success")

    anyio.run(main)
    assert seen[0].payload == {"call_id": "id-***", "action": "tool-***"}
    span = read_tree(memory).one("execute_tool")
    assert span.name == "execute_tool tool-***"
    assert span.attributes[attr.TOOL_CALL_ID] == "id-***"
