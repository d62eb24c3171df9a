"""The plugin's registrations, ``agently-core doctor``'s Docker check, ``agently-core docker
build-image`` and the image cache, and the dockerd the test fixture starts and stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agently_core_docker.daemon import StartedDaemon, engine_answers
from agently_core_docker.doctor import check_docker
from agently_core_docker.images import ImageBuildError, build_default_image

from agently_core import PluginManager
from agently_core.testing import require


def test_registrations() -> None:
    plugins = PluginManager().load()
    for role in ("environment_provider", "action_executor", "action_package",
                 "diagnostic", "command"):
        registration = plugins.registrations(role)["docker"]
        assert registration.distribution == "agently-core-docker"
        assert registration.load() is not None
    assert plugins.select("environment_provider", kind="docker").name == "docker"


def test_doctor_reports_the_engine_and_how_to_get_one(docker_engine, monkeypatch) -> None:
    checks = {c["name"]: c for c in check_docker()}
    assert checks["Docker engine"]["ok"] is True and "Docker 2" in checks["Docker engine"]["detail"]
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    [missing] = check_docker()
    assert missing["ok"] is False and "nothing answers at unix:///nonexistent" in missing["detail"]
    assert "dockerd &" in missing["fix"]


def test_the_image_is_built_once_per_engine(docker_test_image, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mmdebstrap: a build would fail
    assert build_default_image(docker_test_image) == docker_test_image  # cached by tag
    with pytest.raises(ImageBuildError, match="mmdebstrap is not installed"):
        build_default_image("agently-core/never-built:here")
    with pytest.raises(ImageBuildError, match="Debian package names"):
        build_default_image("agently-core/never-built:here", packages=("-evil",))


def test_build_image_command_uses_the_cache(docker_test_image) -> None:
    done = subprocess.run([sys.executable, "-m", "agently_core.cli", "docker", "build-image",
                           "--tag", docker_test_image], capture_output=True, text=True,
                          env={**os.environ}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{docker_test_image}: already built" in done.stdout


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_a_started_dockerd_is_stopped_with_its_data(docker_engine) -> None:
    """With the default socket taken, a second dockerd lives under its own temporary root;
    stop() ends exactly that process and removes the root."""
    require(os.geteuid() == 0, "starting dockerd needs root")
    started = StartedDaemon.start()
    try:
        assert started.root is not None and started.host.startswith(f"unix://{started.root}")
        assert engine_answers(started.host)
        # detached: not this process's descendant, so leak checks of other tests miss it
        assert started.pid is not None and started.pid not in descendants(os.getpid())
    finally:
        started.stop()
    stat = Path(f"/proc/{started.pid}/stat")
    # gone, or a zombie that init has not reaped yet (init, not us, is its parent)
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert not engine_answers(started.host, timeout=1)
    assert not Path(started.root).exists()


def test_the_sandbox_kinds_are_served_only_when_chosen(monkeypatch) -> None:
    """The docker provider serves python, node and bash when configured to, and is never
    picked for them on its own (the native providers stay the default)."""
    plugins = PluginManager().load()
    registration = plugins.registrations("environment_provider")["docker"]
    assert registration.kinds == ("docker", "python", "node", "bash")
    for kind in ("python", "node", "bash"):
        assert plugins.select("environment_provider", kind=kind).name == kind
    monkeypatch.setenv("AGENTLY_PROVIDER_PYTHON", "docker")
    chosen = PluginManager().load()
    assert chosen.select("environment_provider", kind="python").name == "docker"
    assert chosen.select("environment_provider", kind="node").name == "node"
