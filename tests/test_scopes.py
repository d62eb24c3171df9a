"""Every scope's lifecycle, for real, through an agent (issue 3, points 2, 6 and 7).

Function actions declare ``ActionSpec.execution_environments``; the dispatcher ensures
them, injects the handles and live resources into the action's context under their
resource keys, and releases the call's references. What is left afterwards is decided by
the scope: ``action_call`` goes with the call, ``request`` and ``session`` with
``release_scope``, ``execution`` when the execution closes, ``agent`` when the agent
closes, ``global`` when the manager shuts down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import agently_core_function.plugin as function_plugin
import agently_core_runtime.plugin as runtime_plugin
import anyio
import pytest

from agently_core import ActionSpec, create_agent
from agently_core.environments import ExecutionEnvironmentManager
from agently_core.execution import ExecutionStateError, current_execution
from agently_core.hookspecs import hookimpl
from agently_core.models import EnvironmentRequirement
from agently_core.plugins import PluginManager
from agently_core.testing.memory_provider import MemoryProvider, MemoryResource
from agently_core.testing.tempdir_provider import TempdirProvider


class ProviderPlugin:
    """Registers one shared provider instance for a kind."""

    def __init__(self, kind: str, provider: Any) -> None:
        self.kind = kind
        self.provider = provider

    @hookimpl
    def register_execution_environment_providers(self, register: Any) -> None:
        register(self.kind, lambda: self.provider)


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def tempdirs() -> TempdirProvider:
    return TempdirProvider()


@pytest.fixture
def plugins(load_config: Any, provider: MemoryProvider, tempdirs: TempdirProvider
            ) -> PluginManager:
    pm = PluginManager(load_config(), autoload=False)
    pm.register(ProviderPlugin("memory", provider), name="memory-provider")
    pm.register(ProviderPlugin("tempdir", tempdirs), name="tempdir-provider")
    pm.register(function_plugin, name="function")
    pm.register(runtime_plugin, name="runtime")
    return pm.load()


@pytest.fixture
async def agent(plugins: PluginManager, provider: MemoryProvider):
    """An agent that owns its manager (Agent(plugins=pm))."""
    agent = create_agent(plugins=plugins)
    yield agent
    await agent.aclose()
    assert agent.manager.closed
    assert provider.live == []
    assert provider.double_releases == []


@pytest.fixture
async def shared(plugins: PluginManager, provider: MemoryProvider):
    """A manager shared by several agents (agents do not close it)."""
    manager = ExecutionEnvironmentManager(plugins)
    yield manager
    await manager.aclose()
    assert provider.live == []
    assert provider.double_releases == []


@dataclass
class Seen:
    """What one call received."""

    resource: Any
    handle: Any
    released_at_call: int
    execution: Any


def mount(agent: Any, name: str, *requirements: EnvironmentRequirement,
          key: str = "res") -> list[Seen]:
    """Register a visible function action that declares ``requirements`` and reports the
    resource and handle it was given under ``key``."""
    seen: list[Seen] = []

    def probe(action_context: Any) -> Any:
        """Report the environment this call received."""
        resource = action_context.execution_environment_resources[key]
        handle = action_context.execution_environment_handles[key]
        seen.append(Seen(resource, handle, getattr(resource, "released", 0),
                         current_execution.get()))
        return getattr(resource, "id", str(resource))

    entry = agent._register_function(probe, name=name, visible=True)
    entry.spec.execution_environments.extend(requirements)
    return seen


def memory(scope: str = "action_call", **fields: Any) -> EnvironmentRequirement:
    return EnvironmentRequirement(kind="memory", scope=scope, resource_key="res", **fields)


async def call(agent: Any, name: str) -> Any:
    record = await agent.action.async_execute_action(name, {})
    assert record.status == "success", record.error
    return record


# -- action_call -----------------------------------------------------------------------
@pytest.mark.anyio
async def test_action_call_scope_lives_exactly_as_long_as_the_call(agent, provider) -> None:
    seen = mount(agent, "probe", memory())
    events: list[Any] = []
    agent.events.subscribe(events.append, "execution_environment.*")
    first = await call(agent, "probe")
    assert provider.live == []  # released right after the call
    second = await call(agent, "probe")
    assert provider.live == []

    assert [s.released_at_call for s in seen] == [0, 0]  # live during the call
    assert seen[0].resource is not seen[1].resource  # a new resource per call
    assert [r.released for r in provider.started] == [1, 1]
    assert seen[0].handle.scope == "action_call"
    assert seen[0].handle.owner_id == first.call_id
    assert seen[1].handle.owner_id == second.call_id
    assert seen[0].handle.resource_key == "res"
    assert first.result == seen[0].resource.id
    assert [e.type for e in events].count("execution_environment.released") == 2
    assert agent.manager.list() == []


@pytest.mark.anyio
async def test_action_call_scope_in_a_flow_round(agent, provider) -> None:
    seen = mount(agent, "probe", memory())
    agent.set_planner([[("probe", {}), ("probe", {}), ("probe", {})], [("probe", {})]],
                      response="ok")
    result = await agent.async_run("go", concurrency=3)
    assert result.stop_reason == "response"
    assert [r.status for r in result.records] == ["success"] * 4
    assert len({id(s.resource) for s in seen}) == 4
    assert all(s.released_at_call == 0 for s in seen)
    assert provider.live == []


@pytest.mark.anyio
async def test_action_call_scope_released_when_the_action_fails(agent, provider) -> None:
    def boom(action_context: Any) -> None:
        """Fail."""
        raise RuntimeError("boom")

    entry = agent._register_function(boom, visible=True)
    entry.spec.execution_environments.append(memory())
    record = await agent.action.async_execute_action("boom", {})
    assert record.status == "failed"
    assert len(provider.started) == 1 and provider.live == []


@pytest.mark.anyio
async def test_action_call_scope_released_when_the_call_times_out(agent, provider) -> None:
    async def slow(action_context: Any) -> None:
        """Sleep past the deadline."""
        await anyio.sleep(5)

    entry = agent._register_function(slow, visible=True, timeout=0.05)
    entry.spec.execution_environments.append(memory())
    record = await agent.action.async_execute_action("slow", {})
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert len(provider.started) == 1 and provider.live == []


@pytest.mark.anyio
async def test_action_call_scope_released_when_the_caller_is_cancelled(agent, provider) -> None:
    started = anyio.Event()

    async def hang(action_context: Any) -> None:
        """Hang until cancelled."""
        started.set()
        await anyio.sleep(5)

    entry = agent._register_function(hang, visible=True)
    entry.spec.execution_environments.append(memory())
    async with anyio.create_task_group() as group:
        group.start_soon(agent.action.async_execute_action, "hang", {})
        await started.wait()
        assert len(provider.live) == 1
        group.cancel_scope.cancel()
    assert len(provider.started) == 1 and provider.live == []


@pytest.mark.anyio
async def test_second_environment_failing_releases_the_first(agent, provider) -> None:
    seen = mount(agent, "probe", memory(),
                 EnvironmentRequirement(kind="memory", resource_key="bad",
                                        config={"fail_start": True}))
    record = await agent.action.async_execute_action("probe", {})
    assert record.status == "failed"
    assert "environment" in record.error
    assert seen == []  # the action never ran
    assert len(provider.started) == 1 and provider.live == []


@pytest.mark.anyio
async def test_two_environments_injected_under_their_keys(agent, provider) -> None:
    got: dict[str, Any] = {}

    def both(action_context: Any) -> None:
        """See both environments."""
        got.update(action_context.execution_environment_resources)
        got["handles"] = dict(action_context.execution_environment_handles)

    entry = agent._register_function(both, visible=True)
    entry.spec.execution_environments.extend([
        EnvironmentRequirement(kind="memory", resource_key="a"),
        EnvironmentRequirement(kind="memory", resource_key="b"),
        EnvironmentRequirement(kind="memory"),  # no resource key: keyed by kind
    ])
    await call(agent, "both")
    assert {"a", "b", "memory"} <= set(got)
    assert len({id(got["a"]), id(got["b"]), id(got["memory"])}) == 3
    assert got["handles"]["a"].resource_key == "a"
    assert provider.live == []


# -- request ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_request_scope_of_direct_calls_is_the_call(agent, provider) -> None:
    seen = mount(agent, "probe", memory("request"))
    first = await call(agent, "probe")
    second = await call(agent, "probe")
    assert seen[0].resource is not seen[1].resource  # each call is its own request
    assert seen[0].handle.owner_id == first.call_id
    assert provider.live == []  # the request ended with its call, and so did its resource
    assert await agent.manager.async_release_scope("request", first.call_id) == 0
    assert second.status == "success"


@pytest.mark.anyio
async def test_request_scope_of_a_flow_run_is_the_execution(agent, provider) -> None:
    seen = mount(agent, "probe", memory("request"))
    agent.set_planner([[("probe", {})], [("probe", {})]], response="ok")
    result = await agent.async_run("go")
    assert result.stop_reason == "response"
    assert seen[0].resource is seen[1].resource  # one request, one resource
    assert seen[0].handle.owner_id == result.execution_id
    assert provider.live == []  # the request ended with its run
    assert not agent.manager.list("request", owner_id=result.execution_id)

    other = await agent.async_run("again")
    assert other.stop_reason == "response"
    assert seen[2].resource is not seen[0].resource  # a new run is a new request
    assert provider.live == []
    assert len(provider.released) == 2


# -- execution -------------------------------------------------------------------------
@pytest.mark.anyio
async def test_execution_scope_through_async_run(agent, provider) -> None:
    seen = mount(agent, "probe", memory("execution"))
    host_object = MemoryResource("host")  # unmanaged: the host owns it
    agent.set_planner([[("probe", {})], [("probe", {})]], response="ok")
    result = await agent.async_run(
        "go", execution_environments=[EnvironmentRequirement(kind="memory", resource_key="res")],
        runtime_resources={"db": host_object})
    assert result.stop_reason == "response", result.error
    execution = agent.last_execution
    assert execution.id == result.execution_id
    # ensured at start, injected under its key; the action's execution-scoped requirement
    # with the same content is the same resource
    assert len(provider.started) == 1
    assert seen[0].resource is seen[1].resource is provider.started[0]
    assert seen[0].handle.scope == "execution" and seen[0].handle.owner_id == execution.id
    assert seen[0].execution is execution
    assert seen[0].released_at_call == 0
    # released at close; the manual runtime resource is left alone
    assert execution.state == "closed"
    assert provider.live == [] and provider.started[0].released == 1
    assert host_object.released == 0
    assert host_object not in provider.started
    assert agent.manager.list() == []


@pytest.mark.anyio
async def test_action_execution_scope_not_declared_by_the_execution(agent, provider) -> None:
    """An action's execution-scoped environment the execution did not declare is pinned
    to the execution all the same, shared by its calls and released when it closes."""
    seen = mount(agent, "probe", memory("execution", config={"own": True}))
    events: list[Any] = []
    agent.events.subscribe(events.append, "execution_environment.released")
    agent.set_planner([[("probe", {})], [("probe", {})]], response="ok")
    result = await agent.async_run("go")
    assert result.stop_reason == "response"
    assert seen[0].resource is seen[1].resource
    assert seen[0].handle.owner_id == result.execution_id
    assert provider.live == []
    [released] = events
    assert released.payload["scope"] == "execution"
    assert released.payload["owner_id"] == result.execution_id


@pytest.mark.anyio
async def test_execution_resources_are_injected_at_start(agent, provider) -> None:
    host_object = object()
    execution = agent.create_execution(
        execution_environments=[EnvironmentRequirement(kind="memory", resource_key="res"),
                                {"kind": "memory", "resource_key": "other"}],
        runtime_resources={"db": host_object})
    assert provider.started == []  # nothing before start
    async with execution:
        assert execution.state == "open"
        assert set(execution.resources) == {"res", "other", "db"}
        assert execution.resources["db"] is host_object
        assert execution.resources["res"] is not execution.resources["other"]
        assert len(provider.live) == 2
        handles = agent.manager.list("execution", owner_id=execution.id)
        assert len(handles) == 2 and all(h.ref_count == 1 for h in handles)  # the pin only
        assert set(execution.handles) == {"res", "other"}
    assert execution.state == "closed"
    assert provider.live == [] and len(provider.released) == 2
    assert execution.resources == {}


@pytest.mark.anyio
async def test_actions_run_inside_a_bound_execution(agent, provider) -> None:
    seen = mount(agent, "probe", memory("execution"))
    async with agent.create_execution(
            execution_environments=[memory()]) as execution:
        with execution.bind():
            record = await call(agent, "probe")
            await call(agent, "probe")
        assert seen[0].resource is execution.resources["res"] is seen[1].resource
        assert record.result == execution.resources["res"].id
        assert len(provider.live) == 1
    assert provider.live == []


@pytest.mark.anyio
async def test_execution_scope_outside_an_execution_fails_cleanly(agent, provider) -> None:
    seen = mount(agent, "probe", memory("execution"))
    record = await agent.action.async_execute_action("probe", {})
    assert record.status == "failed"
    assert "execution" in record.error
    assert seen == [] and provider.started == []


@pytest.mark.anyio
async def test_concurrent_executions_have_their_own_resources(agent, provider) -> None:
    seen = mount(agent, "probe", memory("execution"))
    results: list[Any] = []

    async def run() -> None:
        async with agent.create_execution(execution_environments=[memory()]) as execution:
            with execution.bind():
                results.append(await call(agent, "probe"))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(run)
    assert len({id(s.resource) for s in seen}) == 5
    assert len({id(s.execution) for s in seen}) == 5
    assert provider.live == [] and len(provider.released) == 5


@pytest.mark.anyio
async def test_execution_start_failure_releases_what_started(agent, provider) -> None:
    seen = mount(agent, "probe", memory())
    agent.set_planner([[("probe", {})]], response="ok")
    result = await agent.async_run("go", execution_environments=[
        EnvironmentRequirement(kind="memory", resource_key="good"),
        EnvironmentRequirement(kind="memory", resource_key="bad", config={"fail_start": True}),
    ])
    assert result.stop_reason == "failed"
    assert "RuntimeError" in result.error
    assert seen == []  # no round ran
    assert agent.last_execution.state == "closed"
    assert len(provider.started) == 1 and provider.live == []
    # the manager is not poisoned: the next run starts both
    ok = await agent.async_run("again", execution_environments=[
        EnvironmentRequirement(kind="memory", resource_key="good")])
    assert ok.stop_reason == "response"
    assert provider.live == []


@pytest.mark.anyio
async def test_execution_closed_by_the_agent(agent, provider) -> None:
    execution = agent.create_execution(execution_environments=[memory()])
    await execution.async_start()
    assert len(provider.live) == 1
    await agent.aclose()
    assert execution.state == "closed"
    assert provider.live == []
    with pytest.raises(ExecutionStateError):
        await execution.async_start()


# -- session ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_session_scope_needs_a_session(agent, provider) -> None:
    seen = mount(agent, "probe", memory("session"))
    record = await agent.action.async_execute_action("probe", {})
    assert record.status == "failed"
    assert "session" in record.error
    assert seen == [] and provider.started == []


@pytest.mark.anyio
async def test_session_scope_shared_by_agents_until_release_scope(plugins, shared,
                                                                 provider) -> None:
    one = create_agent(plugins=plugins, manager=shared)
    two = create_agent(plugins=plugins, manager=shared)
    one.session_id = two.session_id = "session-1"
    seen_one = mount(one, "probe", memory("session"))
    seen_two = mount(two, "probe", memory("session"))
    await call(one, "probe")
    await call(one, "probe")
    await call(two, "probe")
    assert seen_one[0].resource is seen_one[1].resource is seen_two[0].resource
    assert seen_one[0].handle.owner_id == "session-1"
    await one.aclose()
    await two.aclose()
    assert len(provider.live) == 1  # agents closing do not end the session
    assert await shared.async_release_scope("session", "session-1") == 1
    assert provider.live == []


@pytest.mark.anyio
async def test_session_scope_with_an_explicit_owner(agent, provider) -> None:
    seen = mount(agent, "probe", memory("session", owner_id="s-explicit"))
    await call(agent, "probe")
    await call(agent, "probe")
    assert seen[0].resource is seen[1].resource
    assert seen[0].handle.owner_id == "s-explicit"
    assert len(provider.live) == 1
    assert await agent.manager.async_release_scope("session", "s-explicit") == 1
    assert provider.live == []


# -- agent -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_agent_scope_kept_across_calls_released_by_aclose(plugins, shared,
                                                              provider) -> None:
    one = create_agent(plugins=plugins, manager=shared)
    two = create_agent(plugins=plugins, manager=shared)
    seen_one = mount(one, "probe", memory("agent"))
    seen_two = mount(two, "probe", memory("agent"))
    await call(one, "probe")
    await call(one, "probe")
    await call(two, "probe")
    assert seen_one[0].resource is seen_one[1].resource  # kept across calls
    assert seen_two[0].resource is not seen_one[0].resource  # one per agent
    assert seen_one[0].handle.owner_id == one.id
    assert len(provider.live) == 2

    await one.aclose()
    assert provider.live == [seen_two[0].resource]  # only the closed agent's
    assert not shared.closed  # a manager the agent was given is not the agent's to close
    await one.aclose()  # idempotent
    async with two:
        pass
    assert provider.live == []


@pytest.mark.anyio
async def test_unhealthy_agent_resource_is_replaced_on_the_next_call(agent, provider) -> None:
    seen = mount(agent, "probe", memory("agent"))
    unhealthy: list[Any] = []
    agent.events.subscribe(unhealthy.append, "execution_environment.unhealthy")
    await call(agent, "probe")
    provider.make_unhealthy(seen[0].resource)
    await call(agent, "probe")
    await call(agent, "probe")
    assert seen[1].resource is not seen[0].resource
    assert seen[2].resource is seen[1].resource
    assert seen[0].resource.released == 1 and seen[1].released_at_call == 0
    assert len(unhealthy) == 1
    assert provider.live == [seen[1].resource]


@pytest.mark.anyio
async def test_async_with_agent_releases_its_environments(plugins, provider) -> None:
    async with create_agent(plugins=plugins) as agent:
        seen = mount(agent, "probe", memory("agent"))
        await call(agent, "probe")
        await call(agent, "probe")
        assert seen[0].resource is seen[1].resource
        assert len(provider.live) == 1
    assert agent.closed
    assert provider.live == [] and provider.double_releases == []


def test_sync_agent_close_releases_its_environments(plugins, provider) -> None:
    with create_agent(plugins=plugins) as agent:
        seen = mount(agent, "probe", memory("agent"))
        assert agent.action.execute_action("probe", {}).status == "success"
        assert agent.action.execute_action("probe", {}).status == "success"
        assert seen[0].resource is seen[1].resource
        assert len(provider.live) == 1
    assert provider.live == []

    other = create_agent(plugins=plugins)
    mount(other, "probe", memory("agent"))
    other.action.execute_action("probe", {})
    assert len(provider.live) == 1
    other.close()
    assert provider.live == [] and provider.double_releases == []


@pytest.mark.anyio
async def test_agent_scope_with_a_real_tempdir(plugins, tempdirs) -> None:
    async with create_agent(plugins=plugins) as agent:
        seen = mount(agent, "probe", EnvironmentRequirement(kind="tempdir", scope="agent",
                                                            resource_key="res"))
        await call(agent, "probe")
        await call(agent, "probe")
        directory = Path(seen[0].resource)
        assert seen[1].resource == seen[0].resource
        assert directory.is_dir()
        assert oct(directory.stat().st_mode & 0o777) == oct(0o700)
        (directory / "note.txt").write_text("kept between calls")
    assert not directory.exists()
    assert not os.path.exists(seen[0].resource)


# -- global ----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_global_scope_outlives_agents_until_the_manager_closes(plugins, provider) -> None:
    manager = ExecutionEnvironmentManager(plugins)
    one = create_agent(plugins=plugins, manager=manager)
    two = create_agent(plugins=plugins, manager=manager)
    seen_one = mount(one, "probe", memory("global"))
    seen_two = mount(two, "probe", memory("global"))
    await call(one, "probe")
    await call(two, "probe")
    assert seen_one[0].resource is seen_two[0].resource
    assert seen_one[0].handle.owner_id is None
    await one.aclose()
    await two.aclose()
    assert len(provider.live) == 1  # agents closing do not end the global scope
    assert await manager.async_release_scope("global") == 1  # explicitly, if the host wants
    assert provider.live == []

    three = create_agent(plugins=plugins, manager=manager)
    mount(three, "probe", memory("global"))
    await call(three, "probe")
    assert len(provider.live) == 1
    await manager.aclose()  # the manager shutting down releases it
    assert provider.live == [] and provider.double_releases == []


@pytest.mark.anyio
async def test_global_scope_of_an_agent_owned_manager(plugins, provider) -> None:
    agent = create_agent(plugins=plugins)
    mount(agent, "probe", memory("global"))
    await call(agent, "probe")
    assert len(provider.live) == 1
    await agent.aclose()  # the agent owns its manager: closing it ends the global scope
    assert agent.manager.closed
    assert provider.live == []


# -- all scopes at once --------------------------------------------------------------------
@pytest.mark.anyio
async def test_every_scope_ends_with_its_owner(plugins, provider) -> None:
    manager = ExecutionEnvironmentManager(plugins)
    agent = create_agent(plugins=plugins, manager=manager)
    agent.session_id = "s"
    for scope in ("action_call", "request", "execution", "session", "agent", "global"):
        mount(agent, f"probe_{scope}", memory(scope))
    agent.set_planner([[(f"probe_{scope}", {}) for scope in
                        ("action_call", "request", "execution", "session", "agent", "global")]],
                      response="ok")
    result = await agent.async_run("go")
    assert [r.status for r in result.records] == ["success"] * 6
    # action_call, request and execution went with the call and the run
    assert sorted(h.scope for h in manager.list()) == ["agent", "global", "session"]
    assert await manager.async_release_scope("request", result.execution_id) == 0
    assert await manager.async_release_scope("session", "s") == 1
    await agent.aclose()
    assert [h.scope for h in manager.list()] == ["global"]
    await manager.aclose()
    assert manager.list() == []
    assert provider.live == [] and provider.double_releases == []
    assert len(provider.released) == len(provider.started) == 6


# -- regressions (bugs found by these tests) ---------------------------------------------------
@pytest.mark.anyio
async def test_register_action_function_receives_its_environments(agent, provider) -> None:
    """register_action(ActionSpec(kind='function'), target=fn) injects ``action_context``
    like action_func does (it used to call fn without it: TypeError)."""
    got: list[Any] = []

    def probe(action_context: Any) -> int:
        got.append(action_context.execution_environment_resources["res"])
        return 1

    agent.action.register_action(
        ActionSpec(name="probe", kind="function", execution_environments=[memory()]),
        target=probe)
    record = await agent.action.async_execute_action("probe", {})
    assert record.status == "success", record.error
    assert got and got[0] is provider.started[0]


@pytest.mark.anyio
async def test_explicit_reuse_key_across_scopes_is_released_with_its_owner(shared,
                                                                          provider) -> None:
    """An explicit reuse key never joins resources of different scopes or owners (it used
    to: an agent-scoped pin on an action_call slot outlived release_scope('agent'))."""
    by_call = await shared.async_ensure(EnvironmentRequirement(kind="memory", reuse_key="x",
                                                               owner_id="call-1"))
    by_agent = await shared.async_ensure(EnvironmentRequirement(kind="memory", reuse_key="x",
                                                                scope="agent",
                                                                owner_id="agent-1"))
    await shared.async_release(by_call)
    await shared.async_release(by_agent)
    await shared.async_release_scope("agent", "agent-1")
    assert provider.live == []  # the agent is gone, so is everything it pinned
