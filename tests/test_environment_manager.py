"""The ExecutionEnvironmentManager, one operation at a time (issue 3, points 1 and 3).

declare is lazy; ensure / release / inspect / list; a lease released twice is a no-op;
release by handle id; reuse by an explicit or derived reuse key; the health check before
reuse; a provider that fails to start leaves nothing behind; a closed manager refuses
work; aclose releases every scope; the synchronous API; and the module facade
``agently_core.execution_environment`` over the process-wide manager.

Every test ends by checking the counting provider: nothing live, nothing released twice.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from agently_core import environments as environments_module
from agently_core import execution_environment
from agently_core.environments import SCOPES, ExecutionEnvironmentManager
from agently_core.errors import (
    AgentlyError,
    ConfigError,
    EnvironmentApprovalRequired,
    EnvironmentBlocked,
    EnvironmentNotFound,
    EnvironmentStartError,
    ManagerClosedError,
    PluginError,
)
from agently_core.events import EventCenter
from agently_core.hookspecs import hookimpl
from agently_core.models import EnvironmentHandle, EnvironmentRequirement
from agently_core.plugins import PluginManager
from agently_core.policy_approval import PolicyApproval
from agently_core.protocols import ProviderHandle
from agently_core.testing.memory_provider import MemoryPlugin, MemoryProvider

OWNED_SCOPES = ("request", "execution", "session", "agent")




@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def plugins(load_config: Any, provider: MemoryProvider) -> PluginManager:
    pm = PluginManager(load_config(), autoload=False)
    pm.register(MemoryPlugin(provider), name="memory-provider")
    return pm.load()


@pytest.fixture
def events() -> list[Any]:
    return []


@pytest.fixture
async def manager(plugins: PluginManager, provider: MemoryProvider, events: list[Any]):
    mgr = ExecutionEnvironmentManager(plugins)
    mgr.events.subscribe(events.append)
    yield mgr
    await mgr.aclose()
    assert provider.live == []
    assert provider.double_releases == []


def req(**fields: Any) -> EnvironmentRequirement:
    fields.setdefault("kind", "memory")
    return EnvironmentRequirement(**fields)


def types_of(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def assert_clean(manager: ExecutionEnvironmentManager, provider: MemoryProvider) -> None:
    assert manager.list() == []
    assert provider.live == []
    assert provider.double_releases == []


# -- declare -------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_declare_is_lazy(manager, provider, events) -> None:
    requirement = manager.declare({"kind": "memory", "scope": "session", "owner_id": "s1",
                                   "resource_key": "res"})
    assert isinstance(requirement, EnvironmentRequirement)
    assert provider.started == []
    assert manager.list() == []
    assert manager.declared() == [requirement]
    assert manager.inspect(requirement.id) == requirement  # not ensured: the requirement
    assert types_of(events) == ["execution_environment.declared"]
    assert events[0].payload["requirement_id"] == requirement.id
    assert events[0].payload["scope"] == "session"


@pytest.mark.anyio
async def test_declare_unknown_kind_fails_at_declare(manager) -> None:
    with pytest.raises(AgentlyError, match="nosuchkind"):
        manager.declare(req(kind="nosuchkind"))
    assert manager.declared() == []


@pytest.mark.anyio
@pytest.mark.parametrize("scope", OWNED_SCOPES)
async def test_owned_scope_without_owner_fails_at_declare(manager, provider, scope) -> None:
    with pytest.raises(ConfigError, match="owner_id"):
        manager.declare(req(scope=scope))
    with pytest.raises(ConfigError, match="owner_id"):
        await manager.async_ensure(req(scope=scope))
    assert manager.declared() == []
    assert provider.started == []


@pytest.mark.anyio
@pytest.mark.parametrize("scope", ["action_call", "global"])
async def test_unowned_scopes_need_no_owner(manager, scope) -> None:
    requirement = manager.declare(req(scope=scope))
    handle = await manager.async_ensure(requirement.id)
    assert handle.scope == scope and handle.owner_id is None
    assert await manager.async_release(handle)


@pytest.mark.anyio
async def test_unknown_scope_is_refused(manager) -> None:
    with pytest.raises(ValidationError):
        manager.declare({"kind": "memory", "scope": "forever"})
    with pytest.raises(ConfigError, match="forever"):
        await manager.async_release_scope("forever", "x")


@pytest.mark.anyio
async def test_ensure_of_an_undeclared_id_is_not_found(manager) -> None:
    with pytest.raises(EnvironmentNotFound):
        await manager.async_ensure("env_not_declared")


# -- ensure / release / inspect / list --------------------------------------------------------
@pytest.mark.anyio
async def test_ensure_inspect_list_release(manager, provider, events) -> None:
    requirement = manager.declare(req(resource_key="res"))
    handle = await manager.async_ensure(requirement.id)
    assert isinstance(handle, EnvironmentHandle)
    assert handle.status == "ready"
    assert handle.ref_count == 1  # action_call: only this call's reference
    assert handle.lease_id is not None
    assert handle.requirement_id == requirement.id
    assert handle.resource_key == "res"
    assert handle.provider == "memory"
    [resource] = provider.started
    assert manager.resource(handle) is resource
    assert manager.resource(handle.id) is resource

    assert manager.inspect(handle.id).id == handle.id
    assert manager.inspect(handle.lease_id).id == handle.id
    assert manager.inspect(requirement.id).id == handle.id  # ensured: its live handle
    assert manager.inspect(handle.id).lease_id is None  # a view, not a reference
    assert [h.id for h in manager.list()] == [handle.id]
    assert [h.id for h in manager.list("action_call")] == [handle.id]
    assert manager.list("global") == []
    assert [h.id for h in manager.list(kind="memory")] == [handle.id]
    assert manager.list(kind="other") == []

    assert await manager.async_release(handle) is True
    assert resource.released == 1
    assert_clean(manager, provider)
    with pytest.raises(EnvironmentNotFound):
        manager.inspect(handle.id)
    with pytest.raises(EnvironmentNotFound):
        manager.resource(handle)
    assert manager.inspect(requirement.id) == requirement  # back to the declaration
    assert types_of(events) == [
        "execution_environment.declared", "execution_environment.ensuring",
        "execution_environment.ready", "execution_environment.releasing",
        "execution_environment.released",
    ]
    released = events[-1].payload
    assert released["handle_id"] == handle.id and released["ref_count"] == 0
    assert released["status"] == "released"


@pytest.mark.anyio
async def test_ensure_accepts_a_mapping(manager, provider) -> None:
    handle = await manager.async_ensure({"kind": "memory", "scope": "global"})
    assert handle.scope == "global"
    assert await manager.async_release(handle)
    assert len(provider.live) == 1  # the global scope pins it until the manager closes


@pytest.mark.anyio
async def test_events_go_to_an_extra_event_center_too(manager, events) -> None:
    extra: list[Any] = []
    center = EventCenter()
    center.subscribe(extra.append)
    handle = await manager.async_ensure(req(), events=center)
    await manager.async_release(handle, events=center)
    assert types_of(extra) == types_of(events)
    assert "execution_environment.released" in types_of(extra)


@pytest.mark.anyio
async def test_lease_released_twice_is_a_noop(manager, provider) -> None:
    requirement = req(owner_id="call-1")
    first = await manager.async_ensure(requirement)
    second = await manager.async_ensure(requirement)
    assert first.id == second.id and first.lease_id != second.lease_id
    assert manager.inspect(first.id).ref_count == 2

    assert await manager.async_release(first) is True
    assert await manager.async_release(first) is False
    assert await manager.async_release(first.lease_id) is False
    # the second reference is untouched by the repeated releases of the first
    assert manager.inspect(first.id).ref_count == 1
    assert provider.released == []

    assert await manager.async_release(second) is True
    assert await manager.async_release(second) is False
    assert len(provider.released) == 1
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_release_by_lease_id_string(manager, provider) -> None:
    handle = await manager.async_ensure(req())
    assert await manager.async_release(handle.lease_id) is True
    assert await manager.async_release(handle) is False
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_release_by_handle_id_drops_one_reference(manager, provider) -> None:
    requirement = req(owner_id="call-1")
    first = await manager.async_ensure(requirement)
    await manager.async_ensure(requirement)
    assert await manager.async_release(first.id) is True
    assert manager.inspect(first.id).ref_count == 1
    assert provider.released == []
    assert await manager.async_release(first.id) is True
    assert len(provider.released) == 1
    assert await manager.async_release(first.id) is False
    assert await manager.async_release("no-such-id") is False
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_release_by_handle_id_keeps_the_owner_pin(manager, provider) -> None:
    handle = await manager.async_ensure(req(scope="request", owner_id="r1"))
    assert handle.ref_count == 2  # this ensure's lease and the owner's pin
    assert await manager.async_release(handle.id) is True
    assert manager.inspect(handle.id).ref_count == 1
    assert len(provider.live) == 1
    assert await manager.async_release_scope("request", "r1") == 1
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_owned_scope_survives_its_leases_until_release_scope(manager, provider) -> None:
    requirement = req(scope="session", owner_id="s1")
    handles = [await manager.async_ensure(requirement) for _ in range(3)]
    assert len({h.id for h in handles}) == 1
    assert manager.inspect(handles[0].id).ref_count == 4
    for handle in handles:
        assert await manager.async_release(handle)
    assert manager.inspect(handles[0].id).ref_count == 1
    assert len(provider.live) == 1
    assert await manager.async_release_scope("session", "other") == 0
    assert await manager.async_release_scope("request", "s1") == 0
    assert len(provider.live) == 1
    assert await manager.async_release_scope("session", "s1") == 1
    assert await manager.async_release_scope("session", "s1") == 0
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_release_scope_invalidates_outstanding_leases(manager, provider) -> None:
    handle = await manager.async_ensure(req(scope="request", owner_id="r1"))
    assert await manager.async_release_scope("request", "r1") == 1
    assert await manager.async_release(handle) is False  # already gone with its scope
    assert len(provider.released) == 1
    assert_clean(manager, provider)


# -- reuse -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_same_derived_key_reuses_one_resource(manager, provider) -> None:
    # two requirement objects (different ids) with the same content share a resource
    a = await manager.async_ensure(req(owner_id="c", resource_key="res", config={"n": 1}))
    b = await manager.async_ensure(req(owner_id="c", resource_key="res", config={"n": 1}))
    assert a.id == b.id and a.reuse_key == b.reuse_key
    assert manager.resource(a) is manager.resource(b)
    assert len(provider.started) == 1
    assert provider.health_checks == 1  # checked before it was reused
    await manager.async_release(a)
    await manager.async_release(b)
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_explicit_reuse_key_shares_across_configs(manager, provider) -> None:
    a = await manager.async_ensure(req(reuse_key="shared", config={"n": 1}))
    b = await manager.async_ensure(req(reuse_key="shared", config={"n": 2}, resource_key="x"))
    c = await manager.async_ensure(req(reuse_key="other", config={"n": 1}))
    assert a.id == b.id != c.id
    assert a.reuse_key == b.reuse_key != c.reuse_key
    assert len(provider.started) == 2
    for handle in (a, b, c):
        assert await manager.async_release(handle)
    assert_clean(manager, provider)


@pytest.mark.anyio
@pytest.mark.parametrize("change", [
    {"config": {"n": 2}},
    {"owner_id": "other-call"},
    {"resource_key": "other"},
    {"scope": "global", "owner_id": None},
    {"scope": "request"},
])
async def test_derived_key_differs_when_the_requirement_differs(manager, provider, change) -> None:
    base = {"owner_id": "c", "resource_key": "res", "config": {"n": 1}}
    a = await manager.async_ensure(req(**base))
    b = await manager.async_ensure(req(**{**base, **change}))
    assert a.reuse_key != b.reuse_key
    assert a.id != b.id
    assert manager.resource(a) is not manager.resource(b)
    assert len(provider.started) == 2
    await manager.async_release(a)
    await manager.async_release(b)
    await manager.async_release_scope(b.scope, b.owner_id)
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_derived_key_ignores_config_key_order(manager, provider) -> None:
    a = await manager.async_ensure(req(config={"a": 1, "b": 2}))
    b = await manager.async_ensure(req(config={"b": 2, "a": 1}))
    assert a.id == b.id
    await manager.async_release(a)
    await manager.async_release(b)
    assert_clean(manager, provider)


# -- health ----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_unhealthy_resource_is_replaced_before_reuse(manager, provider, events) -> None:
    requirement = req(owner_id="c")
    first = await manager.async_ensure(requirement)
    old = manager.resource(first)
    provider.make_unhealthy(old)
    events.clear()

    second = await manager.async_ensure(requirement)
    new = manager.resource(second)
    assert new is not old
    assert old.released == 1  # the unhealthy one went exactly once
    assert new.released == 0
    assert len(provider.started) == 2
    kinds = types_of(events)
    assert kinds[0] == "execution_environment.unhealthy"
    assert events[0].payload["handle_id"] == first.id
    assert kinds[1:] == ["execution_environment.releasing", "execution_environment.released",
                         "execution_environment.ensuring", "execution_environment.ready"]

    # both leases still balance: the first release keeps the fresh resource alive
    assert await manager.async_release(first) is True
    assert new.released == 0
    assert await manager.async_release(second) is True
    assert new.released == 1 and old.released == 1
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_async_health_check_gets_a_provider_handle_before_every_reuse(events) -> None:
    """The reference's ``provider.async_health_check(handle)``: the handle carries the
    requirement and the live resource for the provider, and the handle id the events show;
    the EnvironmentHandle that events and records carry holds no resource."""

    class Watching(MemoryProvider):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[ProviderHandle] = []

        async def async_health_check(self, handle: ProviderHandle) -> bool:
            self.seen.append(handle)
            return await super().async_health_check(handle)

    watching = Watching()
    mgr = ExecutionEnvironmentManager(providers={"memory": watching})
    mgr.events.subscribe(events.append)
    requirement = req(scope="session", owner_id="s1", config={"n": 1})
    first = await mgr.async_ensure(requirement)
    assert watching.seen == []  # a fresh resource is not checked
    second = await mgr.async_ensure(requirement)
    third = await mgr.async_ensure(requirement)
    assert len(watching.seen) == 2
    checked = watching.seen[0]
    assert isinstance(checked, ProviderHandle)
    assert checked.resource is mgr.resource(first) is watching.started[0]
    assert checked.requirement is requirement
    assert (checked.id, checked.kind, checked.scope, checked.owner_id) == (
        first.id, "memory", "session", "s1")
    assert watching.seen[1] is checked  # made once per start: a reuse allocates nothing
    assert "MemoryResource" not in repr(checked)  # the live object stays out of reprs
    assert "resource" not in EnvironmentHandle.model_fields
    assert all("resource" not in e.payload for e in events)
    # an unhealthy answer: released, a fresh resource, a fresh provider handle
    watching.make_unhealthy(watching.started[0])
    fourth = await mgr.async_ensure(requirement)
    assert len(watching.started) == 2 and watching.seen[-1].resource is watching.started[0]
    fifth = await mgr.async_ensure(requirement)
    assert watching.seen[-1].resource is watching.started[1] is mgr.resource(fifth)
    for handle in (first, second, third, fourth, fifth):
        await mgr.async_release(handle)
    await mgr.async_release_scope("session", "s1")
    assert_clean(mgr, watching)
    await mgr.aclose()


def test_a_provider_without_async_health_check_is_refused_clearly(plugins) -> None:
    class OldStyle:
        kind = "old"
        name = "old"

        async def ensure(self, requirement: Any) -> Any:
            return object()

        async def health_check(self, requirement: Any, resource: Any) -> bool:
            return True

        async def release(self, requirement: Any, resource: Any) -> None:
            pass

    with pytest.raises(PluginError, match=r"lacks the async method\(s\) async_health_check "
                       r"\(health_check\(requirement, resource\) is now "
                       r"async_health_check\(handle\)"):
        ExecutionEnvironmentManager(providers={"old": OldStyle()})

    class SyncRelease(OldStyle):
        async def async_health_check(self, handle: Any) -> bool:
            return True

        def release(self, requirement: Any, resource: Any) -> None:  # type: ignore[override]
            pass

    with pytest.raises(PluginError, match=r"provider SyncRelease for kind 'old' lacks the "
                       r"async method\(s\) release$"):
        ExecutionEnvironmentManager(providers={"old": SyncRelease()})

    class OldPlugin:
        @hookimpl
        def register_execution_environment_providers(self, register: Any) -> None:
            register("old", OldStyle)

    plugins.register(OldPlugin(), name="old-plugin")
    manager = ExecutionEnvironmentManager(plugins)
    with pytest.raises(PluginError, match="provider 'old' of plugin 'old-plugin'"):
        manager.declare(req(kind="old"))


@pytest.mark.anyio
async def test_health_check_that_raises_counts_as_unhealthy(manager, provider) -> None:
    class Flaky(MemoryProvider):
        async def async_health_check(self, handle: Any) -> bool:
            raise OSError("probe failed")

    flaky = Flaky()
    mgr = ExecutionEnvironmentManager(providers={"memory": flaky})
    a = await mgr.async_ensure(req(owner_id="c"))
    b = await mgr.async_ensure(req(owner_id="c"))
    assert len(flaky.started) == 2 and len(flaky.released) == 1
    await mgr.async_release(a)
    await mgr.async_release(b)
    assert_clean(mgr, flaky)
    await mgr.aclose()


@pytest.mark.anyio
async def test_unhealthy_then_failed_restart_leaves_nothing(manager, provider) -> None:
    requirement = req(scope="session", owner_id="s1")
    first = await manager.async_ensure(requirement)
    provider.make_unhealthy(manager.resource(first))
    provider.fail_next_starts = 1
    with pytest.raises(EnvironmentStartError):
        await manager.async_ensure(requirement)
    assert_clean(manager, provider)
    assert await manager.async_release(first) is False  # its resource is gone
    again = await manager.async_ensure(requirement)  # not poisoned
    assert manager.resource(again).released == 0
    assert await manager.async_release_scope("session", "s1") == 1
    assert_clean(manager, provider)


# -- failure ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_failed_start_leaves_nothing_and_does_not_poison(manager, provider, events) -> None:
    requirement = manager.declare(req(scope="session", owner_id="s1"))
    provider.fail_next_starts = 1
    with pytest.raises(EnvironmentStartError, match="memory"):
        await manager.async_ensure(requirement.id)
    assert manager.list() == []
    assert provider.live == []
    assert manager.inspect(requirement.id) == requirement
    assert "execution_environment.failed" in types_of(events)
    failed = next(e for e in events if e.type == "execution_environment.failed")
    assert failed.payload["status"] == "failed"
    assert "RuntimeError" in failed.payload["error"]
    assert await manager.async_release_scope("session", "s1") == 0

    handle = await manager.async_ensure(requirement.id)
    assert handle.status == "ready"
    assert len(provider.started) == 1
    await manager.async_release(handle)
    await manager.async_release_scope("session", "s1")
    assert_clean(manager, provider)


@pytest.mark.anyio
async def test_config_fail_start_never_registers(manager, provider) -> None:
    for _ in range(3):
        with pytest.raises(EnvironmentStartError):
            await manager.async_ensure(req(scope="global", config={"fail_start": True}))
    assert_clean(manager, provider)
    assert provider.started == []


@pytest.mark.anyio
async def test_provider_release_failure_is_reported_and_forgotten(manager, events) -> None:
    class BadRelease(MemoryProvider):
        async def release(self, requirement: Any, resource: Any) -> None:
            await super().release(requirement, resource)
            raise RuntimeError("release broke")

    bad = BadRelease()
    mgr = ExecutionEnvironmentManager(providers={"memory": bad})
    seen: list[Any] = []
    mgr.events.subscribe(seen.append)
    handle = await mgr.async_ensure(req())
    assert await mgr.async_release(handle) is True
    assert mgr.list() == []
    assert bad.double_releases == []
    assert any(e.type == "execution_environment.failed" and "release broke" in e.payload["error"]
               for e in seen)
    await mgr.aclose()


# -- approval in the manager -----------------------------------------------------------
@pytest.mark.anyio
async def test_environment_approval_pending_then_granted(provider) -> None:
    mgr = ExecutionEnvironmentManager(providers={"memory": provider},
                                      approval=PolicyApproval("fail_closed"))
    seen: list[Any] = []
    mgr.events.subscribe(seen.append)
    requirement = req(approval_required=True)
    with pytest.raises(EnvironmentApprovalRequired) as caught:
        await mgr.async_ensure(requirement)
    request = caught.value.request
    assert request.subject_type == "environment" and request.subject_id == requirement.id
    assert provider.started == [] and mgr.list() == []
    assert "execution_environment.approval_required" in types_of(seen)
    assert "policy.approval.pending" in types_of(seen)

    mgr.grant(requirement.id)
    handle = await mgr.async_ensure(requirement)
    assert handle.status == "ready"
    await mgr.async_release(handle)
    await mgr.aclose()
    assert_clean(mgr, provider)


@pytest.mark.anyio
async def test_environment_approval_never_and_denied(provider) -> None:
    mgr = ExecutionEnvironmentManager(providers={"memory": provider},
                                      approval=PolicyApproval("auto_approve"))
    with pytest.raises(EnvironmentBlocked, match="never"):
        await mgr.async_ensure(req(approval_required=True, policy={"approval_mode": "never"}))
    denying = ExecutionEnvironmentManager(providers={"memory": provider},
                                          approval=PolicyApproval(handlers={"no": lambda c, r: False},
                                                                  default="no"))
    with pytest.raises(EnvironmentBlocked, match="denied"):
        await denying.async_ensure(req(approval_required=True))
    # approval_mode always asks even when the requirement does not demand it
    always = ExecutionEnvironmentManager(providers={"memory": provider},
                                         approval=PolicyApproval("fail_closed"),
                                         policy={"approval_mode": "always"})
    with pytest.raises(EnvironmentApprovalRequired):
        await always.async_ensure(req())
    assert provider.started == []
    for closing in (mgr, denying, always):
        assert closing.list() == []
        await closing.aclose()


# -- shutdown --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_closed_manager_refuses_work(manager, provider) -> None:
    handle = await manager.async_ensure(req())
    requirement = manager.declare(req(scope="global"))
    await manager.aclose()
    assert manager.closed
    with pytest.raises(ManagerClosedError):
        await manager.async_ensure(req())
    with pytest.raises(ManagerClosedError):
        await manager.async_ensure(requirement.id)
    with pytest.raises(ManagerClosedError):
        manager.declare(req())
    assert await manager.async_release(handle) is False  # released by the close already
    assert await manager.async_release_scope("session", "s1") == 0
    await manager.aclose()  # idempotent
    assert_clean(manager, provider)
    assert len(provider.released) == 1


@pytest.mark.anyio
async def test_aclose_releases_every_scope(manager, provider) -> None:
    handles = [await manager.async_ensure(req(scope="global"))]
    for scope in OWNED_SCOPES:
        handles.append(await manager.async_ensure(req(scope=scope, owner_id="o")))
    handles.append(await manager.async_ensure(req(owner_id="c")))
    assert set(SCOPES) == {h.scope for h in handles}
    assert len(provider.live) == len(SCOPES)
    await manager.async_release(handles[0])  # some leases released, others outstanding
    await manager.aclose()
    assert_clean(manager, provider)
    assert len(provider.released) == len(SCOPES)


@pytest.mark.anyio
async def test_async_with_manager(provider) -> None:
    async with ExecutionEnvironmentManager(providers={"memory": provider}) as mgr:
        await mgr.async_ensure(req(scope="global"))
        assert len(provider.live) == 1
    assert mgr.closed
    assert_clean(mgr, provider)


# -- the synchronous API ---------------------------------------------------------------
def test_sync_api_from_a_plain_thread(provider) -> None:
    mgr = ExecutionEnvironmentManager(providers={"memory": provider})
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            requirement = mgr.declare(req(scope="session", owner_id="s1"))
            first = mgr.ensure(requirement.id)
            second = mgr.ensure(requirement)
            outcome["same"] = first.id == second.id
            outcome["refs"] = mgr.inspect(first.id).ref_count
            outcome["released"] = [mgr.release(first), mgr.release(first), mgr.release(second)]
            outcome["scope"] = mgr.release_scope("session", "s1")
        except BaseException as exc:  # reported to the test thread below
            outcome["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome == {"same": True, "refs": 3, "released": [True, False, True], "scope": 1}
    assert_clean(mgr, provider)
    mgr.close()


def test_sync_context_manager_closes(provider) -> None:
    with ExecutionEnvironmentManager(providers={"memory": provider}) as mgr:
        handle = mgr.ensure(req(scope="global"))
        assert mgr.release(handle) is True
        assert len(provider.live) == 1
    assert mgr.closed
    assert_clean(mgr, provider)
    with pytest.raises(ManagerClosedError):
        mgr.ensure(req())


# -- the module facade -------------------------------------------------------------------
@pytest.fixture
def default_manager(monkeypatch, provider):
    mgr = ExecutionEnvironmentManager(providers={"memory": provider})
    monkeypatch.setattr(environments_module, "_default", mgr)
    yield mgr
    mgr.close()
    assert_clean(mgr, provider)


def test_module_facade_uses_the_default_manager(default_manager, provider) -> None:
    assert execution_environment.get_manager() is default_manager
    requirement = execution_environment.declare({"kind": "memory", "scope": "session",
                                                 "owner_id": "s1", "resource_key": "res"})
    assert provider.started == []
    assert execution_environment.inspect(requirement.id) == requirement
    handle = execution_environment.ensure(requirement.id)
    assert handle.status == "ready"
    assert [h.id for h in execution_environment.list()] == [handle.id]
    assert [h.id for h in execution_environment.list("session", owner_id="s1")] == [handle.id]
    assert execution_environment.list("session", owner_id="s2") == []
    assert execution_environment.inspect(handle.id).ref_count == 2
    assert execution_environment.release(handle) is True
    assert execution_environment.release(handle) is False
    assert len(provider.live) == 1
    assert execution_environment.release_scope("session", "s1") == 1
    assert execution_environment.list() == []
    assert_clean(default_manager, provider)


@pytest.mark.anyio
async def test_module_facade_async_forms(default_manager, provider) -> None:
    requirement = execution_environment.declare(req(scope="request", owner_id="r1"))
    handle = await execution_environment.async_ensure(requirement.id)
    assert await execution_environment.async_release(handle) is True
    assert await execution_environment.async_release_scope("request", "r1") == 1
    assert_clean(default_manager, provider)


def test_default_manager_is_replaced_once_closed(monkeypatch, provider) -> None:
    closed = ExecutionEnvironmentManager(providers={"memory": provider})
    anyio.run(closed.aclose)
    monkeypatch.setattr(environments_module, "_default", closed)
    registered: list[Any] = []
    monkeypatch.setattr("agently_core._sync.on_shutdown", registered.append)
    fresh = execution_environment.get_manager()
    assert fresh is not closed and not fresh.closed
    assert registered == [fresh.aclose]  # released at interpreter exit
    assert execution_environment.get_manager() is fresh
