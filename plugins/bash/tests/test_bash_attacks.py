"""The attack suite of run_bash, through a real agent (``agent.enable_shell(tier=...)``), in
both real isolation tiers, and in the Docker tier (``run_bash`` served by the docker
provider, ``[providers] bash = "docker"``: the calls run in a container that mounts the
workspace and the roots at their host paths). A line run past the checker is traced with
strace natively (the supervisor's command from its start); in the Docker tier what it
managed is looked at instead.

Each case: the attack's record is refused, failed or contained with a clear error or
output, the host is unharmed (canary files outside the roots untouched, no host process
signalled, nothing left running), and the NEXT run_bash call works. Some attacks are
stopped by the analyser before anything runs (refused), the others by the sandbox.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_bash.programs import Allowlist
from agently_core_bash.sandbox import BASH, BashSandbox
from agently_core_isolation import testing
from agently_core_isolation.sandbox import Limits
from agently_core_isolation.testing import ALL_TIERS, Canary, dump, got_traffic

from agently_core.testing import require_program

REPO = Path(__file__).resolve().parents[3]
COMMANDS = ["ls", "cat", "head", "wc", "grep", "touch", "mkdir", "cp", "ln", "printenv", "sleep",
            "seq", "xargs", "nohup", "setsid", "awk", "yes", "sh", "timeout", "kill"]
canary = pytest.fixture(testing.canary)
markers = pytest.fixture(testing.markers)


# -- helpers -------------------------------------------------------------------------------
def run(agent: Any, cmd: str, **options: Any) -> Any:
    workdir = options.pop("workdir", None)
    kwargs = {"cmd": cmd} if workdir is None else {"cmd": cmd, "workdir": workdir}
    return agent.action.execute_action("run_bash", kwargs, **options)


def sandbox_of(agent: Any) -> BashSandbox:
    return testing.only_resource(agent, "bash")


def next_call_works(agent: Any) -> None:
    testing.next_call_works(agent, "run_bash", {"cmd": "echo 42"})


def refused(record: Any) -> None:
    assert record.status == "failed" and record.error_type == "CommandRefused", dump(record)
    assert record.result is None  # nothing ran


def wait_gone(marker: str) -> list[tuple[int, int]]:
    """The processes still carrying ``marker`` after up to 1.5 s."""
    return testing.wait_gone(marker, timeout=1.5)


@pytest.fixture
def tier_agent(bash_agent: Callable[..., Any], request: pytest.FixtureRequest
               ) -> Callable[..., Any]:
    """``tier_agent(tier, **enable_shell_options)``: an agent whose run_bash runs in
    ``tier`` (the Docker tier: served by the docker provider)."""
    return testing.attack_agents(bash_agent, kind="bash", request=request)


@pytest.fixture
def attack(tier_agent: Callable[..., Any], shared_dir: Callable[[], Path]) -> Callable[..., Any]:
    """``attack(tier, **options)``: an agent with one shared root (``agent.root``)."""
    defaults = {"timeout": 5, "processes": 32, "file_mb": 4, "max_output_bytes": 20_000,
                "commands": COMMANDS}

    def make(tier: str, **options: Any) -> Any:
        root = options.pop("root", None) or shared_dir()
        agent = tier_agent(tier, root=root, **{**defaults, **options})
        agent.root = root
        return agent

    return make


# == shell injection ========================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_injection_through_arguments(attack: Any, tier: str, canary: Canary) -> None:
    agent = attack(tier, commands=["ls", "cat", "grep"])
    target = canary.file
    for line in (f"ls; cp {target} stolen", f"ls $(touch {canary.dir}/pwned)",
                 f"ls `touch {canary.dir}/pwned`", f"ls\ntouch {canary.dir}/pwned",
                 f"grep x \"$(touch {canary.dir}/pwned)\"", f"ls && rm -f {target}",
                 f"ls || rm -f {target}", f"ls | rm -f {target}", f"ls & rm -f {target}",
                 f'ls "x"\nrm -f {target}', f"cat <(rm -f {target})", f"ls > >(rm -f {target})"):
        refused(run(agent, line))
    # the same text inside quotes is data, handed to ls as one argument
    quoted = run(agent, f"ls 'a; rm -f {target}' \"$(echo b)\nrm -f {target}\"")
    assert quoted.status == "failed" or quoted.result["exit_code"] != 0
    assert quoted.error_type == "CommandRefused" or "No such file" in quoted.result["stderr"]
    assert canary.untouched()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_runtime_code_paths_of_bash_are_refused(attack: Any, tier: str) -> None:
    # each hides a command in data that Bash would evaluate at run time
    agent = attack(tier, commands=["ls", "cat"])
    pwned = "a[$(touch pwned)]"
    for line in (f"x='{pwned}'; [ -v \"$x\" ]", f"x='{pwned}'; test -v \"$x\"",
                 f"x='{pwned}'; printf -v \"$x\" y", f"echo '{pwned}' | read OPTIND",
                 f"x='{pwned}'; echo ${{!x}}", f"x='{pwned}'; echo $((x))",
                 f"x='{pwned}'; echo ${{y:$x}}", "x='$(touch pwned)'; echo ${x@P}",
                 "eval 'touch pwned'", "trap 'touch pwned' EXIT", "PS4='$(touch pwned)' ls",
                 "BASH_ENV=./x sh -c ls", "enable -f ./x.so x", "hash -p /usr/bin/touch ls; ls",
                 "f() { touch pwned; }; f", "alias ls=touch; ls pwned", "source ./script",
                 "exec touch pwned", "command touch pwned", "cat <<EOF\n$(touch pwned)\nEOF"):
        refused(run(agent, line))
    assert not (agent.root / "pwned").exists()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_relative_and_planted_programs_are_refused(attack: Any, tier: str) -> None:
    agent = attack(tier)
    assert run(agent, "ln -s /usr/bin/touch ls; ln -s /usr/bin/touch sh").status == "success"
    (agent.root / "script.sh").write_text("touch pwned\n")
    for line in ("./ls pwned", "./sh -c 'touch pwned'", "sh script.sh", "sh < script.sh",
                 f"{agent.root}/ls pwned", "../../usr/bin/touch pwned", "/tmp/ls pwned",
                 "ln -s /usr/bin/touch t; ./t pwned", "xargs python3 < script.sh",
                 "xargs sh < script.sh", "find . -exec touch pwned \\;"):
        refused(run(agent, line))
    assert not (agent.root / "pwned").exists()
    next_call_works(agent)


# == host files =============================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_etc_shadow(attack: Any, tier: str) -> None:
    agent = attack(tier)
    record = run(agent, "cat /etc/shadow; head -c 100 /etc/shadow; grep root /etc/shadow")
    assert record.status == "success", record.error
    assert "root:" not in dump(record)
    assert "Permission denied" in record.result["stderr"] or \
        "No such file" in record.result["stderr"]
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_the_host_environment(attack: Any, tier: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    monkeypatch.setenv("PAYMENTS_API_KEY", secret)
    agent = attack(tier)
    record = run(agent, f"printenv; echo $PAYMENTS_API_KEY; cat /proc/{os.getpid()}/environ "
                 "/proc/1/environ /proc/$PPID/environ; cat /proc/self/environ")
    assert record.status == "success", record.error
    assert secret not in dump(record) and "PAYMENTS_API_KEY" not in record.result["stdout"]
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_a_host_file_outside_the_roots(attack: Any, tier: str, canary: Canary) -> None:
    agent = attack(tier)
    record = run(agent, f"cat {canary.file} {REPO / 'pyproject.toml'}; ls {canary.dir} {REPO}")
    assert record.status == "success", record.error
    assert canary.text not in dump(record) and "agently-core" not in record.result["stdout"]
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_write_outside_the_roots(attack: Any, tier: str, canary: Canary) -> None:
    agent = attack(tier)
    name = f"agently-attack-{uuid.uuid4().hex[:8]}"
    record = run(agent, f"echo PWNED > {canary.file}; echo PWNED >> {canary.dir}/{name}; "
                 f"touch {REPO}/{name}; cp {canary.file} {canary.dir}/copy; "
                 f"mkdir /tmp/{name}; echo x > /tmp/{name}.txt; ls /tmp")
    assert record.status == "success", record.error
    assert canary.untouched()
    assert not (REPO / name).exists() and not Path("/tmp", name).exists()
    assert not Path("/tmp", f"{name}.txt").exists()  # the sandbox's /tmp is its own
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_dotdot_and_symlink_escapes(attack: Any, tier: str, canary: Canary) -> None:
    agent = attack(tier)
    (agent.root / "planted").symlink_to(canary.dir)
    for workdir in ("..", "planted", "../" + canary.dir.name, str(canary.dir)):
        record = run(agent, "touch pwned", workdir=workdir)
        assert record.status == "failed" and "outside the roots" in record.error, workdir
    record = run(agent, f"ln -s {canary.dir} own; cat own/canary.txt planted/canary.txt; "
                 "echo PWNED > own/new; echo PWNED > planted/canary.txt; "
                 f"cd ..; cd ..; ls; cat {canary.dir.name}/canary.txt; "
                 f"ln {canary.file} hard")
    assert record.status == "success", record.error
    assert canary.text not in dump(record)
    assert canary.untouched()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_another_scopes_workspace(attack: Any, tier: str, tier_agent: Any) -> None:
    victim = tier_agent(tier, commands=["cat", "ls"])  # a private workspace
    secret = f"tenant-secret-{uuid.uuid4().hex}"
    assert run(victim, f"echo {secret} > private.txt").status == "success"
    target = Path(sandbox_of(victim).roots[0])
    attacker = attack(tier)
    record = run(attacker, f"cat {target}/private.txt; ls {target} {target.parent}; "
                 f"echo x > {target}/planted.txt")
    assert record.status == "success", record.error
    assert secret not in dump(record)
    assert sorted(p.name for p in target.iterdir()) == ["private.txt"]
    assert run(victim, "cat private.txt").result["stdout"] == f"{secret}\n"
    next_call_works(attacker)


# == the network ============================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_dev_tcp_to_a_service_on_host_loopback(attack: Any, tier: str) -> None:
    agent = attack(tier)
    with testing.tcp_listener() as server:
        port = server.getsockname()[1]
        record = run(agent, f"echo leak > /dev/tcp/127.0.0.1/{port}; "
                     f"p=/dev/tcp/127.0.0.1/{port}; cat /etc/hostname > $p; echo rc=$?")
        assert not got_traffic(server), "the host's loopback service saw a connection"
    assert record.status == "success", record.error
    assert "rc=1" in record.result["stdout"]
    assert "Connection refused" in record.result["stderr"] or \
        "Permission denied" in record.result["stderr"], record.result
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_a_network_client_cannot_reach_the_host(attack: Any, tier: str) -> None:
    require_program("curl")
    agent = attack(tier, commands=["curl"])
    with testing.tcp_listener() as server:
        record = run(agent, f"curl -sS -m 2 http://127.0.0.1:{server.getsockname()[1]}/; "
                     "curl -sS -m 2 https://1.1.1.1/")
        assert not got_traffic(server)
    assert record.status == "success" and record.result["exit_code"] != 0, dump(record)
    assert "curl:" in record.result["stderr"]
    next_call_works(agent)


# == resource exhaustion ===================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_fork_bomb(attack: Any, tier: str, markers: Any) -> None:
    agent = attack(tier, processes=12)
    refused(run(agent, ":(){ :|:& };:"))  # a function: refused before anything runs
    nap = markers()
    record = run(agent, f"for i in $(seq 100); do sleep {nap} & done; wait", timeout=1.2)
    # bash cannot fork past the limit: it retries, then gives up or meets the timeout
    assert record.status == "failed" or "Resource temporarily unavailable" in \
        record.result["stderr"], dump(record)
    text = dump(record)
    assert "Resource temporarily unavailable" in text or "timed out" in text
    assert testing.host_can_fork()
    assert not wait_gone(nap), "a process of the fork bomb outlived the call"
    record = run(agent, f"seq 1000 | xargs -P 1000 -n 1 sleep {nap}", timeout=0.8)
    assert record.status == "failed" or record.result["exit_code"] != 0
    assert not wait_gone(nap)
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_cpu_spin(attack: Any, tier: str) -> None:
    agent = attack(tier)
    started = time.monotonic()
    record = run(agent, "while :; do :; done", timeout=0.6)
    assert record.status == "failed" and "timed out after 0.6s" in record.error
    assert time.monotonic() - started < 2
    spinning = attack(tier, cpu_seconds=1)
    record = run(spinning, "while :; do :; done", timeout=4)
    assert record.status == "failed" and "CPU time limit" in record.error, dump(record)
    next_call_works(agent)
    next_call_works(spinning)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_endless_output(attack: Any, tier: str) -> None:
    agent = attack(tier, max_output_bytes=5_000)
    record = run(agent, "yes spam", timeout=5)
    text = dump(record)
    assert record.status == "failed" and "stopped: the output passed" in record.error, text[:500]
    assert record.result["truncated"] is True and "output truncated" in record.result["stdout"]
    assert len(text) < 20_000, len(text)  # bounded, however much was printed
    kept = agent.action.read_action_artifact(action_call_id=record.call_id)
    stdout = next(a for a in kept if a["kind"] == "stdout")
    assert stdout["content"].startswith("spam\nspam\n")
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_huge_file(attack: Any, tier: str) -> None:
    agent = attack(tier, file_mb=1)
    record = run(agent, "head -c 50000000 /dev/zero > huge.bin; yes | head -c 9000000 >> huge.bin")
    assert record.status == "success", record.error
    assert "File size limit exceeded" in record.result["stderr"]
    assert (agent.root / "huge.bin").stat().st_size <= 1 << 20
    next_call_works(agent)


# == processes and signals =================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_detached_children_do_not_outlive_the_call(attack: Any, tier: str,
                                                   markers: Any) -> None:
    agent = attack(tier)
    naps = [markers() for _ in range(4)]
    record = run(agent, f"nohup sleep {naps[0]} > /dev/null 2>&1 & setsid sleep {naps[1]} & "
                 f"(sleep {naps[2]} &) ; setsid -f sleep {naps[3]}; echo started")
    assert record.status == "success", record.error
    assert record.result["stdout"] == "started\n"
    for nap in naps:
        assert not wait_gone(nap), f"a detached child ({nap}) outlived the call"
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_signal_to_host_processes(attack: Any, tier: str, markers: Any) -> None:
    agent = attack(tier)
    victim = subprocess.Popen(["sleep", markers()])  # another host process (root)
    try:
        record = run(agent, f"kill -9 {victim.pid}; kill -9 {os.getpid()}; kill -9 -1; "
                     "kill -9 1; echo survived")
        assert victim.poll() is None, "the sandbox killed a host process"
        assert record.status in ("success", "failed")
    finally:
        victim.kill()
        victim.wait()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_awk_system_finds_no_other_program(attack: Any, tier: str, canary: Canary) -> None:
    # an allowed program that runs others: the checker refuses awk's system(); run past the
    # checker (under strace), the sandbox starts nothing but allowed programs (the PATH
    # inside holds only allowed names, and the kernel executes nothing else), and holds
    # outside files away
    agent = attack(tier)
    line = ("awk 'BEGIN { system(\"rm -f x; id; python3 -c 1\") }'; "
            f"awk 'BEGIN {{ system(\"/usr/bin/rm -f {canary.file} x; /usr/bin/id; "
            f"echo PWNED > {canary.dir}/pwned\") }}'; echo done")
    refused(run(agent, line))
    next_call_works(agent)
    box, root = sandbox_of(agent), str(agent.root)
    allowlist = Allowlist.resolve(COMMANDS, roots=[root])
    if tier == testing.DOCKER:  # no host command to trace from its start: the line runs
        (agent.root / "x").write_text("kept")  # past the checker in the container, and
        done = anyio.run(functools.partial(  # what it managed is looked at instead
            box.run, line, cwd=root, roots=[root], allowlist=allowlist,
            limits=Limits(wall_seconds=5), network=False, env={}))
        out = done.stdout + done.stderr
        assert done.stdout.endswith("done\n"), out
        assert "/usr/bin/rm: Permission denied" in out and "/usr/bin/id: Permission denied" in out
        assert (agent.root / "x").read_text() == "kept" and "uid=" not in out  # neither ran
        assert canary.untouched()
        next_call_works(agent)
        return
    require_program("strace")
    done = testing.trace_execs(tier, box.spec(
        line, cwd=root, roots=[root], allowlist=allowlist, limits=Limits(wall_seconds=5),
        network=False, env={}), uid=box.uid)
    assert done.stdout.endswith("done\n"), done.out
    assert any(path.endswith("/awk") for path in done.started()), done.execs
    assert done.tried("/usr/bin/rm") and done.tried("/usr/bin/id"), done.execs
    assert done.started_outside([*(p.path for p in allowlist.programs), BASH]) == [], done.execs
    assert "uid=" not in done.out
    assert canary.untouched()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_proc_shows_nothing_of_the_host(attack: Any, tier: str, markers: Any) -> None:
    agent = attack(tier)
    nap = markers()
    host = subprocess.Popen(["sleep", nap])
    try:
        record = run(agent, f"cat /proc/{host.pid}/cmdline; echo; cat /proc/1/cmdline; echo; "
                     "ls /proc | wc -l")
    finally:
        host.kill()
        host.wait()
    assert record.status == "success", record.error
    host_sleep, pid_1, *_ = record.result["stdout"].split("\n")
    assert nap not in record.result["stdout"] and "sleep" not in host_sleep
    if tier == testing.DOCKER:  # the container's own init, over its own sleep
        assert pid_1.startswith("/sbin/docker-init\0--\0sleep\0"), pid_1
    else:
        assert "sleep" not in pid_1
    next_call_works(agent)
