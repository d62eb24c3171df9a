"""Durable executions (issue 4, point 4): an execution paused on a pending approval is
saved to its workspace; another process loads it (claiming its lease), ensures its
execution-scoped environments again and resumes it with ``async_continue_with``. Saved state is
redacted, writes are compare-and-set, a resume id resumes once across processes, and
``require_distributed_provider=True`` fails closed on a backend that lacks what
distribution needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import agently_core_function.plugin as function_plugin
import agently_core_runtime.plugin as runtime_plugin
import agently_core_workspace_local.plugin as local_plugin
import anyio
import pytest
from agently_core_runtime.flow import AgentlyActionFlow

from agently_core import create_agent
from agently_core.execution import (
    Execution,
    ExecutionBusy,
    ExecutionConflict,
    ExecutionNotFound,
    ExecutionStateError,
    saved_key,
)
from agently_core.models import FlowResult
from agently_core.testing import make_plugin_manager
from agently_core.testing.memory_provider import MemoryPlugin, MemoryProvider
from agently_core.workspace import CapabilityMissing, Workspace

ROOT = Path(__file__).resolve().parents[1]

# -- real processes ------------------------------------------------------------------------
WORKER = textwrap.dedent('''
    """One side of a durable execution: `pause` runs until an approval is pending and
    exits; `resume` loads the saved execution in this new process and continues it."""
    import json
    import os
    import sys
    import time
    from pathlib import Path

    import anyio
    import agently_core_function.plugin as function_plugin
    import agently_core_runtime.plugin as runtime_plugin
    import agently_core_workspace_local.plugin as local_plugin

    from agently_core import Workspace, create_agent, hookimpl
    from agently_core.execution import current_execution
    from agently_core.testing import TempdirProvider, make_plugin_manager

    HOME = Path(sys.argv[1])


    class TempdirPlugin:
        @hookimpl
        def register_execution_environment_providers(self, register):
            register("tempdir", TempdirProvider)


    def last_round(context, request):
        statuses = [r["status"] for r in context["last_round_records"]]
        return f"plans={len(context['done_plans'])} last={','.join(statuses)}"


    def build():
        plugins = make_plugin_manager(function_plugin, runtime_plugin, local_plugin,
                                      TempdirPlugin())
        agent = create_agent(plugins=plugins)
        agent.approval.set_default("fail_closed")

        @agent.action_func(approval_required=True)
        def danger(x: int) -> str:
            """Do something that needs a person's approval."""
            if (HOME / "block").exists():
                (HOME / "started").write_text(str(os.getpid()))
                while not (HOME / "go").exists():
                    time.sleep(0.02)
            workdir = current_execution.get().resources["workdir"]
            (workdir / "out.txt").write_text(str(x * 2))
            with open(HOME / "runs.txt", "a") as runs:
                runs.write(f"{os.getpid()} {x}\\n")
            return str(workdir)

        agent.use_actions(danger)
        agent.set_planner([[("danger", {"x": 21})], last_round])
        return agent


    def workspace():
        return Workspace("local", path=HOME / "ws", plugins=make_plugin_manager(local_plugin))


    async def pause():
        ws = workspace()
        agent = build()
        result = await agent.async_run(
            "go", workspace=ws,
            execution_environments=[{"kind": "tempdir", "resource_key": "workdir"}])
        execution = agent.last_execution
        out = {"execution_id": result.execution_id, "stop_reason": result.stop_reason,
               "workdir": str(execution.resources["workdir"]),
               "version": execution.state_version}
        await agent.aclose()      # lets go here; the saved execution stays paused
        await ws.aclose()
        print(json.dumps(out))


    async def resume(execution_id, decision, resume_id):
        ws = workspace()
        agent = build()
        try:
            execution = await agent.async_load_execution(execution_id, workspace=ws)
            loaded = {"state": execution.state, "paused": execution.paused,
                      "resources": sorted(execution.resources),
                      "workdir": str(execution.resources.get("workdir", ""))}
            result = await execution.async_continue_with(decision, resume_request_id=resume_id,
                                                         actor="alice")
        except Exception as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
            return
        finally:
            await agent.aclose()
            await ws.aclose()
        print(json.dumps({
            "loaded": loaded, "stop_reason": result.stop_reason, "response": result.response,
            "execution_id": result.execution_id,
            "records": [[r.action, r.status, r.error_type, r.result] for r in result.records],
            "workdir_after": Path(loaded["workdir"]).exists() if loaded["workdir"] else None,
        }))


    if sys.argv[2] == "pause":
        anyio.run(pause)
    else:
        anyio.run(resume, *sys.argv[3:6])
''')


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    return tmp_path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}


def worker(home: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(home / "worker.py"), str(home), *args],
                          capture_output=True, text=True, timeout=120, env=_env(), cwd=home)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def spawn(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(home / "worker.py"), str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=home)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def runs(home: Path) -> list[str]:
    path = home / "runs.txt"
    return path.read_text().splitlines() if path.exists() else []


def saved(home: Path, execution_id: str) -> tuple[int, dict[str, Any]]:
    async def read() -> Any:
        async with Workspace("local", path=home / "ws",
                             plugins=make_plugin_manager(local_plugin)) as ws:
            return await ws.read_snapshot(saved_key(execution_id)), await ws.read_lease(
                saved_key(execution_id))

    found, lease = anyio.run(read)
    assert lease is None  # nobody holds it once a process is done
    return found


def ledger(home: Path, execution_id: str) -> list[tuple[str, str, Any]]:
    """The resume ledger of a saved execution: (phase, resume_request_id, actor)."""

    async def read() -> Any:
        async with Workspace("local", path=home / "ws",
                             plugins=make_plugin_manager(local_plugin)) as ws:
            return await ws.query_runtime_events(execution_id, limit=1000)

    return [(e["payload"]["phase"], e["payload"]["resume_request_id"], e["payload"]["actor"])
            for e in anyio.run(read) if e["payload"].get("type", "").startswith(
                "execution.resume.")]


def test_a_new_process_resumes_an_approved_execution(home: Path) -> None:
    paused = worker(home, "pause")
    assert paused["stop_reason"] == "approval_required" and paused["version"] == 1
    assert not Path(paused["workdir"]).exists()  # the first process released its environment
    version, document = saved(home, paused["execution_id"])
    assert version == 1 and document["paused"] and document["state"] == "sealed"
    assert [p["subject"] for p in document["pending"]] == ["danger"]
    assert runs(home) == []

    out = worker(home, "resume", paused["execution_id"], "approved", "ticket-7")
    # loaded with the same id, its execution-scoped environment ensured again (a new one)
    assert out["loaded"]["state"] == "sealed" and out["loaded"]["paused"]
    assert out["loaded"]["resources"] == ["workdir"]
    assert out["loaded"]["workdir"] != paused["workdir"]
    assert out["execution_id"] == paused["execution_id"]
    assert out["stop_reason"] == "response"
    # planning went on with the restored history: round 0's two records, then the run
    assert out["response"] == "plans=2 last=success"
    assert out["records"] == [["danger", "approval_required", "ApprovalRequired", None],
                              ["danger", "success", None, out["loaded"]["workdir"]]]
    assert out["workdir_after"] is False  # released when the execution closed
    assert len(runs(home)) == 1  # the action ran exactly once, in the second process
    assert runs(home)[0].endswith(" 21")

    version, document = saved(home, paused["execution_id"])
    assert version == 2 and document["state"] == "closed" and not document["paused"]
    assert [d["decision"] for d in document["decisions"]] == ["approved"]
    assert document["decisions"][0]["actor"] == "alice"
    assert [r["id"] for r in document["resumed"]] == ["ticket-7"]
    assert document["result"]["response"] == "plans=2 last=success"
    assert document["resume"] is None
    # the resuming process wrote the resume ledger into the shared workspace
    assert ledger(home, paused["execution_id"]) == [
        ("accepted", "ticket-7", "alice"), ("dispatched", "ticket-7", "alice"),
        ("completed", "ticket-7", "alice")]

    # the same resume id again, from yet another process: the first result, nothing runs
    again = worker(home, "resume", paused["execution_id"], "denied", "ticket-7")
    assert again["records"] == out["records"] and again["loaded"]["state"] == "closed"
    # another resume id: the execution is closed
    closed = worker(home, "resume", paused["execution_id"], "approved", "ticket-8")
    assert closed["error"] == "ExecutionStateError" and "closed" in closed["message"]
    assert len(runs(home)) == 1
    assert saved(home, paused["execution_id"])[0] == 2
    assert [phase for phase, _, _ in ledger(home, paused["execution_id"])] == [
        "accepted", "dispatched", "completed"]  # neither the repeat nor the refusal wrote


def test_a_new_process_resumes_a_denied_execution(home: Path) -> None:
    paused = worker(home, "pause")
    out = worker(home, "resume", paused["execution_id"], "denied", "r1")
    assert out["stop_reason"] == "response"
    assert [r[:3] for r in out["records"]] == [
        ["danger", "approval_required", "ApprovalRequired"],
        ["danger", "blocked", "ApprovalDenied"]]
    assert out["response"] == "plans=2 last=blocked"
    assert runs(home) == []
    _, document = saved(home, paused["execution_id"])
    assert document["state"] == "closed" and document["decisions"][0]["decision"] == "denied"


def test_two_processes_cannot_resume_one_execution(home: Path) -> None:
    paused = worker(home, "pause")
    (home / "block").write_text("")
    first = spawn(home, "resume", paused["execution_id"], "approved", "alice-1")
    deadline = time.monotonic() + 60
    while not (home / "started").exists():  # the first is inside the approved action
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    second = worker(home, "resume", paused["execution_id"], "approved", "bob-1")
    assert second["error"] == "ExecutionBusy"
    assert "another process" in second["message"]
    (home / "go").write_text("")
    won = finish(first)
    assert won["stop_reason"] == "response"
    late = worker(home, "resume", paused["execution_id"], "approved", "bob-1")
    assert late["error"] == "ExecutionStateError"  # closed by then
    assert len(runs(home)) == 1


def test_racing_processes_resume_once(home: Path) -> None:
    paused = worker(home, "pause")
    procs = [spawn(home, "resume", paused["execution_id"], "approved", f"r{n}")
             for n in range(3)]
    outcomes = [finish(proc) for proc in procs]
    winners = [o for o in outcomes if "stop_reason" in o]
    losers = [o for o in outcomes if "error" in o]
    assert len(winners) == 1 and winners[0]["stop_reason"] == "response"
    assert all(o["error"] in ("ExecutionBusy", "ExecutionStateError", "ExecutionConflict")
               for o in losers)
    assert len(runs(home)) == 1
    recorded = ledger(home, paused["execution_id"])  # only the winner was accepted
    assert [phase for phase, _, _ in recorded] == ["accepted", "dispatched", "completed"]
    assert len({request for _, request, _ in recorded}) == 1


# -- in one process: two agents on one workspace ------------------------------------------
SECRET = "hunter2-secret-value"




@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


class Side:
    """One 'process': an agent with the same actions and planner as every other side."""

    def __init__(self, provider: MemoryProvider, calls: list[Any], steps: list[Any]) -> None:
        plugins = make_plugin_manager(function_plugin, runtime_plugin, local_plugin,
                                      MemoryPlugin(provider))
        self.agent = agent = create_agent(plugins=plugins)
        agent.approval.set_default("fail_closed")
        agent.add_secrets(SECRET)

        @agent.action_func(approval_required=True)
        async def danger(x: int, password: str = "", delay: float = 0.0) -> int:
            """Do something that needs a person's approval."""
            if delay:
                await anyio.sleep(delay)
            calls.append(x)
            return x * 2

        agent.use_actions(danger)
        agent.set_planner(steps, response="ok")


@pytest.fixture
def sides(provider: MemoryProvider):
    calls: list[Any] = []
    made: list[Side] = []

    def make(steps: list[Any] | None = None) -> Side:
        side = Side(provider, calls, steps or [[("danger", {"x": 21})]])
        made.append(side)
        return side

    make.calls = calls  # type: ignore[attr-defined]
    yield make
    for side in made:
        side.agent.close()
    assert provider.live == [] and provider.double_releases == []


@pytest.fixture
async def ws():
    workspace = Workspace("memory")
    yield workspace
    await workspace.aclose()


def memory_env(**fields: Any) -> dict[str, Any]:
    return {"kind": "memory", "resource_key": "res", **fields}


@pytest.mark.anyio
async def test_an_unknown_execution_is_a_clear_error(sides, ws) -> None:
    with pytest.raises(ExecutionNotFound, match="no saved execution 'exec_nope'"):
        await sides().agent.async_load_execution("exec_nope", workspace=ws)
    with pytest.raises(Exception, match="no workspace"):
        await sides().agent.async_load_execution("exec_nope")


@pytest.mark.anyio
async def test_in_process_resume_of_a_durable_execution_saves_it(sides, ws, provider) -> None:
    side = sides()
    result = await side.agent.async_run("go", workspace=ws,
                                        execution_environments=[memory_env()])
    execution = side.agent.last_execution
    assert execution.state_version == 1 and len(provider.live) == 1
    out = await execution.async_continue_with("approved", resume_request_id="r1")
    assert out.stop_reason == "response" and sides.calls == [21]
    assert execution.state_version == 2 and provider.live == []
    version, document = await ws.read_snapshot(saved_key(result.execution_id))
    assert version == 2 and document["state"] == "closed"
    assert await ws.read_lease(saved_key(result.execution_id)) is None
    assert await execution.async_continue_with("denied", resume_request_id="r1") is out


@pytest.mark.anyio
async def test_a_loaded_execution_holds_its_lease(sides, ws, provider) -> None:
    result = await sides().agent.async_run("go", workspace=ws,
                                           execution_environments=[memory_env()])
    first = await sides().agent.async_load_execution(result.execution_id, workspace=ws)
    with pytest.raises(ExecutionBusy, match="held by"):
        await sides().agent.async_load_execution(result.execution_id, workspace=ws)
    await first.async_close()  # lets go without resuming: the saved execution stays paused
    second_side = sides()
    second = await second_side.agent.async_load_execution(result.execution_id, workspace=ws)
    assert second.paused and second.state_version == 1
    out = await second.async_continue_with("approved", resume_request_id="r1")
    assert out.records[-1].result == 42 and sides.calls == [21]
    assert second_side.agent.last_run is out


@pytest.mark.anyio
async def test_a_stale_copy_conflicts_and_runs_nothing(sides, ws) -> None:
    original = sides()
    result = await original.agent.async_run("go", workspace=ws)
    stale = original.agent.last_execution
    loaded = await sides().agent.async_load_execution(result.execution_id, workspace=ws)
    out = await loaded.async_continue_with("approved", resume_request_id="r1")
    assert sides.calls == [21]
    with pytest.raises(ExecutionConflict, match=r"changed by another process.*load it again"):
        await stale.async_continue_with("approved", resume_request_id="r2")
    # a repeat of the id the other process used returns its result
    repeated = await stale.async_continue_with("approved", resume_request_id="r1")
    assert isinstance(repeated, FlowResult) and repeated.records == out.records
    assert sides.calls == [21]
    assert stale.paused  # nothing changed here


@pytest.mark.anyio
async def test_a_write_behind_the_back_is_a_conflict(sides, ws) -> None:
    result = await sides().agent.async_run("go", workspace=ws)
    loaded = await sides().agent.async_load_execution(result.execution_id, workspace=ws)
    key = saved_key(result.execution_id)
    version, document = await ws.read_snapshot(key)
    await ws.put_snapshot(key, document, expected_state_version=version)
    with pytest.raises(ExecutionConflict, match="state version 2, this copy knows 1"):
        await loaded.async_continue_with("approved", resume_request_id="r1")
    assert sides.calls == []
    assert await ws.read_lease(key) is None
    # and the save itself is a compare-and-set
    loaded.state_version = 1
    loaded.pending = []
    with pytest.raises(ExecutionConflict):
        await loaded.save()


@pytest.mark.anyio
async def test_secrets_are_not_saved(sides, ws) -> None:
    steps = [[("danger", {"x": 1, "password": "pw-123456"}), ("danger", {"x": 2})],
             lambda context, request: f"seen {SECRET}"]
    env = memory_env(config={"env": {"API_TOKEN": "tok-abcdef123"}, "region": "eu"})
    result = await sides(steps).agent.async_run(f"use {SECRET}", workspace=ws,
                                                execution_environments=[env])
    _, document = await ws.read_snapshot(saved_key(result.execution_id))
    text = json.dumps(document)
    for secret in (SECRET, "pw-123456", "tok-abcdef123"):
        assert secret not in text
    assert "***" in text and '"region": "eu"' in text
    assert document["environments"][0]["redacted"] is True
    waiting = document["resume"]["flow_state"]["waiting"]
    assert [w["arguments_saved"] for w in waiting] == [False, True]

    # the environment's secrets must be given again
    with pytest.raises(ExecutionStateError, match=r"held secrets.*execution_environments"):
        await sides(steps).agent.async_load_execution(result.execution_id, workspace=ws)
    with pytest.raises(ExecutionStateError, match="no environment 'other'"):
        await sides(steps).agent.async_load_execution(
            result.execution_id, workspace=ws,
            execution_environments=[env, memory_env(resource_key="other")])
    side = sides(steps)
    loaded = await side.agent.async_load_execution(result.execution_id, workspace=ws,
                                                   execution_environments=[env])
    assert loaded.requirements[0].config["env"]["API_TOKEN"] == "tok-abcdef123"
    out = await loaded.async_continue_with("approved", resume_request_id="r1")
    # the call whose arguments held a secret does not run with masked arguments
    assert [(r.status, r.error_type) for r in out.records[2:]] == [
        ("failed", "ArgumentsNotSaved"), ("success", None)]
    assert sides.calls == [2]
    _, document = await ws.read_snapshot(saved_key(result.execution_id))
    assert SECRET not in json.dumps(document) and document["state"] == "closed"


@pytest.mark.anyio
async def test_an_execution_paused_while_starting_resumes_elsewhere(sides, ws,
                                                                    provider) -> None:
    result = await sides().agent.async_run(
        "go", workspace=ws, execution_environments=[memory_env(approval_required=True)])
    assert result.stop_reason == "approval_required" and provider.live == []
    _, document = await ws.read_snapshot(saved_key(result.execution_id))
    assert document["state"] == "open" and document["resume"]["kind"] == "start"
    side = sides()
    loaded = await side.agent.async_load_execution(result.execution_id, workspace=ws)
    assert loaded.resources == {} and [p.subject_type for p in loaded.pending] == [
        "environment"]
    out = await loaded.async_continue_with("approved", resume_request_id="env-ok")
    # the environment started, then the flow ran and paused on the action
    assert out.stop_reason == "approval_required" and len(provider.live) == 1
    version, document = await ws.read_snapshot(saved_key(result.execution_id))
    assert version == 2 and document["resume"]["kind"] == "flow"
    assert document["granted"] == [loaded.requirements[0].id]
    await side.agent.aclose()  # this process goes away; the execution stays paused
    assert provider.live == []
    last = await sides().agent.async_load_execution(result.execution_id, workspace=ws)
    assert len(provider.live) == 1  # granted before: ensured again without asking
    out = await last.async_continue_with("approved", resume_request_id="action-ok")
    assert out.stop_reason == "response" and sides.calls == [21]


@pytest.mark.anyio
async def test_the_lease_is_heartbeaten_while_a_resume_runs(sides, ws) -> None:
    side = sides([[("danger", {"x": 5, "delay": 1.5})]])
    result = await side.agent.async_run("go", workspace=ws)
    loaded = await sides().agent.async_load_execution(result.execution_id, workspace=ws,
                                                      lease_ttl=0.5)
    seen: list[Any] = []

    async def intruder() -> None:
        await anyio.sleep(1.0)  # past the first TTL: only a heartbeat keeps it held
        seen.append(await ws.claim_lease(saved_key(result.execution_id), owner="intruder"))

    async with anyio.create_task_group() as group:
        group.start_soon(intruder)
        out = await loaded.async_continue_with("approved", resume_request_id="r1")
    assert seen == [None] and out.records[-1].result == 10


@pytest.mark.anyio
async def test_require_distributed_provider_fails_closed(sides, ws, tmp_path) -> None:
    agent = sides().agent
    with pytest.raises(CapabilityMissing, match="require_distributed_provider"):
        agent.create_execution(workspace=ws, require_distributed_provider=True)
    with pytest.raises(CapabilityMissing, match="durable, multi_process"):
        await agent.async_load_execution("exec_x", workspace=ws,
                                         require_distributed_provider=True)
    minimal = Workspace(_Minimal())
    with pytest.raises(CapabilityMissing, match="leases"):
        agent.create_execution(workspace=minimal)
    with pytest.raises(TypeError, match="Workspace"):
        agent.create_execution(workspace="memory")
    local = Workspace("local", path=tmp_path / "ws", plugins=make_plugin_manager(local_plugin))
    try:
        execution = agent.create_execution(workspace=local, require_distributed_provider=True)
        result = await agent.async_run("go", execution=execution)
        assert result.stop_reason == "approval_required" and execution.state_version == 1
        other = sides()
        loaded = await other.agent.async_load_execution(
            result.execution_id, workspace=local, require_distributed_provider=True)
        out = await loaded.async_continue_with(True, resume_request_id="r1")
        assert out.stop_reason == "response" and sides.calls == [21]
    finally:
        await local.aclose()


def _Minimal() -> Any:
    from agently_core.testing import MemoryWorkspaceBackend
    from agently_core.workspace import REQUIRED_CAPABILITIES

    class Minimal(MemoryWorkspaceBackend):
        def capabilities(self) -> frozenset[str]:
            return REQUIRED_CAPABILITIES

    return Minimal()


@pytest.mark.anyio
async def test_run_in_a_given_execution(sides, ws) -> None:
    agent = sides().agent
    execution = agent.create_execution(workspace=ws)
    with pytest.raises(TypeError, match="create_execution"):
        await agent.async_run("go", execution=execution, workspace=ws)
    result = await agent.async_run("go", execution=execution)
    assert result.execution_id == execution.id and agent.last_execution is execution
    with pytest.raises(Exception, match="not a new, open execution"):
        await agent.async_run("go", execution=execution)
    with pytest.raises(Exception, match="not a new, open execution"):
        await agent.async_run("go", execution=sides().agent.create_execution())


@pytest.mark.anyio
async def test_without_a_workspace_nothing_changes(sides) -> None:
    side = sides()
    result = await side.agent.async_run("go")
    execution = side.agent.last_execution
    assert execution.workspace is None and execution.state_version == 0
    with pytest.raises(ExecutionStateError, match="no workspace"):
        await execution.save()
    out = await execution.async_continue_with("approved", resume_request_id="r1")
    assert out.stop_reason == "response" and result.stop_reason == "approval_required"


@pytest.mark.anyio
async def test_a_flow_that_cannot_export_cannot_be_loaded(sides, ws) -> None:
    class Opaque(AgentlyActionFlow):
        def export_state(self, run: Any, **options: Any) -> None:
            return None

    side = sides()
    side.agent._flow = Opaque()
    result = await side.agent.async_run("go", workspace=ws)
    assert side.agent.last_execution.state_version == 1
    with pytest.raises(ExecutionStateError, match="cannot export and restore"):
        await sides().agent.async_load_execution(result.execution_id, workspace=ws)
    # the failed load let go of the lease
    assert await ws.read_lease(saved_key(result.execution_id)) is None


def test_the_flow_state_round_trips() -> None:
    """export_state is JSON; resume_from refuses a state of another format version."""
    flow = AgentlyActionFlow()

    class Run:
        flow_state = None

    assert flow.export_state(Run()) is None
    with pytest.raises(ValueError, match="version"):
        anyio.run(flow.resume_from, Run(), {"version": 99}, None)


def test_execution_load_is_public() -> None:
    assert callable(Execution.load) and callable(Execution.save)


@pytest.mark.anyio
async def test_a_resume_whose_state_cannot_be_saved_is_recorded_as_dispatch_failed(
        sides, ws) -> None:
    """The resumed work ran, but another process wrote the saved execution meanwhile: the
    save conflicts, and the ledger says the dispatch failed (and why) instead of
    completed."""
    result = await sides().agent.async_run("go", workspace=ws)
    loaded = await sides().agent.async_load_execution(result.execution_id, workspace=ws)
    key = saved_key(result.execution_id)
    resume = loaded._resume

    async def behind_the_back(decision: Any) -> Any:
        out = await resume(decision)
        version, document = await ws.read_snapshot(key)
        await ws.put_snapshot(key, document, expected_state_version=version)
        return out

    loaded.suspend(loaded.pending, behind_the_back)
    with pytest.raises(ExecutionConflict):
        await loaded.async_continue_with("approved", resume_request_id="r1", actor="carol")
    events = await ws.query_runtime_events(result.execution_id)
    assert [(e["payload"]["phase"], e["payload"]["actor"]) for e in events] == [
        ("accepted", "carol"), ("dispatched", "carol"), ("dispatch_failed", "carol")]
    assert "could not be saved" in events[-1]["payload"]["error"]
    assert await ws.read_lease(key) is None
