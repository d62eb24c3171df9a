"""Issue 12: the planning and execution handler contract, typed.

Planning handlers get an ``ActionRunContext`` and an ``ActionPlanningRequest``; execution
handlers an ``ActionRunContext`` and an ``ActionExecutionRequest`` and answer with one
``ActionResult`` per call. The objects are typed and read like mappings too, so planners
written either way see the same values. Real agents, the ``agently`` runtime and flow,
the ``function`` executor.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import anyio
import pytest

from agently_core.action_handlers import (
    ActionExecutionHandler,
    ActionExecutionRequest,
    ActionPlanningHandler,
    ActionPlanningRequest,
    ActionRunContext,
)
from agently_core.models import ActionCall, ActionRecord

CONTEXT_FIELDS = {"prompt", "settings", "agent_name", "round_index", "max_rounds",
                  "done_plans", "last_round_records", "action", "runtime", "run_id",
                  "execution_id", "history", "env_state", "events"}


@pytest.fixture
def agent(agently_agent_factory):
    agent = agently_agent_factory()

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


# -- the types ---------------------------------------------------------------------------
def test_the_types_module_exports_the_protocols_and_the_handler_contract() -> None:
    from agently_core import action_handlers, protocols
    from agently_core.types.plugins import (
        ActionDecision,
        ActionExecutor,
        ActionFlow,
        ActionResult,
        ActionRuntime,
    )
    from agently_core.types.plugins import ActionExecutionHandler as Execution
    from agently_core.types.plugins import ActionPlanningHandler as Planning
    from agently_core.types.plugins import ActionRunContext as Context

    assert (ActionExecutor, ActionRuntime, ActionFlow) == (
        protocols.ActionExecutor, protocols.ActionRuntime, protocols.ActionFlow)
    assert Context is ActionRunContext
    assert ActionResult is action_handlers.ActionResult
    assert ActionDecision.__name__ == "ActionDecision"
    assert (Planning, Execution) == (ActionPlanningHandler, ActionExecutionHandler)
    assert typing.get_args(Planning)[0] == [ActionRunContext, ActionPlanningRequest]
    assert typing.get_args(Execution)[0] == [ActionRunContext, ActionExecutionRequest]
    import agently_core as Agently

    assert Agently.types.plugins.ActionFlow is ActionFlow


def test_the_typed_objects_read_like_read_only_mappings() -> None:
    context = ActionRunContext(prompt="p", agent_name="a", round_index=2, max_rounds=3)
    assert set(dataclasses.fields(ActionRunContext)[i].name
               for i in range(len(dataclasses.fields(ActionRunContext)))) == CONTEXT_FIELDS
    assert context["round_index"] == context.round_index == 2
    assert context.get("prompt") == "p" and context.get("nope", 7) == 7
    assert "history" in context and "nope" not in context and 3 not in context
    assert set(context) == CONTEXT_FIELDS and len(context) == len(CONTEXT_FIELDS)
    assert dict(context)["agent_name"] == "a"
    with pytest.raises(KeyError):
        context["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.round_index = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        context["round_index"] = 5  # type: ignore[index]
    request = ActionPlanningRequest(action_list=[{"name": "x"}],
                                    planning_protocol="native_tool_calls")
    assert dict(request) == {"action_list": [{"name": "x"}],
                             "planning_protocol": "native_tool_calls"}
    assert "round_index=2" in repr(context) and "'p'" not in repr(context)


# -- planning --------------------------------------------------------------------------
def test_a_planning_handler_gets_the_typed_context_and_request(agent) -> None:
    seen: list[tuple[Any, Any]] = []
    agent.set_env_state("two actions")

    async def planning_handler(context: ActionRunContext, request: ActionPlanningRequest):
        seen.append((context, request))
        if context.round_index == 0:
            return {"next_action": "execute", "action_calls": [
                {"action_id": "add", "action_input": {"a": 1, "b": 2}, "purpose": "sum"}]}
        return f"sum is {context.last_round_records[0]['result']}"

    agent.register_action_planning_handler(planning_handler)
    result = agent.run({"question": "1+2"}, max_rounds=4, concurrency=2)
    assert result.response == "sum is 3"
    assert len(seen) == 2
    for context, request in seen:
        assert type(context) is ActionRunContext and type(request) is ActionPlanningRequest
    first, second = seen[0][0], seen[1][0]
    assert first.prompt == second.prompt == {"question": "1+2"}
    assert dict(first.settings) == {"max_rounds": 4, "concurrency": 2,
                                    "planning_protocol": "structured_plan", "timeout": None}
    assert (first.agent_name, first.round_index, first.max_rounds) == (agent.name, 0, 4)
    assert first.action is agent.action and first.runtime is agent.runtime
    assert first.events is agent.events and first.env_state == "two actions"
    assert first.run_id == second.run_id == first.execution_id == result.execution_id
    assert (first.done_plans, first.last_round_records, first.history) == ([], [], [])
    assert second.round_index == 1
    assert second.done_plans == [{"round_index": 0, "action": "add", "purpose": "sum",
                                  "status": "success"}]
    assert [r["result"] for r in second.last_round_records] == [3]
    assert [h["round_index"] for h in second.history] == [0]
    request = seen[0][1]
    assert request.planning_protocol == "structured_plan"
    assert {a["name"] for a in request.action_list} == {"add", "echo"}
    # the agent's Action is live: a handler can read the schemas and run an action
    assert {i["name"] for i in first.action.get_action_info()} == {"add", "echo"}


def test_a_mapping_style_planner_sees_the_same_values(agent) -> None:
    seen = []

    def planner(context, request):
        seen.append((context["prompt"], context["round_index"], context.get("max_rounds"),
                     request["planning_protocol"], sorted(a["name"] for a in request.get(
                         "action_list"))))
        return "done"

    agent.set_planner(planner)
    agent.run("hi", max_rounds=2, planning_protocol="native_tool_calls")
    assert seen == [("hi", 0, 2, "native_tool_calls", ["add", "echo"])]


# -- execution -------------------------------------------------------------------------
def test_an_execution_handler_gets_the_typed_request_and_calls_through_the_gate(agent) -> None:
    seen: list[Any] = []

    async def execution_handler(context: ActionRunContext, request: ActionExecutionRequest):
        seen.append((context, request))
        return [await request.async_call_action(call) for call in request.action_calls]

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 2, "b": 3}), ("nope", {}),
                        ("echo", {"message": 5})]])
    result = agent.run("x", concurrency=2)
    context, request = seen[0]
    assert type(context) is ActionRunContext and type(request) is ActionExecutionRequest
    assert context.round_index == 0 and context.prompt == "x"
    assert [c.action for c in request.action_calls] == ["add", "nope", "echo"]
    assert all(isinstance(c, ActionCall) for c in request.action_calls)
    assert request.concurrency == 2 and request.timeout is None
    by_action = {r.action: r for r in result.records}
    assert by_action["add"].result == 5
    # the gate ran: an unknown action and bad arguments fail without running
    assert by_action["nope"].status == "failed" and "unknown action" in by_action["nope"].error
    assert by_action["echo"].status == "failed" and by_action["echo"].error_type


def test_async_call_action_refuses_what_is_not_a_call(agent) -> None:
    async def execution_handler(context, request):
        return [await request.async_call_action({"action": "add"})]

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 1, "b": 1})]])
    [record] = agent.run("x").records
    assert record.status == "failed"
    assert "async_call_action() takes an ActionCall" in record.error


def test_action_results_are_completed_from_their_calls(agent) -> None:
    async def execution_handler(context, request):
        _, second, third = request.action_calls
        return [{"result": 41},                                # by position
                {"call_id": third.id, "error": "farm offline"},   # by id, failed
                {"call_id": second.id, "status": "skipped"}]

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 1, "b": 1}), ("echo", {"message": "m"}),
                        ("add", {"a": 2, "b": 2})]])
    result = agent.run("x")
    records = result.records
    assert all(isinstance(r, ActionRecord) for r in records)
    assert [(r.action, r.status) for r in records] == [
        ("add", "success"), ("echo", "skipped"), ("add", "failed")]
    assert records[0].result == 41 and records[0].kwargs == {"a": 1, "b": 1}
    assert records[2].error == "farm offline" and records[2].round_index == 0
    assert result.rounds[0].record_ids == [r.call_id for r in records]


def test_a_call_without_a_result_gets_a_failed_record(agent) -> None:
    agent.register_action_execution_handler(
        lambda context, request: [{"call_id": request.action_calls[1].id, "result": "e"}])
    agent.set_planner([[("add", {"a": 1, "b": 1}), ("echo", {"message": "e"})]])
    first, second = agent.run("x").records
    assert (first.status, first.error_type) == ("failed", "MissingResult")
    assert "returned no result for call" in first.error and first.action == "add"
    assert second.status == "success" and second.result == "e"


@pytest.mark.parametrize(("answer", "words"), [
    ({"status": "success"}, "must return a list of results, one per call, got dict"),
    ([{"call_id": "call_elsewhere"}], "names call 'call_elsewhere', which is not one of"),
    ([{"result": 1}, {"result": 2}], "returned 2 or more results for 1 call(s)"),
    ([42], "result 0 of the execution handler is a int, not an ActionResult"),
])
def test_bad_handler_answers_fail_every_call_of_the_round(agent, answer, words) -> None:
    agent.register_action_execution_handler(lambda context, request: answer)
    agent.set_planner([[("add", {"a": 1, "b": 1})]])
    result = agent.run("x")
    [record] = result.records
    assert record.status == "failed" and record.error_type == "ValueError"
    assert "execution handler failed: ValueError: " in record.error and words in record.error
    assert result.stop_reason == "response"  # the loop goes on


def test_a_handler_result_is_redacted_before_the_planner_sees_it(agent) -> None:
    agent.add_secrets("hunter2-secret")
    seen = []

    def planner(context, request):
        if context.round_index == 0:
            return {"next_action": "execute", "action_calls": [
                {"action_id": "echo", "action_input": {"message": "m"}}]}
        seen.append(list(context.last_round_records))
        return "done"

    agent.register_action_execution_handler(
        lambda context, request: [{"result": "the key is hunter2-secret"}])
    agent.set_planner(planner)
    agent.run("x")
    assert "hunter2-secret" not in repr(seen) and seen[0][0]["result"].startswith("the key is")


def test_register_action_execution_handler_refuses_a_non_callable(agent) -> None:
    with pytest.raises(TypeError, match="execution handler must be callable"):
        agent.register_action_execution_handler("run it")
    with pytest.raises(TypeError, match="planning handler must be callable"):
        agent.register_action_planning_handler(42)


@pytest.mark.anyio
async def test_the_execution_request_says_how_much_time_is_left(agent) -> None:
    left = []

    async def execution_handler(context, request):
        left.append(request.timeout)
        await anyio.sleep(0)
        return [await request.async_call_action(c) for c in request.action_calls]

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 1, "b": 1})]])
    result = await agent.async_run("x", timeout=30)
    assert result.records[0].result == 2
    assert 0 < left[0] <= 30


def test_annotations_with_the_handler_aliases_resolve() -> None:
    class Host:
        plan: ActionPlanningHandler
        execute: ActionExecutionHandler

    hints = typing.get_type_hints(Host)
    assert typing.get_args(hints["execute"])[0] == [ActionRunContext, ActionExecutionRequest]
    assert hints["plan"] == ActionPlanningHandler
