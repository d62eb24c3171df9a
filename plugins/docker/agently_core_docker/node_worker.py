"""The ``node`` kind in a container (``[providers] node = "docker"``): the native Node.js
worker program (``agently_core_nodejs/worker.js``) as the main process of a hardened
container, driven by the native host side (:class:`agently_core_nodejs.sandbox.NodeWorker`:
its protocol, concurrent calls, drops, timeouts and result records).

The channel: natively the worker talks over a private socket; here it is the container's
stdin (requests) and stdout (replies) over the attach connection
(:class:`~agently_core_docker.attach.AttachedProcess`). The container's command moves them
to fds 3 and 4 (``worker.js`` is told ``3,4``), points fd 0 at ``/dev/null`` and fd 1 at
stderr: what the code writes to the raw fds 1 and 2 (``fs.writeSync(1, ...)``, a child with
inherited stdio) lands in the kept end of stderr, never in the reply stream.

Memory: as natively, Node's ``RLIMIT_DATA`` is the memory limit (set by the shell before
``exec``, so it binds Node and not the engine's runtime) and V8's old space is capped at
three quarters of it: a ``Buffer`` bomb fails inside the code with a catchable
``RangeError``, a heap bomb ends the worker with V8's message. (The container's memory limit
alone would not stop the first: memory allocated and never touched is not charged to it.)
The container's limit holds the whole worker besides, its tmpfs files included. Processes:
the pids limit counts threads, so Node's own (``NODE_TASKS``) come on top of the policy's.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from agently_core.errors import AgentlyError

#: The command of a Node worker's container; ``$0`` is the worker's source, ``$1`` the data
#: limit in KiB, the rest Node's options. Requests arrive on fd 3 (stdin), replies leave on
#: fd 4 (stdout).
NODE_COMMAND = ('ulimit -d "$1" || exit 125; shift; '
                'exec node "$@" -e "$0" 3,4 3<&0 4>&1 </dev/null 1>&2')
#: How long an ended worker's container is asked for its exit status.
EXIT_WAIT = 2.0
#: What V8 writes when it stops the process (for a memory it could not get, among others).
V8_FATAL = ("Fatal error", "FATAL ERROR", "Check failed")


def _without_v8_filler(tail: bytes) -> bytes:
    """``tail`` without the lines of ``#`` that frame V8's fatal-error report."""
    return b"\n".join(line for line in tail.splitlines()
                      if line.strip() != b"#" and not line.startswith(b"#FailureMessage"))


def node_argv(source: str, memory_bytes: int | None) -> list[str]:
    """The container's command: a shell that limits Node's data segment to ``memory_bytes``
    and sets up the channel's fds, then ``exec``s Node (from the image's ``PATH``) with its
    heap cap and ``source``."""
    from agently_core_nodejs.sandbox import heap_megabytes

    data = "unlimited" if memory_bytes is None else str(memory_bytes >> 10)
    return ["sh", "-c", NODE_COMMAND, source, data,
            f"--max-old-space-size={heap_megabytes(memory_bytes or 4 << 30)}",
            "--v8-pool-size=2"]


def node_worker_class() -> type:
    """The Node.js worker over a container (a subclass of the native ``NodeWorker``, so the
    ``node`` executor runs it as its own)."""
    global _NODE
    if _NODE is None:
        _NODE = _make_class()
    return _NODE


def _make_class() -> type:
    try:
        from agently_core_nodejs.sandbox import (
            MAX_REPLY,
            MIN_MEMORY,
            NODE_TASKS,
            NodeWorker,
            WorkerError,
            last_words,
            worker_source,
        )
    except ImportError:
        raise AgentlyError("the docker provider serves kind 'node' with the Node.js "
                           "sandbox's worker: install agently-core-nodejs") from None

    from .workers import READY_TIMEOUT, ContainerWorkerMixin

    class DockerNodeWorker(ContainerWorkerMixin, NodeWorker):
        """A warm Node.js worker whose isolation is a container."""

        extra_tasks = NODE_TASKS

        async def start(self, ready_timeout: float = READY_TIMEOUT) -> Any:
            memory = self.limits.memory_bytes
            if memory is not None and memory < MIN_MEMORY:
                raise WorkerError(f"Node.js needs at least {MIN_MEMORY >> 20} MB of memory; "
                                  f"the sandbox allows {memory >> 20} MB (memory_mb)")
            argv = node_argv(worker_source(), memory)
            self.process = await self.start_container(argv)
            self._stream = self.process.stdin  # what NodeWorker sends requests on
            self._reader = BufferedByteReceiveStream(self.process.stdout)
            try:
                with anyio.fail_after(ready_timeout):
                    ready = json.loads(await self._reader.receive_until(b"\n", MAX_REPLY))
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    detail = await self._last_words() if isinstance(exc, Exception) else ""
                    await self.aclose()
                if isinstance(exc, Exception):
                    raise WorkerError("the Node.js container did not start: "
                                      f"{detail or repr(exc)}") from exc
                raise
            if not isinstance(ready, dict) or not ready.get("ready"):
                await self.aclose()
                raise WorkerError(f"the Node.js container answered {ready!r} instead of "
                                  "ready")
            return self

        async def _last_words(self) -> str:
            """Why the worker ended: its container's exit status (and whether the memory
            limit killed it) and the end of its stderr."""
            process, container = self.process, self.container
            if process is None or container is None:
                return ""
            code, oom = process.exit_code, False
            if code is None and not container.removed:
                with anyio.move_on_after(EXIT_WAIT + 1.0):
                    code, oom = await anyio.to_thread.run_sync(
                        _exit_state, container, EXIT_WAIT, abandon_on_cancel=True)
                process.exit_code = code
            words = last_words(code, _without_v8_filler(bytes(process.stderr_tail[-4096:])))
            megabytes = (self.limits.memory_bytes or 0) >> 20
            if oom:
                words += f"; the container's memory limit ({megabytes} MB) was reached"
            elif code is not None and code > 128 and "out of memory" not in words \
                    and any(mark in words for mark in V8_FATAL):
                words += f" (V8 stopped fatally; the worker's memory limit is {megabytes} MB)"
            return words

        def kill(self, reason: str | None = "it was closed") -> None:
            """Remove the container (in the background); every call still in flight fails
            with ``reason``."""
            ContainerWorkerMixin.kill(self)
            if reason is not None and self._waiters:
                self._fail_all(f"the Node.js worker was killed: {reason}; the next call "
                               "gets a fresh one")

    return DockerNodeWorker


def _exit_state(container: Any, within: float) -> tuple[int | None, bool]:
    """The exit code of a container's main process once it stopped (waiting up to
    ``within`` seconds; ``None`` if it still runs, or is gone) and whether the memory limit
    killed it."""
    import docker.errors

    deadline = time.monotonic() + within
    while True:
        try:
            state = container.engine.api.inspect_container(container.id)["State"]
        except docker.errors.NotFound:
            return None, False
        if not state.get("Running"):
            return int(state.get("ExitCode", -1)), bool(state.get("OOMKilled"))
        if time.monotonic() > deadline:
            return None, False
        time.sleep(0.05)


_NODE: type | None = None

__all__ = ["NODE_COMMAND", "node_argv", "node_worker_class"]
