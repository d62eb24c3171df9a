"""Host-side stand-ins for warm workers hosted in Ray actors.

:func:`python_worker_class` is a subclass of the native ``PythonWorker``, so the native
``python`` executor runs it as its own: the policy check against the worker, the call's
turn (queueing, recorded on the host), the result record, redaction and artifacts all run
where the agent runs; only ``request`` (one JSON request to the worker) and ``ping``
cross the network, to the :class:`~agently_core_ray.host.ResourceHost` actor that holds
the real worker on its node.

Deadlines: a request carries its timeout to the actor (where the native worker keeps it
and kills itself past it); the host waits that long plus ``call_grace``, then gives the
actor up. A cancelled caller cancels the remote call, which kills the worker there. A lost
actor or node makes the worker dead: the call fails saying its state is lost, the health
check answers False, and the manager's next ensure starts a fresh actor on a live node.

Health without a round trip: each stand-in keeps the actor's ``watch`` call pending. Ray
fails it as soon as it learns the actor or its node is gone, and the actor answers it when
the resource inside stops, so :meth:`RemoteWorkerMixin.ping` reads it locally (a future
Ray completes in the background: no round trip). Only a sandbox idle longer than
``ping_fresh_seconds`` (the ``[ray]`` setting) also gets a real ping of the actor and of
the worker in it.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import anyio

from agently_core.errors import AgentlyError
from agently_core.queueing import Turnstile

from .cluster import cause, lost, wait
from .more_kinds import bash_sandbox_class, sqlite_connection_class

#: Calls that may wait for a busy worker (as the native worker's bound).
MAX_WAITING = 32


class RemoteWorkerMixin:
    """What the Ray-hosted workers share: the actor, forwarding, health and release."""

    actor: Any
    info: dict[str, Any]
    grace: float = 5.0
    health_timeout: float = 10.0
    #: A note for the first reply after a loss (the state the previous actor held is gone).
    lost_note: str | None = None
    error_class: type[Exception] = RuntimeError
    #: One call at a time, its turn taken here (the Python worker); False where the
    #: worker itself runs several calls at once (Node.js).
    serial = True
    #: Whether a cancelled call leaves the worker dead (the native workers kill themselves
    #: on one; a Bash sandbox or a SQLite pool stays usable).
    cancel_kills = True

    def _setup(self, actor: Any, info: dict[str, Any], *, label: str, grace: float,
               health_timeout: float, lost_note: str | None, fresh: float = 10.0) -> None:
        self.actor = actor
        self.fresh = fresh
        self.answered = time.monotonic()  # start() was an answer
        self.info = info
        self.grace = grace
        self.health_timeout = health_timeout
        self.lost_note = lost_note
        self.limits = info["limits"]
        self.network = info["network"]
        self.passed = frozenset(info["passed"])
        self.env: dict[str, str] = {}
        self.workspace = None  # on the worker node: its bound is info["workspace_bytes"]
        self.workdir = None
        self.process = None
        self.turnstile = Turnstile(label, max_waiting=MAX_WAITING)
        self._seq = 0
        self.dead = False
        self.calls = 0
        self.kills = 0
        self.lost_reason: str | None = None
        self._close_lock = threading.Lock()
        self._closed = False
        #: Real pings made (health checks that needed a round trip).
        self.pings = 0
        #: The actor's pending ``watch`` call, as a future Ray completes in the background.
        self.watching = actor.watch.remote().future()

    @property
    def node_id(self) -> str:
        """The Ray node the worker runs on."""
        return str(self.info["node_id"])

    @property
    def tier(self) -> str:
        return f"ray:{self.info.get('tier') or 'unknown'}"

    @property
    def workspace_bytes(self) -> int | None:
        return self.info.get("workspace_bytes")

    def _gone(self, exc: BaseException) -> Exception:
        self.dead = True
        self.lost_reason = cause(exc)
        return self.error_class(
            f"the Ray actor hosting this sandbox on node {self.node_id[:12]} was lost "
            f"({self.lost_reason}); the sandbox's state is lost and the next call gets a fresh "
            "one on a live node")

    async def request(self, payload: dict[str, Any], timeout: float, context: Any = None,
                      **options: Any) -> dict[str, Any]:
        """Forward one request to the actor (its turn taken here first, for a serial
        worker)."""
        if not self.serial:  # the worker class's run() counts the call
            return await self._forward(payload, timeout)
        async with self.turnstile.turn(context):
            reply = await self._forward(payload, timeout)
            self.calls += 1
            return reply

    async def _remote(self, method: str, *args: Any, timeout: float) -> Any:
        """The answer of the actor's ``method(*args)``, awaited ``timeout`` plus
        ``call_grace`` at most: past it the actor is given up, a lost actor says the state
        is lost, any other failure names its cause (each leaves the worker dead). A
        cancelled caller cancels the remote call; the worker is then dead where
        :attr:`cancel_kills` (the native worker kills itself on a cancelled call)."""
        if self.dead:
            raise self.error_class("the sandbox's Ray actor is not running")
        try:
            with anyio.fail_after(timeout + self.grace):
                answer = await wait(getattr(self.actor, method).remote(*args))
        except TimeoutError:
            self.dead = True
            raise self.error_class(
                f"no answer from the Ray actor {timeout + self.grace:g}s after the call "
                "began; it is given up (the next call gets a fresh one)") from None
        except Exception as exc:
            if lost(exc):
                raise self._gone(exc) from None
            self.dead = True
            raise self.error_class(f"the Ray actor failed: {cause(exc)}") from None
        except BaseException:  # cancelled: wait() cancelled the remote call
            self.dead = self.dead or self.cancel_kills
            raise
        self.answered = time.monotonic()  # an error reply is an answer too
        return answer

    async def _forward(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        status, value = await self._remote("request", payload, timeout, timeout=timeout)
        if status == "error":
            self.dead = bool(value.get("dead"))
            raise self.error_class(value["message"])
        if self.lost_note and isinstance(value, dict):
            note, self.lost_note = self.lost_note, None
            value = {**value, "stderr": f"{note}\n{value.get('stderr') or ''}"}
        return value

    def stopped(self) -> bool:
        """Whether the actor's watch has answered (no round trip): the actor or its node
        was lost (``lost_reason`` says how), or the resource in it stopped. Either way the
        worker is dead."""
        if self.dead:
            return True
        if not self.watching.done():
            return False
        exc = self.watching.exception()
        if exc is None:
            self.lost_reason = f"its sandbox {self.watching.result()} on the node"
        elif lost(exc):
            self._gone(exc)
        else:
            self.lost_reason = cause(exc)
        self.dead = True
        return True

    async def ping(self, timeout: float | None = None) -> bool:
        """The watch (see :meth:`stopped`); for a sandbox idle past ``fresh`` seconds also
        a real round trip to the actor and, through it, the worker's own ping."""
        if self._closed or self.stopped():
            return False
        if time.monotonic() - self.answered < self.fresh:
            return True  # it answered recently, and its watch is still pending
        self.pings += 1
        try:
            with anyio.fail_after(timeout or self.health_timeout):
                alive = bool(await wait(self.actor.ping.remote()))
        except Exception as exc:
            if lost(exc):
                self._gone(exc)
            return False
        if not alive:
            self.dead = True
        else:
            self.answered = time.monotonic()
        return alive

    def kill(self, *args: Any) -> None:
        """Mark the worker dead (the actor kills its worker itself on a timeout or a
        cancelled call); the actor is killed by :meth:`aclose`."""
        self.dead = True

    async def aclose(self) -> None:
        """Release the worker in its actor, then kill the actor: exactly once."""
        import ray

        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.dead = True
        with anyio.CancelScope(shield=True):
            try:
                with anyio.move_on_after(self.health_timeout):
                    await wait(self.actor.close.remote())
            except Exception:
                pass  # lost already, or the release failed there: the kill below ends it
            try:
                ray.kill(self.actor, no_restart=True)
            except Exception:
                pass
            self.kills += 1


@functools.cache
def python_worker_class() -> type:
    """The Python worker in a Ray actor (a subclass of the native ``PythonWorker``)."""
    try:
        from agently_core_python.sandbox import PythonWorker, WorkerError
    except ImportError:
        raise AgentlyError("the ray provider serves kind 'python' with the Python "
                           "sandbox's worker: install agently-core-python") from None

    class RayPythonWorker(RemoteWorkerMixin, PythonWorker):
        """A warm Python worker living in a Ray actor on a worker node."""

        error_class = WorkerError

        def __init__(self, actor: Any, info: dict[str, Any], **options: Any) -> None:
            # no PythonWorker.__init__: nothing of the worker (uid, workspace) is here
            self._setup(actor, info, label="the Python sandbox of its scope (Ray)",
                        **options)

        async def start(self, ready_timeout: float = 0.0) -> Any:
            return self

    return RayPythonWorker


@functools.cache
def node_worker_class() -> type:
    """The Node.js worker in a Ray actor (a subclass of the native ``NodeWorker``; calls
    run concurrently in the worker, as locally)."""
    try:
        from agently_core_nodejs.sandbox import NodeWorker, WorkerError
    except ImportError:
        raise AgentlyError("the ray provider serves kind 'node' with the Node.js "
                           "sandbox's worker: install agently-core-nodejs") from None

    class RayNodeWorker(RemoteWorkerMixin, NodeWorker):
        """A warm Node.js worker living in a Ray actor on a worker node."""

        error_class = WorkerError
        serial = False

        def __init__(self, actor: Any, info: dict[str, Any], **options: Any) -> None:
            self._setup(actor, info, label="the Node.js sandbox of its scope (Ray)",
                        **options)
            self._waiters = {}
            self._log = None

        def _trim_log(self) -> None:
            pass  # the worker's log is kept (and trimmed) on its node

        async def start(self, *args: Any, **kwargs: Any) -> Any:
            return self

    return RayNodeWorker


#: The host-side class of each kind served (python and node speak the request protocol;
#: bash and sqlite forward their ``run``, see :mod:`agently_core_ray.more_kinds`).
WORKER_CLASSES = {"python": python_worker_class, "node": node_worker_class,
                  "bash": bash_sandbox_class, "sqlite": sqlite_connection_class}


__all__ = ["WORKER_CLASSES", "RemoteWorkerMixin", "node_worker_class", "python_worker_class"]
