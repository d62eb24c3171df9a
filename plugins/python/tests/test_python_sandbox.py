"""run_python through a real agent: the notebook behaviour, the worker's lifecycle (crash,
timeout, health check, close), concurrency, descriptions, policy and the CLI. Real isolated
workers, no mocks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from agently_core_isolation import sandbox, testing
from agently_core_isolation.testing import alive, assert_fresh_start, events_of, running
from agently_core_python.package import DESCRIPTION
from agently_core_python.sandbox import PythonWorker

from agently_core.models import ActionCall


def call(agent: Any, code: str, **options: Any) -> Any:
    return agent.action.execute_action("run_python", {"python_code": code}, **options)


def worker_of(agent: Any) -> PythonWorker:
    worker = testing.only_resource(agent, "python")
    assert isinstance(worker, PythonWorker)
    return worker


def interpreter_pid(worker: PythonWorker) -> int:
    """The host pid of the sandboxed interpreter itself (inside bwrap or the launcher)."""
    return testing.program_pid(worker.uid, "/usr/bin/python3")


# == the notebook ==========================================================================
def test_state_persists_between_calls_like_a_notebook(python_agent: Any) -> None:
    agent = python_agent()
    assert call(agent, "import math\nx = 41\ndef bump(v):\n    return v + 1").status == "success"
    record = call(agent, "bump(x) + math.floor(0.5)")
    assert record.status == "success", record.error
    assert record.result["value"] == "42"
    assert worker_of(agent).calls >= 2  # one warm worker served both calls


def test_stdout_stderr_and_the_last_value_come_back(python_agent: Any) -> None:
    agent = python_agent()
    record = call(agent, "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n6 * 7")
    assert record.status == "success", record.error
    assert record.result["stdout"] == "to stdout\n"
    assert record.result["stderr"] == "to stderr\n"
    assert record.result["value"] == "42"
    assert call(agent, "y = 1").result["value"] is None  # a statement has no value
    assert call(agent, "None").result["value"] is None


def test_an_exception_is_a_failed_record_with_traceback_and_output(python_agent: Any) -> None:
    agent = python_agent()
    call(agent, "kept = 'state'")
    record = call(agent, "print('before the error')\n1 / 0")
    assert record.status == "failed"
    assert "ZeroDivisionError" in record.error
    assert record.result["stdout"] == "before the error\n"
    assert record.result["error_type"] == "ZeroDivisionError"
    assert "Traceback" in record.result["error"] and "division by zero" in record.result["error"]
    syntax = call(agent, "def broken(:")
    assert syntax.status == "failed" and "SyntaxError" in syntax.error
    exiting = call(agent, "raise SystemExit(3)")
    assert exiting.status == "failed" and "SystemExit" in exiting.error
    assert call(agent, "kept").result["value"] == "'state'"  # the worker lived through all three


def test_a_crashed_worker_is_replaced_on_the_next_call(python_agent: Any) -> None:
    agent = python_agent()
    call(agent, "x = 1")
    old = worker_of(agent)
    events = events_of(agent)
    crashed = call(agent, "import os\nos._exit(1)")
    assert crashed.status == "failed"
    assert "worker" in crashed.error
    after = call(agent, "x")
    assert after.status == "failed" and "NameError" in after.error  # a fresh worker: state reset
    assert_fresh_start(events)
    assert worker_of(agent) is not old and old.dead
    assert call(agent, "print('works')").result["stdout"] == "works\n"


def test_a_timed_out_worker_is_killed_and_replaced(python_agent: Any) -> None:
    agent = python_agent()
    call(agent, "x = 1")
    old = worker_of(agent)
    pid = interpreter_pid(old)
    events = events_of(agent)
    started = time.monotonic()
    record = call(agent, "while True:\n    pass", timeout=0.5)
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert time.monotonic() - started < 2
    assert testing.wait_dead(pid), "the spinning interpreter outlived its timeout"
    after = call(agent, "x")
    assert after.status == "failed" and "NameError" in after.error
    assert_fresh_start(events)
    assert call(agent, "1 + 1").result["value"] == "2"


def test_the_health_check_is_a_real_round_trip(python_agent: Any) -> None:
    agent = python_agent()
    call(agent, "x = 1")
    worker = worker_of(agent)
    events = events_of(agent)
    assert call(agent, "x").result["value"] == "1"
    assert "execution_environment.unhealthy" not in events  # a healthy worker is kept
    os.kill(interpreter_pid(worker), signal.SIGKILL)  # dies behind the host's back
    assert not worker.dead  # the host has not noticed: only a round trip can tell
    after = call(agent, "x")
    assert after.status == "failed" and "NameError" in after.error  # restarted, not run blind
    assert_fresh_start(events)
    assert call(agent, "print('back')").result["stdout"] == "back\n"


def test_calls_on_different_scopes_run_concurrently(python_agent: Any) -> None:
    agent = python_agent(scope="action_call")
    code = "import os, time\ntime.sleep(0.5)\nos.getuid()"
    calls = [ActionCall(action="run_python", kwargs={"python_code": code}) for _ in range(4)]
    started = time.monotonic()
    records = agent.action.execute_actions(calls, concurrency=4)
    elapsed = time.monotonic() - started
    assert [r.status for r in records] == ["success"] * 4, [r.error for r in records]
    assert elapsed < 1.5, f"4 x 0.5 s took {elapsed:.2f} s: the calls did not overlap"
    assert len({r.result["value"] for r in records}) == 4  # four workers, four uids
    assert agent.manager.list(kind="python") == []  # action_call workers are released


def test_closing_the_agent_kills_the_worker_and_removes_its_workdir(python_agent: Any) -> None:
    agent = python_agent()
    nap = f"300.{os.getpid()}{time.monotonic_ns() % 10_000}"
    record = call(agent, f"import subprocess\nsubprocess.Popen(['sleep', '{nap}'])\n"
                  "open('notes.txt', 'w').write('x')")
    assert record.status == "success", record.error
    worker = worker_of(agent)
    workdir, pid = worker.workdir, interpreter_pid(worker)
    assert workdir is not None and (workdir / "notes.txt").exists()
    agent.close()
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and (alive(pid) or running(nap)):
        time.sleep(0.02)
    assert not alive(pid) and not running(nap), "a process of the worker survived aclose()"
    assert not workdir.exists()
    assert agent.manager.list(kind="python") == []


# == descriptions ==========================================================================
@pytest.mark.parametrize(("mode", "expected"), [
    ("append", DESCRIPTION + "\nUse it for the sales data."),
    ("override", "Use it for the sales data."),
    ("default", DESCRIPTION),
])
def test_desc_and_desc_mode(agently_agent_factory: Any, mode: str, expected: str) -> None:
    agent = agently_agent_factory()
    try:
        agent.enable_python(desc="Use it for the sales data.", desc_mode=mode)
        info = {i["name"]: i for i in agent.action.get_action_info()}
        assert info["run_python"]["description"] == expected
    finally:
        agent.close()


# == policy ================================================================================
@pytest.mark.parametrize(("field", "value"), [
    ("max_memory_bytes", 64 << 20), ("max_processes", 4), ("max_file_bytes", 1 << 20),
    ("max_workspace_bytes", 1 << 20)])
def test_a_call_stricter_than_its_worker_is_refused(python_agent: Any, field: str,
                                                    value: int) -> None:
    agent = python_agent()
    assert call(agent, "1").status == "success"
    agent.set_policy(**{field: value})
    record = call(agent, "open('ran.txt', 'w').write('ran')")
    assert record.status == "failed"
    assert "stricter than its Python sandbox" in record.error and field in record.error
    option = {"max_memory_bytes": "memory_mb=64", "max_processes": "processes=4",
              "max_file_bytes": "file_mb=1", "max_workspace_bytes": "disk_mb=1"}[field]
    assert f"agent.enable_python({option})" in record.error  # which option fixes it
    assert not (worker_of(agent).workdir / "ran.txt").exists()  # the code never ran
    agent.set_policy(**{field: None})
    assert call(agent, "2").result["value"] == "2"


def test_max_cpu_seconds_is_not_enforceable_and_blocks(python_agent: Any) -> None:
    agent = python_agent()
    agent.set_policy(max_cpu_seconds=1.0)
    record = call(agent, "print('ran')")
    assert record.status == "blocked" and record.error_type == "PolicyNotEnforceable"
    assert "max_cpu_seconds" in record.error
    assert agent.manager.list(kind="python") == []  # refused before any sandbox started
    agent.set_policy(max_cpu_seconds=None)
    assert call(agent, "print('ran')").result["stdout"] == "ran\n"


def test_no_isolation_tier_is_a_clear_error_and_nothing_runs(python_agent: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "tier_status", testing.no_working_tier)
    agent = python_agent()
    record = call(agent, "print('ran')")
    assert record.status == "failed" and record.result is None
    assert "IsolationUnavailable" in record.error and "allow_trusted_local=True" in record.error
    assert "apt-get install bubblewrap" in record.error
    assert agent.manager.list(kind="python") == []
    monkeypatch.undo()
    assert call(agent, "print('ran')").result["stdout"] == "ran\n"


# == the command line ======================================================================
def cli_call(cwd: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("agently-core")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    return subprocess.run(
        [str(cli), "call", "run_python", "--enable", "python",
         "--kwargs", json.dumps({"python_code": code})],
        cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_cli_call_run_python(tmp_path: Path) -> None:
    done = cli_call(tmp_path, "print(1+1)")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "success"
    assert record["result"]["stdout"] == "2\n"


def test_cli_call_leaves_no_workspace_behind(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="agently-cli-root-", dir="/tmp"))  # sandbox uids traverse /tmp
    try:
        done = cli_call(tmp_path, "open('scratch.txt', 'w').write('x')", AGENTLY_SANDBOX_ROOT=str(root))
        assert done.returncode == 0, done.stderr
        assert list(root.iterdir()) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_cut_output_is_kept_whole_as_an_artifact(python_agent: Any) -> None:
    agent = python_agent(max_output_bytes=2_000)
    agent.add_secrets("py-secret-0451")
    record = call(agent, "print('py-secret-0451')\nfor n in range(2000):\n    print(n)")
    assert record.status == "success" and record.result["truncated"] is True
    assert "truncated" in record.result["stdout"]
    assert len(record.result["stdout"]) < 2_200
    kept = agent.action.read_action_artifact(action_call_id=record.call_id)
    kinds = [a["kind"] for a in kept]
    assert kinds == ["instruction", "result", "stdout"], kinds
    stdout = kept[-1]["content"]
    assert stdout.splitlines()[1:] == [str(n) for n in range(2000)]  # every line, in order
    assert "py-secret-0451" not in stdout and stdout.startswith("***")
    digest = record.digest
    assert digest["instruction_preview"].startswith("print('***')")
    assert "secret values were masked in the output" in digest["redaction_notes"]
    assert digest["artifact_refs"] == record.artifact_refs
    assert digest["call_id"] == record.call_id


def test_configured_env_and_passthrough_together(python_agent: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLY_TEST_PASSED", "passed-value")
    monkeypatch.setenv("AGENTLY_TEST_WITHHELD", "withheld-value")
    agent = python_agent(env={"GREETING": "hello"}, env_passthrough=["AGENTLY_TEST_PASSED"])
    record = call(agent, "import os\n[os.environ.get('GREETING') == 'hello', "
                         "os.environ.get('AGENTLY_TEST_PASSED') == 'passed-value', "
                         "os.environ.get('AGENTLY_TEST_WITHHELD')]")
    assert record.status == "success", record.error  # was refused before: env counted as passed
    assert record.result["value"] == "[True, True, None]"


# == a slow call and the calls behind it =====================================================
def test_a_call_that_times_out_behind_a_slow_one_never_started_and_the_worker_lives(
        python_agent: Any) -> None:
    import anyio

    from agently_core._sync import run_sync

    agent = python_agent(timeout=10)
    assert call(agent, "kept = 'state'").status == "success"
    records: dict[str, Any] = {}

    async def run(name: str, code: str, timeout: float | None = None) -> None:
        records[name] = await agent.action.async_execute_action(
            "run_python", {"python_code": code}, timeout=timeout)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(run, "slow", "import time\ntime.sleep(1.2)\n'slow'")
            await anyio.sleep(0.2)  # the slow call holds the worker
            group.start_soon(run, "waiting", "open('ran', 'w')", 0.4)
            group.start_soon(run, "after", "kept")

    started = time.monotonic()
    run_sync(scenario)
    slow, waited, after = records["slow"], records["waiting"], records["after"]
    assert slow.status == "success" and slow.result["value"] == "'slow'"
    assert waited.status == "failed" and waited.error_type == "TimeoutError"
    assert "while it waited for the Python sandbox" in waited.error
    assert "never started" in waited.error and waited.meta["queued_ms"] >= 300
    assert not (worker_of(agent).workdir / "ran").exists()  # it really never ran
    # the worker was not killed for it: the state is still there, and the wait is visible
    assert after.status == "success" and after.result["value"] == "'state'"
    assert after.meta["queued_ms"] > 500
    assert time.monotonic() - started < 5
    assert worker_of(agent).turnstile.waiting == 0
