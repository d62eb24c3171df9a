"""``ray``: an installed provider's resource hosted in a Ray actor on a cluster node.

Chosen per kind by configuration (``[providers] python = "ray"``), with no change to the
actions: ``ensure`` connects to the cluster (:func:`~agently_core_ray.cluster.connect`),
places one :class:`~agently_core_ray.host.ResourceHost` actor with the kind's placement
(``[ray.placement.KIND]``), has it ensure the resource with the inner provider
(``[ray] inner_provider.KIND``) on its node, and returns a host-side stand-in of the
native resource class (:mod:`~agently_core_ray.workers`), so the native executor runs it
unchanged. The manager's rules hold as for any provider: it calls ``ensure`` once per
reuse key, ``async_health_check`` pings the actor and the resource inside it, and
``release`` kills the actor exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import anyio

from agently_core.errors import AgentlyError, ConfigError
from agently_core.protocols import ProviderHandle

from .settings import RaySettings, ray_settings


def refuse_secret_env(requirement: Any) -> None:
    """Secrets cross to a worker node only by name. agently-core treats every value of a
    requirement's ``env`` as a secret (redaction masks them), and here they would travel in
    Ray's actor arguments, which the cluster keeps: :class:`ConfigError` naming the keys,
    before any actor exists. ``env_passthrough`` names are read on the worker node."""
    env = (getattr(requirement, "config", None) or {}).get("env") or {}
    if env:
        raise ConfigError(
            f"the ray provider does not send env values to worker nodes (agently-core "
            f"treats them as secrets): {', '.join(sorted(map(str, env)))}; pass each by "
            "name with env_passthrough (read from the worker node's own environment) and "
            "set it on the nodes that need it")


class RayProvider:
    """Provider for the kinds it serves when configured (see the module docstring)."""

    kind = "ray"
    name = "ray"

    def __init__(self, settings: RaySettings | Mapping[str, Any] | None = None) -> None:
        self.settings = settings if isinstance(settings, RaySettings) \
            else ray_settings(settings)
        #: requirement id -> what happened to the previous actor (reported by the next one).
        self._lost: dict[str, str] = {}

    def use_config(self, config: Any) -> None:
        """Read the ``[ray]`` table of the manager's configuration."""
        self.settings = ray_settings(getattr(config, "ray", None))

    async def ensure(self, requirement: Any) -> Any:
        import ray

        from .cluster import cause, connect, wait
        from .host import remote_class
        from .workers import WORKER_CLASSES

        kind = requirement.kind
        make = WORKER_CLASSES.get(kind)
        if make is None:
            raise ConfigError(f"the ray provider does not serve kind {kind!r} (it serves "
                              f"{', '.join(WORKER_CLASSES)})")
        worker_class = make()
        refuse_secret_env(requirement)
        settings = self.settings
        inner = settings.inner(kind)
        await anyio.to_thread.run_sync(connect, settings)
        name = f"agently-{kind}-{uuid.uuid4().hex[:12]}"
        try:
            actor = remote_class().options(name=name, namespace=settings.namespace,
                                           **settings.actor_options(kind)).remote(
                kind, inner, requirement.model_dump())
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[ray.placement.{kind}]: Ray refused the actor options: "
                              f"{exc}") from None
        try:
            with anyio.fail_after(settings.start_timeout):
                info = await wait(actor.start.remote())
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                ray.kill(actor, no_restart=True)
            if isinstance(exc, TimeoutError):
                raise AgentlyError(
                    f"the Ray actor for {kind!r} did not start within "
                    f"{settings.start_timeout:g}s (is a node with its placement "
                    f"{settings.actor_options(kind)} in the cluster?)") from None
            if isinstance(exc, Exception):
                raise AgentlyError(f"the Ray actor for {kind!r} could not start its resource "
                                   f"with provider {inner!r}: {cause(exc)}") from None
            raise
        note = self._lost.pop(requirement.id, None)
        worker = worker_class(actor, info, grace=settings.call_grace,
                              health_timeout=settings.health_timeout, lost_note=note,
                              fresh=settings.ping_fresh_seconds)
        worker.actor_name = name
        return worker

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        worker = handle.resource
        healthy = await worker.ping()
        if not healthy and worker.lost_reason:
            self._lost[handle.requirement.id] = (
                f"[agently-core-ray: the previous sandbox on node {worker.node_id[:12]} was "
                f"lost ({worker.lost_reason}) with its state; this is a fresh one]")
        return healthy

    async def release(self, requirement: Any, resource: Any) -> None:
        await resource.aclose()


__all__ = ["RayProvider", "refuse_secret_env"]
