"""Reaching the Docker engine: a docker-py client (imported here, lazily) and the labels that
mark what agently-core-docker starts."""

from __future__ import annotations

import os
from typing import Any

from agently_core.errors import AgentlyError

#: Every container this plugin starts carries this label (value ``"1"``), so cleanup and
#: tests can find ours: ``docker ps -a --filter label=agently-core.docker``.
LABEL = "agently-core.docker"
#: The label holding the requirement's scope owner (``scope:owner``).
OWNER_LABEL = "agently-core.docker.owner"
#: ``HOST:PID`` of the process that started a container (so one test session, or one
#: tool, finds exactly its own among others on a shared engine).
PROCESS_LABEL = "agently-core.docker.process"


def this_process() -> str:
    """The :data:`PROCESS_LABEL` value of containers this process starts."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def is_podman(engine: Any) -> bool:
    """Does ``engine`` (a docker-py client) talk to Podman's Docker-compatible API?"""
    cached = getattr(engine, "_agently_podman", None)
    if cached is None:
        components = engine.version().get("Components") or []
        cached = any("podman" in str(c.get("Name", "")).lower() for c in components)
        engine._agently_podman = cached
    return cached


def container_labels(requirement: Any) -> dict[str, str]:
    """The labels of a requirement's container: ours, its scope owner, its kind, and the
    process that started it."""
    return {LABEL: "1", OWNER_LABEL: f"{requirement.scope}:{requirement.owner_id or ''}",
            f"{LABEL}.kind": requirement.kind, PROCESS_LABEL: this_process()}
DEFAULT_SOCKET = "/var/run/docker.sock"
#: Seconds one Engine API request may take before the client gives up.
API_TIMEOUT = 60


class DockerUnavailable(AgentlyError):
    """No Docker engine answers (or docker-py is missing)."""


def where() -> str:
    """Where the client looks for the engine: ``DOCKER_HOST`` or the default socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def client(timeout: int = API_TIMEOUT) -> Any:
    """A docker-py client for the engine at :func:`where`, checked with a ping. Blocking:
    call it from a worker thread in async code."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - the distribution depends on it
        raise DockerUnavailable(f"the docker package is missing ({exc}); pip install docker") from None
    try:
        made = docker.DockerClient(base_url=where(), timeout=timeout, version="auto")
        made.ping()
    except Exception as exc:
        raise DockerUnavailable(
            f"no Docker engine answers at {where()}: {exc}. Install it (apt-get install "
            "docker.io) and start it (dockerd, or systemctl start docker), "
            "or point DOCKER_HOST at one") from None
    return made


__all__ = ["API_TIMEOUT", "DEFAULT_SOCKET", "LABEL", "OWNER_LABEL", "PROCESS_LABEL",
           "DockerUnavailable", "client", "container_labels", "is_podman", "this_process", "where"]
