"""run_bash through a real agent, in both real isolation tiers: results and exit codes,
roots and workdir, the allowlist end to end, the environment, timeouts, output caps and
artifacts, policy (a model cannot widen it), descriptions, mount-time errors and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from agently_core_bash.package import describe
from agently_core_bash.programs import Allowlist
from agently_core_bash.sandbox import BashSandbox

from agently_core.models import ActionCall

TIERS = ["bubblewrap", "landlock"]
COMMANDS = ["ls", "cat", "wc", "head", "mkdir", "touch", "printenv", "sleep", "seq", "ln",
            "sh", "find", "grep", "tr"]


def run(agent: Any, cmd: str, workdir: str | None = None, **options: Any) -> Any:
    kwargs = {"cmd": cmd} if workdir is None else {"cmd": cmd, "workdir": workdir}
    return agent.action.execute_action("run_bash", kwargs, **options)


def sandbox_of(agent: Any) -> BashSandbox:
    handles = agent.manager.list(kind="bash")
    assert len(handles) == 1, handles
    return agent.manager.resource(handles[0])


def ok(record: Any) -> dict[str, Any]:
    assert record.status == "success", (record.error, record.result)
    return record.result


@pytest.fixture
def shell(bash_agent: Any, shared_dir: Any) -> Any:
    """``shell(tier, **options)``: an agent whose run_bash has one shared root (unless
    ``root=`` says otherwise) and the test allowlist."""

    def make(tier: str, **options: Any) -> Any:
        settings = {"tier": tier, "timeout": 5, "commands": COMMANDS, **options}
        settings.setdefault("root", shared_dir())
        return bash_agent(**settings)

    return make


# == results ===============================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_a_pipeline_runs_and_returns_its_output(shell: Any, tier: str) -> None:
    agent = shell(tier)
    record = run(agent, "printf 'b\\na\\nb\\n' > f.txt && cat f.txt | grep b | wc -l; echo err >&2")
    result = ok(record)
    assert result == {"exit_code": 0, "stdout": "2\n", "stderr": "err\n", "truncated": False,
                      "timed_out": False}
    assert record.digest["instruction_preview"].startswith("printf")  # meta={"instruction": "cmd"}


@pytest.mark.parametrize("tier", TIERS)
def test_a_non_zero_exit_is_a_normal_result(shell: Any, tier: str) -> None:
    agent = shell(tier)
    assert ok(run(agent, "exit 3"))["exit_code"] == 3
    missing = ok(run(agent, "cat no-such-file"))
    assert missing["exit_code"] == 1 and "No such file" in missing["stderr"]
    assert ok(run(agent, "false || echo recovered"))["stdout"] == "recovered\n"


def test_files_persist_between_calls_in_one_scope(shell: Any) -> None:
    agent = shell("bubblewrap")
    ok(run(agent, "mkdir -p notes && echo kept > notes/a.txt"))
    assert ok(run(agent, "cat notes/a.txt"))["stdout"] == "kept\n"
    first = sandbox_of(agent)
    ok(run(agent, "true"))
    assert sandbox_of(agent) is first and first.calls == 3  # one sandbox, stable uid


# == roots and workdir =====================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_roots_are_visible_read_write_at_their_own_paths(shell: Any, shared_dir: Any,
                                                         tier: str) -> None:
    first, second = shared_dir(), shared_dir()
    (second / "sub").mkdir()
    os.chmod(second / "sub", 0o777)
    agent = shell(tier, root=[first, second])
    assert ok(run(agent, "pwd"))["stdout"] == f"{first}\n"  # the default: the first root
    assert ok(run(agent, "pwd; touch here", workdir=str(second / "sub"))
              )["stdout"] == f"{second / 'sub'}\n"
    assert (second / "sub" / "here").exists()
    ok(run(agent, f"echo one > {first}/one.txt && cat {first}/one.txt > {second}/copy.txt"))
    assert (second / "copy.txt").read_text() == "one\n"
    (first / "nested").mkdir()
    os.chmod(first / "nested", 0o777)
    assert ok(run(agent, "pwd", workdir="nested"))["stdout"] == f"{first / 'nested'}\n"
    assert ok(run(agent, "pwd", workdir="nested/../nested/."))["stdout"] == f"{first / 'nested'}\n"


@pytest.mark.parametrize("tier", TIERS)
def test_a_workdir_outside_the_roots_is_refused(shell: Any, shared_dir: Any, tier: str) -> None:
    root, outside = shared_dir(), shared_dir()
    (root / "escape").symlink_to(outside)
    agent = shell(tier, root=root)
    for workdir in ("..", "../..", "/", "/etc", str(outside), "escape", "escape/..",
                    f"{root}/../{outside.name}"):
        record = run(agent, "touch ran", workdir=workdir)
        assert record.status == "failed", workdir
        assert "outside the roots" in record.error and "nothing ran" in record.error, record.error
    missing = run(agent, "touch ran", workdir="no-such-dir")
    assert missing.status == "failed" and "not an existing directory" in missing.error
    assert not (root / "ran").exists() and list(outside.iterdir()) == []
    assert ok(run(agent, "pwd"))["stdout"] == f"{root}\n"


def test_without_a_root_each_scope_gets_a_private_workspace(bash_agent: Any) -> None:
    agent = bash_agent(tier="bubblewrap", commands=["ls", "cat"])
    other = bash_agent(tier="bubblewrap", commands=["ls", "cat"])
    ok(run(agent, "echo mine > a.txt"))
    assert ok(run(agent, "cat a.txt"))["stdout"] == "mine\n"
    assert ok(run(other, "ls"))["stdout"] == ""  # another agent: another workspace
    box = sandbox_of(agent)
    workspace = Path(box.roots[0])
    assert box.private_workspace and (workspace / "a.txt").exists()
    assert ok(run(agent, "pwd"))["stdout"] == f"{workspace}\n"
    agent.close()
    assert not workspace.exists() and not box.base.exists() and not box.bin_parent.exists()


def test_calls_of_one_scope_take_turns_and_other_scopes_run_alongside(bash_agent: Any) -> None:
    shared = bash_agent(tier="bubblewrap", commands=["sleep", "cat"])
    calls = [ActionCall(action="run_bash", kwargs={"cmd": f"echo {n} >> log; sleep 0.2"})
             for n in range(3)]
    records = shared.action.execute_actions(calls, concurrency=3)
    assert [r.status for r in records] == ["success"] * 3, [r.error for r in records]
    assert sorted(ok(run(shared, "cat log"))["stdout"].split()) == ["0", "1", "2"]
    apart = bash_agent(tier="bubblewrap", scope="action_call", commands=["sleep", "ls", "touch"])
    started = time.monotonic()
    calls = [ActionCall(action="run_bash", kwargs={"cmd": "touch mine; ls; sleep 0.4"})
             for _ in range(3)]
    records = apart.action.execute_actions(calls, concurrency=3)
    assert [r.result["stdout"] for r in records] == ["mine\n"] * 3  # three fresh workspaces
    assert time.monotonic() - started < 1.1  # side by side
    assert apart.manager.list(kind="bash") == []  # each released after its call


# == the allowlist end to end ==============================================================
@pytest.mark.parametrize("tier", TIERS)
def test_the_allowlist_is_enforced_on_every_command(shell: Any, shared_dir: Any,
                                                    tier: str) -> None:
    root = shared_dir()
    agent = shell(tier, root=root, commands=["ls", "cat"])
    for line in ("touch ran", "ls && touch ran", "ls | touch ran", "ls; touch ran",
                 "echo $(touch ran)", "echo `touch ran`", "(touch ran)", "cat <(touch ran)",
                 "ls\ntouch ran", "/usr/bin/touch ran", "PATH=/usr/bin touch ran",
                 ":(){ :|:& };:", "eval 'touch ran'"):
        record = run(agent, line)
        assert record.status == "failed" and record.error_type == "CommandRefused", line
        assert record.error.startswith("refused, nothing ran:"), record.error
        assert record.result is None
    assert not (root / "ran").exists()
    assert ok(run(agent, "echo fine | cat"))["stdout"] == "fine\n"


@pytest.mark.parametrize("tier", TIERS)
def test_the_path_inside_holds_only_the_allowed_programs(shell: Any, tier: str) -> None:
    agent = shell(tier, commands=["ls", "sh"])
    result = ok(run(agent, 'ls "$PATH"; sh -c "echo \\$PATH"'))
    names = result["stdout"].split()
    assert names[:2] == ["ls", "sh"] and names[2] == sandbox_of(agent).bin_dir(
        Allowlist.resolve(["ls", "sh"])).as_posix()
    # a program that looks another up by name finds only the allowed ones
    record = ok(run(agent, "sh -c 'echo ok'"))
    assert record["stdout"] == "ok\n"


def test_mount_time_errors_are_clear(bash_agent: Any, shared_dir: Any, tmp_path: Path) -> None:
    root = shared_dir()
    tool = root / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    for options, message in (
            ({"commands": ["ls", "no-such-program-xyz"]}, "was not found"),
            ({"commands": ["eval"]}, "never allowed"),
            ({"commands": ["./ls"]}, "absolute path"),
            ({"commands": [str(tool)], "root": root}, "writable root"),
            ({"root": tmp_path / "missing"}, "not an existing directory"),
            ({"root": "/"}, "system directory"),
            ({"root": "/etc"}, "system directory"),
            ({"root": "/tmp"}, "contains the sandboxes' own directory"),
            ({"root": []}, "at least one"),
            ({"env": {"PATH": "/tmp"}}, "may not set 'PATH'"),
            ({"env_passthrough": ["LD_PRELOAD"]}, "may not set 'LD_PRELOAD'")):
        with pytest.raises(ValueError, match=message):
            bash_agent(**options)


# == the environment =======================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_the_environment_is_built_never_inherited(shell: Any, tier: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_SECRET_TOKEN", "s3cr3t-host-value")
    monkeypatch.setenv("PASSED_ON", "passed-value")
    agent = shell(tier, env={"GIVEN": "given-value"}, env_passthrough=["PASSED_ON"])
    result = ok(run(agent, 'printenv; [ "$PASSED_ON" = passed-value ] && echo passed-through; '
                           '[ "$GIVEN" = given-value ] && echo given'))
    names = {line.split("=", 1)[0] for line in result["stdout"].splitlines() if "=" in line}
    assert "HOST_SECRET_TOKEN" not in names and "s3cr3t-host-value" not in result["stdout"]
    assert "passed-through" in result["stdout"] and "given" in result["stdout"]
    # the values the child sees are secrets: masked wherever they appear in records
    assert "passed-value" not in result["stdout"] and "given-value" not in result["stdout"]
    assert names <= {"GIVEN", "PASSED_ON", "PATH", "HOME", "LANG", "TMPDIR", "PWD", "SHLVL", "_",
                     "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}, names


# == time and output =======================================================================
def _alive_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("tier", TIERS)
def test_a_timeout_kills_the_whole_tree_and_the_next_call_works(shell: Any, tier: str) -> None:
    agent = shell(tier)
    nap = f"300.{os.getpid()}{time.monotonic_ns() % 100_000}"
    started = time.monotonic()
    record = run(agent, f"echo started; sleep {nap} & sleep {nap} | cat; wait", timeout=0.8)
    assert time.monotonic() - started < 2
    assert record.status == "failed" and "timed out after 0.8s" in record.error, record.error
    assert record.result["timed_out"] is True and record.result["stdout"] == "started\n"
    deadline = time.monotonic() + 2
    while _alive_with(nap) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive_with(nap), "a process of the timed-out command survived"
    assert ok(run(agent, "echo next"))["stdout"] == "next\n"


@pytest.mark.parametrize("tier", TIERS)
def test_cut_output_is_marked_and_kept_whole_as_an_artifact(shell: Any, tier: str) -> None:
    agent = shell(tier, max_output_bytes=2_000)
    record = run(agent, "seq 1 5000; echo done >&2")
    result = ok(record)
    assert result["truncated"] is True
    assert "[... output truncated:" in result["stdout"]  # the isolation's marker
    assert len(json.dumps(result)) <= 2_300
    assert result["stderr"] == "done\n"
    kept = agent.action.read_action_artifact(action_call_id=record.call_id)
    kinds = [artifact["kind"] for artifact in kept]
    assert "stdout" in kinds and {r["artifact_id"] for r in record.artifact_refs} >= \
        {a["artifact_id"] for a in kept}
    stdout = next(a for a in kept if a["kind"] == "stdout")["content"]
    assert stdout.split() == [str(n) for n in range(1, 5001)]  # every line, in order


# == policy ================================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_a_model_cannot_widen_the_policy(shell: Any, shared_dir: Any, tier: str) -> None:
    root = shared_dir()
    agent = shell(tier, root=root, commands=["ls", "cat"])
    wider = {"command_allowlist": ["ls", "cat", "touch", "rm", "sh"], "workspace_roots": ["/"],
             "env_passthrough": ["HOME"], "network": True, "timeout_seconds": 100.0}
    calls = [ActionCall(action="run_bash", source="model", kwargs={"cmd": "touch ran"},
                        policy=wider),
             ActionCall(action="run_bash", source="model",
                        kwargs={"cmd": "cat /etc/hostname", "workdir": "/etc"}, policy=wider)]
    touched, escaped = agent.action.execute_actions(calls)
    assert touched.status == "failed" and "'touch' is not an allowed command" in touched.error
    assert escaped.status == "failed" and "outside the roots" in escaped.error
    assert not (root / "ran").exists()
    narrower = ActionCall(action="run_bash", source="model", kwargs={"cmd": "ls"},
                          policy={"timeout_seconds": 2.0, "max_processes": 4})
    (record,) = agent.action.execute_actions([narrower])
    assert record.status == "success", record.error  # narrowing is fine


@pytest.mark.parametrize("tier", TIERS)
def test_the_host_can_narrow_a_call(shell: Any, shared_dir: Any, tier: str) -> None:
    root = shared_dir()
    (root / "inner").mkdir()
    os.chmod(root / "inner", 0o777)
    agent = shell(tier, root=root, commands=["ls", "cat", "touch"])
    narrow = {"command_allowlist": ["/usr/bin/ls"], "workspace_roots": [str(root / "inner")]}
    calls = [ActionCall(action="run_bash", kwargs={"cmd": "touch x"}, policy=narrow),
             ActionCall(action="run_bash", kwargs={"cmd": "ls", "workdir": str(root)},
                        policy=narrow),
             ActionCall(action="run_bash", kwargs={"cmd": "pwd; ls"}, policy=narrow)]
    refused, outside, fine = agent.action.execute_actions(calls, concurrency=1)
    assert "'touch' is not an allowed command" in refused.error
    assert "outside the roots" in outside.error
    assert ok(fine)["stdout"] == f"{root / 'inner'}\n"
    # a call's roots only narrow the package's: /tmp intersected with the root is the root
    wider = ActionCall(action="run_bash", kwargs={"cmd": "pwd", "workdir": "/tmp"},
                       policy={"workspace_roots": ["/tmp"]})
    (record,) = agent.action.execute_actions([wider])
    assert record.status == "failed" and "outside the roots" in record.error, record.error
    (record,) = agent.action.execute_actions([ActionCall(
        action="run_bash", kwargs={"cmd": "pwd"}, policy={"workspace_roots": ["/tmp"]})])
    assert ok(record)["stdout"] == f"{root}\n"


def test_a_policy_it_cannot_enforce_blocks(shell: Any) -> None:
    agent = shell("bubblewrap")
    agent.set_policy(path_deny=["*.secret"])
    record = run(agent, "ls")
    assert record.status == "blocked" and record.error_type == "PolicyNotEnforceable"
    assert "path_deny" in record.error
    agent.set_policy(path_deny=None)
    assert ok(run(agent, "echo back"))["stdout"] == "back\n"


def test_limits_come_from_the_calls_policy(shell: Any) -> None:
    # (the CPU limit: see test_bash_attacks.test_cpu_spin)
    agent = shell("bubblewrap", file_mb=1, processes=4, commands=["head", "ls", "sh"])
    result = ok(run(agent, "head -c 3000000 /dev/zero > big; echo rc=$?; ls -s --block-size=1 big"))
    assert "rc=153" in result["stdout"] and "File size limit exceeded" in result["stderr"]
    assert int(result["stdout"].split()[-2]) <= 1 << 20
    forks = ok(run(agent, "sh -c 'sh -c \"sh -c \\\"sh -c ls\\\"\"' 2>&1; echo rc=$?"))
    assert "Cannot fork" in forks["stdout"] and "rc=2" in forks["stdout"]  # past 4 processes
    assert ok(run(agent, "ls"))["exit_code"] == 0


# == descriptions ==========================================================================
@pytest.mark.parametrize("mode", ["append", "override", "default"])
def test_desc_and_desc_mode(bash_agent: Any, shared_dir: Any, mode: str) -> None:
    root = shared_dir()
    agent = bash_agent(root=root, commands=["ls", "cat"], desc="The logs are in ./logs.",
                       desc_mode=mode)
    (info,) = agent.action.get_action_info()
    builtin = describe(Allowlist.resolve(["ls", "cat"]), [str(root)], False)
    expected = {"append": builtin + "\nThe logs are in ./logs.",
                "override": "The logs are in ./logs.", "default": builtin}[mode]
    assert info["description"] == expected
    assert info["name"] == "run_bash" and info["kwargs"]["required"] == ["cmd"]
    assert "Allowed programs: cat, ls." in builtin and str(root) in builtin


# == the command line ======================================================================
def cli_call(cwd: Path, cmd: str, **env: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("agently-core")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    return subprocess.run(
        [str(cli), "call", "run_bash", "--enable", "bash", "--kwargs", json.dumps({"cmd": cmd})],
        cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_cli_call_run_bash(tmp_path: Path) -> None:
    sandboxes = Path(tempfile.mkdtemp(prefix="agently-cli-root-", dir="/tmp"))
    try:
        done = cli_call(tmp_path, "echo hi; echo x > f; cat f | wc -l",
                        AGENTLY_SANDBOX_ROOT=str(sandboxes))
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        assert record["status"] == "success"
        assert record["result"]["stdout"] == "hi\n1\n"
        assert list(sandboxes.iterdir()) == []  # the private workspace went with the agent
        refused = json.loads(cli_call(tmp_path, "rm -rf x", AGENTLY_SANDBOX_ROOT=str(sandboxes)
                                      ).stdout)
        assert refused["status"] == "failed" and "'rm' is not an allowed command" in refused["error"]
    finally:
        shutil.rmtree(sandboxes, ignore_errors=True)


def test_a_call_that_times_out_behind_a_slow_one_never_started(shell: Any) -> None:
    import anyio

    from agently_core._sync import run_sync

    agent = shell("bubblewrap", commands=[*COMMANDS, "sleep", "touch"])
    records: dict[str, Any] = {}

    async def go(name: str, cmd: str, timeout: float | None = None) -> None:
        records[name] = await agent.action.async_execute_action(
            "run_bash", {"cmd": cmd}, timeout=timeout)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(go, "slow", "sleep 1.2; echo slow")
            await anyio.sleep(0.3)
            group.start_soon(go, "waiting", "touch ran", 0.4)
            group.start_soon(go, "after", "echo after")

    run_sync(scenario)
    assert ok(records["slow"])["stdout"] == "slow\n"
    waited = records["waiting"]
    assert waited.status == "failed" and "never started" in waited.error, waited.error
    assert "while it waited for the Bash sandbox" in waited.error
    assert ok(records["after"])["stdout"] == "after\n"
    assert records["after"].meta["queued_ms"] > 400
    assert ok(run(agent, "ls ran || echo none"))["stdout"] == "none\n"  # it never ran
