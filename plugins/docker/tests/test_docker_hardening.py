"""One real container from the ``docker`` provider, inspected with the Engine API
(``docker inspect``) and probed from inside: every hardening setting is in place and holds.
One container serves the whole module (a fresh one costs about a second on vfs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import docker
import pytest
from agently_core_docker.engine import LABEL, OWNER_LABEL
from agently_core_docker.provider import DockerContainer, DockerProvider
from agently_core_docker.settings import DockerConfigError, container_settings

from agently_core.models import EnvironmentRequirement
from agently_core.protocols import ProviderHandle

MEMORY = 96 * 1024 * 1024
PIDS = 24
TMPFS = 4 * 1024 * 1024


def requirement(image: str, **policy: Any) -> EnvironmentRequirement:
    return EnvironmentRequirement(
        kind="docker", scope="agent", owner_id="hardening-test",
        config={"image": image, "cpus": 0.5, "tmpfs_bytes": TMPFS},
        policy={"max_memory_bytes": MEMORY, "max_processes": PIDS, **policy})


@pytest.fixture(scope="module")
def box(docker_engine: str, docker_test_image: str) -> Iterator[tuple[DockerContainer, Any]]:
    provider, need = DockerProvider(), requirement(docker_test_image)
    container = anyio.run(provider.ensure, need)
    engine = docker.DockerClient(base_url=docker_engine, version="auto")
    try:
        yield container, engine.containers.get(container.id).attrs
    finally:
        anyio.run(provider.release, need, container)
        engine.close()


def sh(container: DockerContainer, line: str, timeout: float = 20) -> Any:
    return anyio.run(lambda: container.run(["sh", "-c", line], timeout=timeout, max_bytes=20000))


def test_inspected_host_config_is_hardened(box) -> None:
    _, attrs = box
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert host["PidsLimit"] == PIDS
    assert host["Memory"] == MEMORY and host["MemorySwap"] == MEMORY
    assert host["NanoCpus"] == 500_000_000
    assert list(host["Tmpfs"]) == ["/work"] and f"size={TMPFS}" in host["Tmpfs"]["/work"]
    assert not host["Binds"] and attrs["Mounts"] == []  # no host mounts, no Docker socket
    assert attrs["Config"]["User"] == "65534:65534"
    assert attrs["Config"]["Labels"][LABEL] == "1"
    assert attrs["Config"]["Labels"][OWNER_LABEL] == "agent:hardening-test"
    assert attrs["State"]["Running"] is True


def test_runs_as_nobody_without_capabilities(box) -> None:
    container, _ = box
    out = sh(container, "id -u; grep CapEff /proc/self/status; test -e /var/run/docker.sock "
                        "|| echo no-socket")
    lines = out.stdout.decode().split()
    assert lines[0] == "65534"
    assert "0000000000000000" in lines and "no-socket" in lines


def test_network_attempts_fail(box) -> None:
    container, _ = box
    out = sh(container, "nc -w 2 10.1.2.3 80 </dev/null; echo rc=$?; cat /proc/net/dev")
    text = out.stdout.decode() + out.stderr.decode()
    assert "Network is unreachable" in text and "rc=1" in text
    interfaces = [line.split(":")[0].strip() for line in out.stdout.decode().splitlines()
                  if ":" in line]
    assert interfaces == ["lo"]


def test_writes_only_in_the_size_capped_work_dir(box) -> None:
    container, _ = box
    out = sh(container, "touch /etc/x /bin/x /x 2>&1; echo data > /work/ok && cat /work/ok; "
                        "dd if=/dev/zero of=/work/big bs=1M count=16 2>&1; rm -f /work/big")
    text = out.stdout.decode()
    assert text.count("Read-only file system") == 3
    assert "data" in text and "No space left on device" in text


def test_a_fork_bomb_is_contained_by_the_pids_limit(box) -> None:
    container, _ = box
    out = sh(container, "i=0; while [ $i -lt 200 ]; do sleep 3 & i=$((i+1)); done 2>&1; "
                        "cat /sys/fs/cgroup/pids/pids.current 2>/dev/null; wait", timeout=30)
    text = out.stdout.decode() + out.stderr.decode()
    assert "can't fork" in text or "Resource temporarily unavailable" in text
    # and it still answers afterwards
    assert sh(container, "echo alive").stdout == b"alive\n"


def test_health_check_then_release_leaves_nothing(docker_engine, docker_test_image) -> None:
    provider, need = DockerProvider(), requirement(docker_test_image)

    async def scenario() -> tuple[bool, bool, str]:
        container = await provider.ensure(need)
        handle = ProviderHandle("h", need, container)
        healthy = await provider.async_health_check(handle)
        await provider.release(need, container)
        return healthy, await provider.async_health_check(handle), container.id

    healthy, after, ident = anyio.run(scenario)
    assert healthy is True and after is False
    engine = docker.DockerClient(base_url=docker_engine, version="auto")
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(ident)
    engine.close()


@pytest.mark.parametrize(("config", "policy", "message"), [
    ({"image": "Bad Image!"}, {}, "not a Docker image name"),
    ({"image": "x", "privileged": True}, {}, "unknown docker config key(s) 'privileged'"),
    ({"image": "x", "user": "0"}, {}, "non-root"),
    ({"image": "x", "mounts": [{"source": "/var/run", "target": "/r"}]}, {}, None),
    ({"image": "x", "cpus": -1}, {}, "cpus must be a positive number"),
    ({"image": "x"}, {"max_processes": 0}, "max_processes must be a positive integer"),
])
def test_bad_settings_are_refused_before_anything_starts(config, policy, message, tmp_path) -> None:
    if message is None:  # a socket never goes in, wherever it lives
        sock = tmp_path / "docker.sock"
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(sock))
        config = {"image": "x", "mounts": [{"source": str(sock), "target": "/s"}]}
        message = "never gets the Docker socket"
    with pytest.raises(DockerConfigError) as caught:
        container_settings(config, policy)
    assert message in str(caught.value)


def test_an_image_not_on_the_engine_is_not_pulled(docker_engine) -> None:
    need = EnvironmentRequirement(kind="docker", config={"image": "busybox:latest"})
    with pytest.raises(DockerConfigError, match="nothing is pulled"):
        anyio.run(DockerProvider().ensure, need)


def test_a_host_configured_mount_is_the_only_mount(docker_engine, docker_test_image,
                                                   tmp_path) -> None:
    (tmp_path / "data.txt").write_text("from the host\n")
    tmp_path.chmod(0o777)  # only the read-only mount may stop the container's user writing
    (tmp_path / "data.txt").chmod(0o644)
    need = EnvironmentRequirement(kind="docker", config={
        "image": docker_test_image, "mounts": [{"source": str(tmp_path), "target": "/data"}]})
    provider = DockerProvider()

    async def scenario() -> tuple[Any, Any]:
        container = await provider.ensure(need)
        try:
            engine = docker.DockerClient(base_url=docker_engine, version="auto")
            attrs = engine.containers.get(container.id).attrs
            engine.close()
            out = await container.run(["sh", "-c", "cat /data/data.txt; touch /data/new 2>&1"],
                                      timeout=10, max_bytes=1000)
            return attrs, out
        finally:
            await provider.release(need, container)

    attrs, out = anyio.run(scenario)
    [mount] = attrs["Mounts"]
    assert (mount["Type"], mount["Source"], mount["Destination"], mount["RW"]) == (
        "bind", str(tmp_path), "/data", False)
    assert out.stdout.decode().splitlines() == [
        "from the host", "touch: /data/new: Read-only file system"]
    assert not (tmp_path / "new").exists()
