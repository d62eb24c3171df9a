"""run_nodejs through a real agent: the notebook behaviour (globals, values, console, args,
await, errors), concurrency on one warm worker, the worker's lifecycle (crash, timeout,
health check, close), the environment, truncation, descriptions, policy and the CLI. Real
isolated workers, no mocks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_isolation import sandbox, testing
from agently_core_isolation.testing import alive, assert_fresh_start, events_of, running
from agently_core_nodejs.package import DESCRIPTION
from agently_core_nodejs.sandbox import NodeWorker

from agently_core.models import ActionCall


def call(agent: Any, code: str, args: Any = None, **options: Any) -> Any:
    kwargs = {"js_code": code} if args is None else {"js_code": code, "args": args}
    return agent.action.execute_action("run_nodejs", kwargs, **options)


def worker_of(agent: Any) -> NodeWorker:
    worker = testing.only_resource(agent, "node")
    assert isinstance(worker, NodeWorker)
    return worker


def node_pid(worker: NodeWorker) -> int:
    """The host pid of the sandboxed node process itself (inside bwrap or the launcher)."""
    return testing.program_pid(worker.uid, "/usr/bin/node")


# == the notebook ==========================================================================
def test_globals_persist_between_calls_like_a_notebook(node_agent: Any) -> None:
    agent = node_agent()
    record = call(agent, "var x = 41\nfunction bump(v) { return v + 1 }\n"
                  "globalThis.shelf = { books: 2 }\nconst fixed = 'kept'")
    assert record.status == "success", record.error
    record = call(agent, "bump(x) + shelf.books - 2")
    assert record.status == "success", record.error
    assert record.result["value"] == "42"
    assert call(agent, "fixed").result["value"] == "'kept'"  # top-level const persists too
    again = call(agent, "const fixed = 'twice'")  # ...and, like a script, once only
    assert again.status == "failed" and "already been declared" in again.error
    assert call(agent, "var x = 1; x").result["value"] == "1"  # var can be declared again
    assert worker_of(agent).calls >= 5  # one warm worker served every call


def test_console_output_and_the_last_value_come_back(node_agent: Any) -> None:
    agent = node_agent()
    record = call(agent, "console.log('to stdout', { a: 1 })\nconsole.info('info')\n"
                  "console.error('to stderr')\nconsole.warn('warned')\n"
                  "process.stdout.write('raw\\n')\nprocess.stderr.write(Buffer.from('bytes\\n'))\n"
                  "6 * 7")
    assert record.status == "success", record.error
    assert record.result["stdout"] == "to stdout { a: 1 }\ninfo\nraw\n"
    assert record.result["stderr"] == "to stderr\nwarned\nbytes\n"
    assert record.result["value"] == "42"
    assert record.result["truncated"] is False
    assert call(agent, "let y = 1").result["value"] is None  # a declaration has no value
    assert call(agent, "undefined").result["value"] is None
    assert call(agent, "null").result["value"] == "null"
    assert call(agent, "'text'").result["value"] == "'text'"  # values as util.inspect shows them
    assert call(agent, "[1, 'two', { three: 3 }]").result["value"] == "[ 1, 'two', { three: 3 } ]"
    assert call(agent, "new Map([['k', 1]])").result["value"] == "Map(1) { 'k' => 1 }"
    assert call(agent, "console.log('quiet')").result["stdout"] == "quiet\n"  # only this call's


def test_args_are_visible_as_args(node_agent: Any) -> None:
    agent = node_agent()
    record = call(agent, "args.rows.map((r) => r * args.factor)", {"rows": [1, 2, 3], "factor": 2})
    assert record.status == "success", record.error
    assert record.result["value"] == "[ 2, 4, 6 ]"
    assert call(agent, "typeof args").result["value"] == "'undefined'"  # no args: undefined
    assert call(agent, "args", "a string").result["value"] == "'a string'"
    later = call(agent, "await new Promise((r) => setTimeout(r, 20))\nreturn args", [7])
    assert later.result["value"] == "[ 7 ]"  # still this call's args after an await
    assert call(agent, "Array.isArray(args) && args instanceof Array", [1]).result["value"] == "true"


def test_await_promises_and_the_completion_rule(node_agent: Any) -> None:
    agent = node_agent()
    # a Promise as the last value is awaited
    assert call(agent, "new Promise((r) => setTimeout(() => r('later'), 20))").result["value"] == "'later'"
    assert call(agent, "(async () => 5)()").result["value"] == "5"
    # top-level await: the body of an async function; its return value comes back
    record = call(agent, "const got = await Promise.resolve(20)\nglobalThis.kept = got\nreturn got + 1")
    assert record.status == "success", record.error
    assert record.result["value"] == "21"
    assert call(agent, "await Promise.resolve(1)\ngot").status == "failed"  # local to its call
    assert call(agent, "kept").result["value"] == "20"  # globalThis persists
    assert call(agent, "await null").result["value"] is None  # no return: no value
    assert call(agent, "return 'early'").result["value"] == "'early'"
    rejected = call(agent, "await Promise.reject(new RangeError('nope'))")
    assert rejected.status == "failed" and rejected.result["error_type"] == "RangeError"


def test_modules_files_and_the_working_directory(node_agent: Any) -> None:
    agent = node_agent()
    record = call(agent, "const { platform } = await import('node:os')\n"
                  "require('fs').writeFileSync('mod.js', 'module.exports = (n) => n + 1')\n"
                  "return [platform(), require('./mod.js')(41), process.cwd()]")
    assert record.status == "success", record.error
    assert record.result["value"] == "[ 'linux', 42, '/work' ]"
    assert (worker_of(agent).workdir / "mod.js").exists()
    esm = call(agent, "import fs from 'fs'")
    assert esm.status == "failed" and "Cannot use import statement" in esm.error
    offline = call(agent, "await fetch('http://example.com')")
    assert offline.status == "failed" and "fetch failed" in offline.error
    assert "[cause]:" in offline.result["error"]  # the reason behind it comes along


def test_a_thrown_error_is_a_failed_record_with_its_stack_and_output(node_agent: Any) -> None:
    agent = node_agent()
    call(agent, "var kept = 'state'")
    record = call(agent, "console.log('before the error')\nfunction inner() { null.x }\ninner()")
    assert record.status == "failed"
    assert record.error.startswith("the code threw TypeError: Cannot read properties of null")
    result = record.result
    assert result["stdout"] == "before the error\n"
    assert result["error_type"] == "TypeError"
    assert "at inner (run_nodejs:2:" in result["error"] and "run_nodejs:3:" in result["error"]
    assert "[eval]" not in result["error"] and "node:async_hooks" not in result["error"]
    syntax = call(agent, "function broken( {")
    assert syntax.status == "failed" and syntax.result["error_type"] == "SyntaxError"
    thrown = call(agent, "throw { code: 7 }")
    assert thrown.status == "failed" and "Uncaught { code: 7 }" in thrown.result["error"]
    custom = call(agent, "class Oops extends Error { constructor(m) { super(m); this.name = 'Oops' } }\n"
                  "throw new Oops('custom')")
    assert custom.result["error_type"] == "Oops" and "Oops: custom" in custom.error
    # an exception in one of the call's callbacks fails that call instead of the worker
    timer = call(agent, "setTimeout(() => { throw new Error('in a timer') }, 10)\n"
                 "new Promise(() => {})", timeout=5)
    assert timer.status == "failed" and "in a timer" in timer.error
    # an unhandled rejection is reported on the call's stderr; the call itself succeeds
    loose = call(agent, "Promise.reject(new Error('nobody listens'))\n"
                 "await new Promise((r) => setTimeout(r, 20))\nreturn 1")
    assert loose.status == "success", loose.error
    assert "Uncaught (in promise) Error: nobody listens" in loose.result["stderr"]
    assert call(agent, "kept").result["value"] == "'state'"  # the worker lived through it all


def test_node_starts_in_both_tiers(node_agent: Any) -> None:
    for tier in testing.TIERS:
        agent = node_agent(tier=tier)
        record = call(agent, "const os = require('os');\n"
                      "[process.version, process.getuid() === 0, require('crypto').randomUUID().length]")
        assert record.status == "success", (tier, record.error)
        assert record.result["value"].startswith("[ 'v") and "false, 36 ]" in record.result["value"]
        assert worker_of(agent).isolation.tier == tier


# == concurrency ===========================================================================
@pytest.mark.anyio
async def test_calls_on_one_worker_run_concurrently(agently_agent_factory: Any) -> None:
    agent = agently_agent_factory()
    agent.enable_nodejs()
    try:
        first = await agent.action.async_execute_action("run_nodejs", {"js_code": "var hits = 0"})
        assert first.status == "success", first.error
        code = ("console.log('start', args.n)\nawait new Promise((r) => setTimeout(r, 500))\n"
                "hits += 1\nconsole.log('end', args.n)\nreturn [args.n, process.pid]")
        records: dict[int, Any] = {}
        lag = 0.0
        done = anyio.Event()

        async def one(n: int) -> None:
            records[n] = await agent.action.async_execute_action(
                "run_nodejs", {"js_code": code, "args": {"n": n}})

        async def ticker() -> None:
            nonlocal lag
            while not done.is_set():
                before = time.monotonic()
                await anyio.sleep(0.01)
                lag = max(lag, time.monotonic() - before - 0.01)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            async with anyio.create_task_group() as calls:
                for n in range(4):
                    calls.start_soon(one, n)
            elapsed = time.monotonic() - started
            done.set()
        assert [records[n].status for n in range(4)] == ["success"] * 4, \
            [records[n].error for n in range(4)]
        assert elapsed < 1.5, f"4 x 0.5 s on one worker took {elapsed:.2f} s: no overlap"
        assert lag < 0.2, f"the event loop stalled for {lag:.3f} s"
        for n in range(4):  # each call's own output and args, never a neighbour's
            assert records[n].result["stdout"] == f"start {n}\nend {n}\n"
            assert records[n].result["value"].startswith(f"[ {n}, ")
        assert len({records[n].result["value"].split(", ")[1] for n in range(4)}) == 1  # one pid
        assert len(agent.manager.list(kind="node")) == 1
        hits = await agent.action.async_execute_action("run_nodejs", {"js_code": "hits"})
        assert hits.result["value"] == "4"
    finally:
        await agent.aclose()


def test_calls_on_different_scopes_get_their_own_workers(node_agent: Any) -> None:
    agent = node_agent(scope="action_call")
    code = "await new Promise((r) => setTimeout(r, 300))\nreturn process.getuid()"
    calls = [ActionCall(action="run_nodejs", kwargs={"js_code": code}) for _ in range(3)]
    records = agent.action.execute_actions(calls, concurrency=3)
    assert [r.status for r in records] == ["success"] * 3, [r.error for r in records]
    assert len({r.result["value"] for r in records}) == 3  # three workers, three uids
    assert agent.manager.list(kind="node") == []  # action_call workers are released


# == the worker's lifecycle ================================================================
def test_a_timed_out_worker_is_killed_with_every_call_in_flight(agently_agent_factory: Any) -> None:
    agent = agently_agent_factory()
    agent.enable_nodejs()
    try:
        assert call(agent, "var x = 1").status == "success"
        old = worker_of(agent)
        pid = node_pid(old)
        events = events_of(agent)
        calls = [
            ActionCall(action="run_nodejs", kwargs={"js_code": "await new Promise((r) => "
                                                    "setTimeout(r, 5000))\nreturn 'slept'"}),
            ActionCall(action="run_nodejs", kwargs={"js_code": "await null\nwhile (true) {}"},
                       policy={"timeout_seconds": 0.5}),
        ]
        started = time.monotonic()
        sleeper, spinner = agent.action.execute_actions(calls, concurrency=2)
        assert time.monotonic() - started < 2.5
        assert spinner.status == "failed" and spinner.error_type == "TimeoutError"
        assert "timed out after 0.5s" in spinner.error
        assert sleeper.status == "failed" and "worker was killed" in sleeper.error, sleeper.error
        assert "timed out" in sleeper.error
        assert testing.wait_dead(pid), "the spinning node outlived its timeout"
        after = call(agent, "typeof x")
        assert after.result["value"] == "'undefined'"  # a fresh worker: globals reset
        assert_fresh_start(events)
        assert old.dead and worker_of(agent) is not old
    finally:
        agent.close()


def test_a_crashed_worker_is_replaced_on_the_next_call(node_agent: Any) -> None:
    agent = node_agent()
    for crash, words in (("process.exit(3)", "exit status 3"), ("process.abort()", "killed by SIGABRT")):
        call(agent, "var x = 1")
        old = worker_of(agent)
        events = events_of(agent)
        crashed = call(agent, crash)
        assert crashed.status == "failed"
        assert "worker died" in crashed.error and words in crashed.error, crashed.error
        after = call(agent, "typeof x")
        assert after.status == "success" and after.result["value"] == "'undefined'"  # fresh
        assert_fresh_start(events)
        assert worker_of(agent) is not old and old.dead
    assert call(agent, "console.log('works')").result["stdout"] == "works\n"


def test_the_health_check_is_a_real_round_trip(node_agent: Any) -> None:
    agent = node_agent()
    call(agent, "var x = 1")
    worker = worker_of(agent)
    events = events_of(agent)
    assert call(agent, "x").result["value"] == "1"
    assert "execution_environment.unhealthy" not in events  # a healthy worker is kept
    os.kill(node_pid(worker), signal.SIGKILL)  # dies behind the host's back
    assert not worker.dead  # the host has not noticed: only a round trip can tell
    after = call(agent, "typeof x")
    assert after.status == "success" and after.result["value"] == "'undefined'"  # restarted
    assert_fresh_start(events)
    assert call(agent, "console.log('back')").result["stdout"] == "back\n"


def test_closing_the_agent_kills_the_worker_and_removes_its_workdir(node_agent: Any) -> None:
    agent = node_agent()
    nap = f"300.{os.getpid()}{time.monotonic_ns() % 10_000}"
    record = call(agent, f"require('child_process').spawn('sleep', ['{nap}'])\n"
                  "require('fs').writeFileSync('notes.txt', 'x')")
    assert record.status == "success", record.error
    worker = worker_of(agent)
    workdir, pid = worker.workdir, node_pid(worker)
    assert workdir is not None and (workdir / "notes.txt").exists()
    assert running(nap)
    agent.close()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and (alive(pid) or running(nap)):
        time.sleep(0.02)
    assert not alive(pid) and not running(nap), "a process of the worker survived aclose()"
    assert not workdir.exists()
    assert agent.manager.list(kind="node") == []


def test_the_memory_limit_is_rlimit_data_not_address_space(node_agent: Any) -> None:
    agent = node_agent(memory_mb=256, tier="bubblewrap")
    record = call(agent, "const limits = require('fs').readFileSync('/proc/self/limits', 'utf8');\n"
                  "[limits.split('\\n').filter((l) => /data size|address space/.test(l)).join('|'),\n"
                  " require('v8').getHeapStatistics().heap_size_limit >> 20,\n"
                  " new WebAssembly.Memory({ initial: 1, maximum: 65536 }).buffer.byteLength]")
    assert record.status == "success", record.error
    value = record.result["value"]
    # RLIMIT_DATA at the policy's size; no RLIMIT_AS, which would forbid the 10 GB a
    # WebAssembly memory reserves; V8's heap capped below the data limit
    assert f"Max data size             {256 << 20}" in value, value
    assert "Max address space         unlimited" in value, value
    heap = int(value.split(",")[1])
    assert 150 < heap < 256, heap
    assert value.rstrip(" ]\n").endswith("65536")


@pytest.mark.anyio
async def test_a_health_check_of_a_busy_worker_neither_waits_nor_kills_it() -> None:
    """While a call runs, the worker is alive when its process is: the health check answers
    at once (every other caller's ensure would otherwise wait behind the slow call, outside
    their timeouts), and the call goes on."""
    from agently_core_isolation.sandbox import Isolation, Limits

    worker = await NodeWorker(Isolation(), Limits(wall_seconds=60, memory_bytes=256 << 20)).start()
    try:
        results: dict[str, Any] = {}

        async def busy() -> None:
            results["run"] = await worker.run(
                "const until = Date.now() + 800; while (Date.now() < until) {} 'done'",
                timeout=5, max_output=1000)

        async def check() -> None:
            await anyio.sleep(0.1)  # the worker is spinning in the call by now
            started = time.monotonic()
            results["healthy"] = await worker.ping(timeout=0.2)
            results["waited"] = time.monotonic() - started

        async with anyio.create_task_group() as group:
            group.start_soon(busy)
            group.start_soon(check)
        assert results["run"]["value"] == "'done'"
        assert results["healthy"] is True and results["waited"] < 0.1
        assert not worker.dead
    finally:
        await worker.aclose()


# == the environment =======================================================================
def test_the_environment_is_built_not_inherited(node_agent: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-host-{uuid.uuid4().hex}"
    passed = f"pass-{uuid.uuid4().hex}"
    monkeypatch.setenv("HOST_SECRET_TOKEN", secret)
    monkeypatch.setenv("PASSED_TOKEN", passed)
    agent = node_agent(env={"GREETING": "hello"}, env_passthrough=["PASSED_TOKEN"])
    record = call(agent, "[Object.keys(process.env).sort().join(' '), process.env.GREETING === "
                  "'hello', process.env.PASSED_TOKEN === args, process.env.HOST_SECRET_TOKEN]", passed)
    assert record.status == "success", record.error
    assert secret not in record.model_dump_json()
    names, greeted, got_passed, host_secret = record.result["value"].strip("[] \n").split(",\n")
    assert set(names.strip(" '").split()) == {
        "GREETING", "HOME", "LANG", "PASSED_TOKEN", "PATH", "PWD", "TMPDIR",
        "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}  # no UV_THREADPOOL_SIZE of the worker's
    assert (greeted.strip(), got_passed.strip(), host_secret.strip()) == ("true", "true", "undefined")
    plain = node_agent()
    assert call(plain, "process.env.PASSED_TOKEN").result["value"] is None  # only when passed


# == truncation ============================================================================
def test_a_truncated_output_is_marked_and_kept_whole_as_an_artifact(node_agent: Any) -> None:
    agent = node_agent(max_output_bytes=2_000)
    record = call(agent, "for (let i = 0; i < 100; i++) console.log(String(i).padStart(99, '.'))\n"
                  "console.error('e'.repeat(50))\n'x'.repeat(50)")
    assert record.status == "success", record.error
    result = record.result
    assert result["truncated"] is True
    assert "truncated" in result["stdout"] and len(result["stdout"]) < 2_100
    assert result["stderr"] == "e" * 50 + "\n"  # within the cap: whole
    assert result["value"] == repr("x" * 50)
    kept = agent.action.read_action_artifact(action_call_id=record.call_id)
    stdout = next(a for a in kept if a["kind"] == "stdout")
    assert stdout["content"].count("\n") == 100 and stdout["content"].endswith(".99\n")
    assert any(a["kind"] == "instruction" and "padStart" in a["content"] for a in kept)
    assert record.digest["action"] == "run_nodejs"
    small = call(agent, "console.log('short')")
    assert small.result["truncated"] is False
    assert not [a for a in agent.action.read_action_artifact(action_call_id=small.call_id)
                if a["kind"] in ("stdout", "stderr")]


# == descriptions ==========================================================================
@pytest.mark.parametrize(("mode", "expected"), [
    ("append", DESCRIPTION + "\nUse it for the sales data."),
    ("override", "Use it for the sales data."),
    ("default", DESCRIPTION),
])
def test_desc_and_desc_mode(agently_agent_factory: Any, mode: str, expected: str) -> None:
    agent = agently_agent_factory()
    try:
        agent.enable_nodejs(desc="Use it for the sales data.", desc_mode=mode)
        info = {i["name"]: i for i in agent.action.get_action_info()}
        assert info["run_nodejs"]["description"] == expected
        assert info["run_nodejs"]["kwargs"]["required"] == ["js_code"]
        assert set(info["run_nodejs"]["kwargs"]["properties"]) == {"js_code", "args"}
    finally:
        agent.close()


# == policy ================================================================================
def test_a_call_stricter_than_its_worker_is_refused(node_agent: Any) -> None:
    agent = node_agent()
    assert call(agent, "1").status == "success"
    for field, value in (("max_memory_bytes", 64 << 20), ("max_processes", 4),
                         ("max_file_bytes", 1 << 20), ("max_workspace_bytes", 1 << 20)):
        agent.set_policy(**{field: value})
        record = call(agent, "require('fs').writeFileSync('ran.txt', 'ran')")
        assert record.status == "failed"
        assert "stricter than its Node.js sandbox" in record.error and field in record.error
        assert not (worker_of(agent).workdir / "ran.txt").exists()  # the code never ran
        agent.set_policy(**{field: None})
    assert call(agent, "2").result["value"] == "2"


def test_max_cpu_seconds_is_not_enforceable_and_blocks(node_agent: Any) -> None:
    agent = node_agent()
    agent.set_policy(max_cpu_seconds=1.0)
    record = call(agent, "console.log('ran')")
    assert record.status == "blocked" and record.error_type == "PolicyNotEnforceable"
    assert "max_cpu_seconds" in record.error
    assert agent.manager.list(kind="node") == []  # refused before any sandbox started
    agent.set_policy(max_cpu_seconds=None)
    assert call(agent, "console.log('ran')").result["stdout"] == "ran\n"


def test_too_little_memory_for_node_is_a_clear_error(node_agent: Any) -> None:
    agent = node_agent(memory_mb=32)
    record = call(agent, "1")
    assert record.status == "failed" and "Node.js needs at least 64 MB" in record.error
    assert agent.manager.list(kind="node") == []


def test_no_isolation_tier_is_a_clear_error_and_nothing_runs(node_agent: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "tier_status", testing.no_working_tier)
    agent = node_agent()
    record = call(agent, "console.log('ran')")
    assert record.status == "failed" and record.result is None
    assert "IsolationUnavailable" in record.error and "allow_trusted_local=True" in record.error
    assert agent.manager.list(kind="node") == []
    monkeypatch.undo()
    assert call(agent, "console.log('ran')").result["stdout"] == "ran\n"


# == the command line ======================================================================
def cli_call(cwd: Path, kwargs: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("agently-core")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    return subprocess.run(
        [str(cli), "call", "run_nodejs", "--enable", "nodejs", "--kwargs", json.dumps(kwargs)],
        cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_cli_call_run_nodejs_leaves_no_workspace_behind(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="agently-cli-root-", dir="/tmp"))  # sandbox uids traverse /tmp
    try:
        done = cli_call(tmp_path, {"js_code": "require('fs').writeFileSync('scratch.txt', 'x')\n"
                                   "console.log(args.a + 1)\n1+1", "args": {"a": 1}},
                        AGENTLY_SANDBOX_ROOT=str(root))
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        assert record["status"] == "success"
        assert record["result"]["stdout"] == "2\n" and record["result"]["value"] == "2"
        assert list(root.iterdir()) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_cli_call_the_brief_example(tmp_path: Path) -> None:
    done = cli_call(tmp_path, {"js_code": "1+1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["value"] == "2"


# == a slow call and the calls behind it =====================================================
def test_a_call_that_times_out_behind_a_blocking_one_never_started_and_the_worker_lives(
        node_agent: Any) -> None:
    """A call sent while the worker is busy in another call's synchronous code is dropped
    when its caller gives up (it never runs), instead of killing the worker and every call
    in it; a call that waited shows its wait."""
    import anyio

    from agently_core._sync import run_sync

    agent = node_agent(timeout=10)
    assert call(agent, "globalThis.kept = 'state'").status == "success"
    pid = worker_of(agent).process.pid
    records: dict[str, Any] = {}

    async def run(name: str, code: str, timeout: float | None = None) -> None:
        records[name] = await agent.action.async_execute_action(
            "run_nodejs", {"js_code": code}, timeout=timeout)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(run, "slow", "const t = Date.now(); while (Date.now() < t + 1200) {}"
                                          "; 'slow'")
            await anyio.sleep(0.2)  # the slow call blocks the worker's event loop
            group.start_soon(run, "waiting", "globalThis.ran = true", 0.4)
            group.start_soon(run, "after", "kept")

    run_sync(scenario)
    slow, waited, after = records["slow"], records["waiting"], records["after"]
    assert slow.status == "success" and slow.result["value"] == "'slow'"
    assert waited.status == "failed" and "never started" in waited.error, waited.error
    assert "while it waited for the Node.js worker" in waited.error
    assert waited.meta["queued_ms"] >= 300
    assert after.status == "success" and after.result["value"] == "'state'"
    assert after.meta["queued_ms"] > 500  # it waited for the busy worker, and says so
    assert call(agent, "typeof globalThis.ran").result["value"] == "'undefined'"  # never ran
    assert worker_of(agent).process.pid == pid  # the same worker all along
