"""Issue 11 in the 'agently' flow: the planning context (run_id, history, env_state,
events), skipped empty answers, ModelError, usage totals, records in call order, flow
events, and a history that survives pause/resume, durable ones included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agently_core.errors import ModelError
from agently_core.models import ActionRecord
from agently_core.testing import MemoryWorkspaceBackend
from agently_core.workspace import Workspace

EMPTY = "action_runtime.native_tool_calls.empty"


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {
        "name": name, "arguments": arguments if isinstance(arguments, str)
        else json.dumps(arguments)}}


def answer(*calls: dict[str, Any], content: str | None = None, usage: Any = None,
           model: str = "stand-in-1", message: Any = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"tool_calls": list(calls), "content": content, "model": model}
    if usage is not None:
        raw["usage"] = usage
    if message is not None:
        raw["model_message"] = message
    return raw


class Recorder:
    """A planner playing ``answers`` (one per round, then a final text) that keeps a
    copy of every context it got."""

    def __init__(self, *answers: Any, final: str = "finished") -> None:
        self.answers = list(answers)
        self.final = final
        self.contexts: list[dict[str, Any]] = []

    async def plan(self, context: Any, request: Any) -> Any:
        self.contexts.append(dict(context))
        index = context["round_index"]
        if index < len(self.answers):
            step = self.answers[index]
            if isinstance(step, BaseException):
                raise step
            return step
        return {"tool_calls": [], "content": self.final, "model": "stand-in-1"}


@pytest.fixture
def agent(make_agent):
    agent = make_agent()

    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @agent.action_func
    def echo(message: str) -> str:
        """Echo a message."""
        return message

    agent.use_actions([add, echo])
    yield agent
    agent.close()


# -- history --------------------------------------------------------------------------------
def test_history_holds_every_earlier_round_in_the_contract_shape(agent) -> None:
    message = {"role": "assistant", "content": "let me compute",
               "tool_calls": [{"id": "tc_a"}, {"id": "tc_b"}, {"id": "tc_c"}]}
    planner = Recorder(answer(tool_call("tc_a", "add", {"a": 2, "b": 3}),
                              tool_call("tc_b", "add", "{broken"),
                              tool_call("tc_c", "nope", {}),
                              content="let me compute", message=message),
                       answer(tool_call("tc_d", "echo", {"message": "m2"})))
    agent.set_planner(planner)
    result = agent.run("compute", planning_protocol="native_tool_calls")
    assert result.stop_reason == "response" and result.response == "finished"
    first, second, third = planner.contexts
    assert first["history"] == []
    [entry] = second["history"]
    assert set(entry) == {"round_index", "model_message", "response", "calls", "invalid",
                          "records"}
    assert entry["round_index"] == 0 and entry["model_message"] == message
    assert entry["response"] == "let me compute"
    assert entry["calls"] == [{"id": "tc_a", "action": "add", "kwargs": {"a": 2, "b": 3}},
                              {"id": "tc_c", "action": "nope", "kwargs": {}}]
    assert [(p["call_id"], p["action"]) for p in entry["invalid"]] == [("tc_b", "add")]
    assert "not valid JSON" in entry["invalid"][0]["error"]
    assert set(entry["invalid"][0]) == {"call_id", "action", "error"}
    # records in the order of the calls, each under the model's tool-call id
    assert [(r["call_id"], r["status"], r["error_type"]) for r in entry["records"]] == [
        ("tc_a", "success", None), ("tc_b", "failed", "InvalidCall"),
        ("tc_c", "failed", "ActionNotFoundError")]
    assert entry["records"][0]["result"] == 5
    assert entry["records"] == [r.model_dump(mode="json") for r in result.records[:3]]
    json.dumps(entry)  # plain JSON
    assert [h["round_index"] for h in third["history"]] == [0, 1]
    assert third["history"][0] == entry  # earlier rounds do not change
    assert third["history"][1]["records"][0]["result"] == "m2"
    assert [r.call_id for r in result.records] == ["tc_a", "tc_b", "tc_c", "tc_d"]


def test_structured_plans_keep_call_order_too(agent) -> None:
    agent.set_planner([{"next_action": "execute", "action_calls": [
        {"action_id": "echo", "action_input": {"message": "one"}},
        {"action_input": {}},
        {"action_id": "echo", "action_input": {"message": "three"}}]}])
    result = agent.run("x")
    assert [(r.status, r.result) for r in result.records] == [
        ("success", "one"), ("failed", None), ("success", "three")]


def test_run_id_is_the_execution_and_stable(agent) -> None:
    planner = Recorder(answer(tool_call("t1", "echo", {"message": "a"})),
                       answer(tool_call("t2", "echo", {"message": "b"})))
    agent.set_planner(planner)
    result = agent.run("x")
    ids = {c["run_id"] for c in planner.contexts}
    assert ids == {result.execution_id} and len(planner.contexts) == 3


@pytest.mark.anyio
async def test_events_in_the_context_reach_the_agents_observers(agent) -> None:
    seen: list[Any] = []
    agent.events.subscribe(seen.append, "model.*")

    async def plan(context, request):
        assert context["events"] is agent.events
        await context["events"].emit("model.request", "planner", planner="p",
                                     run_id=context["run_id"], round_index=0)
        return "ok"

    agent.set_planner(plan)
    result = await agent.async_run("x")
    assert [(e.type, e.source, e.payload["run_id"]) for e in seen] == [
        ("model.request", "planner", result.execution_id)]


# -- env_state -------------------------------------------------------------------------------
def test_env_state_from_the_agent_and_from_the_run(agent) -> None:
    planner = Recorder()
    agent.set_planner(planner)
    agent.run("x")
    assert planner.contexts[-1]["env_state"] is None
    assert agent.set_env_state("cwd=/work; files: a.txt") is agent
    agent.run("x")
    assert planner.contexts[-1]["env_state"] == "cwd=/work; files: a.txt"
    agent.run("x", env_state="for this run only")
    assert planner.contexts[-1]["env_state"] == "for this run only"
    agent.run("x")
    assert planner.contexts[-1]["env_state"] == "cwd=/work; files: a.txt"
    agent.set_env_state(None)
    agent.run("x")
    assert planner.contexts[-1]["env_state"] is None


def test_a_callable_env_state_is_asked_every_round(agent) -> None:
    asked: list[int] = []

    async def state() -> str:
        asked.append(1)
        return f"round state {len(asked)}"

    planner = Recorder(answer(tool_call("t1", "echo", {"message": "a"})))
    agent.set_planner(planner).set_env_state(state)
    agent.run("x")
    assert [c["env_state"] for c in planner.contexts] == ["round state 1", "round state 2"]


def test_a_bad_env_state_fails_the_run_clearly(agent) -> None:
    with pytest.raises(TypeError, match="env_state"):
        agent.set_env_state(42)
    with pytest.raises(TypeError, match="env_state must be a string"):
        agent.run("x", env_state=42)
    agent.set_planner(Recorder()).set_env_state(lambda: 42)
    result = agent.run("x")
    assert result.stop_reason == "failed"
    assert result.error == "env_state failed in round 0: TypeError: env_state must be a " \
                           "string or None, got int"


# -- skipped ---------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_an_empty_native_answer_is_skipped_and_the_loop_goes_on(agent) -> None:
    events: list[Any] = []
    agent.events.subscribe(events.append, "action.*")
    planner = Recorder(answer(), answer(tool_call("t1", "echo", {"message": "after"})))
    agent.set_planner(planner)
    result = await agent.async_run("x", planning_protocol="native_tool_calls")
    assert result.stop_reason == "response" and result.response == "finished"
    skipped, echoed = result.records
    assert skipped.status == "skipped" and skipped.round_index == 0
    assert skipped.meta["diagnostic_code"] == EMPTY
    assert skipped.error_type == "EmptyAnswer" and "neither tool calls nor text" in skipped.error
    assert skipped.call_id and result.rounds[0].record_ids == [skipped.call_id]
    assert echoed.result == "after"
    # the model sees it in the next round
    [entry] = planner.contexts[1]["history"]
    assert entry["records"][0]["status"] == "skipped"
    assert entry["records"][0]["meta"] == {"diagnostic_code": EMPTY}
    assert planner.contexts[1]["last_round_records"][0]["status"] == "skipped"
    assert planner.contexts[1]["done_plans"][0]["status"] == "skipped"
    skipped_events = [e for e in events if e.type == "action.skipped"]
    assert [(e.payload["call_id"], e.payload["diagnostic_code"]) for e in skipped_events] == [
        (skipped.call_id, EMPTY)]


def test_only_empty_answers_end_at_max_rounds(agent) -> None:
    agent.set_planner(lambda context, request: {"tool_calls": [], "content": "  "})
    result = agent.run("x", max_rounds=3)
    assert result.stop_reason == "max_rounds" and result.response is None
    assert [r.status for r in result.records] == ["skipped"] * 3
    assert len({r.call_id for r in result.records}) == 3


def test_an_empty_structured_plan_is_skipped_with_its_own_code(agent) -> None:
    agent.set_planner([{"next_action": "execute", "action_calls": []}, None, "the end"])
    result = agent.run("x")
    assert result.response == "the end"
    assert [(r.status, r.meta["diagnostic_code"]) for r in result.records] == [
        ("skipped", "action_runtime.structured_plan.empty")] * 2


def test_a_skipped_record_validates_and_round_trips(agent) -> None:
    agent.set_planner([None])
    result = agent.run("x", max_rounds=1)
    record = ActionRecord.model_validate_json(result.records[0].model_dump_json())
    assert record.status == "skipped" and not record.ok


# -- model errors ----------------------------------------------------------------------------
def test_a_model_error_ends_the_run_with_its_message(agent) -> None:
    message = ("openai_compatible: the key in OPENAI_API_KEY was refused by "
               "http://127.0.0.1:9/v1: 401 invalid api key")
    planner = Recorder(answer(tool_call("t1", "echo", {"message": "kept"})),
                       ModelError(message, planner="openai_compatible", status=401))
    agent.set_planner(planner)
    result = agent.run("x")
    assert result.stop_reason == "failed"
    assert result.error == message
    assert "Traceback" not in result.error
    assert [r.result for r in result.records] == ["kept"]  # the work done so far is kept
    assert len(result.rounds) == 1


def test_model_error_is_an_agently_error() -> None:
    from agently_core.errors import AgentlyError

    error = ModelError("m", planner="p", status=404)
    assert isinstance(error, AgentlyError) and (error.planner, error.status) == ("p", 404)


# -- usage -----------------------------------------------------------------------------------
def test_usage_is_summed_over_rounds(agent) -> None:
    planner = Recorder(
        answer(tool_call("t1", "echo", {"message": "a"}),
               usage={"input_tokens": 100, "output_tokens": 20, "cached_tokens": 5}),
        answer(tool_call("t2", "echo", {"message": "b"}),
               usage={"input_tokens": 150, "output_tokens": 30, "requests": 2}),
        answer(tool_call("t3", "echo", {"message": "c"})))  # says nothing
    agent.set_planner(planner)
    result = agent.run("x")
    assert result.usage == {"input_tokens": 250, "output_tokens": 50, "cached_tokens": 5,
                            "requests": 3}
    assert [r.decision.model for r in result.rounds] == ["stand-in-1"] * 4
    assert result.rounds[0].decision.usage["input_tokens"] == 100


def test_no_usage_reported_leaves_it_empty(agent) -> None:
    agent.set_planner([[("echo", {"message": "a"})]])
    assert agent.run("x").usage is None


# -- flow events -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_run_and_round_events(agent) -> None:
    """The run.* and round.* events docs/observability.md lists, with their payloads."""
    seen: list[Any] = []
    agent.events.subscribe(seen.append, ["run.*", "round.*"])
    agent.set_planner(Recorder(answer(tool_call("t1", "echo", {"message": "a"}),
                                      usage={"input_tokens": 3, "output_tokens": 1})))
    result = await agent.async_run("x")
    assert [e.type for e in seen] == ["run.started", "round.started", "round.completed",
                                      "round.started", "round.completed", "run.completed"]
    assert {e.payload["run_id"] for e in seen} == {result.execution_id}
    started = seen[0].payload
    assert started["agent_name"] == agent.name and started["agent_id"] == agent.id
    assert started["planner"] == "Recorder" and started["resumed"] is False
    assert started["max_rounds"] == 5 and started["planning_protocol"] == "structured_plan"
    assert seen[2].payload["calls"] == 1 and seen[2].payload["invalid"] == 0
    assert seen[2].payload["next_action"] == "execute" and seen[2].payload["input_tokens"] == 3
    done = seen[-1].payload
    assert done["stop_reason"] == "response" and done["error_type"] is None
    assert (done["rounds"], done["input_tokens"], done["output_tokens"], done["requests"]) == (
        2, 3, 1, 1)


@pytest.mark.anyio
async def test_a_failed_run_reports_the_error_type_only(agent) -> None:
    seen: list[Any] = []
    agent.events.subscribe(seen.append, ["run.*", "round.*", "action.*"])
    agent.set_planner(Recorder(answer(tool_call("bad", "echo", "{oops")),
                               ModelError("stand-in: 401 refused key sk-secret-123")))
    result = await agent.async_run("x")
    assert result.stop_reason == "failed"
    done = seen[-1]
    assert done.type == "run.completed" and done.payload["error_type"] == "ModelError"
    assert seen[-2].type == "round.completed" and seen[-2].payload["error_type"] == "ModelError"
    assert "sk-secret-123" not in repr([e.payload for e in seen])
    [invalid] = [e for e in seen if e.type == "action.failed"]
    assert invalid.payload["call_id"] == "bad" and invalid.payload["error_type"] == "InvalidCall"
    assert invalid.payload["run_id"] == result.execution_id
    assert invalid.payload["round_index"] == 0


@pytest.mark.anyio
async def test_a_resumed_run_starts_again_marked_resumed(make_agent) -> None:
    ran: list[str] = []
    agent = approval_agent(make_agent, ran)
    seen: list[Any] = []
    agent.events.subscribe(seen.append, "run.*")
    agent.set_planner(Recorder(FIRST))
    paused = await agent.async_run("ship", planning_protocol="native_tool_calls")
    await agent.last_execution.async_continue_with("approved", resume_request_id="r1")
    assert [(e.type, e.payload.get("resumed"), e.payload.get("stop_reason")) for e in seen] == [
        ("run.started", False, None), ("run.completed", None, "approval_required"),
        ("run.started", True, None), ("run.completed", None, "response")]
    assert {e.payload["run_id"] for e in seen} == {paused.execution_id}
    await agent.aclose()


# -- pause and resume ------------------------------------------------------------------------
def approval_agent(make_agent, ran: list[str]):
    agent = make_agent(approval_handler="fail_closed")

    @agent.action_func(approval_required=True)
    def deploy(version: str) -> str:
        """Deploy a version."""
        ran.append(version)
        return f"deployed {version}"

    @agent.action_func
    def check() -> str:
        """Check the service."""
        return "healthy"

    agent.use_actions([deploy, check])
    return agent


FIRST = answer(tool_call("tc_check", "check", {}), tool_call("tc_deploy", "deploy",
                                                             {"version": "v2"}),
               content="deploying", message={"role": "assistant", "content": "deploying"})


@pytest.mark.anyio
async def test_history_survives_a_pause_and_resume(make_agent) -> None:
    ran: list[str] = []
    agent = approval_agent(make_agent, ran)
    planner = Recorder(FIRST)
    agent.set_planner(planner)
    paused = await agent.async_run("ship v2", planning_protocol="native_tool_calls")
    assert paused.stop_reason == "approval_required" and len(planner.contexts) == 1
    resumed = await agent.last_execution.async_continue_with("approved", resume_request_id="r1")
    assert resumed.stop_reason == "response" and ran == ["v2"]
    context = planner.contexts[1]
    assert context["run_id"] == paused.execution_id
    [entry] = context["history"]
    assert entry["model_message"] == {"role": "assistant", "content": "deploying"}
    # one record per call, in call order: the approved call shows its outcome
    assert [(r["call_id"], r["status"], r["result"]) for r in entry["records"]] == [
        ("tc_check", "success", "healthy"), ("tc_deploy", "success", "deployed v2")]
    await agent.aclose()


@pytest.mark.anyio
async def test_history_survives_a_durable_resume_in_another_agent(make_agent) -> None:
    """The state saved with a durable execution rebuilds the same history in another
    agent (another process loads it the same way): run id, model message, records."""
    ran: list[str] = []
    workspace = Workspace(MemoryWorkspaceBackend())
    first = approval_agent(make_agent, ran)
    first.set_planner(Recorder(FIRST))
    paused = await first.async_run("ship v2", planning_protocol="native_tool_calls",
                                   workspace=workspace, env_state="saved env state")
    assert paused.stop_reason == "approval_required"
    await first.aclose()  # the saved execution stays paused

    second = approval_agent(make_agent, ran)
    planner = Recorder(FIRST)
    second.set_planner(planner)
    execution = await second.async_load_execution(paused.execution_id, workspace=workspace)
    resumed = await execution.async_continue_with("approved", resume_request_id="r1")
    assert resumed.stop_reason == "response" and ran == ["v2"]
    [context] = planner.contexts  # round 1, planned in the second agent
    assert context["round_index"] == 1
    assert context["run_id"] == paused.execution_id
    assert context["env_state"] == "saved env state"
    [entry] = context["history"]
    assert entry["model_message"] == {"role": "assistant", "content": "deploying"}
    assert entry["response"] == "deploying"
    assert [c["id"] for c in entry["calls"]] == ["tc_check", "tc_deploy"]
    assert [(r["call_id"], r["status"]) for r in entry["records"]] == [
        ("tc_check", "success"), ("tc_deploy", "success")]
    await second.aclose()
    await workspace.aclose()


@pytest.mark.anyio
async def test_a_version_1_state_still_restores(make_agent) -> None:
    """A state saved before run_id existed (format version 1) restores, with the
    execution's id as the run id; an unknown version is refused."""
    from agently_core.execution import ExecutionStateError, saved_key

    ran: list[str] = []
    workspace = Workspace(MemoryWorkspaceBackend())
    first = approval_agent(make_agent, ran)
    first.set_planner(Recorder(FIRST))
    paused = await first.async_run("ship", planning_protocol="native_tool_calls",
                                   workspace=workspace)
    await first.aclose()
    key = saved_key(paused.execution_id)
    version, document = await workspace.read_snapshot(key)
    flow_state = document["resume"]["flow_state"]
    assert flow_state["version"] == 2 and flow_state["run_id"] == paused.execution_id
    old = {k: v for k, v in flow_state.items() if k != "run_id"} | {"version": 1}
    version = await workspace.put_snapshot(
        key, {**document, "resume": {**document["resume"], "flow_state": old}},
        expected_state_version=version)

    second = approval_agent(make_agent, ran)
    planner = Recorder(FIRST)
    second.set_planner(planner)
    execution = await second.async_load_execution(paused.execution_id, workspace=workspace)
    resumed = await execution.async_continue_with("denied", resume_request_id="r1")
    assert resumed.stop_reason == "response" and ran == []
    assert planner.contexts[0]["run_id"] == paused.execution_id
    assert [r["status"] for r in planner.contexts[0]["history"][0]["records"]] == [
        "success", "blocked"]
    await second.aclose()

    third = approval_agent(make_agent, ran)
    third.set_planner(Recorder(FIRST))
    paused = await third.async_run("ship", planning_protocol="native_tool_calls",
                                   workspace=workspace)
    await third.aclose()
    key = saved_key(paused.execution_id)
    version, document = await workspace.read_snapshot(key)
    future = {**document["resume"]["flow_state"], "version": 9}
    await workspace.put_snapshot(key, {**document, "resume": {**document["resume"],
                                                              "flow_state": future}},
                                 expected_state_version=version)
    fourth = approval_agent(make_agent, ran)
    fourth.set_planner(Recorder(FIRST))
    execution = await fourth.async_load_execution(paused.execution_id, workspace=workspace)
    with pytest.raises((ValueError, ExecutionStateError), match="version 9"):
        await execution.async_continue_with("approved", resume_request_id="r1")
    assert ran == []
    await fourth.aclose()
    await workspace.aclose()
