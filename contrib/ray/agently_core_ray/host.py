"""The Ray actor that hosts one provider's resource on a worker node.

:class:`ResourceHost` runs on the node Ray placed it on: ``start`` loads the inner provider
there (by name, from the plugins installed on that node, with a configuration of its own:
no file of the node's working directory chooses it) and ensures the resource, so the
sandbox's process, its workspace and any environment variable named by
``env_passthrough`` are the worker node's. ``request`` forwards one worker-protocol
request; a cancelled Ray task cancels it (the native worker then kills itself, as it does
for a cancelled local call). ``ping`` is the inner provider's own health check. ``watch``
is a call the host side keeps pending for the actor's whole life: it answers when the
resource stops (its process exited, it says it is dead or closed, or it was released), and Ray fails
it the moment it learns the actor or its node is lost, so the host side can see either
without a round trip. ``close`` releases the resource once.
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any

import anyio

#: Seconds between the watch's looks at the resource's process (its release wakes it at once).
WATCH_POLL = 0.5


def describe(resource: Any) -> dict[str, Any]:
    """What the host-side proxy needs to know of a warm worker to check a call's policy
    against it (limits, network, the names passed through, the workspace bound), and, for
    a Bash sandbox or a SQLite connection, its roots or settings
    (:func:`~agently_core_ray.more_kinds.details`)."""
    from .more_kinds import details

    return {
        "limits": getattr(resource, "limits", None),
        "network": bool(getattr(resource, "network", False)),
        "passed": sorted(getattr(resource, "passed", ()) or ()),
        "workspace_bytes": getattr(resource, "workspace_bytes", None),
        "tier": getattr(getattr(resource, "isolation", None), "tier", None),
        **details(resource),
    }


def worker_redactor(resource: Any, config: Any) -> Any:
    """A redactor of the secrets this node added: the values of the variables passed
    through from the node's environment (which the agent's host never sees), and the
    requirement's ``env`` values. None when there are none."""
    from agently_core.redaction import Redactor

    env = getattr(resource, "env", None) or {}
    passed = [env[name] for name in getattr(resource, "passed", ()) if name in env]
    redactor = Redactor()
    redactor.add(*passed)
    redactor.add_from_config(config)
    return redactor if passed or (config or {}).get("env") else None


class ResourceHost:
    """One provider's resource, hosted in this actor (see the module docstring)."""

    def __init__(self, kind: str, inner: str, requirement: dict[str, Any]) -> None:
        self.kind = kind
        self.inner = inner
        self.requirement_data = requirement
        self.provider: Any = None
        self.resource: Any = None
        self.handle: Any = None
        self.redactor: Any = None
        self.released = False
        self._released: anyio.Event | None = None

    async def start(self) -> dict[str, Any]:
        """Ensure the resource with the inner provider; describe it and where it runs."""
        import ray

        from agently_core.config import Config
        from agently_core.models import EnvironmentRequirement
        from agently_core.plugins import PluginManager
        from agently_core.protocols import ProviderHandle

        registration = PluginManager(Config()).load().select(
            "environment_provider", self.inner, kind=self.kind)
        self.provider = registration.load()()
        requirement = EnvironmentRequirement.model_validate(self.requirement_data)
        self.resource = await self.provider.ensure(requirement)
        self.handle = ProviderHandle("ray-hosted", requirement, self.resource)
        self.redactor = worker_redactor(self.resource, requirement.config)
        return {**describe(self.resource), "node_id": ray.get_runtime_context().get_node_id(),
                "hostname": socket.gethostname(), "pid": os.getpid(), "inner": self.inner}

    async def request(self, payload: dict[str, Any], timeout: float) -> tuple[str, Any]:
        """One worker-protocol request: ``("ok", reply)`` or ``("error", {message, dead})``
        (the worker's own error, as its text: the host re-raises it as the native error)."""
        try:
            reply = await self.resource.request(payload, timeout)
            return "ok", self.redactor.redact(reply) if self.redactor else reply
        except Exception as exc:
            text = self.redactor.text(str(exc)) if self.redactor else str(exc)
            return "error", {"message": text, "type": type(exc).__name__,
                             "dead": bool(getattr(self.resource, "dead", True))}

    async def call(self, op: str, args: dict[str, Any]) -> tuple[str, Any]:
        """One call of a kind without the request protocol (``"bash.run"``,
        ``"sqlite.run"``): see :func:`agently_core_ray.more_kinds.node_call`."""
        from .more_kinds import node_call

        return await node_call(self, op, args)

    async def ping(self) -> bool:
        """The inner provider's health check of the resource (a real round trip)."""
        if self.released or self.resource is None:
            return False
        try:
            return bool(await self.provider.async_health_check(self.handle))
        except Exception:
            return False

    def stopped(self) -> bool:
        """Whether the resource is gone: released, dead by its own account, closed (a
        sandbox or a pool with no process of its own), or its process exited."""
        if self.released or self.resource is None or getattr(self.resource, "closed", False):
            return True
        process = getattr(self.resource, "process", None)
        return bool(getattr(self.resource, "dead", False)) or (
            process is not None and process.returncode is not None)

    async def watch(self) -> str:
        """Answer when the resource stops: ``"released"`` after :meth:`close`, else
        ``"stopped"`` (see the module docstring)."""
        if self._released is None:
            self._released = anyio.Event()
        while not self.stopped():
            with anyio.move_on_after(WATCH_POLL):
                await self._released.wait()
        return "released" if self.released else "stopped"

    async def close(self) -> bool:
        """Release the resource (once); True the first time."""
        if self.released or self.resource is None:
            return False
        self.released = True
        if self._released is not None:
            self._released.set()
        await self.provider.release(self.handle.requirement, self.resource)
        return True


@functools.cache
def remote_class() -> Any:
    """:class:`ResourceHost` as a Ray actor class (made on first use)."""
    import ray

    return ray.remote(max_restarts=0, max_task_retries=0)(ResourceHost)


__all__ = ["ResourceHost", "describe", "remote_class"]
