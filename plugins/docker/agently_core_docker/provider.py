"""``docker``: one long-running hardened container per requirement (scope owner).

``ensure`` creates and starts the container (:func:`~agently_core_docker.settings.
create_options`: no network unless the policy allows it, read-only root, a size-capped tmpfs
work directory, every capability dropped, ``no-new-privileges``, a non-root user, pids,
memory and CPU limits, host-configured mounts only); ``async_health_check`` is a real round
trip (running, and ``true`` answers through ``docker exec``); ``release`` removes it (force,
so it is killed first). Nothing is ever pulled: the image must be on the engine. Blocking
docker-py calls run in worker threads.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from agently_core.errors import ActionError, AgentlyError
from agently_core.protocols import ProviderHandle

from .engine import client, container_labels, is_podman
from .settings import (
    ContainerSettings,
    DockerConfigError,
    container_settings,
    create_options,
    for_podman,
)

HEALTH_TIMEOUT = 10.0


@dataclass
class ExecResult:
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool


@dataclass(eq=False)
class DockerContainer:
    """A live container: its id and name, the settings it was started with, and the client."""

    id: str
    name: str
    settings: ContainerSettings
    engine: Any = field(repr=False)
    removed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def running(self) -> bool:
        if self.removed:
            return False
        import docker.errors

        try:
            state = self.engine.api.inspect_container(self.id)["State"]
        except docker.errors.NotFound:
            return False
        return bool(state.get("Running")) and not state.get("Paused")

    def exec(self, argv: list[str], max_bytes: int) -> ExecResult:
        """Run ``argv`` in the container (blocking); keep at most ``max_bytes`` of stdout and
        of stderr, reading (and dropping) the rest until the command ends."""
        api = self.engine.api
        made = api.exec_create(self.id, argv, stdout=True, stderr=True, user=self.settings.user,
                               workdir=self.settings.workdir, privileged=False)
        out, err, truncated = bytearray(), bytearray(), False
        for stdout, stderr in api.exec_start(made["Id"], stream=True, demux=True):
            for chunk, buffer in ((stdout, out), (stderr, err)):
                if not chunk:
                    continue
                room = max_bytes - len(buffer)
                if len(chunk) > room:
                    truncated = True
                buffer.extend(chunk[:max(room, 0)])
        code = api.exec_inspect(made["Id"]).get("ExitCode")
        return ExecResult(code, bytes(out), bytes(err), truncated)

    def remove(self) -> None:
        """Kill and remove the container; idempotent, and safe from several threads."""
        import docker.errors

        with self._lock:
            if self.removed:
                return
            try:
                self.engine.api.remove_container(self.id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another client is removing it already
                    raise
            self.removed = True
            self.engine.close()

    def remove_soon(self) -> None:
        """Start :meth:`remove` in a thread and return at once (from code that cannot wait,
        such as a worker's synchronous ``kill``)."""
        if not self.removed:
            threading.Thread(target=self.remove, name=f"remove {self.name}", daemon=True).start()

    def wait_exit(self) -> int:
        """Block until the container stopped; its main process's exit code."""
        return int(self.engine.api.wait(self.id).get("StatusCode", -1))

    async def run(self, argv: list[str], *, timeout: float, max_bytes: int) -> ExecResult:
        """Run ``argv`` with a wall-clock limit kept by the host: past ``timeout`` seconds the
        container is killed and removed (the manager's health check then replaces it)."""
        if self.removed:
            raise ActionError(f"container {self.name} was removed; the next call gets a new one")
        try:
            with anyio.fail_after(timeout):
                return await anyio.to_thread.run_sync(self.exec, argv, max_bytes,
                                                      abandon_on_cancel=True)
        except TimeoutError:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.remove)
            raise ActionError(f"the command ran past its {timeout:g}s limit; container "
                              f"{self.name} was killed and removed (the next call gets a "
                              "fresh one)") from None
        except BaseException:
            # cancelled from outside (the dispatcher's timeout): the exec may still run
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.remove)
            raise


def _start(settings: ContainerSettings, labels: dict[str, str], made: list[str], *,
           options: dict[str, Any] | None = None, start: bool = True) -> DockerContainer:
    """Create (and unless ``start`` is false, start) a container of ``settings``; ``options``
    replace some of :func:`create_options`'s (a worker's command, environment...). The id is
    appended to ``made`` as soon as it exists, so a failure later removes it."""
    import docker.errors

    engine = client()
    try:
        engine.images.get(settings.image)
    except docker.errors.ImageNotFound:
        engine.close()
        raise DockerConfigError(
            f"image {settings.image!r} is not on the Docker engine (nothing is pulled): build "
            "it (agently-core docker build-image) or docker import/load it first") from None
    except BaseException:
        engine.close()
        raise
    name = f"agently-{uuid.uuid4().hex[:12]}"
    try:
        made_options = {**create_options(settings, labels), **(options or {})}
        if is_podman(engine):
            made_options = for_podman(made_options)
        container = engine.containers.create(settings.image, name=name, **made_options)
        made.append(container.id)
        if start:
            container.start()
    except docker.errors.APIError as exc:
        engine.close()
        raise AgentlyError(f"docker could not start {settings.image!r}: "
                           f"{exc.explanation or exc}") from None
    except BaseException:
        engine.close()
        raise
    return DockerContainer(container.id, name, settings, engine)


def start_container(container: DockerContainer) -> None:
    """Start a container :func:`_start` created with ``start=False``."""
    import docker.errors

    try:
        container.engine.api.start(container.id)
    except docker.errors.APIError as exc:
        raise AgentlyError(f"docker could not start {container.settings.image!r}: "
                           f"{exc.explanation or exc}") from None


def _remove_ids(ids: list[str]) -> None:
    import docker.errors

    if not ids:
        return
    engine = client()
    try:
        for ident in ids:
            try:
                engine.api.remove_container(ident, force=True, v=True)
            except docker.errors.NotFound:
                pass
    finally:
        engine.close()


#: The kinds served when configured (``[providers] python = "docker"``): the function that
#: starts one's resource. A resource offers ``dead``, ``async ping()`` (a real round trip)
#: and ``async aclose()`` (removes its container).
SERVED = {
    "python": "agently_core_docker.workers:ensure_worker",
    "node": "agently_core_docker.workers:ensure_worker",
    "bash": "agently_core_docker.bash_box:ensure_bash",
}


def _served(kind: str) -> Any:
    from importlib import import_module

    target = SERVED.get(kind)
    if target is None:
        raise DockerConfigError(f"the docker provider does not serve kind {kind!r} (it "
                                f"serves docker, {', '.join(sorted(SERVED))})")
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


class DockerProvider:
    """Provider for ``kind="docker"`` (see the module docstring), and for the warm
    sandboxes' kinds when configured to serve them (:mod:`~agently_core_docker.workers`)."""

    kind = "docker"

    async def ensure(self, requirement: Any) -> Any:
        if requirement.kind != "docker":  # a kind served when configured
            return await _served(requirement.kind)(requirement)
        settings = container_settings(requirement.config, requirement.policy)
        labels = container_labels(requirement)
        made: list[str] = []
        try:
            return await anyio.to_thread.run_sync(_start, settings, labels, made)
        except BaseException:
            with anyio.CancelScope(shield=True):  # leave nothing behind
                await anyio.to_thread.run_sync(_remove_ids, made)
            raise

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        container = handle.resource
        if handle.requirement.kind != "docker":  # a served kind: a real round trip
            return not container.dead and await container.ping()
        if not isinstance(container, DockerContainer) or container.removed:
            return False
        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                alive = await anyio.to_thread.run_sync(container.running, abandon_on_cancel=True)
                if not alive:
                    return False
                answer = await anyio.to_thread.run_sync(container.exec, ["true"], 1024,
                                                        abandon_on_cancel=True)
        except Exception:
            return False
        return answer.exit_code == 0

    async def release(self, requirement: Any, resource: Any) -> None:
        if isinstance(resource, DockerContainer):
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(resource.remove)
        elif requirement.kind != "docker":
            await resource.aclose()


__all__ = ["DockerContainer", "DockerProvider", "ExecResult"]
