"""Pytest fixtures for tests that need a Docker engine.

``docker_engine`` (session scope) gives the engine's address: a running engine if one
answers (``DOCKER_HOST``, or the default socket), else a ``dockerd`` started for the
session (:class:`~agently_core_docker.daemon.StartedDaemon`) and stopped at its end. With
no engine to be had, the tests that use it skip with the reason, and fail under CI
(:func:`agently_core.testing.require`). Once it is set up, ``DOCKER_HOST`` names it for the
session, and at the end every container this process started (label
:data:`~agently_core_docker.engine.PROCESS_LABEL`) still there is removed and reported as an
error of the session (a release that leaked).

``docker_test_image`` (session scope) is the tiny busybox image
(:func:`~agently_core_docker.images.build_busybox_image`), built once per engine;
``docker_default_image`` the default image (python3, nodejs) the served kinds run in, built
when missing.

Use them from a ``conftest.py``: ``from agently_core_docker.testing import
docker_default_image, docker_engine, docker_test_image``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agently_core.testing import require

from .daemon import StartedDaemon, engine_answers
from .engine import DEFAULT_SOCKET, OWNER_LABEL, PROCESS_LABEL, this_process

#: The label filter of the containers this process starts (other sessions may share the
#: engine).
_MINE = f"{PROCESS_LABEL}={this_process()}"


def our_containers(host: str) -> list[str]:
    """Names of every container (running or not) this process started."""
    import docker

    made = docker.DockerClient(base_url=host, timeout=30, version="auto")
    try:
        return [c.name for c in made.containers.list(all=True, filters={"label": _MINE})]
    finally:
        made.close()


def inspect_container(host: str, ident: str) -> dict[str, Any] | None:
    """``docker inspect`` of a container, or None when it is gone."""
    import docker

    made = docker.DockerClient(base_url=host, timeout=30, version="auto")
    try:
        return made.api.inspect_container(ident)
    except docker.errors.NotFound:
        return None
    finally:
        made.close()


def containers_of(host: str, agent: Any = None) -> list[str]:
    """Ids of the containers (running or not) of ``agent``'s scope owner, or, without an
    agent, of every container this process started (other sessions may share the engine)."""
    import docker

    label = _MINE if agent is None else f"{OWNER_LABEL}=agent:{agent.id}"
    made = docker.DockerClient(base_url=host, timeout=30, version="auto")
    try:
        return [c.id for c in made.containers.list(all=True, filters={"label": label})]
    finally:
        made.close()


def _remove_ours(host: str) -> list[str]:
    """Remove every container this process started; returns their names."""
    import docker

    made = docker.DockerClient(base_url=host, timeout=30, version="auto")
    try:
        left = made.containers.list(all=True, filters={"label": _MINE})
        for container in left:
            container.remove(force=True)
        return [c.name for c in left]
    finally:
        made.close()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """The address of a Docker engine answering for this session (see the module)."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    started: StartedDaemon | None = None
    if not engine_answers(host):
        problem = None
        try:
            started = StartedDaemon.start()
        except Exception as exc:
            problem = str(exc)
        require(started is not None, f"no Docker engine answers at {host} and none could be "
                                     f"started: {problem}")
        assert started is not None
        host = started.host
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    left: list[str] = []
    try:
        yield host
    finally:
        try:
            left = _remove_ours(host)
        finally:
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous
            if started is not None:
                started.stop()
    # a leak is an error of the session, not something the clean-up hides
    assert not left, f"containers of ours were left behind (now removed): {', '.join(left)}"


@pytest.fixture(scope="session")
def docker_test_image(docker_engine: str) -> str:
    """The tiny busybox test image's tag, on the session's engine."""
    import shutil

    from .images import build_busybox_image

    require(shutil.which("busybox") is not None,
            "busybox is not installed (apt-get install busybox-static; ./dev installs it)")
    return build_busybox_image()


@pytest.fixture(scope="session")
def docker_default_image(docker_engine: str) -> str:
    """The default image (python3 and nodejs; what the served kinds run in), built once per
    engine from Debian packages when missing (about a minute)."""
    import shutil

    from .images import DEFAULT_IMAGE, build_default_image, image_exists

    if not image_exists(DEFAULT_IMAGE):
        require(shutil.which("mmdebstrap") is not None,
                "mmdebstrap is not installed (apt-get install mmdebstrap; ./dev installs it)")
    return build_default_image()


@pytest.fixture(scope="session")
def podman_engine(docker_engine: str, docker_default_image: str,
                  docker_test_image: str) -> Iterator[str]:
    """The address of a Podman API service (Podman's Docker-compatible socket) started for
    the session, holding the default and the busybox test images (copied from the Docker
    engine: nothing is pulled); stopped at the end. Skips without Podman, fails under CI."""
    import shutil
    import subprocess
    import tempfile
    import time

    from .daemon import engine_answers

    podman = shutil.which("podman")
    require(podman is not None, "podman is not installed (apt-get install podman; ./dev "
                                "installs it)")
    assert podman is not None
    base = Path(tempfile.mkdtemp(prefix="agently-podman-"))
    host = f"unix://{base}/podman.sock"
    pidfile = base / "pid"
    # detached like the test dockerd (its parent is init, not this process), so the leak
    # checks of other tests do not see it as our child
    with open(base / "log", "wb") as log:
        subprocess.run(["setsid", "--fork", "sh", "-c", 'echo $$ > "$0"; exec "$@"',
                        str(pidfile), podman, "system", "service", "--time=0", host],
                       stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
                       check=True)
    pid: int | None = None
    try:
        deadline = time.monotonic() + 30
        while not engine_answers(host, timeout=2):
            require(time.monotonic() < deadline, "podman system service did not answer: "
                                                 f"{(base / 'log').read_text()[-800:]}")
            time.sleep(0.2)
        pid = int(pidfile.read_text())
        _copy_images(docker_engine, host, [docker_default_image, docker_test_image])
        yield host
    finally:
        left = _remove_ours(host) if engine_answers(host, timeout=2) else []
        pid = pid or (int(pidfile.read_text()) if pidfile.exists() else None)
        if pid is not None:
            _stop(pid)
        shutil.rmtree(base, ignore_errors=True)
    assert not left, f"containers of ours were left on Podman (now removed): {', '.join(left)}"


def _stop(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM ``pid``, then SIGKILL, and wait until it is gone."""
    import signal
    import time

    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _copy_images(source: str, target: str, tags: list[str]) -> None:
    """``docker save`` from ``source``, ``load`` into ``target``, for tags it lacks."""
    import docker

    made = docker.DockerClient(base_url=source, timeout=300, version="auto")
    into = docker.DockerClient(base_url=target, timeout=300, version="auto")
    try:
        have = {tag for image in into.images.list() for tag in image.tags}
        for tag in tags:
            if tag in have or f"localhost/{tag}" in have:
                continue
            data = b"".join(made.images.get(tag).save(named=True))
            into.images.load(data)
    finally:
        made.close()
        into.close()


__all__ = ["containers_of", "docker_default_image", "docker_engine", "docker_test_image",
           "inspect_container", "our_containers", "podman_engine"]
