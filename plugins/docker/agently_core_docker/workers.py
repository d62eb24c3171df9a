"""Warm workers in containers: the ``python`` kind (and the others the ``docker`` provider
serves when configured, ``[providers] python = "docker"``) run the same worker programs as
the native sandboxes, as the main process of a hardened container.

The container is the worker's isolation: no network unless the policy allows it, a
read-only root, size-capped tmpfs ``/work`` and ``/tmp`` (the workspace bound), every
capability dropped, ``no-new-privileges``, a non-root user (a sandbox uid of its own when
the host runs as root), and the policy's memory, process and file-size limits. The host side
is the native worker's own class (its protocol, queueing, timeouts and result records),
talking over an attach connection (:mod:`~agently_core_docker.attach`) instead of a pipe;
killing the worker removes its container.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from agently_core.errors import AgentlyError
from agently_core.models import Policy

from .attach import AttachedProcess
from .engine import container_labels
from .images import DEFAULT_IMAGE
from .node_worker import node_worker_class
from .provider import DockerContainer, _remove_ids, _start, start_container
from .settings import DEFAULT_USER, ContainerSettings, DockerConfigError, check_image

#: Host setting: the image the served kinds run in (default :data:`DEFAULT_IMAGE`).
IMAGE_VARIABLE = "AGENTLY_DOCKER_IMAGE"
WORKDIR = "/work"
READY_TIMEOUT = 60.0
#: CPUs a worker container may use.
WORKER_CPUS = 1.0


def worker_image() -> str:
    """The image of the served kinds: ``AGENTLY_DOCKER_IMAGE``, else the default image."""
    return check_image(os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE)


def worker_settings(limits: Any, *, network: bool, workspace_bytes: int, uid: int | None,
                    extra_tasks: int = 0) -> ContainerSettings:
    """A worker container's settings from the native worker's ``limits``."""
    user = f"{uid}:{uid}" if uid is not None else DEFAULT_USER
    return ContainerSettings(
        image=worker_image(), network=network,
        memory_bytes=limits.memory_bytes, processes=(limits.processes or 64) + extra_tasks,
        cpus=WORKER_CPUS, tmpfs_bytes=workspace_bytes, workdir=WORKDIR, user=user, mounts=())


def worker_options(settings: ContainerSettings, argv: list[str], env: Mapping[str, str],
                   file_bytes: int | None) -> dict[str, Any]:
    """What a worker container adds to :func:`~agently_core_docker.settings.create_options`:
    the worker as its main process on an open stdin, its environment, a private ``/tmp``
    beside ``/work``, the file-size limit, and no engine log of its output."""
    import docker.types

    uid, _, gid = settings.user.partition(":")
    mount = f"rw,nosuid,nodev,size={settings.tmpfs_bytes},uid={uid},gid={gid or uid},mode=0700"
    ulimits = [docker.types.Ulimit(name="nofile", soft=256, hard=256)]
    if file_bytes is not None:
        ulimits.append(docker.types.Ulimit(name="fsize", soft=file_bytes, hard=file_bytes))
    return {
        "command": argv,
        "entrypoint": [],
        "stdin_open": True,
        "environment": {**env, "HOME": WORKDIR, "TMPDIR": "/tmp",
                        "PATH": "/usr/local/bin:/usr/bin:/bin"},
        "tmpfs": {WORKDIR: mount, "/tmp": mount},
        "ulimits": ulimits,
        # the worker's stdout is its replies: no copy of them (nor of its stderr) is logged
        # on the engine's disk, which a long-lived worker would fill
        "log_config": docker.types.LogConfig(type="none"),
    }


async def start_worker(settings: ContainerSettings, labels: Mapping[str, str], argv: list[str],
                       env: Mapping[str, str], file_bytes: int | None
                       ) -> tuple[DockerContainer, AttachedProcess]:
    """Create the container, attach to it, then start it; nothing is left on failure."""
    made: list[str] = []
    options = worker_options(settings, argv, env, file_bytes)
    try:
        container = await anyio.to_thread.run_sync(
            lambda: _start(settings, dict(labels), made, options=options, start=False))
        process = await AttachedProcess.connect(container)
        try:
            await anyio.to_thread.run_sync(start_container, container)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await process.aclose_stream()
            raise
        return container, process
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove_ids, made)
        raise


class ContainerWorkerMixin:
    """What the container workers share: start in a container, kill by removing it.

    Mixed into a native worker class (``PythonWorker``), whose ``request``, ``run`` and
    ``ping`` then run unchanged over :class:`AttachedProcess`."""

    #: Tasks the worker program itself needs (threads count against the pids limit).
    extra_tasks = 0
    container: DockerContainer | None = None
    labels: Mapping[str, str] = {}

    @property
    def tier(self) -> str:
        return "docker"

    @property
    def workspace_bytes(self) -> int | None:
        """The size cap of ``/work`` (and, apart, of ``/tmp``)."""
        return self.quota  # type: ignore[attr-defined]

    def container_settings(self) -> ContainerSettings:
        return worker_settings(self.limits, network=self.network,  # type: ignore[attr-defined]
                               workspace_bytes=self.quota,  # type: ignore[attr-defined]
                               uid=self.uid, extra_tasks=self.extra_tasks)  # type: ignore[attr-defined]

    async def start_container(self, argv: list[str]) -> AttachedProcess:
        settings = self.container_settings()
        self.container, process = await start_worker(
            settings, self.labels, argv, self.env,  # type: ignore[attr-defined]
            self.limits.file_bytes)  # type: ignore[attr-defined]
        return process

    def kill(self, *args: Any) -> None:
        """Stop the worker now: its container is removed (killed first) in the background;
        :meth:`aclose` waits for that."""
        self.dead = True
        if self.container is not None:
            self.container.remove_soon()

    async def aclose(self) -> None:
        """Remove the container and close the connection (idempotent)."""
        self.dead = True
        with anyio.CancelScope(shield=True):
            if self.container is not None:
                await anyio.to_thread.run_sync(self.container.remove)
            process = getattr(self, "process", None)
            if isinstance(process, AttachedProcess):
                await process.aclose_stream()


def address_limit(limit: int | None) -> str:
    """A first line for a Python worker's source that limits its address space to ``limit``
    bytes (``RLIMIT_AS``, as the native sandbox's supervisor does), so an allocation past
    the memory limit raises ``MemoryError`` in the worker instead of the container's
    out-of-memory killer ending the worker. (A Docker ``as`` ulimit would bind runc's own
    init too, which then cannot start the container.)"""
    if limit is None:
        return ""
    return f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"


def python_worker_class() -> type:
    """The Python worker over a container (a subclass of the native ``PythonWorker``, so
    the ``python`` executor runs it as its own)."""
    global _PYTHON
    if _PYTHON is None:
        try:
            from agently_core_python.sandbox import PythonWorker, WorkerError
        except ImportError:
            raise AgentlyError("the docker provider serves kind 'python' with the Python "
                               "sandbox's worker: install agently-core-python") from None

        class DockerPythonWorker(ContainerWorkerMixin, PythonWorker):
            """A warm Python worker whose isolation is a container."""

            async def start(self, ready_timeout: float = READY_TIMEOUT) -> Any:
                import agently_core_python.sandbox as native

                source = (address_limit(self.limits.memory_bytes)
                          + Path(native.__file__).with_name("worker.py").read_text("utf-8"))
                self.process = await self.start_container(
                    ["python3", "-I", "-S", "-u", "-c", source])
                self._reader = BufferedByteReceiveStream(self.process.stdout)
                try:
                    with anyio.fail_after(ready_timeout):
                        ready = await self._read()
                except BaseException as exc:
                    detail = self.process.stderr_tail.decode(errors="replace").strip()[-600:]
                    await self.aclose()
                    if isinstance(exc, Exception):
                        raise WorkerError("the Python container did not start: "
                                          f"{detail or repr(exc)}") from exc
                    raise
                if not ready.get("ready"):
                    await self.aclose()
                    raise WorkerError(f"the Python container answered {ready!r} instead of "
                                      "ready")
                return self

        _PYTHON = DockerPythonWorker
    return _PYTHON


_PYTHON: type | None = None
#: The worker class of each kind served in containers.
WORKER_CLASSES = {"python": python_worker_class, "node": node_worker_class}


async def ensure_worker(requirement: Any) -> Any:
    """Start the warm worker of ``requirement.kind`` in a new container."""
    from agently_core_isolation.worker_policy import worker_env, worker_limits

    make = WORKER_CLASSES.get(requirement.kind)
    if make is None:
        raise DockerConfigError(f"the docker provider does not serve kind "
                                f"{requirement.kind!r} (it serves docker, "
                                f"{', '.join(sorted(WORKER_CLASSES))})")
    config = dict(requirement.config or {})
    if config.get("tier"):
        raise DockerConfigError(
            f"tier={config['tier']!r} picks a native isolation tier; kind "
            f"{requirement.kind!r} is served by the docker provider here (leave tier out, or "
            f"choose the native provider with [providers] {requirement.kind} = "
            f"\"{requirement.kind}\")")
    policy = Policy().merge(dict(requirement.policy or {}))
    env, passed = worker_env(policy, config)
    worker = make()(None, worker_limits(policy), network=bool(policy.network), env=env,
                    passed=passed, workspace_bytes=policy.max_workspace_bytes)
    worker.labels = container_labels(requirement)
    try:
        return await worker.start()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await worker.aclose()
        raise


__all__ = [
    "IMAGE_VARIABLE",
    "ContainerWorkerMixin",
    "ensure_worker",
    "python_worker_class",
    "start_worker",
    "worker_image",
    "worker_options",
    "worker_settings",
]
