"""``run_bash`` served by the docker provider (``[providers] bash = "docker"``): the same
action and executor as the native sandbox (the line analyser, host-side path checks), each
call in the scope's warm hardened container over a workspace bind-mounted at its host path.
One agent (one container, replaced once by the timeout case) serves the cases that leave it
usable."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest
from agently_core_bash.programs import Allowlist
from agently_core_bash.sandbox import BashSandbox
from agently_core_docker.bash_box import TMP_MOUNT, check_local_engine
from agently_core_docker.engine import OWNER_LABEL
from agently_core_docker.provider import DockerProvider
from agently_core_docker.settings import DockerConfigError
from agently_core_docker.testing import our_containers
from agently_core_docker.workers import IMAGE_VARIABLE
from agently_core_isolation.sandbox import Limits, landlock_abi, sandbox_root

import agently_core as Agently
from agently_core.testing import ProviderConformance, require

DOCKER = {"providers": {"bash": "docker"}}
COMMANDS = ["ls", "cat", "echo", "sleep", "touch", "yes", "head", "id", "mkdir"]
TIMEOUT = 3.0
DISK_MB = 8


def run(agent: Any, cmd: str, **arguments: Any) -> Any:
    return agent.action.execute_action("run_bash", {"cmd": cmd, **arguments})


def box(agent: Any) -> Any:
    [handle] = agent.manager.list(kind="bash")
    assert handle.provider == "docker"
    return agent.manager.resource(handle)


def engine(docker_engine: str) -> Any:
    return docker.DockerClient(base_url=docker_engine, version="auto")


def ours(docker_engine: str, agent: Any) -> list[str]:
    client = engine(docker_engine)
    try:
        return [c.id for c in client.containers.list(
            all=True, filters={"label": f"{OWNER_LABEL}=agent:{agent.id}"})]
    finally:
        client.close()


def processes(docker_engine: str, container_id: str) -> list[list[str]]:
    """The container's processes as the engine sees them (``docker top``): uid, pid, ppid,
    ..., command."""
    client = engine(docker_engine)
    try:
        return client.api.top(container_id, ps_args="-eo uid,pid,stat,args")["Processes"]
    finally:
        client.close()


@pytest.fixture(scope="module")
def agent(docker_engine: str, docker_default_image: str) -> Iterator[Any]:
    made = Agently.create_agent(config=DOCKER)
    made.enable_shell(commands=COMMANDS, timeout=TIMEOUT, env={"GREETING": "hello"},
                      disk_mb=DISK_MB)
    yield made
    made.close()


def test_files_persist_in_the_workspace_between_calls(agent: Any) -> None:
    first = run(agent, 'echo kept > notes.txt; mkdir -p sub; [ "$GREETING" = hello ] && '
                       "echo greeted; id -u; pwd")
    assert first.status == "success", first.error
    sandbox = box(agent)
    assert isinstance(sandbox, BashSandbox)  # the bash executor runs it as its own
    greeting, uid, cwd = first.result["stdout"].split()
    assert greeting == "greeted" and int(uid) == sandbox.uid != 0
    assert cwd == sandbox.roots[0]  # the host path, bound at the same place
    again = run(agent, "cat notes.txt", workdir=".")
    assert again.result["stdout"] == "kept\n"
    assert (Path(sandbox.roots[0]) / "notes.txt").read_text() == "kept\n"  # on the host
    assert run(agent, "ls", workdir="sub").result["exit_code"] == 0


def test_the_container_is_hardened(agent: Any, docker_engine: str) -> None:
    assert run(agent, "echo up").status == "success"
    sandbox = box(agent)
    client = engine(docker_engine)
    try:
        attrs = client.api.inspect_container(sandbox.container.id)
    finally:
        client.close()
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False and host["Init"] is True
    assert host["NanoCpus"] == 1_000_000_000 and host["IpcMode"] == "private"
    assert host["Tmpfs"] == {"/tmp": TMP_MOUNT}  # root's: the calls cannot write /tmp
    assert host["PidsLimit"] == 64 + 4 and host["Memory"] == host["MemorySwap"] == 1 << 30
    assert attrs["Config"]["User"] == "65534:65534"  # the calls run as the sandbox's uid
    binds = {m["Destination"]: (m["Source"], m["RW"]) for m in attrs["Mounts"]}
    workspace = sandbox.roots[0]
    assert binds[workspace] == (workspace, True)
    assert binds[str(sandbox.home)] == (str(sandbox.home), True)
    assert binds[str(sandbox.bin_parent)] == (str(sandbox.bin_parent), False)
    assert len(binds) == 4 and not any(s.endswith(".sock") for s, _ in binds.values())
    # Landlock inside the container wherever the kernel has it (Docker's seccomp profile
    # lets it through here)
    assert sandbox.landlock == (landlock_abi() >= 4)


def test_a_command_outside_the_allowlist_is_refused_before_anything_runs(agent: Any) -> None:
    record = run(agent, "touch ran.txt; python3 -c 'print(1)'")
    assert record.status == "failed" and "refused, nothing ran" in record.error
    assert "'python3' is not an allowed command" in record.error
    assert not (Path(box(agent).roots[0]) / "ran.txt").exists()


def test_the_kernel_refuses_other_programs_even_past_the_analyser(agent: Any) -> None:
    """The Landlock exec allowlist inside the container: a line the analyser would refuse,
    given straight to the sandbox, cannot execute a program outside the allowlist."""
    run(agent, "echo warm")
    sandbox = box(agent)
    require(sandbox.landlock, "Landlock (ABI 4 or later) inside a container")
    allowlist = Allowlist.resolve(["cat", "echo"])

    async def direct(line: str) -> Any:
        return await sandbox.run(line, cwd=sandbox.roots[0], roots=sandbox.roots,
                                 allowlist=allowlist, limits=Limits(processes=16),
                                 network=False, env={})

    refused = anyio.run(direct, "/usr/bin/python3 -c 'print(1)'; /usr/bin/id")
    assert refused.exit_code == 126 and refused.stderr.count("Permission denied") == 2
    allowed = anyio.run(direct, "echo via-bash; cat /proc/self/limits")
    assert allowed.exit_code == 0 and "via-bash" in allowed.stdout
    limits = {line[:26].strip(): line[26:].split()[0] for line in allowed.stdout.splitlines()[2:]}
    assert limits["Max processes"] == "17"  # the call's rlimits (the launcher counts too)
    assert limits["Max file size"] == str(64 * 1024 * 1024)


def test_a_program_outside_the_system_trees_is_refused_before_anything_runs(
        agent: Any, tmp_path: Path) -> None:
    """A host program outside the system trees is not in the container."""
    run(agent, "echo warm")
    sandbox = box(agent)
    tool = tmp_path / "tool"
    shutil.copy("/usr/bin/true", tool)
    outside = Allowlist.resolve(["echo", str(tool)])
    assert outside.extra_read_only() == [str(tool)]

    async def direct() -> Any:
        return await sandbox.run("touch ran.txt", cwd=sandbox.roots[0], roots=sandbox.roots,
                                 allowlist=outside, limits=Limits(), network=False, env={})

    with pytest.raises(ValueError, match="outside the system trees"):
        anyio.run(direct)
    assert not (Path(sandbox.roots[0]) / "ran.txt").exists()


def test_writing_outside_the_workspace_fails(agent: Any) -> None:
    record = run(agent, "touch /etc/x; touch /x; touch /usr/bin/x; echo y > /tmp/y; "
                        f"touch {box(agent).bin_parent}/x; echo rc=$?")
    assert record.status == "success", record.error
    stderr = record.result["stderr"]
    assert stderr.count("Read-only file system") + stderr.count("Permission denied") == 5, stderr
    assert "rc=1" in record.result["stdout"]


def test_the_workspace_bound_holds_in_the_container(agent: Any) -> None:
    record = run(agent, f"head -c {(DISK_MB + 1) << 20} /dev/zero > big; echo rc=$?")
    assert "rc=1" in record.result["stdout"]
    assert "No space left on device" in record.result["stderr"]
    assert f"may hold at most {DISK_MB} MiB" in record.result["stderr"]  # the executor's note
    assert run(agent, ": > big; echo freed").result["stdout"] == "freed\n"


def test_nothing_is_left_running_after_a_call(agent: Any, docker_engine: str) -> None:
    record = run(agent, "sleep 1000 & sleep 999 & echo started")
    assert record.status == "success" and record.result["stdout"] == "started\n"
    sandbox = box(agent)
    left = processes(docker_engine, sandbox.container.id)
    assert not [p for p in left if "sleep 99" in p[-1]], left
    assert not [p for p in left if "Z" in p[2]], left  # docker's init reaped them
    assert not [p for p in left if p[0] == str(sandbox.uid)], left


def test_an_output_flood_is_cut(agent: Any, docker_engine: str) -> None:
    began = time.monotonic()
    record = run(agent, "yes")
    assert record.status == "failed" and "the output passed" in record.error
    assert record.result["truncated"] is True and len(record.result["stdout"]) < 200_000
    assert time.monotonic() - began < TIMEOUT  # stopped by the cap, not the clock
    left = processes(docker_engine, box(agent).container.id)
    assert not [p for p in left if p[-1].startswith("yes")], left
    assert run(agent, "echo after").result["stdout"] == "after\n"


def test_a_timeout_kills_the_container_and_the_next_call_gets_a_fresh_one(
        agent: Any, docker_engine: str) -> None:
    run(agent, "echo still > before.txt")
    old = box(agent).container.id
    record = run(agent, "sleep 30")
    assert record.status == "failed" and "timed out" in record.error
    assert record.result["timed_out"] is True
    assert old not in ours(docker_engine, agent)  # killed and removed
    after = run(agent, "cat before.txt")
    assert after.status == "success", after.error
    assert after.result["stdout"] == "still\n"  # the host workspace kept its files
    assert box(agent).container.id != old


def test_release_leaves_no_container_and_no_workspace(docker_engine: str,
                                                      docker_default_image: str) -> None:
    made = Agently.create_agent(config=DOCKER)
    made.enable_shell(commands=["echo"])
    try:
        assert run(made, "echo hi").result["stdout"] == "hi\n"
        sandbox = box(made)
        assert len(ours(docker_engine, made)) == 1
    finally:
        made.close()
    assert ours(docker_engine, made) == []
    assert not os.path.exists(sandbox.base) and not os.path.exists(sandbox.bin_parent)


@pytest.fixture
def shared_tree() -> Iterator[Path]:
    """A host directory under /tmp any uid may use (the sandbox's dedicated uid writes it)."""
    folder = Path(tempfile.mkdtemp(prefix="agently-docker-bash-", dir="/tmp"))
    try:
        folder.chmod(0o777)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_host_roots_are_bound_at_their_paths(docker_engine: str, docker_default_image: str,
                                             shared_tree: Path) -> None:
    tmp_path, project = shared_tree, shared_tree / "project"
    project.mkdir()
    project.chmod(0o777)
    (project / "data.txt").write_text("from the host\n")
    made = Agently.create_agent(config=DOCKER)
    made.enable_shell(root=project, commands=["cat", "touch"])
    try:
        record = run(made, "cat data.txt; touch made.txt")
        assert record.status == "success", record.error
        assert record.result["stdout"] == "from the host\n"
        assert (project / "made.txt").exists()
        outside = run(made, "cat data.txt", workdir=str(tmp_path))
        assert outside.status == "failed" and "outside the roots" in outside.error
    finally:
        made.close()


def test_bad_settings_get_clear_errors(docker_engine: str, docker_test_image: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DockerConfigError, match="another machine"):
        check_local_engine("tcp://10.1.2.3:2375")
    check_local_engine("tcp://127.0.0.1:2375")
    check_local_engine("unix:///var/run/docker.sock")
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_shell(commands=["echo"], tier="bubblewrap")
        record = run(made, "echo hi")
        assert record.status == "failed" and "picks a native isolation tier" in record.error
    finally:
        made.close()
    monkeypatch.setenv(IMAGE_VARIABLE, docker_test_image)  # busybox: no bash, no python3
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_shell(commands=["echo"])
        record = run(made, "echo hi")
        assert record.status == "failed" and "lacks /usr/bin/bash and /usr/bin/python3" \
            in record.error
    finally:
        made.close()
    assert ours(docker_engine, made) == []
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.1.2.3:2375")
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_shell(commands=["echo"])
        record = run(made, "echo hi")
        assert record.status == "failed" and "another machine" in record.error
    finally:
        made.close()


def test_the_native_sandbox_stays_the_default() -> None:
    made = Agently.create_agent()
    try:
        made.enable_shell(commands=["echo"])
        assert run(made, "echo native").result["stdout"] == "native\n"
        [handle] = made.manager.list(kind="bash")
        assert handle.provider == "bash" and not hasattr(box_of(made), "container")
    finally:
        made.close()


def box_of(agent: Any) -> Any:
    [handle] = agent.manager.list(kind="bash")
    return agent.manager.resource(handle)


class ServedBashProvider(DockerProvider):
    """The docker provider as the environment manager selects it for kind ``bash``."""

    kind = "bash"


class TestServedBashProviderConformance(ProviderConformance):
    """The docker provider serving kind ``bash`` passes the provider conformance suite: no
    container or workspace is left by a failed ensure, a release, or an ensure cancelled
    while its container starts."""

    kind = "bash"
    concurrent_ensures = 2
    start_cancel_delays = (0.0, 0.3)

    @pytest.fixture(autouse=True)
    def _engine(self, docker_engine: str, docker_default_image: str) -> None:
        self.host = docker_engine

    def make_provider(self) -> DockerProvider:
        return ServedBashProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        if scenario == "bad_config":
            return {"config": {"tier": "bubblewrap"}}
        return {"config": {}}

    def live_resources(self) -> set[Any]:
        workspaces = {path.name for path in sandbox_root().glob(f"ws-{os.getpid()}-*")}
        return {*our_containers(self.host), *workspaces}
