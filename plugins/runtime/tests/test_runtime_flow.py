"""The 'agently' ActionFlow through an agent: rounds, stop reasons, custom planning and
execution handlers, both planning protocols, concurrency, hidden actions."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from agently_core_runtime.flow import AgentlyActionFlow
from agently_core_runtime.planners import ScriptedPlanner

from agently_core.models import ActionRecord, FlowResult
from agently_core.protocols import ActionFlow


@pytest.fixture
def agent(make_agent):
    agent = make_agent()

    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @agent.action_func
    async def echo(message: str) -> str:
        """Echo a message."""
        return message

    agent.use_actions([add, echo])
    return agent


def test_flow_satisfies_the_protocol() -> None:
    assert isinstance(AgentlyActionFlow(), ActionFlow)


def test_rounds_until_the_planner_answers(agent) -> None:
    agent.set_planner([
        [("add", {"a": 1, "b": 2}), ("echo", {"message": "hi"})],
        [("add", {"a": 3, "b": 4})],
    ], response="all done")
    result = agent.run("compute")
    assert isinstance(result, FlowResult)
    assert result.stop_reason == "response"
    assert result.response == "all done"
    assert result.request == "compute"
    assert [r.result for r in result.records] == [3, "hi", 7]
    assert [r.round_index for r in result.records] == [0, 0, 1]
    assert [len(r.record_ids) for r in result.rounds] == [2, 1, 0]
    assert result.rounds[0].record_ids == [r.call_id for r in result.records[:2]]
    assert [r.decision.next_action for r in result.rounds] == ["execute", "execute", "response"]
    assert agent.last_run is result
    assert agent.get_action_result() == result.records
    FlowResult.model_validate_json(result.model_dump_json())


def test_planner_sees_context_and_request(agent) -> None:
    seen: list[tuple[dict, dict]] = []

    def step(context, request):
        seen.append((dict(context), dict(request)))
        return [("add", {"a": context["round_index"], "b": 1})] if context["round_index"] < 2 \
            else "finished"

    agent.set_planner(ScriptedPlanner(step))
    result = agent.run({"question": "q"}, max_rounds=5)
    assert result.response == "finished"
    assert [c["round_index"] for c, _ in seen] == [0, 1, 2]
    context, request = seen[2]
    assert context["agent_name"] == agent.name
    assert context["max_rounds"] == 5
    assert [p["action"] for p in context["done_plans"]] == ["add", "add"]
    assert context["done_plans"][0] == {"round_index": 0, "action": "add", "purpose": "",
                                        "status": "success"}
    assert [r["result"] for r in context["last_round_records"]] == [2]
    assert context["prompt"] == {"question": "q"}
    assert request["planning_protocol"] == "structured_plan"
    assert {a["name"] for a in request["action_list"]} == {"add", "echo"}


def test_max_rounds_stops_the_loop(agent) -> None:
    agent.set_planner(lambda context, request: {
        "next_action": "execute", "action_calls": [{"action_id": "echo",
                                                    "action_input": {"message": "again"}}]})
    result = agent.run("forever", max_rounds=3)
    assert result.stop_reason == "max_rounds"
    assert len(result.rounds) == 3 and len(result.records) == 3
    assert result.response is None


def test_max_rounds_from_configuration(make_agent) -> None:
    agent = make_agent(action={"max_rounds": 2})

    def tick() -> str:
        return "tick"

    agent.use_actions(tick)
    agent.set_planner(lambda c, r: [{"action": "tick"}])
    result = agent.run("x")
    assert result.stop_reason == "max_rounds" and len(result.rounds) == 2


def test_response_in_the_first_round(agent) -> None:
    agent.set_planner(["Nothing to do."])
    result = agent.run("hello")
    assert result.stop_reason == "response"
    assert result.response == "Nothing to do."
    assert result.records == [] and len(result.rounds) == 1


def test_approval_required_stops_the_loop(make_agent) -> None:
    agent = make_agent(approval_handler="fail_closed")
    ran = []

    @agent.action_func(approval_required=True)
    def deploy() -> str:
        ran.append("deploy")
        return "deployed"

    @agent.action_func
    def check() -> str:
        ran.append("check")
        return "ok"

    agent.use_actions([deploy, check])
    agent.set_planner([[("check", {}), ("deploy", {})], [("check", {})]])
    result = agent.run("ship it")
    assert result.stop_reason == "approval_required"
    assert [r.status for r in result.records] == ["success", "approval_required"]
    assert ran == ["check"]
    assert len(result.rounds) == 1  # the second round was never planned


def test_approved_calls_run_in_the_flow(make_agent) -> None:
    agent = make_agent(approval_handler="auto_approve")

    @agent.action_func(approval_required=True)
    def deploy() -> str:
        return "deployed"

    agent.use_actions(deploy)
    agent.set_planner([[("deploy", {})]])
    result = agent.run("ship it")
    assert result.stop_reason == "response"
    assert result.records[0].result == "deployed"


def test_planner_that_raises_fails_the_run(agent) -> None:
    def step(context, request):
        if context["round_index"] == 1:
            raise RuntimeError("model unavailable")
        return [("add", {"a": 1, "b": 1})]

    agent.set_planner(ScriptedPlanner(step))
    result = agent.run("x")
    assert result.stop_reason == "failed"
    assert result.error == "planner failed in round 1: RuntimeError: model unavailable"
    assert [r.result for r in result.records] == [2]  # the work done so far is kept


def test_unknown_planning_protocol_fails_the_run(agent) -> None:
    agent.set_planner(["never asked"])
    result = agent.run("x", planning_protocol="telepathy")
    assert result.stop_reason == "failed"
    assert "telepathy" in result.error


def test_failed_calls_do_not_stop_the_loop(agent) -> None:
    agent.set_planner([
        [("add", {"a": "one", "b": 2}), ("missing", {}), ("add", {"a": 1, "b": 2})],
        [("echo", {"message": "still here"})],
    ])
    result = agent.run("x")
    assert result.stop_reason == "response"
    assert [r.status for r in result.records] == ["failed", "failed", "success", "success"]
    assert [r.error_type for r in result.records[:2]] == ["ArgumentsError", "ActionNotFoundError"]


def test_invalid_calls_from_the_plan_become_failed_records(agent) -> None:
    agent.set_planner([
        {"next_action": "execute", "action_calls": [
            {"action_input": {"a": 1}},
            {"action_id": "add", "action_input": "{oops"},
            {"action_id": "add", "action_input": {"a": 1, "b": 1}},
        ]},
        {"next_action": "maybe", "response": "?"},
    ])
    result = agent.run("x")
    statuses = [(r.action, r.status, r.error_type) for r in result.records]
    assert ("<missing>", "failed", "InvalidCall") in statuses
    assert ("add", "failed", "InvalidCall") in statuses
    assert ("add", "success", None) in statuses
    assert result.stop_reason == "response"
    assert "next_action must be" in result.records[-1].error


def test_model_calls_to_hidden_actions_fail(make_agent) -> None:
    agent = make_agent()
    ran = []

    @agent.action_func
    def hidden_admin() -> str:
        ran.append("ran")
        return "owned"

    agent.set_planner([[("hidden_admin", {})]])
    result = agent.run("x")
    [record] = result.records
    assert record.status == "failed"
    assert record.error_type == "ActionNotFoundError"
    assert ran == []
    assert agent.action.execute_action("hidden_admin").result == "owned"  # the host can


def test_model_policy_cannot_widen_in_a_flow(make_agent) -> None:
    agent = make_agent()

    @agent.action_func(timeout=0.1)
    async def slow() -> str:
        await anyio.sleep(1.0)
        return "late"

    agent.use_actions(slow)
    agent.set_planner([{"next_action": "execute", "action_calls": [
        {"action_id": "slow", "action_input": {}, "policy": {"timeout_seconds": 100}}]}])
    started = time.perf_counter()
    result = agent.run("x")
    assert result.records[0].error_type == "TimeoutError"
    assert time.perf_counter() - started < 0.6


@pytest.mark.anyio
async def test_concurrency_per_round(make_agent) -> None:
    agent = make_agent()
    state = {"now": 0, "max": 0}

    @agent.action_func
    async def work(i: int) -> int:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await anyio.sleep(0.03)
        state["now"] -= 1
        return i

    agent.use_actions(work)
    agent.set_planner([[("work", {"i": i}) for i in range(6)]])
    result = await agent.async_run("x", concurrency=2)
    assert [r.result for r in result.records] == list(range(6))
    assert state["max"] == 2
    state["max"] = 0
    agent.set_action_loop(concurrency=4)
    agent.set_planner([[("work", {"i": i}) for i in range(8)]])
    await agent.async_run("x")
    assert state["max"] == 4


# -- both planning protocols -----------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["structured_plan", "native_tool_calls"])
def test_both_protocols_end_to_end(agent, protocol) -> None:
    agent.set_planner(ScriptedPlanner([[("add", {"a": 2, "b": 3})], [("echo", {"message": "m"})]],
                                      protocol=protocol, response="ok"))
    result = agent.run("x")
    assert result.stop_reason == "response" and result.response == "ok"
    assert [r.result for r in result.records] == [5, "m"]
    assert [r.decision.protocol for r in result.rounds[:2]] == [protocol, protocol]
    if protocol == "native_tool_calls":
        assert result.records[0].call_id == "tc_0_0"


def test_protocol_chosen_by_the_loop_setting(agent) -> None:
    agent.set_action_loop(planning_protocol="native_tool_calls")
    agent.set_planner([[("add", {"a": 1, "b": 1})]])
    result = agent.run("x")
    assert result.rounds[0].decision.protocol == "native_tool_calls"
    assert result.records[0].result == 2


# -- custom handlers ---------------------------------------------------------------------------
def test_custom_planning_handler(agent) -> None:
    calls: list[tuple[Any, Any]] = []

    def planning_handler(context, request):
        calls.append((context["round_index"], [a["name"] for a in request["action_list"]]))
        if context["round_index"] == 0:
            return {"next_action": "execute",
                    "action_calls": [{"action_id": "add", "action_input": {"a": 5, "b": 5}}]}
        return {"next_action": "response",
                "response": f"sum={context['last_round_records'][0]['result']}"}

    assert agent.register_action_planning_handler(planning_handler) is agent
    result = agent.run("x")
    assert result.response == "sum=10"
    assert calls == [(0, ["add", "echo"]), (1, ["add", "echo"])]


@pytest.mark.anyio
async def test_async_planning_handler_and_reset(agent) -> None:
    async def planning_handler(context, request):
        await anyio.sleep(0)
        return "from the async handler"

    agent.register_action_planning_handler(planning_handler)
    assert (await agent.async_run("x")).response == "from the async handler"
    agent.register_action_planning_handler(None)
    with pytest.raises(Exception, match="no planner"):
        await agent.async_run("x")


def test_planning_handler_can_be_passed_to_set_planner(agent) -> None:
    agent.set_planner(lambda context, request: "plain callable")
    assert agent.run("x").response == "plain callable"


def test_custom_execution_handler(agent) -> None:
    seen = []

    async def execution_handler(context, request):
        calls = request["action_calls"]
        seen.append((context["round_index"], [c.action for c in calls], request["concurrency"]))
        records = [await request.async_call_action(call) for call in calls]
        return [r.model_copy(update={"meta": {"via": "custom"}}) for r in records]

    assert agent.register_action_execution_handler(execution_handler) is agent
    agent.set_planner([[("add", {"a": 1, "b": 1}), ("echo", {"message": "e"})]])
    result = agent.run("x", concurrency=3)
    assert seen == [(0, ["add", "echo"], 3)]
    assert [r.result for r in result.records] == [2, "e"]
    assert all(r.meta == {"via": "custom"} for r in result.records)


def test_execution_handler_may_return_dicts(agent) -> None:
    def execution_handler(context, request):
        return [{"call_id": c.id, "action": c.action, "status": "skipped"}
                for c in request["action_calls"]]

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 1, "b": 1})]])
    result = agent.run("x")
    assert [r.status for r in result.records] == ["skipped"]
    assert isinstance(result.records[0], ActionRecord)


def test_execution_handler_that_raises_gives_failed_records(agent) -> None:
    def execution_handler(context, request):
        raise RuntimeError("executor farm offline")

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 1, "b": 1}), ("echo", {"message": "e"})]])
    result = agent.run("x")
    assert [r.status for r in result.records] == ["failed", "failed"]
    assert all("execution handler failed: RuntimeError: executor farm offline" in r.error
               for r in result.records)
    assert result.stop_reason == "response"


def test_execution_handler_reset(agent) -> None:
    agent.register_action_execution_handler(lambda c, r: [])
    agent.register_action_execution_handler(None)
    agent.set_planner([[("add", {"a": 1, "b": 1})]])
    assert agent.run("x").records[0].result == 2


@pytest.mark.anyio
async def test_flow_events(agent) -> None:
    seen = []
    agent.events.subscribe(lambda e: seen.append((e.type, e.payload["action"])), "action.*")
    agent.set_planner([[("add", {"a": 1, "b": 1})], [("nope", {})]])
    await agent.async_run("x")
    # a call stopped at the gate (unknown action) reports its outcome without starting
    assert seen == [("action.started", "add"), ("action.completed", "add"),
                    ("action.failed", "nope")]
