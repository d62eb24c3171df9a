"""``run_python`` served by the docker provider (``[providers] python = "docker"``): the
same action and executor as the native sandbox, with a warm worker that is the main process
of a hardened container. One agent (one container) serves the cases that leave it healthy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from agently_core_docker.engine import LABEL
from agently_core_docker.testing import containers_of as ours
from agently_core_docker.testing import inspect_container as inspect
from agently_core_docker.workers import IMAGE_VARIABLE
from agently_core_python.sandbox import PythonWorker

import agently_core as Agently

DOCKER = {"providers": {"python": "docker"}}
MEMORY_MB = 128
PROCESSES = 16
DISK_MB = 8


def run(agent: Any, code: str, **options: Any) -> Any:
    return agent.action.execute_action("run_python", {"python_code": code}, **options)


def worker(agent: Any) -> Any:
    [handle] = agent.manager.list(kind="python")
    assert handle.provider == "docker"
    return agent.manager.resource(handle)






@pytest.fixture(scope="module")
def agent(docker_engine: str, docker_default_image: str) -> Iterator[Any]:
    made = Agently.create_agent(config=DOCKER)
    made.enable_python(timeout=10, memory_mb=MEMORY_MB, processes=PROCESSES, disk_mb=DISK_MB,
                       env={"GREETING": "hello"})
    yield made
    made.close()


def test_variables_persist_in_one_container(agent: Any) -> None:
    assert run(agent, "counter = 41").status == "success"
    record = run(agent, "counter += 1; counter")
    assert record.status == "success", record.error
    assert record.result["value"] == "42"
    assert isinstance(worker(agent), PythonWorker)  # the python executor runs it as its own


def test_the_worker_container_is_hardened(agent: Any, docker_engine: str) -> None:
    run(agent, "1")
    attrs = inspect(docker_engine, worker(agent).container.id)
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["Privileged"] is False
    assert host["Memory"] == MEMORY_MB << 20 and host["MemorySwap"] == MEMORY_MB << 20
    assert host["PidsLimit"] >= PROCESSES and host["PidsLimit"] <= PROCESSES + 8
    assert set(host["Tmpfs"]) == {"/work", "/tmp"}
    assert all(f"size={DISK_MB << 20}" in value for value in host["Tmpfs"].values())
    assert not host["Binds"] and attrs["Mounts"] == []
    uid = attrs["Config"]["User"].split(":")[0]
    assert uid != "0" and uid.isdigit()
    assert attrs["Config"]["Labels"][f"{LABEL}.kind"] == "python"
    env = dict(line.split("=", 1) for line in attrs["Config"]["Env"])
    assert env["GREETING"] == "hello"  # what the host configured, and nothing of its own
    assert not any(name in env for name in ("AGENTLY_PROVIDER_PYTHON", "PYTEST_CURRENT_TEST"))


def test_from_inside_the_code_sees_a_container(agent: Any) -> None:
    record = run(agent, """
import os, socket
found = {"uid": os.getuid(), "cwd": os.getcwd(), "pid1": open("/proc/1/cmdline").read()[:17]}
for path in ("/etc/probe", "/work/probe"):
    try:
        open(path, "w").write("x")
        found[path] = "wrote"
    except OSError as exc:
        found[path] = type(exc).__name__
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    found["net"] = "connected"
except OSError as exc:
    found["net"] = type(exc).__name__
found
""")
    assert record.status == "success", record.error
    found = eval(record.result["value"])  # a dict repr the test's own code built
    assert found["uid"] != 0 and found["cwd"] == "/work" and found["pid1"] == "/sbin/docker-init"
    assert found["/etc/probe"] == "OSError" and found["/work/probe"] == "wrote"
    assert found["net"] != "connected"


def test_the_workspace_cap_holds_and_the_next_call_works(agent: Any) -> None:
    record = run(agent, f"open('/work/big', 'wb').write(b'x' * {(DISK_MB + 1) << 20})")
    assert record.status == "failed" and "No space left" in record.error + json.dumps(
        record.result), record.error
    assert run(agent, "import os; os.remove('/work/big'); 6 * 7").result["value"] == "42"


def test_a_stricter_call_is_refused(docker_engine: str, docker_default_image: str) -> None:
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_python(memory_mb=MEMORY_MB)
        assert run(made, "1").status == "success"
        made.set_policy(max_memory_bytes=64 << 20)
        record = run(made, "open('ran.txt', 'w').write('ran')")
        assert record.status == "failed" and "stricter than its Python sandbox" in record.error
        assert "memory_mb=64" in record.error
    finally:
        made.close()


def test_a_timeout_removes_the_container_and_the_next_call_gets_a_fresh_one(
        agent: Any, docker_engine: str) -> None:
    run(agent, "kept = 1")
    first = worker(agent).container
    record = run(agent, "while True: pass", timeout=1.5)
    assert record.status == "failed" and "timed out" in (record.error or "").lower(), record.error
    record = run(agent, "'kept' in globals()")
    assert record.status == "success" and record.result["value"] == "False"  # a new worker
    assert worker(agent).container.id != first.id
    assert first.removed and first.id not in ours(docker_engine)


def test_a_crashed_worker_is_replaced(agent: Any, docker_engine: str) -> None:
    run(agent, "1")
    first = worker(agent).container
    record = run(agent, "import os; os._exit(3)")
    assert record.status == "failed" and "worker" in record.error
    assert run(agent, "6 * 7").result["value"] == "42"
    assert worker(agent).container.id != first.id and first.id not in ours(docker_engine)


def test_release_removes_the_container(docker_engine: str, docker_default_image: str) -> None:
    made = Agently.create_agent(config=DOCKER)
    made.enable_python()
    assert run(made, "1 + 1").result["value"] == "2"
    container = worker(made).container.id
    assert container in ours(docker_engine)
    made.close()
    assert container not in ours(docker_engine)


def test_bad_settings_get_clear_errors(docker_engine: str, monkeypatch) -> None:
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_python(tier="bubblewrap")
        record = run(made, "1")
        assert record.status == "failed" and "tier='bubblewrap' picks a native" in record.error
    finally:
        made.close()
    for image, expected in (("Not An Image!", "not a Docker image name"),
                            ("agently-core/missing:none", "is not on the Docker engine")):
        monkeypatch.setenv(IMAGE_VARIABLE, image)
        made = Agently.create_agent(config=DOCKER)
        try:
            made.enable_python()
            record = run(made, "1")
            assert record.status == "failed" and expected in record.error, record.error
        finally:
            made.close()
        assert not ours(docker_engine, made)  # nothing started, nothing left


def test_the_native_provider_stays_the_default(agently_agent_factory) -> None:
    made = agently_agent_factory()
    made.enable_python()
    assert run(made, "1").status == "success"
    [handle] = made.manager.list(kind="python")
    assert handle.provider == "python"


def test_the_cli_call_runs_in_a_container_by_configuration(
        docker_engine: str, docker_default_image: str, tmp_path: Path) -> None:
    """The issue's promise: one setting in agently.toml, and `agently-core call run_python`
    runs in a container; nothing else changes."""
    (tmp_path / "agently.toml").write_text('[providers]\npython = "docker"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    code = "open('/proc/1/cmdline').read().split(chr(0))[:4], open('/etc/hostname').read()"
    done = subprocess.run(
        [sys.executable, "-m", "agently_core.cli", "call", "run_python",
         "--kwargs", json.dumps({"python_code": code})],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "success", record
    argv, hostname = eval(record["result"]["value"])  # a tuple repr the test's code built
    assert argv == ["/sbin/docker-init", "--", "python3", "-I"]  # docker's init, the worker
    engine = docker.DockerClient(base_url=docker_engine, version="auto")
    try:  # the CLI's process removed its container
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(hostname.strip())
    finally:
        engine.close()
