"""ScriptedPlanner: every step shape, both planning protocols, and its registration."""

from __future__ import annotations

import json

import pytest
from agently_core_runtime.planners import ScriptedPlanner
from agently_core_runtime.runtime import AgentlyActionRuntime

from agently_core import Config, PluginManager
from agently_core.models import ActionCall
from agently_core.protocols import Planner

STRUCTURED = {"planning_protocol": "structured_plan"}
NATIVE = {"planning_protocol": "native_tool_calls"}


def ctx(round_index: int = 0) -> dict:
    return {"round_index": round_index}


def test_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedPlanner(), Planner)


def test_registered_lazily_by_the_runtime_plugin(tmp_path) -> None:
    (tmp_path / "agently.toml").write_text("")
    pm = PluginManager(Config.load(env={}, cwd=tmp_path)).load()
    registration = pm.get("planner", "scripted")
    assert registration.distribution == "agently-core-runtime"
    assert registration.factory == "agently_core_runtime.planners:ScriptedPlanner"
    assert registration.load() is ScriptedPlanner
    assert isinstance(pm.create("planner", "scripted", steps=["x"]), ScriptedPlanner)


@pytest.mark.anyio
async def test_list_of_steps_then_the_response() -> None:
    planner = ScriptedPlanner([[("add", {"a": 1})], [{"action": "echo", "kwargs": {"m": 1},
                                                      "purpose": "say"}]],
                              response="bye")
    first = await planner.plan(ctx(0), STRUCTURED)
    assert first == {"next_action": "execute", "action_calls": [
        {"action_id": "add", "action_input": {"a": 1}, "purpose": ""}]}
    second = await planner.plan(ctx(1), STRUCTURED)
    assert second["action_calls"] == [{"action_id": "echo", "action_input": {"m": 1},
                                       "purpose": "say"}]
    assert await planner.plan(ctx(2), STRUCTURED) == {"next_action": "response",
                                                      "response": "bye"}
    assert await planner.plan(ctx(9), STRUCTURED) == {"next_action": "response",
                                                      "response": "bye"}


@pytest.mark.anyio
async def test_empty_script_answers_done() -> None:
    assert await ScriptedPlanner().plan(ctx(), STRUCTURED) == {"next_action": "response",
                                                              "response": "done"}


@pytest.mark.anyio
async def test_step_shapes() -> None:
    call = ActionCall(action="add", kwargs={"a": 1}, purpose="p")
    planner = ScriptedPlanner([
        "a final answer",
        ("add", {"a": 1}),
        call,
        [call, ("echo", {}), {"action_id": "x", "action_input": {"k": 1}}],
        {"next_action": "response", "response": "raw decision"},
    ])
    assert await planner.plan(ctx(0), STRUCTURED) == {"next_action": "response",
                                                      "response": "a final answer"}
    assert (await planner.plan(ctx(1), STRUCTURED))["action_calls"][0]["action_id"] == "add"
    third = (await planner.plan(ctx(2), STRUCTURED))["action_calls"]
    assert third == [{"action_id": "add", "action_input": {"a": 1}, "purpose": "p",
                      "id": call.id}]
    fourth = (await planner.plan(ctx(3), STRUCTURED))["action_calls"]
    assert [c["action_id"] for c in fourth] == ["add", "echo", "x"]
    assert fourth[2]["action_input"] == {"k": 1}
    assert await planner.plan(ctx(4), STRUCTURED) == {"next_action": "response",
                                                      "response": "raw decision"}


@pytest.mark.anyio
async def test_callable_script_is_used_every_round() -> None:
    seen = []

    def script(context, request):
        seen.append(context["round_index"])
        return [("tick", {"n": context["round_index"]})]

    planner = ScriptedPlanner(script)
    for index in range(3):
        plan = await planner.plan(ctx(index), STRUCTURED)
        assert plan["action_calls"][0]["action_input"] == {"n": index}
    assert seen == [0, 1, 2]


@pytest.mark.anyio
async def test_async_callable_step() -> None:
    async def step(context, request):
        return "async answer"

    planner = ScriptedPlanner([step])
    assert (await planner.plan(ctx(), STRUCTURED))["response"] == "async answer"


@pytest.mark.anyio
async def test_native_tool_calls_protocol() -> None:
    planner = ScriptedPlanner([[("add", {"a": 1}), ("echo", {"m": "x"})]],
                              protocol="native_tool_calls")
    raw = await planner.plan(ctx(0), STRUCTURED)  # the planner's own protocol wins
    calls = raw["tool_calls"]
    assert [c["id"] for c in calls] == ["tc_0_0", "tc_0_1"]
    assert all(c["type"] == "function" for c in calls)
    assert calls[0]["function"]["name"] == "add"
    assert json.loads(calls[0]["function"]["arguments"]) == {"a": 1}
    assert isinstance(calls[1]["function"]["arguments"], str)


@pytest.mark.anyio
async def test_protocol_follows_the_request_when_not_fixed() -> None:
    planner = ScriptedPlanner([[("add", {})]])
    assert "tool_calls" in await planner.plan(ctx(), NATIVE)
    assert "action_calls" in await planner.plan(ctx(), STRUCTURED)


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["structured_plan", "native_tool_calls"])
async def test_round_trip_through_the_runtime(protocol) -> None:
    planner = ScriptedPlanner([[("add", {"a": 1, "b": 2}), ("echo", {"message": "m"})]],
                              protocol=protocol)
    decision = await AgentlyActionRuntime().plan(planner, ctx(0), {"planning_protocol": protocol})
    assert decision.protocol == protocol
    assert decision.invalid == []
    assert [(c.action, c.kwargs) for c in decision.calls] == [
        ("add", {"a": 1, "b": 2}), ("echo", {"message": "m"})]
    assert all(c.source == "model" for c in decision.calls)


@pytest.mark.anyio
async def test_bad_scripted_call_raises_type_error() -> None:
    planner = ScriptedPlanner([[42]])
    with pytest.raises(TypeError, match="a scripted call must be"):
        await planner.plan(ctx(), STRUCTURED)
