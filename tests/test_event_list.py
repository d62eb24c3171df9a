"""Issue 3, point 8: the documented events are really emitted, with payloads that carry
ids and status only; a raising observer is isolated; plugin observers receive events."""

from __future__ import annotations

import functools
import io
import json
import sys
from typing import Any

import pytest

from agently_core import ActionSpec, EnvironmentRequirement, Event
from agently_core.testing import MemoryProvider, make_plugin

ENVIRONMENT_EVENTS = {f"execution_environment.{name}" for name in (
    "declared", "approval_required", "ensuring", "ready", "unhealthy", "releasing", "released",
    "failed")}
APPROVAL_EVENTS = {f"policy.approval.{name}" for name in (
    "requested", "approved", "denied", "pending", "resumed")}
ACTION_EVENTS = {f"action.{name}" for name in (
    "started", "completed", "failed", "blocked", "approval_required")}
PRIMITIVE = (str, int, float, bool, type(None))


# -- helpers -----------------------------------------------------------------------------------
class Collector:
    """A catch-all observer that keeps every event it sees."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, prefix: str) -> list[Event]:
        return [e for e in self.events if e.type.startswith(prefix)]


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def build(build_agent: Any, provider: MemoryProvider, monkeypatch) -> Any:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return functools.partial(build_agent, providers={"memory": lambda: provider})


def observe(agent: Any) -> tuple[Collector, Collector]:
    """Catch-all observers on the agent's and on its manager's event centers."""
    on_agent, on_manager = Collector(), Collector()
    agent.events.subscribe(on_agent, name="on_agent")
    agent.manager.events.subscribe(on_manager, name="on_manager")
    return on_agent, on_manager


def mount(agent: Any) -> None:
    @agent.action_func
    def ok() -> str:
        return "ok"

    @agent.action_func
    def broken() -> None:
        raise RuntimeError("broken on purpose")

    @agent.action_func(approval_required=True)
    def guarded() -> str:
        return "guarded"

    @agent.action_func(policy={"network": False})
    def offline() -> str:
        return "never runs: the function executor cannot enforce network=False"

    agent.action.register_action(
        ActionSpec(name="uses_env", execution_environments=[
            EnvironmentRequirement(kind="memory", resource_key="box")]),
        target=lambda: "used env")
    agent.use_actions(["ok", "broken", "guarded", "offline", "uses_env"])


def assert_payloads_are_flat(events: list[Event]) -> None:
    assert events
    for event in events:
        for key, value in event.payload.items():
            assert isinstance(value, PRIMITIVE), (event.type, key, value)
        json.loads(event.model_dump_json())
        assert event.id.startswith("evt_") and event.ts > 0 and event.source


# -- environment events ------------------------------------------------------------------------
@pytest.mark.anyio
async def test_every_environment_event_is_emitted(build, provider) -> None:
    agent = build()
    on_agent, on_manager = observe(agent)
    manager = agent.manager
    manager.approval.set_default("fail_closed")

    declared = manager.declare({"kind": "memory", "scope": "global", "resource_key": "g"})
    handle = await manager.async_ensure(declared.id, events=agent.events)
    assert await manager.async_release(handle, events=agent.events)
    provider.make_unhealthy(provider.started[0])
    handle = await manager.async_ensure(declared.id, events=agent.events)  # unhealthy -> fresh
    assert await manager.async_release(handle, events=agent.events)
    assert await manager.async_release_scope("global", events=agent.events) == 1

    from agently_core.errors import EnvironmentApprovalRequired, EnvironmentStartError

    with pytest.raises(EnvironmentStartError):
        await manager.async_ensure({"kind": "memory", "config": {"fail_start": True}},
                                   events=agent.events)
    with pytest.raises(EnvironmentApprovalRequired):
        await manager.async_ensure({"kind": "memory", "approval_required": True},
                                   events=agent.events)

    seen = set(on_manager.types)
    assert seen >= ENVIRONMENT_EVENTS, ENVIRONMENT_EVENTS - seen
    # everything but the synchronous declare also reaches the caller's event center
    assert ENVIRONMENT_EVENTS - {"execution_environment.declared"} <= set(on_agent.types)
    assert_payloads_are_flat(on_manager.events)
    assert provider.live == [] and provider.double_releases == []

    by_type: dict[str, Event] = {}
    for event in on_manager.events:
        by_type.setdefault(event.type, event)  # the first of each type
    assert by_type["execution_environment.declared"].payload["requirement_id"] == declared.id
    ready = by_type["execution_environment.ready"].payload
    assert ready["status"] == "ready" and ready["handle_id"].startswith("envh_")
    assert ready["kind"] == "memory" and ready["scope"] == "global"
    assert by_type["execution_environment.released"].payload["status"] == "released"
    assert "RuntimeError" in by_type["execution_environment.failed"].payload["error"]
    assert by_type["execution_environment.approval_required"].payload["request_id"].startswith(
        "apr_")


@pytest.mark.anyio
async def test_unhealthy_handle_sequence(build, provider) -> None:
    agent = build()
    _, on_manager = observe(agent)
    manager = agent.manager
    requirement = {"kind": "memory", "scope": "agent", "owner_id": agent.id}
    first = await manager.async_ensure(requirement)
    await manager.async_release(first)
    provider.make_unhealthy(provider.started[0])
    on_manager.events.clear()
    second = await manager.async_ensure(requirement)
    assert on_manager.types == [
        "execution_environment.unhealthy", "execution_environment.releasing",
        "execution_environment.released", "execution_environment.ensuring",
        "execution_environment.ready"]
    assert second.id == first.id  # the same slot, a fresh resource
    assert len(provider.started) == 2 and provider.live == [provider.started[1]]
    await manager.async_release(second)


def test_environment_events_around_an_action_call(build, provider) -> None:
    agent = build()
    mount(agent)
    on_agent, _ = observe(agent)
    record = agent.action.execute_action("uses_env")
    assert record.status == "success", record.error
    assert on_agent.types == [
        "action.started", "execution_environment.ensuring", "execution_environment.ready",
        "execution_environment.releasing", "execution_environment.released",
        "action.completed"]
    handle_ids = {e.payload["handle_id"] for e in on_agent.of("execution_environment.")}
    assert len(handle_ids) == 1
    owners = {e.payload["owner_id"] for e in on_agent.of("execution_environment.")}
    assert owners == {record.call_id}  # action_call scope: owned by the call
    assert_payloads_are_flat(on_agent.events)


# -- approval events ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_every_approval_event_is_emitted(build) -> None:
    agent = build()
    mount(agent)
    on_agent, _ = observe(agent)
    for handler in ("auto_approve", "input_timeout_fail", "fail_closed"):
        agent.approval.set_default(handler)
        await agent.action.async_execute_action("guarded")
    agent.set_planner([[{"action": "guarded", "kwargs": {}}]])
    result = await agent.async_run("go")
    assert result.stop_reason == "approval_required"
    execution = agent.last_execution
    request_id = execution.pending[0].id
    resumed = await execution.async_continue_with("approved", resume_request_id="resume-1",
                                                  actor="alice")
    assert resumed.stop_reason == "response"
    seen = set(on_agent.types)
    assert seen >= APPROVAL_EVENTS, APPROVAL_EVENTS - seen
    assert_payloads_are_flat(on_agent.events)
    decided = [e for e in on_agent.of("policy.approval.")
               if e.type in {"policy.approval.approved", "policy.approval.denied",
                             "policy.approval.pending"}]
    assert [e.type.rsplit(".", 1)[1] for e in decided] == [
        "approved", "denied", "pending", "pending"]
    for event in on_agent.of("policy.approval."):
        assert event.payload["request_id"].startswith("apr_")
    [resume] = on_agent.of("policy.approval.resumed")
    assert resume.payload == {"execution_id": execution.id, "request_id": request_id,
                              "resume_request_id": "resume-1", "decision": "approved"}


@pytest.mark.anyio
async def test_a_call_denied_on_resume_emits_action_blocked(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    mount(agent)
    on_agent, _ = observe(agent)
    agent.set_planner([[{"action": "guarded", "kwargs": {}}]])
    await agent.async_run("go")
    result = await agent.last_execution.async_continue_with("denied", resume_request_id="r")
    blocked = [r for r in result.records if r.status == "blocked"]
    assert [e.payload["call_id"] for e in on_agent.of("action.blocked")] == [
        r.call_id for r in blocked]


# -- action events -----------------------------------------------------------------------------
def test_every_action_event_is_emitted(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    mount(agent)
    on_agent, _ = observe(agent)
    records = {name: agent.action.execute_action(name)
               for name in ("ok", "broken", "offline", "guarded")}
    assert {n: r.status for n, r in records.items()} == {
        "ok": "success", "broken": "failed", "offline": "blocked",
        "guarded": "approval_required"}
    seen = set(on_agent.types)
    assert seen >= ACTION_EVENTS, ACTION_EVENTS - seen
    assert_payloads_are_flat(on_agent.events)
    final = [e for e in on_agent.of("action.") if e.type != "action.started"]
    assert [(e.payload["call_id"], e.payload["status"]) for e in final] == [
        (r.call_id, r.status) for r in records.values()]
    assert {e.payload["action"] for e in on_agent.of("action.")} == set(records)
    pending = on_agent.of("action.approval_required")[0]
    assert pending.payload["approval_request_id"] == records["guarded"].approval_request_id
    # started only for calls that passed the gate
    assert [e.payload["action"] for e in on_agent.of("action.started")] == ["ok", "broken"]


def test_events_carry_no_arguments_results_or_errors_of_actions(build) -> None:
    agent = build()

    @agent.action_func
    def echo(text: str) -> dict:
        return {"text": text, "nested": {"deep": [text]}}

    on_agent, _ = observe(agent)
    agent.action.execute_action("echo", {"text": "payload-marker"})
    text = "".join(e.model_dump_json() for e in on_agent.events)
    assert "payload-marker" not in text
    assert_payloads_are_flat(on_agent.events)


# -- the full list in one run ------------------------------------------------------------------
@pytest.mark.anyio
async def test_the_documented_list_in_one_agent(build, provider) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    mount(agent)
    on_agent, on_manager = observe(agent)
    agent.manager.approval.set_default("fail_closed")
    agent.manager.declare({"kind": "memory"})
    for name in ("ok", "broken", "offline", "guarded", "uses_env"):
        await agent.action.async_execute_action(name)
    agent.approval.set_default("auto_approve")
    await agent.action.async_execute_action("guarded")
    agent.approval.set_default("input_timeout_fail")
    await agent.action.async_execute_action("guarded")
    agent.approval.set_default("fail_closed")
    agent.set_planner([[{"action": "guarded", "kwargs": {}}]])
    await agent.async_run("go")
    await agent.last_execution.async_continue_with("denied", resume_request_id="r")
    handle = await agent.manager.async_ensure({"kind": "memory", "scope": "global"},
                                              events=agent.events)
    provider.make_unhealthy(agent.manager.resource(handle))
    await agent.manager.async_release(handle)
    await agent.manager.async_release(
        await agent.manager.async_ensure({"kind": "memory", "scope": "global"}))
    for config in ({"fail_start": True},):
        try:
            await agent.manager.async_ensure({"kind": "memory", "config": config})
        except Exception:
            pass
    try:
        await agent.manager.async_ensure({"kind": "memory", "approval_required": True})
    except Exception:
        pass
    await agent.manager.async_release_scope("global")
    everything = {*on_agent.types, *on_manager.types}
    documented = ENVIRONMENT_EVENTS | APPROVAL_EVENTS | ACTION_EVENTS
    assert documented <= everything, documented - everything
    assert_payloads_are_flat([*on_agent.events, *on_manager.events])
    assert provider.live == [] and provider.double_releases == []


# -- isolation of observers that raise ---------------------------------------------------------
def test_raising_observers_are_isolated_and_recorded(build, provider, caplog) -> None:
    agent = build()
    mount(agent)

    def sync_boom(event: Event) -> None:
        raise ValueError(f"sync observer broke on {event.type}")

    async def async_boom(event: Event) -> None:
        raise KeyError("async observer broke")

    agent.events.subscribe(sync_boom, name="sync_boom")
    agent.events.subscribe(async_boom, name="async_boom")
    agent.manager.events.subscribe(sync_boom, name="sync_boom")
    on_agent, on_manager = observe(agent)  # subscribed after the raising ones
    with caplog.at_level("WARNING", logger="agently_core"):
        record = agent.action.execute_action("uses_env")
        again = agent.action.execute_action("ok")
    assert record.status == "success" and record.result == "used env"
    assert again.status == "success"
    assert on_agent.types[0] == "action.started" and on_agent.types[-1] == "action.completed"
    assert len(on_agent.events) >= 8 and len(on_manager.events) >= 4  # later observers ran
    assert provider.live == []
    failures = agent.events.failures
    assert {f.observer for f in failures} == {"sync_boom", "async_boom"}
    assert len(failures) == 2 * len(on_agent.events)  # both raised on every event
    assert any(f.error == "ValueError: sync observer broke on action.started" for f in failures)
    assert any(f.error.startswith("KeyError") for f in failures)
    assert len(agent.manager.events.failures) == len(on_manager.events)
    assert any("sync_boom" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_raising_observer_does_not_break_the_manager(build, provider) -> None:
    agent = build()
    agent.manager.events.subscribe(lambda e: 1 / 0, name="divide")
    handle = await agent.manager.async_ensure({"kind": "memory"})
    assert handle.status == "ready"
    assert await agent.manager.async_release(handle)
    assert provider.live == [] and len(provider.released) == 1
    assert {f.observer for f in agent.manager.events.failures} == {"divide"}


# -- the plugin hook ---------------------------------------------------------------------------
def test_plugin_observers_receive_events(build) -> None:
    actions = Collector()
    everything: list[Event] = []

    async def async_observer(event: Event) -> None:
        everything.append(event)

    plugin = make_plugin(event_observer={
        "actions": (actions, {"events": ("action.*",)}),
        "everything": async_observer,
    })
    agent = build(plugin, toml='approval_handler = "fail_closed"\n')
    mount(agent)
    agent.action.execute_action("ok")
    agent.action.execute_action("guarded")
    agent.action.execute_action("uses_env")
    assert actions.types == ["action.started", "action.completed", "action.approval_required",
                             "action.started", "action.completed"]
    types = [e.type for e in everything]
    assert "policy.approval.pending" in types and "execution_environment.ready" in types
    assert len(everything) > len(actions.events)
    assert_payloads_are_flat(everything)


def test_a_raising_plugin_observer_is_isolated(build) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("plugin observer down")

    agent = build(make_plugin(event_observer={"broken": broken}))
    mount(agent)
    assert agent.action.execute_action("ok").status == "success"
    # plugin observers listen on the manager's center; their failures are reported there
    failures = agent.manager.events.failures
    assert failures
    assert failures[0].observer.endswith(":broken")


def test_plugin_observers_see_declared_environments(build) -> None:
    seen = Collector()
    agent = build(make_plugin(event_observer={"envs": (seen, {
        "events": ("execution_environment.*",)})}))
    agent.manager.declare({"kind": "memory"})
    assert seen.types == ["execution_environment.declared"]
