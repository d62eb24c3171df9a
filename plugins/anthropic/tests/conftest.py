"""Fixtures for the Anthropic planner's tests: a loopback model server, a distinctive key
in ANTHROPIC_API_KEY, agents isolated from the machine's configuration, and helpers that
build planning contexts and collect events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agently_core.action_handlers import ActionPlanningRequest, ActionRunContext
from agently_core.events import EventCenter
from agently_core.testing.model_servers import LoopbackModelServer

#: The key every test puts in ANTHROPIC_API_KEY: long and distinctive, so a leak is found.
KEY = "sk-ant-loopback-SECRET-3c2b1a09f8e7d6c5b4a3"
NAME = "anthropic_compatible"


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No AGENTLY_* or ANTHROPIC_* variable of the developer's shell reaches these tests
    (the SDK reads several: a base URL, custom headers, credentials); the key is the
    test key."""
    import os

    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


@pytest.fixture
def server(agently_model_server: Callable[..., LoopbackModelServer]
           ) -> Callable[..., LoopbackModelServer]:
    """``server(replies, **options)``: a started loopback server, closed after the test."""
    return agently_model_server


@pytest.fixture
def make_agent(agently_agent_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``make_agent(**settings)``: an agent reading only ``settings``, closed afterwards."""
    return agently_agent_factory


def planner_of(**options: Any) -> Any:
    """The planner, created the way the agent creates it."""
    from agently_core_anthropic.planner import AnthropicCompatiblePlanner

    return AnthropicCompatiblePlanner(**options)


class Events:
    """An EventCenter that keeps every event emitted on it."""

    def __init__(self) -> None:
        self.center = EventCenter()
        self.seen: list[Any] = []
        self.center.subscribe(self.seen.append)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.seen if e.type == kind]


def context(round_index: int = 0, history: Any = (), events: Events | None = None,
            prompt: Any = "add 1 and 2", **extra: Any) -> ActionRunContext:
    """A round's context as the flow builds it (``prompt``: the user's request)."""
    return ActionRunContext(prompt=prompt, agent_name="tester", round_index=round_index,
                            max_rounds=5, run_id="run_test", history=list(history),
                            events=events.center if events else None, **extra)


ADD = {"name": "add", "description": "Add two integers.",
       "kwargs": {"type": "object", "properties": {"a": {"type": "integer"},
                                                    "b": {"type": "integer"}},
                  "required": ["a", "b"]}}


def request(actions: Any = (ADD,)) -> ActionPlanningRequest:
    return ActionPlanningRequest(action_list=list(actions),
                                 planning_protocol="native_tool_calls")


def tool_results(body: dict) -> dict[str, dict]:
    """The tool_result blocks a request carried: tool_use_id -> block."""
    return {block["tool_use_id"]: block for message in body["messages"]
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"] if block.get("type") == "tool_result"}


@pytest.fixture
def kit() -> Any:
    """The helpers above (test modules are imported by path, not as a package)."""
    from types import SimpleNamespace

    return SimpleNamespace(KEY=KEY, NAME=NAME, ADD=ADD, Events=Events, planner_of=planner_of,
                           context=context, request=request, tool_results=tool_results)
