"""bench/docker_bench.py: its baselines run with the very hardening of the worker container
they stand beside, and it fails loudly (never skips) when it cannot measure."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from agently_core_docker.testing import docker_default_image, docker_engine

import agently_core

__all__ = ["docker_default_image", "docker_engine"]

BENCH = Path(__file__).resolve().parents[1] / "bench" / "docker_bench.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("docker_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_bench(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLY_", "DOCKER_"))}
    return subprocess.run([sys.executable, str(BENCH), "--json", "--repeat", "1"],
                          capture_output=True, text=True, env={**base, **env}, timeout=60)


@pytest.mark.parametrize(("env", "says"), [
    ({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "no Docker engine answers"),
    ({"PATH": "/nonexistent"}, "the docker CLI is not on PATH"),
], ids=["no-engine", "no-cli"])
def test_the_bench_fails_loudly_when_it_cannot_measure(env: dict[str, str], says: str) -> None:
    done = _run_bench(env)
    assert done.returncode == 1, done
    assert says in done.stderr and done.stdout == ""


def test_the_bench_fails_loudly_without_the_image(docker_engine: str) -> None:
    done = _run_bench({"DOCKER_HOST": docker_engine,
                       "AGENTLY_DOCKER_IMAGE": "agently-core/no-such-image:bench"})
    assert done.returncode == 1, done
    assert "'agently-core/no-such-image:bench' is not on the engine" in done.stderr


@pytest.mark.parametrize("kind", ["python", "bash"])
def test_the_cli_baseline_has_our_containers_flags(kind: str, docker_engine: str,
                                                   docker_default_image: str) -> None:
    """The flags read from our container recreate it: a worker container (Python) and a
    Bash container (bind mounts at host paths, docker's init)."""
    import docker

    bench = _bench()
    [spec] = [k for k in bench.KINDS if k.kind == kind]
    agent = agently_core.create_agent(config={"providers": {kind: "docker"}})
    if kind == "python":
        agent.enable_python(memory_mb=128, processes=16, disk_mb=8)
    else:
        agent.enable_shell()
    engine = docker.DockerClient(base_url=docker_engine, version="auto")
    name = f"agently-bench-test-{uuid.uuid4().hex[:8]}"
    try:
        record = agent.action.execute_action(spec.action, dict(spec.kwargs))
        assert record.status == "success", record.error
        ours = engine.api.inspect_container(bench._container_of(agent, kind).id)
        flags = bench.hardening_flags(ours)
        for flag in ("--read-only", "--network", "--cap-drop", "--security-opt", "--pids-limit",
                     "--memory", "--cpus", "--tmpfs", "--user"):
            assert flag in flags
        assert ("--volume" in flags and "--init" in flags) == (kind == "bash")
        subprocess.run(["docker", "run", "-d", "--name", name, *flags,
                        "--label", f"{bench.BENCH_LABEL}=1", docker_default_image,
                        "sleep", "600"], check=True, capture_output=True)
        theirs = engine.api.inspect_container(name)
        assert bench._hardening(theirs) == bench._hardening(ours)
        if kind == "python":
            assert "--log-driver" in flags and "--ulimit" in flags
            assert bench._hardening(ours)["PidsLimit"] == 16
            assert bench._hardening(ours)["Memory"] == 128 << 20
        # a baseline that came out looser is seen as different
        theirs["HostConfig"]["ReadonlyRootfs"] = False
        assert bench._hardening(theirs) != bench._hardening(ours)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        engine.close()
        agent.close()
