"""Approval pause and resume of flow executions (issue 3, points 5, 6 and 9).

An action (or an environment) that needs approval under the ``fail_closed`` handler stops
the run with ``approval_required``; the execution stays paused - not closed, its
execution-scoped environments alive - until ``async_continue_with(decision,
resume_request_id=..., actor=...)``. The same resume id resumes once. Closing returns a
serialisable snapshot; the states go open -> sealed -> closed.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import agently_core_function.plugin as function_plugin
import agently_core_runtime.plugin as runtime_plugin
import anyio
import pytest

from agently_core import create_agent
from agently_core.environments import ExecutionEnvironmentManager
from agently_core.execution import Execution, ExecutionStateError
from agently_core.models import ApprovalDecision, EnvironmentRequirement, ExecutionSnapshot
from agently_core.plugins import PluginManager
from agently_core.testing.memory_provider import MemoryPlugin, MemoryProvider

SENSITIVE = "SENSITIVE-ARGUMENT-VALUE"




@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def plugins(load_config: Any, provider: MemoryProvider) -> PluginManager:
    pm = PluginManager(load_config(), autoload=False)
    pm.register(MemoryPlugin(provider), name="memory-provider")
    pm.register(function_plugin, name="function")
    pm.register(runtime_plugin, name="runtime")
    return pm.load()


@pytest.fixture
async def agent(plugins: PluginManager, provider: MemoryProvider):
    """An agent (owning its manager) whose approvals - its actions' and its
    environments' - stay pending."""
    agent = create_agent(plugins=plugins)
    agent.approval.set_default("fail_closed")
    yield agent
    await agent.aclose()
    assert agent.manager.closed
    assert provider.live == []
    assert provider.double_releases == []


@pytest.fixture
def events(agent: Any) -> list[Any]:
    seen: list[Any] = []
    agent.events.subscribe(seen.append)
    return seen


class Counter:
    def __init__(self) -> None:
        self.calls: list[int] = []


@pytest.fixture
def danger(agent: Any) -> Counter:
    """A visible action that needs approval; counts its runs."""
    counter = Counter()

    @agent.action_func(approval_required=True)
    def danger(x: int, note: str = "") -> int:
        """Do something that needs a person's approval."""
        counter.calls.append(x)
        return x * 2

    agent.use_actions(danger)
    agent.set_planner([[("danger", {"x": 21, "note": SENSITIVE})]], response="ok")
    return counter


def execution_env(**fields: Any) -> EnvironmentRequirement:
    fields.setdefault("resource_key", "res")
    return EnvironmentRequirement(kind="memory", **fields)


def statuses(result: Any) -> list[tuple[str, str]]:
    return [(r.action, r.status) for r in result.records]


# -- pause -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_pending_action_pauses_the_execution(agent, danger, provider) -> None:
    result = await agent.async_run("go", execution_environments=[execution_env()])
    assert result.stop_reason == "approval_required"
    assert statuses(result) == [("danger", "approval_required")]
    assert result.records[0].approval_request_id is not None
    execution = agent.last_execution
    assert execution.id == result.execution_id
    assert execution.paused
    assert execution.state != "closed"
    assert [p.subject for p in execution.pending] == ["danger"]
    # its execution-scoped environments are still alive
    assert len(provider.live) == 1
    assert [h.owner_id for h in agent.manager.list("execution")] == [execution.id]
    assert execution.resources["res"] is provider.live[0]
    assert danger.calls == []


@pytest.mark.anyio
async def test_approve_runs_the_call_and_the_remaining_rounds(agent, danger, provider) -> None:
    await agent.async_run("go", execution_environments=[execution_env()])
    execution = agent.last_execution
    resource = provider.live[0]

    out = await execution.async_continue_with("approved", resume_request_id="r1", actor="alice")
    assert out.stop_reason == "response"
    assert out.response == "ok"
    assert out.execution_id == execution.id
    assert statuses(out) == [("danger", "approval_required"), ("danger", "success")]
    assert out.records[-1].result == 42
    assert danger.calls == [21]
    # the execution closed and released its environments
    assert execution.state == "closed"
    assert not execution.paused
    assert provider.live == [] and resource.released == 1
    assert agent.manager.list() == []
    assert [d.actor for d in execution.decisions] == ["alice"]
    assert agent.last_run is out


@pytest.mark.anyio
async def test_same_resume_id_resumes_once(agent, danger) -> None:
    await agent.async_run("go")
    execution = agent.last_execution
    first = await execution.async_continue_with("approved", resume_request_id="r1", actor="alice")
    again = await execution.async_continue_with("approved", resume_request_id="r1", actor="alice")
    assert again is first
    # even with another decision, a repeated id returns the first result
    denied = await execution.async_continue_with("denied", resume_request_id="r1", actor="mallory")
    assert denied is first
    assert danger.calls == [21]
    with pytest.raises(ExecutionStateError):
        await execution.async_continue_with("approved", resume_request_id="r2", actor="alice")
    assert danger.calls == [21]


@pytest.mark.anyio
async def test_concurrent_resumes_with_one_id_run_once(agent, danger) -> None:
    await agent.async_run("go", execution_environments=[execution_env()])
    execution = agent.last_execution
    results: list[Any] = []

    async def resume() -> None:
        results.append(await execution.async_continue_with("approved", resume_request_id="r1"))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(resume)
    assert len(results) == 20 and all(r is results[0] for r in results)
    assert danger.calls == [21]


@pytest.mark.anyio
async def test_concurrent_resumes_with_different_ids_resume_once(agent, danger) -> None:
    await agent.async_run("go")
    execution = agent.last_execution
    outcomes: list[Any] = []

    async def resume(i: int) -> None:
        try:
            outcomes.append(await execution.async_continue_with(True, resume_request_id=f"r{i}"))
        except ExecutionStateError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as group:
        for i in range(10):
            group.start_soon(resume, i)
    assert sum(not isinstance(o, ExecutionStateError) for o in outcomes) == 1
    assert danger.calls == [21]


@pytest.mark.anyio
async def test_denied_gives_a_blocked_record_naming_the_actor(agent, danger, provider) -> None:
    await agent.async_run("go", execution_environments=[execution_env()])
    execution = agent.last_execution
    out = await execution.async_continue_with("denied", resume_request_id="r1", actor="bob")
    assert statuses(out) == [("danger", "approval_required"), ("danger", "blocked")]
    blocked = out.records[-1]
    assert blocked.error_type == "ApprovalDenied"
    assert "bob" in blocked.error
    assert blocked.approval_request_id == out.records[0].approval_request_id
    assert danger.calls == []
    assert out.stop_reason == "response"  # the loop went on after the denial
    assert execution.state == "closed" and provider.live == []
    assert execution.decisions[0].decision == "denied"


@pytest.mark.anyio
async def test_boolean_and_model_decisions(agent, danger) -> None:
    await agent.async_run("go")
    execution = agent.last_execution
    with pytest.raises(ValueError):
        await execution.async_continue_with("maybe", resume_request_id="bad")
    assert execution.paused  # a bad decision changes nothing
    decision = ApprovalDecision(request_id=execution.pending[0].id, decision="approved")
    out = await execution.async_continue_with(decision, resume_request_id="r1", actor="carol")
    assert statuses(out)[-1] == ("danger", "success")
    assert execution.decisions[0].actor == "carol"


@pytest.mark.anyio
async def test_resume_when_not_paused_is_refused(agent, provider) -> None:
    execution = agent.create_execution()
    await execution.async_start()
    with pytest.raises(ExecutionStateError):
        await execution.async_continue_with("approved", resume_request_id="r1")
    await execution.async_close()
    with pytest.raises(ExecutionStateError):
        await execution.async_continue_with("approved", resume_request_id="r1")


@pytest.mark.anyio
async def test_paused_execution_is_released_when_the_agent_closes(agent, danger,
                                                                 provider) -> None:
    await agent.async_run("go", execution_environments=[execution_env()])
    execution = agent.last_execution
    assert len(provider.live) == 1
    await agent.aclose()
    assert execution.state == "closed"
    assert provider.live == []
    with pytest.raises(ExecutionStateError):
        await execution.async_continue_with("approved", resume_request_id="r1")
    assert danger.calls == []


@pytest.mark.anyio
async def test_several_paused_executions_are_independent(agent, danger, provider) -> None:
    await agent.async_run("one", execution_environments=[execution_env()])
    first = agent.last_execution
    await agent.async_run("two", execution_environments=[execution_env()])
    second = agent.last_execution
    assert first is not second and first.paused and second.paused
    assert len(provider.live) == 2
    await second.async_continue_with("approved", resume_request_id="r1")
    assert second.state == "closed" and first.paused
    assert provider.live == [first.resources["res"]]
    await first.async_continue_with("denied", resume_request_id="r1")  # ids are per execution
    assert first.state == "closed" and provider.live == []
    assert danger.calls == [21]


# -- events ----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_approval_events_carry_ids_and_status_only(agent, danger, events) -> None:
    result = await agent.async_run("go")
    execution = agent.last_execution
    await execution.async_continue_with("approved", resume_request_id="r1", actor="alice")

    by_type: dict[str, list[Any]] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)
    requested = by_type["policy.approval.requested"]
    pending = by_type["policy.approval.pending"]
    resumed = by_type["policy.approval.resumed"]
    assert len(requested) == 1 and len(pending) == 1 and len(resumed) == 1
    request_id = result.records[0].approval_request_id
    assert requested[0].payload["request_id"] == request_id
    assert requested[0].payload["call_id"] == result.records[0].call_id
    assert requested[0].payload["action"] == "danger"
    assert pending[0].payload["request_id"] == request_id
    assert resumed[0].payload == {"execution_id": execution.id, "request_id": request_id,
                                  "resume_request_id": "r1", "decision": "approved"}
    order = [e.type for e in events]
    assert (order.index("policy.approval.requested") < order.index("policy.approval.pending")
            < order.index("policy.approval.resumed"))
    for event in events:  # ids and status only: scalars, never arguments or live objects
        for value in event.payload.values():
            assert value is None or isinstance(value, (str, int, float, bool)), event
    assert SENSITIVE not in json.dumps([e.model_dump(mode="json") for e in events])


# -- environments that need approval -------------------------------------------------------
@pytest.fixture
def guarded_env(agent: Any) -> Counter:
    """A visible action (no approval of its own) whose environment needs approval."""
    counter = Counter()

    def use_env(action_context: Any) -> int:
        """Use an environment that needs approval to start."""
        resource = action_context.execution_environment_resources["res"]
        counter.calls.append(resource.id)
        return resource.id

    entry = agent._register_function(use_env, visible=True)
    entry.spec.execution_environments.append(
        EnvironmentRequirement(kind="memory", resource_key="res", approval_required=True))
    agent.set_planner([[("use_env", {})]], response="ok")
    return counter


@pytest.mark.anyio
async def test_environment_approval_pauses_and_grant_resumes(agent, guarded_env, provider,
                                                            events) -> None:
    result = await agent.async_run("go")
    assert result.stop_reason == "approval_required"
    [record] = result.records
    assert record.status == "approval_required"
    assert record.error_type == "ApprovalRequired"
    assert record.meta["approval_request"]["subject_type"] == "environment"
    assert provider.started == [] and guarded_env.calls == []
    assert "execution_environment.approval_required" in [e.type for e in events]
    execution = agent.last_execution
    assert execution.paused and execution.pending[0].subject_type == "environment"

    out = await execution.async_continue_with("approved", resume_request_id="r1", actor="alice")
    assert statuses(out) == [("use_env", "approval_required"), ("use_env", "success")]
    assert len(provider.started) == 1  # granted: the environment started
    assert guarded_env.calls == [provider.started[0].id]
    assert out.stop_reason == "response"
    assert provider.live == []  # action_call scope: released after the call
    assert execution.state == "closed"


@pytest.mark.anyio
async def test_environment_approval_denied(agent, guarded_env, provider) -> None:
    await agent.async_run("go")
    out = await agent.last_execution.async_continue_with("denied", resume_request_id="r1",
                                                         actor="bob")
    assert statuses(out)[-1] == ("use_env", "blocked")
    assert "bob" in out.records[-1].error
    assert provider.started == [] and guarded_env.calls == []


@pytest.mark.anyio
async def test_action_and_environment_approval_pause_twice(agent, provider) -> None:
    ran: list[int] = []

    def both(action_context: Any) -> int:
        """Needs approval, and so does its environment."""
        ran.append(1)
        return action_context.execution_environment_resources["res"].id

    entry = agent._register_function(both, visible=True, approval_required=True)
    entry.spec.execution_environments.append(
        EnvironmentRequirement(kind="memory", resource_key="res", approval_required=True))
    agent.set_planner([[("both", {})]], response="ok")
    await agent.async_run("go")
    execution = agent.last_execution
    assert execution.pending[0].subject_type == "action"
    second = await execution.async_continue_with("approved", resume_request_id="r1")
    assert second.stop_reason == "approval_required"
    assert execution.paused and execution.pending[0].subject_type == "environment"
    assert ran == [] and provider.started == []
    out = await execution.async_continue_with("approved", resume_request_id="r2")
    assert out.stop_reason == "response"
    assert statuses(out)[-1] == ("both", "success")
    assert ran == [1] and provider.live == []
    assert execution.state == "closed"


@pytest.mark.anyio
async def test_approval_mode_never_blocks_an_environment(agent, provider) -> None:
    agent.approval.set_default("auto_approve")  # 'never' wins over any handler
    ran: list[int] = []

    def use_env(action_context: Any) -> None:
        """Never allowed to start its environment."""
        ran.append(1)

    entry = agent._register_function(use_env, visible=True)
    entry.spec.execution_environments.append(EnvironmentRequirement(
        kind="memory", resource_key="res", approval_required=True,
        policy={"approval_mode": "never"}))
    record = await agent.action.async_execute_action("use_env", {})
    assert record.status == "blocked"
    assert record.error_type == "EnvironmentBlocked"
    assert "never" in record.error
    assert ran == [] and provider.started == []


@pytest.mark.anyio
async def test_execution_environment_needing_approval_pauses_the_start(agent, danger,
                                                                      provider) -> None:
    agent.set_planner([], response="ok")
    result = await agent.async_run("go", execution_environments=[
        execution_env(approval_required=True)])
    assert result.stop_reason == "approval_required"
    execution = agent.last_execution
    assert execution.paused and execution.pending[0].subject_type == "environment"
    assert provider.started == [] and execution.state != "closed"

    out = await execution.async_continue_with("approved", resume_request_id="r1", actor="alice")
    assert out.stop_reason == "response" and out.response == "ok"
    assert len(provider.started) == 1
    assert execution.state == "closed" and provider.live == []


@pytest.mark.anyio
async def test_execution_environment_denied_fails_the_run(agent, provider) -> None:
    agent.set_planner([], response="ok")
    await agent.async_run("go", execution_environments=[execution_env(approval_required=True)])
    execution = agent.last_execution
    out = await execution.async_continue_with("denied", resume_request_id="r1")
    assert out.stop_reason == "failed"
    assert execution.state == "closed"
    assert provider.started == []


@pytest.mark.anyio
async def test_execution_environment_never_fails_the_run_and_closes(agent, provider) -> None:
    agent.set_planner([], response="ok")
    result = await agent.async_run("go", execution_environments=[
        execution_env(), execution_env(resource_key="x", approval_required=True,
                                       policy={"approval_mode": "never"})])
    assert result.stop_reason == "failed"
    assert "never" in result.error
    assert agent.last_execution.state == "closed"
    assert len(provider.started) == 1 and provider.live == []


@pytest.mark.anyio
async def test_environment_approval_on_a_shared_manager_uses_the_agents_handler(
        plugins, provider) -> None:
    manager = ExecutionEnvironmentManager(plugins)  # its own handler: the default
    agent = create_agent(plugins=plugins, manager=manager)
    agent.approval.set_default("fail_closed")

    def use_env(action_context: Any) -> None:
        """Use an environment that needs approval."""

    entry = agent._register_function(use_env, visible=True)
    entry.spec.execution_environments.append(execution_env(approval_required=True))
    record = await agent.action.async_execute_action("use_env", {})
    assert record.status == "approval_required", record.error
    other = create_agent(plugins=plugins, manager=manager)
    other.approval.set_default("auto_approve")
    entry = other._register_function(use_env, visible=True)
    entry.spec.execution_environments.append(execution_env(approval_required=True))
    assert (await other.action.async_execute_action("use_env", {})).status == "success"
    await agent.aclose()
    await other.aclose()
    await manager.aclose()
    assert provider.live == []


# -- snapshots and states ------------------------------------------------------------------
@pytest.mark.anyio
async def test_close_returns_a_serialisable_snapshot(agent, danger, provider) -> None:
    lock = threading.Lock()  # a live object the host passes in: never in the snapshot
    await agent.async_run("go", execution_environments=[execution_env()],
                          runtime_resources={"db": lock})
    execution = agent.last_execution
    paused = execution.snapshot()
    assert paused.state == "sealed"
    assert [p.subject for p in paused.pending_approvals] == ["danger"]
    json.loads(paused.model_dump_json())

    await execution.async_continue_with("approved", resume_request_id="r1", actor="alice")
    snapshot = await execution.async_close()  # already closed by the run: idempotent
    assert isinstance(snapshot, ExecutionSnapshot)
    assert snapshot.state == "closed" and snapshot.closed_at is not None
    assert snapshot.id == execution.id
    assert snapshot.runtime_resource_keys == ["db"]
    assert snapshot.resumed == ["r1"]
    assert [d.actor for d in snapshot.decisions] == ["alice"]
    assert snapshot.pending_approvals == []
    [handle] = snapshot.environments
    assert handle.scope == "execution" and handle.owner_id == execution.id
    assert handle.resource_key == "res" and handle.lease_id is None
    text = snapshot.model_dump_json()
    data = json.loads(text)
    assert data["result"]["stop_reason"] == "response"
    assert "MemoryResource" not in text and "lock" not in text.lower()
    assert ExecutionSnapshot.model_validate_json(text) == snapshot
    assert lock.acquire(blocking=False)  # the host's object was left alone
    lock.release()


@pytest.mark.anyio
async def test_states_open_sealed_closed(agent, provider) -> None:
    execution = agent.create_execution(execution_environments=[execution_env()],
                                       runtime_resources={"a": 1})
    assert execution.state == "open"
    execution.add_runtime_resource("b", 2)
    await execution.async_start()
    execution.add_runtime_resource("c", 3)  # still open after start
    assert execution.resources["c"] == 3
    assert execution.seal() is execution
    assert execution.state == "sealed"
    execution.seal()  # sealing twice is harmless
    with pytest.raises(ExecutionStateError):
        execution.add_runtime_resource("d", 4)
    assert "d" not in execution.resources
    await execution.async_start()  # started already: nothing new
    assert len(provider.started) == 1

    snapshot = await execution.async_close()
    assert execution.state == "closed" and snapshot.state == "closed"
    assert snapshot.runtime_resource_keys == ["a", "b", "c"]
    assert provider.live == []
    for refused in (lambda: execution.add_runtime_resource("e", 5), execution.seal):
        with pytest.raises(ExecutionStateError):
            refused()
    with pytest.raises(ExecutionStateError):
        await execution.async_start()
    again = await execution.async_close()
    assert again.closed_at == snapshot.closed_at
    assert len(provider.released) == 1


@pytest.mark.anyio
async def test_flow_runs_its_rounds_in_a_sealed_execution(agent, provider) -> None:
    states: list[str] = []

    def look() -> None:
        """Record the state of the execution the call runs in."""
        from agently_core.execution import current_execution

        execution = current_execution.get()
        states.append(execution.state)
        with pytest.raises(ExecutionStateError):
            execution.add_runtime_resource("late", 1)

    agent.use_actions(look)
    agent.set_planner([[("look", {})]], response="ok")
    result = await agent.async_run("go")
    assert statuses(result) == [("look", "success")]
    assert states == ["sealed"]
    assert agent.last_execution.state == "closed"


def test_sync_close_returns_the_snapshot(plugins, provider) -> None:
    agent = create_agent(plugins=plugins)
    execution = agent.create_execution(runtime_resources={"x": object()})
    assert isinstance(execution, Execution)
    snapshot = execution.close()
    assert snapshot.state == "closed"
    assert snapshot.runtime_resource_keys == ["x"]
    json.loads(snapshot.model_dump_json())
    agent.close()
    assert provider.live == []


# -- the reference's names (issue 12) -----------------------------------------------------------
@pytest.mark.anyio
async def test_async_seal_and_async_close_are_the_async_forms(agent, provider) -> None:
    execution = agent.create_execution(execution_environments=[execution_env()])
    await execution.async_start()
    assert await execution.async_seal() is execution and execution.state == "sealed"
    assert await execution.async_seal() is execution  # idempotent, like seal()
    with pytest.raises(ExecutionStateError):
        execution.add_runtime_resource("late", 1)
    snapshot = await execution.async_close()
    assert isinstance(snapshot, ExecutionSnapshot) and snapshot.state == "closed"
    assert provider.live == []
    with pytest.raises(ExecutionStateError):
        await execution.async_seal()
    for old in ("aclose", "continue_with"):  # one name per concept
        assert not hasattr(Execution, old), old


@pytest.mark.anyio
async def test_environments_can_be_given_at_start(agent, provider) -> None:
    execution = agent.create_execution(execution_environments=[execution_env()])
    await execution.async_start(execution_environments=[execution_env(resource_key="extra")])
    assert sorted(execution.resources) == ["extra", "res"] and len(provider.live) == 2
    assert {h.owner_id for h in agent.manager.list("execution")} == {execution.id}
    await execution.async_start(execution_environments=[
        {"kind": "memory", "resource_key": "third"}])  # started already: adds this one
    assert sorted(execution.resources) == ["extra", "res", "third"]
    assert len(provider.started) == 3
    with pytest.raises(ValueError, match="resource key 'res'"):
        await execution.async_start(execution_environments=[execution_env()])
    execution.seal()
    with pytest.raises(ExecutionStateError, match="sealed"):
        await execution.async_start(execution_environments=[execution_env(resource_key="late")])
    assert len(provider.started) == 3
    await execution.async_close()
    assert provider.live == []


def test_sync_start_takes_environments_too(plugins, provider) -> None:
    agent = create_agent(plugins=plugins)
    execution = agent.create_execution()
    assert execution.start(execution_environments=[execution_env()]) is execution
    assert execution.resources["res"] is provider.live[0]
    assert execution.seal() is execution
    snapshot = execution.close()
    assert snapshot.state == "closed" and [h.resource_key for h in snapshot.environments] == [
        "res"]
    assert provider.live == []
    agent.close()


@pytest.mark.anyio
async def test_an_execution_started_with_environments_runs_the_flow(agent, danger,
                                                                     provider) -> None:
    execution = agent.create_execution()
    await execution.async_start(execution_environments=[execution_env()])
    result = await agent.async_run("go", execution=execution)
    assert result.stop_reason == "approval_required"
    assert execution.resources["res"] is provider.live[0]
    out = await execution.async_continue_with("approved", resume_request_id="r1")
    assert out.stop_reason == "response" and danger.calls == [21]
    assert provider.live == []


@pytest.mark.anyio
async def test_workspace_false_binds_no_workspace(agent, danger) -> None:
    import agently_core

    for execution in (agent.create_execution(workspace=False),
                      agently_core.create_execution(manager=agent.manager, workspace=False)):
        assert execution.workspace is None
        await execution.async_close()
    agent.use_workspace(provider="memory")
    result = await agent.async_run("go", workspace=False)
    assert result.stop_reason == "approval_required"
    assert agent.last_execution.workspace is None
    assert await agent.workspace.read_snapshot(f"execution:{result.execution_id}") is None
    out = await agent.last_execution.async_continue_with("approved", resume_request_id="r1")
    assert out.stop_reason == "response" and danger.calls == [21]
    with pytest.raises(TypeError, match="workspace=True"):
        agent.create_execution(workspace=True)
    agent.workspace.close()


@pytest.mark.anyio
async def test_resume_request_id_and_actor_are_checked(agent, danger) -> None:
    await agent.async_run("go")
    execution = agent.last_execution
    for bad in ("", None, 7):
        with pytest.raises(ValueError, match="resume_request_id"):
            await execution.async_continue_with("approved", resume_request_id=bad)
    with pytest.raises(TypeError, match="actor"):
        await execution.async_continue_with("approved", resume_request_id="r1", actor=3)
    assert execution.paused and danger.calls == []


# -- regressions (bugs found by these tests) ---------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("how", ["set_default", "config"])
async def test_agent_approval_handler_decides_environment_approvals(load_config, provider,
                                                                   how) -> None:
    """The agent's handler (set in code or by configuration) decides environment
    approvals; the manager used to ask its own default handler, which denied."""
    config = load_config(approval_handler="fail_closed") if how == "config" else load_config()
    pm = PluginManager(config, autoload=False)
    pm.register(MemoryPlugin(provider), name="memory-provider")
    pm.register(function_plugin, name="function")
    agent = create_agent(plugins=pm)  # the agent's own manager
    if how == "set_default":
        agent.approval.set_default("fail_closed")
    assert agent.approval.default == "fail_closed"

    def use_env(action_context: Any) -> None:
        """Use an environment that needs approval."""

    entry = agent._register_function(use_env, visible=True)
    entry.spec.execution_environments.append(
        EnvironmentRequirement(kind="memory", resource_key="res", approval_required=True))
    try:
        record = await agent.action.async_execute_action("use_env", {})
    finally:
        await agent.aclose()
    assert record.status == "approval_required", record.error


# -- bugs --------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_environment_failing_after_approval_fails_the_run_and_closes(agent,
                                                                          provider) -> None:
    agent.set_planner([], response="ok")
    await agent.async_run("go", execution_environments=[
        execution_env(),
        execution_env(resource_key="bad", approval_required=True, config={"fail_start": True}),
    ])
    execution = agent.last_execution
    assert execution.paused and len(provider.live) == 1
    out = await execution.async_continue_with("approved", resume_request_id="r1")
    assert out.stop_reason == "failed"
    assert execution.state == "closed"
    assert provider.live == []


@pytest.mark.anyio
async def test_cancelled_resume_closes_the_execution(agent, provider) -> None:
    started = anyio.Event()

    @agent.action_func(approval_required=True)
    async def hang() -> None:
        """Wait forever once approved."""
        started.set()
        await anyio.sleep(30)

    agent.use_actions(hang)
    agent.set_planner([[("hang", {})]], response="ok")
    await agent.async_run("go", execution_environments=[execution_env()])
    execution = agent.last_execution
    assert execution.paused and len(provider.live) == 1

    async def resume(execution: Any) -> None:
        await execution.async_continue_with("approved", resume_request_id="r1")

    async with anyio.create_task_group() as group:
        group.start_soon(resume, execution)
        await started.wait()
        group.cancel_scope.cancel()
    assert execution.state == "closed"
    assert provider.live == []
