"""The same provider through Podman's Docker-compatible API (``DOCKER_HOST`` naming a
``podman system service`` socket): run_python served in a container and run_in_container,
the containers hardened alike, and nothing left behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agently_core_docker.settings import for_podman
from agently_core_docker.testing import inspect_container as inspect

import agently_core as Agently


@pytest.fixture
def on_podman(podman_engine: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DOCKER_HOST", podman_engine)
    yield podman_engine




def test_run_python_in_a_podman_container(on_podman: str) -> None:
    agent = Agently.create_agent(config={"providers": {"python": "docker"}})
    try:
        agent.enable_python(memory_mb=128, processes=16, disk_mb=8)
        assert agent.action.execute_action("run_python", {"python_code": "n = 41"}).status \
            == "success"
        record = agent.action.execute_action(
            "run_python", {"python_code": "import os\nn += 1\n(n, os.getuid(), os.getcwd())"})
        assert record.status == "success", record.error
        value, uid, cwd = eval(record.result["value"])  # a tuple repr the test's code built
        assert value == 42 and uid != 0 and cwd == "/work"
        [handle] = agent.manager.list(kind="python")
        container = agent.manager.resource(handle).container
        attrs = inspect(on_podman, container.id)
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
        assert host["Memory"] == 128 << 20 and host["PidsLimit"] >= 16
        assert "no-new-privileges" in " ".join(host["SecurityOpt"] or [])
        assert not host.get("CapAdd")
        assert set(host["Tmpfs"]) == {"/work", "/tmp", "/run", "/var/tmp"}
        assert all("size=" in value for value in host["Tmpfs"].values()), host["Tmpfs"]
        full = agent.action.execute_action(
            "run_python", {"python_code": f"open('/work/big', 'wb').write(b'x' * {9 << 20})"})
        assert full.status == "failed" and "No space left" in full.error, full.error
    finally:
        agent.close()
    assert inspect(on_podman, container.id) is None


def test_run_in_container_on_podman(on_podman: str, docker_test_image: str) -> None:
    agent = Agently.create_agent(config={"approval_handler": "auto_approve"})
    try:
        agent.enable("docker", image=docker_test_image, timeout=1.5)
        record = agent.action.execute_action("run_in_container", {"cmd": "id -u; echo hi > x; cat x"})
        assert record.status == "success", record.error
        uid, said = record.result["stdout"].split()
        assert uid != "0" and said == "hi"
        slow = agent.action.execute_action("run_in_container", {"cmd": "sleep 30"})
        assert slow.status == "failed" and "killed and removed" in slow.error
        again = agent.action.execute_action("run_in_container", {"cmd": "echo again"})
        assert again.status == "success" and again.result["stdout"] == "again\n"
    finally:
        agent.close()


def test_the_podman_options_keep_every_limit() -> None:
    """Podman refuses a tmpfs's uid=/gid= (U gives it to the user instead), adds unbounded
    writable directories to a read-only root (bounded here) and may start nothing with its
    default rlimits (set within the container's own)."""
    options = {"tmpfs": {"/work": "rw,nosuid,nodev,size=1024,uid=7,gid=7,mode=0700"},
               "pids_limit": 24, "read_only": True}
    made = for_podman(options)
    assert made["tmpfs"]["/work"] == "rw,nosuid,nodev,size=1024,U"
    assert set(made["tmpfs"]) == {"/work", "/run", "/tmp", "/var/tmp"}
    assert all(f"size={1 << 20}" in made["tmpfs"][path] for path in ("/run", "/tmp", "/var/tmp"))
    assert {(u["Name"], u["Soft"], u["Hard"]) for u in made["ulimits"]} == {
        ("nofile", 1024, 1024), ("nproc", 24, 24)}
    assert made["read_only"] is True and options["tmpfs"]["/work"].endswith("mode=0700")
