"""The Workspace facade: entry points, named providers, capabilities, read-only mode, and
what it adds on top of a backend (leases by Lease, evidence, checkpoints, events)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import agently_core_function.plugin as function_plugin
import agently_core_runtime.plugin as runtime_plugin
import anyio
import pytest

import agently_core
from agently_core.config import Config
from agently_core.hookspecs import hookimpl
from agently_core.testing import MemoryWorkspaceBackend, make_agent, make_plugin_manager
from agently_core.workspace import (
    EVIDENCE,
    LEASES,
    CapabilityMissing,
    LeaseLost,
    ReadOnlyError,
    VersionConflict,
    Workspace,
    WorkspaceClosedError,
    WorkspaceError,
    create_workspace,
    default_owner,
    register_backend_provider,
    unregister_backend_provider,
)


class MinimalBackend(MemoryWorkspaceBackend):
    """Only the required capabilities, as a third-party backend might offer."""

    name = "minimal"

    def capabilities(self) -> frozenset[str]:
        return agently_core.workspace.REQUIRED_CAPABILITIES


class BackendPlugin:
    @hookimpl
    def register_workspace_backends(self, register: Any) -> None:
        register("minimal", MinimalBackend)


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def test_public_entry_points() -> None:
    assert agently_core.Workspace is Workspace
    assert agently_core.create_workspace is create_workspace
    ws = agently_core.create_workspace("memory")
    assert isinstance(ws, Workspace) and ws.backend_name == "memory"
    assert repr(ws) == "<Workspace 'memory'>"
    ws.close()


def test_importing_the_core_or_the_plugin_loads_no_sqlite() -> None:
    code = ("import sys, agently_core, agently_core.workspace, agently_core_workspace_local."
            "plugin; agently_core.Workspace; print('sqlite3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_named_backends_from_plugins_and_from_code(tmp_path) -> None:
    pm = make_plugin_manager(BackendPlugin())
    ws = Workspace("minimal", plugins=pm)
    assert isinstance(ws.backend, MinimalBackend)
    with pytest.raises(agently_core.NotInstalledError, match="not installed"):
        Workspace("absent", plugins=pm)

    made: list[dict[str, Any]] = []

    def factory(**options: Any) -> MemoryWorkspaceBackend:
        made.append(options)
        return MemoryWorkspaceBackend()

    register_backend_provider("in-code", factory)
    try:
        with pytest.raises(WorkspaceError, match="already registered"):
            register_backend_provider("in-code", factory)
        Workspace("in-code", plugins=pm, read_only=True)
        assert made == [{"read_only": True}]
        register_backend_provider("minimal", "agently_core.testing:MemoryWorkspaceBackend",
                                  replace=True)
        assert type(Workspace("minimal", plugins=pm).backend) is MemoryWorkspaceBackend
    finally:
        unregister_backend_provider("in-code")
        unregister_backend_provider("minimal")
    with pytest.raises(WorkspaceError, match="callable"):
        register_backend_provider("bad", 42)  # type: ignore[arg-type]


def test_the_default_backend_is_configured_or_local(tmp_path) -> None:
    configured = make_plugin_manager(BackendPlugin(),
                                     config=Config(workspace_backend="minimal"))
    assert isinstance(Workspace(plugins=configured).backend, MinimalBackend)
    import agently_core_workspace_local.plugin as local_plugin

    both = make_plugin_manager(BackendPlugin(), local_plugin)
    ws = Workspace(plugins=both, path=tmp_path / "ws")
    assert ws.backend.name == "local" and ws.files_root == tmp_path / "ws" / "files"
    ws.close()
    with pytest.raises(WorkspaceError, match="path="):
        Workspace("local", plugins=both)


def test_backend_options_are_checked() -> None:
    with pytest.raises(WorkspaceError, match="no options"):
        Workspace("memory", colour="blue")
    with pytest.raises(WorkspaceError, match="named backend"):
        Workspace(MemoryWorkspaceBackend(), colour="blue")


def test_required_capabilities_fail_closed(tmp_path) -> None:
    with pytest.raises(CapabilityMissing, match="require_distributed_provider"):
        Workspace("memory", require_distributed_provider=True)
    with pytest.raises(CapabilityMissing, match="durable"):
        Workspace("memory", require=["durable"])
    import agently_core_workspace_local.plugin as local_plugin

    ws = Workspace("local", path=tmp_path / "ws", plugins=make_plugin_manager(local_plugin),
                   require_distributed_provider=True)
    assert ws.supports(LEASES) and ws.require(LEASES) is ws
    ws.close()


def test_a_minimal_backend_says_what_it_lacks() -> None:
    async def main() -> None:
        ws = Workspace(MinimalBackend())
        await ws.put_record("c", "k", {"v": 1})
        for attempt in (lambda: ws.search("x"), lambda: ws.link(("a", "b"), ("c", "d")),
                        lambda: ws.claim_lease("l"), lambda: ws.put_artifact_ref(b"x"),
                        lambda: ws.query_runtime_events("e", before=3), lambda: ws.checkpoint("s", "l"),
                        lambda: ws.prune_events("e", through=1)):
            with pytest.raises(CapabilityMissing, match="capability"):
                await attempt()
        with pytest.raises(CapabilityMissing):
            ws.require(LEASES)
        await ws.aclose()

    run(main)


def test_read_only_facade_refuses_every_write_and_keeps_reading() -> None:
    async def main() -> None:
        backend = MemoryWorkspaceBackend()
        await backend.put_record("c", "k", {"v": 1})
        lease = await backend.claim_lease("l", "me", 30.0)
        ws = Workspace(backend, read_only=True)
        writes = [lambda: ws.put_record("c", "k", {"v": 2}),
                  lambda: ws.put_snapshot("s", {}), lambda: ws.append_runtime_event("e", "1", {}),
                  lambda: ws.link(("a", "b"), ("c", "d")), lambda: ws.checkpoint("s", "x"),
                  lambda: ws.claim_lease("other"), lambda: ws.heartbeat_lease(lease),
                  lambda: ws.release_lease(lease), lambda: ws.put_artifact_ref(b"x"),
                  lambda: ws.prune_events("e", through=1),
                  lambda: ws.link_evidence(("a", "b"), ("c", "d"))]
        for write in writes:
            with pytest.raises(ReadOnlyError):
                await write()
        assert await ws.get_record("c", "k") == {"v": 1}
        assert (await ws.read_lease("l")).owner == "me"
        assert repr(ws) == "<Workspace 'memory' read-only>"
        named = Workspace("memory", read_only=True)
        assert named.backend.read_only is True
        with pytest.raises(ReadOnlyError):
            await named.backend.put_record("c", "k", {})

    run(main)


def test_leases_evidence_checkpoints_artifacts_through_the_facade() -> None:
    async def main() -> None:
        async with Workspace("memory") as ws:
            lease = await ws.claim_lease("job", ttl=5)
            assert lease.owner == default_owner() and lease.ttl == 5.0
            assert await ws.claim_lease("job", owner="other") is None
            longer = await ws.heartbeat_lease(lease, ttl=10)
            assert longer.ttl == 10.0
            assert await ws.release_lease(longer) is True
            with pytest.raises(LeaseLost):
                await ws.heartbeat_lease(lease)
            with pytest.raises(WorkspaceError, match="ttl"):
                await ws.claim_lease("job", ttl=0)

            await ws.link_evidence(("claims", "c1"), ("papers", "p1"), quote="it holds",
                                  locator="p. 3", confidence="high")
            evidence = await ws.evidence(("claims", "c1"))
            assert evidence == [{"source": ("claims", "c1"), "target": ("papers", "p1"),
                                 "relation": EVIDENCE, "data": {
                                     "quote": "it holds", "locator": "p. 3",
                                     "confidence": "high"}}]
            with pytest.raises(WorkspaceError, match="ref"):
                await ws.link("claims/c1", ("papers", "p1"))  # type: ignore[arg-type]
            with pytest.raises(WorkspaceError, match="direction"):
                await ws.links(("claims", "c1"), direction="sideways")

            first = await ws.put_snapshot("plan", {"step": 1})
            await ws.checkpoint("plan", "start")
            second = await ws.put_snapshot("plan", {"step": 2}, expected_state_version=first)
            restored = await ws.restore_checkpoint("plan", "start",
                                                   expected_state_version=second)
            assert await ws.read_snapshot("plan") == (restored, {"step": 1})
            assert restored > second  # versions only go up
            with pytest.raises(VersionConflict):
                await ws.restore_checkpoint("plan", "start", expected_state_version=second)
            with pytest.raises(WorkspaceError, match="no checkpoint"):
                await ws.restore_checkpoint("plan", "missing")
            assert [c["label"] for c in await ws.checkpoints("plan")] == ["start"]

            ref = await ws.put_artifact_ref(b"large payload", media_type="text/plain")
            await ws.put_record("results", "r1", {"payload": ref})
            stored = await ws.get_record("results", "r1")
            assert await ws.read_artifact(stored["payload"]) == b"large payload"
            with pytest.raises(WorkspaceError, match="bytes"):
                await ws.put_artifact_ref("text")  # type: ignore[arg-type]

            for i in range(5):
                await ws.append_runtime_event("x", f"e{i}", {"i": i})
            assert [e["sequence"] for e in await ws.query_runtime_events("x", after=1, before=4)] == [
                2, 3]
            assert await ws.prune_events("x", through=2) == 2
            assert (await ws.search("nothing")) == []
        with pytest.raises(WorkspaceClosedError):
            await ws.get_record("c", "k")

    run(main)


def test_agent_use_workspace_and_event_recording(tmp_path) -> None:
    pm = make_plugin_manager(function_plugin, runtime_plugin)
    agent = make_agent(pm)
    assert agent.workspace is None

    @agent.action_func
    def double(x: int) -> int:
        return 2 * x

    agent.use_actions(double)
    agent.set_planner([[("double", {"x": 21})], {"response": "42"}])
    assert agent.use_workspace(provider="memory", record_events=True) is agent
    ws = agent.workspace
    assert isinstance(ws, Workspace) and ws.backend_name == "memory"
    result = agent.run("double 21")
    assert result.stop_reason == "response"

    async def events() -> list[dict[str, Any]]:
        return await ws.query_runtime_events(result.execution_id, limit=1000)

    from agently_core._sync import run_sync

    recorded = run_sync(events)
    types = [e["payload"]["type"] for e in recorded]
    assert any(t.startswith("action.") for t in types), types
    assert [e["sequence"] for e in recorded] == list(range(1, len(recorded) + 1))
    assert all(e["event_id"] == e["payload"]["id"] for e in recorded)
    with pytest.raises(WorkspaceError, match="already made"):
        agent.use_workspace(ws, provider="local")
    with pytest.raises(ReadOnlyError):
        agent.use_workspace(Workspace("memory", read_only=True), record_events=True)
    assert agent.workspace is ws  # a refused switch changes nothing
    agent.use_workspace(Workspace("memory"))  # replacing it stops the old recording
    agent.run("again")
    assert len(run_sync(events)) == len(recorded)
    agent.close()


# -- the reference's names (issue 12) ------------------------------------------------------
def test_the_facade_speaks_the_reference_names() -> None:
    for name in ("put_snapshot", "link_evidence", "append_runtime_event",
                 "query_runtime_events", "put_artifact_ref", "latest_checkpoint", "get_data",
                 "ref_envelope", "read_envelope"):
        assert callable(getattr(Workspace, name)), name
    for old in ("write_snapshot", "add_evidence", "append_event", "read_events",
                "put_artifact"):  # one name per concept on the facade
        assert not hasattr(Workspace, old), old


def test_agently_workspace_register_backend_provider_with_use_workspace(tmp_path) -> None:
    code = ("import agently_core as Agently; "
            "print(callable(Agently.workspace.register_backend_provider))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "True"  # reachable without importing the submodule first

    calls: list[tuple[Any, dict[str, Any]]] = []

    def factory(root: Any, **options: Any) -> MemoryWorkspaceBackend:
        calls.append((root, options))
        return MemoryWorkspaceBackend()

    agently_core.workspace.register_backend_provider("team-store", factory)
    try:
        agent = make_agent(make_plugin_manager())
        assert agent.use_workspace(tmp_path / "team", provider="team-store",
                                   provider_options={"region": "eu", "pool": 3}) is agent
        assert calls == [(tmp_path / "team", {"region": "eu", "pool": 3})]
        assert isinstance(agent.workspace.backend, MemoryWorkspaceBackend)
        assert agent.workspace.backend_name == "team-store"
        run(agent.workspace.put_snapshot, "s", {"v": 1})
        agent.workspace.close()
        agent.use_workspace("dsn-or-root", provider="team-store", read_only=True)
        assert calls[-1] == ("dsn-or-root", {"read_only": True})
        assert agent.workspace.read_only
        agent.workspace.close()
        agent.close()
    finally:
        agently_core.workspace.unregister_backend_provider("team-store")


def test_use_workspace_root_default_provider_and_bad_arguments(tmp_path) -> None:
    import agently_core_workspace_local.plugin as local_plugin

    agent = make_agent(make_plugin_manager(local_plugin))
    agent.use_workspace(tmp_path / "ws")  # a root: the default (local) backend there
    assert agent.workspace.backend_name is None and agent.workspace.backend.name == "local"
    assert agent.workspace.files_root == tmp_path / "ws" / "files"
    agent.workspace.close()
    agent.use_workspace(provider="memory")
    assert agent.workspace.backend_name == "memory"
    shared = agent.workspace
    other = make_agent(make_plugin_manager(local_plugin)).use_workspace(shared)
    assert other.workspace is shared  # a shared instance, as it is
    with pytest.raises(WorkspaceError, match="provider='memory'"):
        agent.use_workspace("memory")  # a string is the root, never a backend name
    with pytest.raises(WorkspaceError, match="provider_options must be a mapping"):
        agent.use_workspace(tmp_path, provider="memory", provider_options=["x"])
    with pytest.raises(WorkspaceError, match="provider must be"):
        agent.use_workspace(tmp_path, provider="")
    with pytest.raises(WorkspaceError, match="refused its options"):
        agent.use_workspace(tmp_path, provider="memory")  # memory takes no root
    with pytest.raises(WorkspaceError, match="read-only"):
        agent.use_workspace(shared, read_only=True)
    with pytest.raises(WorkspaceError, match="a path or a string"):
        Workspace("memory", root=42)
    direct = MemoryWorkspaceBackend()
    agent.use_workspace(direct, read_only=True)
    assert agent.workspace.backend is direct and agent.workspace.read_only
    assert agent.workspace is not shared
    shared.close()
    agent.close()
