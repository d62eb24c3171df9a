"""The connection to the Ray cluster, and awaiting a remote call from agently-core's loop."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import sniffio

from agently_core.errors import AgentlyError

from .settings import RaySettings

_lock = threading.Lock()


def connect(settings: RaySettings) -> None:
    """Connect this process to the cluster once: ``address`` ``"auto"`` (an existing cluster
    started with ``ray start --head``, or ``RAY_ADDRESS``), ``"local"`` (a single-node
    instance started here, without the dashboard), or ``host:port`` / ``ray://...``. A
    process already connected (``ray.init`` by the application, a test cluster) is used
    as it is."""
    import ray

    with _lock:
        if ray.is_initialized():
            return
        address = None if settings.address == "local" else settings.address
        try:
            ray.init(address=address, namespace=settings.namespace, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise AgentlyError(
                f"cannot connect to the Ray cluster at {settings.address!r}: {exc}. Start one "
                "with `ray start --head` (and `ray start --address=HEAD:6379` on each worker "
                "node), or set [ray] address") from None


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the actor (or its node) is gone."""
    import ray.exceptions as rex

    return isinstance(exc, (rex.RayActorError, rex.ActorUnavailableError,
                            rex.NodeDiedError, rex.ObjectLostError, rex.WorkerCrashedError))


async def wait(ref: Any) -> Any:
    """The value of an ``ObjectRef``. On asyncio it is awaited on the loop; elsewhere a
    thread waits. A cancelled caller cancels the remote task (``ray.cancel``)."""
    import ray

    try:
        if sniffio.current_async_library() == "asyncio":
            return await ref
        return await anyio.to_thread.run_sync(ray.get, ref, abandon_on_cancel=True)
    except BaseException as exc:
        if not isinstance(exc, Exception):  # cancelled: the remote call goes too
            ray.cancel(ref)
        raise


def cause(exc: BaseException) -> str:
    """A one-line account of a remote failure (the remote exception's own text)."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError) and exc.cause is not None:
        exc = exc.cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


__all__ = ["cause", "connect", "lost", "wait"]
