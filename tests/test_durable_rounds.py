"""Durable executions saved every round (issue 15: a loop interrupted by a lost node
resumes elsewhere). With ``save_rounds=True`` a run holds its execution's lease, is saved
(redacted, compare-and-set) after every round it goes on past and when it ends; another
process loads it and continues the loop from the next round with
``execution.async_continue_run()``: the planner is not asked again for the rounds done and
their actions do not run again. Two continuers never both run: the lease refuses the
second, compare-and-set stops a stale copy.
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
    RUNNING,
    ExecutionBusy,
    ExecutionConflict,
    ExecutionStateError,
    saved_key,
)
from agently_core.models import FlowResult
from agently_core.testing import make_plugin_manager
from agently_core.testing.memory_provider import MemoryPlugin, MemoryProvider
from agently_core.workspace import Workspace, WorkspaceError

SECRET = "hunter2-secret-value"


class Crash(BaseException):
    """Stands for the process dying mid-round: nothing in the loop handles it."""




class Side:
    """One 'process': an agent with the same actions and planner script as every other.
    ``script[i]`` is round i's step; ``"crash"`` raises :class:`Crash` in that round (only
    on a side made with ``crash=True``)."""

    def __init__(self, provider: MemoryProvider, log: dict[str, list[Any]],
                 script: list[Any], *, crash: bool, ws: Any = None) -> None:
        plugins = make_plugin_manager(function_plugin, runtime_plugin, local_plugin,
                                      MemoryPlugin(provider))
        self.agent = agent = create_agent(plugins=plugins)
        agent.approval.set_default("fail_closed")
        agent.add_secrets(SECRET)

        @agent.action_func
        async def step(x: int, password: str = "", delay: float = 0.0) -> int:
            """A step with a side effect."""
            if delay:
                await anyio.sleep(delay)
            log["ran"].append(x)
            return x * 2

        @agent.action_func
        async def probe() -> str:
            """Read the saved execution while the loop runs."""
            execution = agent.last_execution
            key = saved_key(execution.id)
            found = await ws.read_snapshot(key)
            lease = await ws.read_lease(key)
            log["probed"].append((found[0], found[1]["saved_round"]) if found else (0, None))
            log["probed"][-1] += (lease is not None,)
            return "probed"

        @agent.action_func(approval_required=True)
        def gated(x: int) -> int:
            """Needs a person's approval."""
            log["ran"].append(("gated", x))
            return x

        agent.use_actions([step, probe, gated])

        def planned(index: int, item: Any) -> Any:
            def plan(context: Any, request: Any) -> Any:
                log["asked"].append(index)
                if item == "crash" and crash:
                    raise Crash(f"the process died in round {index}")
                if item == "crash":
                    return [("step", {"x": 100 + index})]
                return item(context, request) if callable(item) else item
            return plan

        agent.set_planner([planned(i, item) for i, item in enumerate(script)],
                          response="all done")


def history(context: Any, request: Any) -> str:
    return f"done={len(context['done_plans'])} history={len(context['history'])}"


SCRIPT = [[("step", {"x": 1})], [("step", {"x": 2})], "crash", history]


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
async def ws():
    workspace = Workspace("memory")
    yield workspace
    await workspace.aclose()


@pytest.fixture
def sides(provider: MemoryProvider, ws: Any):
    log: dict[str, list[Any]] = {"ran": [], "asked": [], "probed": []}
    made: list[Side] = []

    def make(script: list[Any] | None = None, *, crash: bool = False) -> Side:
        side = Side(provider, log, SCRIPT if script is None else script, crash=crash, ws=ws)
        made.append(side)
        return side

    make.log = log  # type: ignore[attr-defined]
    yield make
    for side in made:
        side.agent.close()
    assert provider.live == [] and provider.double_releases == []


async def crashed(side: Side, ws: Any, request: Any = "go", **options: Any) -> str:
    """Run until the scripted crash; the id of the execution left saved mid-run."""
    with pytest.raises(Crash):
        await side.agent.async_run(request, workspace=ws, save_rounds=True, **options)
    return side.agent.last_execution.id


@pytest.mark.anyio
async def test_a_run_is_saved_after_every_round_it_goes_on_past(sides, ws) -> None:
    script = [[("probe", {})], [("probe", {})], [("step", {"x": 3})], history]
    side = sides(script)
    result = await side.agent.async_run("go", workspace=ws, save_rounds=True,
                                        execution_id="exec_rounds")
    assert result.stop_reason == "response" and result.execution_id == "exec_rounds"
    # while round 0 ran nothing was saved yet; in round 1 the save after round 0 was there;
    # the run held the lease all along
    assert sides.log["probed"] == [(0, None, True), (1, 0, True)]
    # three rounds went on (0, 1, 2), then the end was saved: closed, with the result
    version, document = await ws.read_snapshot(saved_key("exec_rounds"))
    assert version == 4 and document["state"] == "closed" and document["save_rounds"]
    assert document["resume"] is None and document["saved_round"] is None
    assert document["result"]["response"] == "done=3 history=3"
    assert await ws.read_lease(saved_key("exec_rounds")) is None
    # the same id is not run twice
    with pytest.raises(ExecutionConflict, match="saved already"):
        await sides(script).agent.async_run("go", workspace=ws, save_rounds=True,
                                            execution_id="exec_rounds")


@pytest.mark.anyio
async def test_a_new_agent_continues_from_the_last_saved_round(sides, ws, provider) -> None:
    env = {"kind": "memory", "resource_key": "res"}
    execution_id = await crashed(sides(crash=True), ws, execution_environments=[env])
    assert sides.log["ran"] == [1, 2] and sides.log["asked"] == [0, 1, 2]
    version, document = await ws.read_snapshot(saved_key(execution_id))
    assert version == 2 and document["state"] == "sealed" and not document["paused"]
    assert document["saved_round"] == 1 and document["resume"]["kind"] == RUNNING
    assert document["resume"]["flow_state"]["next_round"] == 2
    assert provider.live == []  # the crashed run released its environment

    side = sides()
    loaded = await side.agent.async_load_execution(execution_id, workspace=ws)
    assert loaded.saved_round == 1 and not loaded.paused and len(provider.live) == 1
    sides.log["asked"].clear()
    out = await loaded.async_continue_run()
    # round 2 was planned again (it had not finished), rounds 0 and 1 were not; their
    # actions did not run again
    assert sides.log["asked"] == [2, 3] and sides.log["ran"] == [1, 2, 102]
    assert out.stop_reason == "response" and out.response == "done=3 history=3"
    assert [r.round_index for r in out.rounds] == [0, 1, 2, 3]
    assert [r.result for r in out.records] == [2, 4, 204]
    assert out.execution_id == execution_id and side.agent.last_run is out
    assert provider.live == []  # closed: its environment released
    version, document = await ws.read_snapshot(saved_key(execution_id))
    assert version == 4 and document["state"] == "closed"  # round 2 saved, then the end
    assert await ws.read_lease(saved_key(execution_id)) is None
    # idempotent: this copy returns its result, a closed one its saved result
    assert await loaded.async_continue_run() is out
    again = await sides().agent.async_load_execution(execution_id, workspace=ws)
    assert again.state == "closed"
    repeated = await again.async_continue_run()
    assert isinstance(repeated, FlowResult) and repeated.response == out.response
    assert sides.log["ran"] == [1, 2, 102]


@pytest.mark.anyio
async def test_a_continuation_that_raised_says_so_when_asked_again(sides, ws) -> None:
    """The continued loop raises (its first save is refused): saved closed with the
    error; asked again, this copy says the execution ended with that error."""
    execution_id = await crashed(sides(crash=True), ws)
    loaded = await sides().agent.async_load_execution(execution_id, workspace=ws)
    write = ws.put_snapshot
    refused: list[bool] = []

    async def first_refused(*args: Any, **kwargs: Any) -> int:
        if not refused:
            refused.append(True)
            raise WorkspaceError("the workspace refused the write")
        return await write(*args, **kwargs)

    ws.put_snapshot = first_refused
    try:
        with pytest.raises(WorkspaceError):
            await loaded.async_continue_run()
    finally:
        ws.put_snapshot = write
    with pytest.raises(ExecutionStateError, match="closed without a result to return: the "
                       "run raised WorkspaceError: the workspace refused the write"):
        await loaded.async_continue_run()
    _, document = await ws.read_snapshot(saved_key(execution_id))
    assert document["state"] == "closed" and "WorkspaceError" in document["error"]


@pytest.mark.anyio
async def test_a_continued_loop_that_pauses_is_saved_paused(sides, ws) -> None:
    script = [[("step", {"x": 1})], "crash", [("gated", {"x": 5})], history]
    execution_id = await crashed(sides(script, crash=True), ws)
    loaded = await sides(script).agent.async_load_execution(execution_id, workspace=ws)
    out = await loaded.async_continue_run()
    assert out.stop_reason == "approval_required"
    _, document = await ws.read_snapshot(saved_key(execution_id))
    assert document["paused"] and document["resume"]["kind"] == "flow"
    assert document["saved_round"] is None
    waiting = await sides(script).agent.async_load_execution(execution_id, workspace=ws)
    with pytest.raises(ExecutionStateError, match="waits for approval"):
        await waiting.async_continue_run()
    await waiting.async_close()  # lets go here; it stays saved paused
    # the resumed loop goes on saving its rounds
    resumer = await sides(script).agent.async_load_execution(execution_id, workspace=ws)
    assert resumer.save_rounds
    done = await resumer.async_continue_with("approved", resume_request_id="t1")
    assert done.stop_reason == "response" and sides.log["ran"] == [1, 101, ("gated", 5)]
    version, document = await ws.read_snapshot(saved_key(execution_id))
    assert document["state"] == "closed" and version == 5  # r0, r1, paused, r2, end


@pytest.mark.anyio
async def test_bad_states_are_clear_errors(sides, ws) -> None:
    agent = sides().agent
    with pytest.raises(ValueError, match="save_rounds=True needs a workspace"):
        agent.create_execution(save_rounds=True)
    with pytest.raises(TypeError, match="save_rounds must be True or False"):
        agent.create_execution(workspace=ws, save_rounds="yes")
    with pytest.raises(ValueError, match="execution_id"):
        agent.create_execution(workspace=ws, execution_id="")
    with pytest.raises(TypeError, match="options of a new execution"):
        await agent.async_run("go", execution=agent.create_execution(workspace=ws),
                              save_rounds=True)
    # an execution not saved mid-run has nothing to continue
    fresh = agent.create_execution(workspace=ws)
    with pytest.raises(ExecutionStateError, match="not saved mid-run"):
        await fresh.async_continue_run()
    # a paused one waits for its decision
    paused = await sides([[("gated", {"x": 1})]]).agent.async_run("go", workspace=ws)
    loaded = await sides().agent.async_load_execution(paused.execution_id, workspace=ws)
    with pytest.raises(ExecutionStateError, match="async_continue_with"):
        await loaded.async_continue_run()
    # a planner that fails ends the loop failed: saved closed, its result returned
    failing = [[("step", {"x": 1})], lambda context, request: 1 / 0]
    result = await sides(failing).agent.async_run("go", workspace=ws, save_rounds=True,
                                                  execution_id="exec_failing")
    assert result.stop_reason == "failed" and "ZeroDivisionError" in result.error
    closed = await sides(failing).agent.async_load_execution("exec_failing", workspace=ws)
    assert (await closed.async_continue_run()).error == result.error

    # a loop that raised is saved closed with its error: nobody runs it again
    class Broken(AgentlyActionFlow):
        async def _checkpoint(self, run: Any, state: Any, round_index: int) -> None:
            await super()._checkpoint(run, state, round_index)
            if round_index == 1:
                raise RuntimeError("a bug in the flow")

    side = sides([[("step", {"x": 2})], [("step", {"x": 3})], history])
    side.agent._flow = Broken()
    with pytest.raises(RuntimeError, match="a bug in the flow"):
        await side.agent.async_run("go", workspace=ws, save_rounds=True,
                                   execution_id="exec_broken")
    version, document = await ws.read_snapshot(saved_key("exec_broken"))
    assert version == 3 and document["state"] == "closed" and document["saved_round"] is None
    assert document["error"] == "the run raised RuntimeError: a bug in the flow"
    closed = await sides().agent.async_load_execution("exec_broken", workspace=ws)
    with pytest.raises(ExecutionStateError, match=r"closed without a result.*a bug"):
        await closed.async_continue_run()
    assert sides.log["ran"] == [1, 2, 3]


@pytest.mark.anyio
async def test_a_flow_that_cannot_continue_is_refused_at_load(sides, ws) -> None:
    execution_id = await crashed(sides(crash=True), ws)

    class NoContinue(AgentlyActionFlow):
        continue_from = None  # type: ignore[assignment]

    side = sides()
    side.agent._flow = NoContinue()
    with pytest.raises(ExecutionStateError, match="continue_from"):
        await side.agent.async_load_execution(execution_id, workspace=ws)
    assert await ws.read_lease(saved_key(execution_id)) is None


@pytest.mark.anyio
async def test_two_continuers_never_both_run(sides, ws) -> None:
    execution_id = await crashed(sides(crash=True), ws)
    first = await sides().agent.async_load_execution(execution_id, workspace=ws,
                                                     lease_ttl=0.3)
    with pytest.raises(ExecutionBusy, match="held by"):  # the lease refuses the second
        await sides().agent.async_load_execution(execution_id, workspace=ws)
    await anyio.sleep(0.5)  # the first copy's lease ends (it was stalled, say)
    second = await sides().agent.async_load_execution(execution_id, workspace=ws)
    out = await second.async_continue_run()
    assert out.stop_reason == "response" and sides.log["ran"] == [1, 2, 102]
    # the first copy is stale now: compare-and-set stops it before anything runs
    with pytest.raises(ExecutionConflict, match="load it again"):
        await first.async_continue_run()
    assert sides.log["ran"] == [1, 2, 102]
    assert await ws.read_lease(saved_key(execution_id)) is None


@pytest.mark.anyio
async def test_a_continuer_that_lost_the_execution_stops_at_its_next_save(sides,
                                                                          ws) -> None:
    script = [[("step", {"x": 1})], "crash", [("step", {"x": 3})], [("step", {"x": 4})]]
    execution_id = await crashed(sides(script, crash=True), ws)
    loaded = await sides(script).agent.async_load_execution(execution_id, workspace=ws)
    key = saved_key(execution_id)
    continuation = loaded._continue

    async def behind_the_back() -> Any:  # another process wrote it meanwhile
        version, document = await ws.read_snapshot(key)
        await ws.put_snapshot(key, document, expected_state_version=version)
        return await continuation()

    loaded.set_continuation(behind_the_back)
    with pytest.raises(ExecutionConflict):
        await loaded.async_continue_run()
    # round 1 ran here, its save conflicted: round 2's action never ran
    assert sides.log["ran"] == [1, 101]
    assert await ws.read_lease(key) is None
    version, document = await ws.read_snapshot(key)
    assert version == 2 and document["saved_round"] == 0  # the other writer's state stays


@pytest.mark.anyio
async def test_a_continuer_whose_lease_was_taken_stops_before_its_next_save(sides,
                                                                            ws) -> None:
    """Its lease lapsed mid-round and another process claimed it (but has not saved
    yet): the heartbeat finds the lease lost, and the next save claims it again first,
    so this copy stops (ExecutionBusy) instead of overwriting the other's work."""
    script = [[("step", {"x": 1})], "crash", [("step", {"x": 3, "delay": 0.4})],
              [("step", {"x": 4})]]
    execution_id = await crashed(sides(script, crash=True), ws)
    loaded = await sides(script).agent.async_load_execution(execution_id, workspace=ws,
                                                            lease_ttl=0.15)
    key = saved_key(execution_id)
    before = await ws.read_snapshot(key)
    continuation = loaded._continue
    taken: list[Any] = []

    async def taken_over() -> Any:  # the lease lapses; another process claims it
        await ws.release_lease(loaded._lease)
        taken.append(await ws.claim_lease(key, ttl=60, owner="other:1"))
        return await continuation()

    loaded.set_continuation(taken_over)
    with pytest.raises(ExecutionBusy, match="other:1"):
        await loaded.async_continue_run()
    # round 1 ran here (it was under way), then nothing more: round 2 never started
    assert sides.log["ran"] == [1, 101]
    assert await ws.read_snapshot(key) == before  # nothing written over the other
    held = await ws.read_lease(key)
    assert held is not None and held.owner == "other:1" and held.fence == taken[0].fence


@pytest.mark.anyio
async def test_a_time_bound_ending_during_a_save_keeps_the_saved_version(sides,
                                                                         ws) -> None:
    """The run's time bound ends while a save after a round is under way (the workspace
    wrote it, then was slow to answer): the save finishes first, so this copy knows the
    version it wrote, and the run ends stalled with its end saved (not a conflict with
    its own write)."""
    side = sides([[("step", {"x": 1})], [("step", {"x": 2, "delay": 0.1})], history])
    write = ws.put_snapshot

    async def slow_answer(*args: Any, **kwargs: Any) -> int:
        version = await write(*args, **kwargs)
        await anyio.sleep(0.6)  # the run's bound (0.3 s) ends here
        return version

    ws.put_snapshot = slow_answer
    try:
        result = await side.agent.async_run("go", workspace=ws, save_rounds=True,
                                            execution_id="exec_bound", timeout=0.3)
    finally:
        ws.put_snapshot = write
    assert result.stop_reason == "failed" and "ActionLoopStalled" in json.dumps(
        result.model_dump(mode="json")), result
    assert sides.log["ran"] == [1]  # round 1's action was stopped at its first wait
    version, document = await ws.read_snapshot(saved_key("exec_bound"))
    assert version == 2 and document["state"] == "closed"  # round 0 saved, then the end
    assert await ws.read_lease(saved_key("exec_bound")) is None


@pytest.mark.anyio
async def test_a_heartbeat_the_workspace_drops_is_tried_again(sides, ws) -> None:
    """The workspace fails one heartbeat mid-round (a dropped connection): the run goes
    on holding its lease, saves its rounds and ends, instead of failing."""
    side = sides([[("step", {"x": 1, "delay": 0.3})], [("step", {"x": 2})], history])
    beat = ws.heartbeat_lease
    failed: list[str] = []

    async def dropped_once(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append("dropped")
            raise ConnectionResetError("the connection to the workspace dropped")
        return await beat(*args, **kwargs)

    ws.heartbeat_lease = dropped_once
    execution = side.agent.create_execution(workspace=ws, save_rounds=True, lease_ttl=0.3,
                                            execution_id="exec_beat")
    try:
        result = await side.agent.async_run("go", execution=execution)
    finally:
        ws.heartbeat_lease = beat
    assert failed == ["dropped"]
    assert result.stop_reason == "response" and sides.log["ran"] == [1, 2], result.error
    version, document = await ws.read_snapshot(saved_key("exec_beat"))
    assert version == 3 and document["state"] == "closed"


@pytest.mark.anyio
async def test_a_save_that_fails_mid_run_stops_the_loop(sides, ws) -> None:
    """The save after round 1 fails: the loop does not go on unsaved; the run raises
    that error, and the execution is saved closed with it (nobody runs it again)."""
    side = sides([[("step", {"x": 1})], [("step", {"x": 2})], [("step", {"x": 3})],
                  history])
    write = ws.put_snapshot
    writes: list[int] = []

    async def second_fails(*args: Any, **kwargs: Any) -> int:
        writes.append(len(writes))
        if len(writes) == 2:
            raise WorkspaceError("the workspace refused the write")
        return await write(*args, **kwargs)

    ws.put_snapshot = second_fails
    try:
        with pytest.raises(WorkspaceError, match="refused the write"):
            await side.agent.async_run("go", workspace=ws, save_rounds=True,
                                       execution_id="exec_fails")
    finally:
        ws.put_snapshot = write
    assert sides.log["ran"] == [1, 2]  # round 2 never started
    version, document = await ws.read_snapshot(saved_key("exec_fails"))
    assert version == 2 and document["state"] == "closed"
    assert document["error"] == ("the run raised WorkspaceError: the workspace refused "
                                 "the write")
    assert await ws.read_lease(saved_key("exec_fails")) is None
    loaded = await sides().agent.async_load_execution("exec_fails", workspace=ws)
    with pytest.raises(ExecutionStateError, match="closed without a result"):
        await loaded.async_continue_run()


@pytest.mark.anyio
async def test_saved_rounds_keep_secrets_out(sides, ws) -> None:
    script = [[("step", {"x": 1, "password": "pw-123456"})],
              lambda context, request: [("step", {"x": 2, "password": SECRET})], "crash"]
    env = {"kind": "memory", "resource_key": "res",
           "config": {"env": {"API_TOKEN": "tok-abcdef123"}, "region": "eu"}}
    execution_id = await crashed(sides(script, crash=True), ws, f"use {SECRET}",
                                 execution_environments=[env])
    _, document = await ws.read_snapshot(saved_key(execution_id))
    text = json.dumps(document)
    assert document["saved_round"] == 1
    for secret in (SECRET, "pw-123456", "tok-abcdef123"):
        assert secret not in text
    assert "***" in text and '"region": "eu"' in text
    assert document["environments"][0]["redacted"] is True
    # continued elsewhere (the environment given again), the end is saved redacted too
    loaded = await sides(script).agent.async_load_execution(
        execution_id, workspace=ws, execution_environments=[env])
    out = await loaded.async_continue_run()
    assert out.stop_reason == "response" and sides.log["ran"] == [1, 2, 102]
    _, document = await ws.read_snapshot(saved_key(execution_id))
    assert document["state"] == "closed"
    for secret in (SECRET, "pw-123456", "tok-abcdef123"):
        assert secret not in json.dumps(document)


@pytest.mark.anyio
async def test_without_save_rounds_nothing_is_saved_mid_run(sides, ws) -> None:
    side = sides([[("step", {"x": 1})], [("step", {"x": 2})], history])
    result = await side.agent.async_run("go", workspace=ws)
    assert result.stop_reason == "response"
    assert await ws.read_snapshot(saved_key(result.execution_id)) is None


# -- a real process that dies mid-loop ------------------------------------------------------
WORKER = textwrap.dedent('''
    """`run` runs a loop saving every round and dies (os._exit) in round 1 the first
    time; `continue` loads it in this new process and continues it."""
    import json
    import os
    import sys
    from pathlib import Path

    import anyio
    import agently_core_function.plugin as function_plugin
    import agently_core_runtime.plugin as runtime_plugin
    import agently_core_workspace_local.plugin as local_plugin

    from agently_core import Workspace, create_agent
    from agently_core.testing import make_plugin_manager

    HOME = Path(sys.argv[1])


    def build():
        agent = create_agent(plugins=make_plugin_manager(function_plugin, runtime_plugin,
                                                         local_plugin))

        @agent.action_func
        def append(line: str) -> str:
            """Append a line to a file."""
            with open(HOME / "appended.txt", "a") as out:
                out.write(f"{line} {os.getpid()}\\n")
            return line

        agent.use_actions(append)

        def plan(context, request):
            if context["round_index"] == 0:
                return [("append", {"line": "round0"})]
            if not (HOME / "died").exists():
                (HOME / "died").write_text(str(os.getpid()))
                os._exit(7)  # the process dies mid-loop, holding the lease
            return f"finished after {len(context['done_plans'])} record(s)"

        agent.set_planner([plan, plan])
        return agent


    def workspace():
        return Workspace("local", path=HOME / "ws", plugins=make_plugin_manager(local_plugin))


    async def run():
        async with workspace() as ws, build() as agent:
            execution = agent.create_execution(workspace=ws, save_rounds=True,
                                               execution_id="exec_dies", lease_ttl=1.0)
            await agent.async_run("go", execution=execution)


    async def go_on():
        async with workspace() as ws, build() as agent:
            try:
                execution = await agent.async_load_execution("exec_dies", workspace=ws)
            except Exception as exc:
                print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
                return
            saved_round = execution.saved_round
            result = await execution.async_continue_run()
            print(json.dumps({"saved_round": saved_round, "response": result.response,
                              "records": [r.result for r in result.records]}))


    anyio.run(run if sys.argv[2] == "run" else go_on)
''')


def _worker(home: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    return subprocess.run([sys.executable, str(home / "worker.py"), str(home), command],
                          capture_output=True, text=True, timeout=120, env=env, cwd=home)


def test_a_process_that_died_mid_loop_is_continued_by_another(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    died = _worker(tmp_path, "run")
    assert died.returncode == 7, died.stderr[-3000:]
    began = time.monotonic()
    # the dead process's lease holds until its TTL (1 s) ends: a continuer is refused first
    out = json.loads(_worker(tmp_path, "continue").stdout.strip().splitlines()[-1])
    if "error" in out:
        assert out["error"] == "ExecutionBusy", out
        time.sleep(max(0.0, 1.2 - (time.monotonic() - began)))
        out = json.loads(_worker(tmp_path, "continue").stdout.strip().splitlines()[-1])
    assert out == {"saved_round": 0, "response": "finished after 1 record(s)",
                   "records": ["round0"]}
    lines = (tmp_path / "appended.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("round0 ")  # round 0 ran exactly once
