"""The host side of a warm Node.js worker: start it inside the isolation, talk JSON lines to
it over a private socket with several requests in flight, and kill its whole process tree
on a timeout, a cancellation or a broken reply.

Memory: V8 reserves far more address space than it uses (a WebAssembly memory alone
reserves 10 GB), so ``RLIMIT_AS`` either stops Node from starting or is meaningless. The
worker gets ``RLIMIT_DATA`` instead (private writable memory: the heap, ``Buffer`` and
typed-array storage, thread stacks; ``Limits.data_bytes``, applied by the isolation's
supervisor like every other limit), and V8's old space is capped at three quarters of it with
``--max-old-space-size``. Measured (256 MB): a heap bomb ends the worker with V8's "FATAL
ERROR: ... JavaScript heap out of memory", which the failed call reports, and the next call
gets a fresh worker; a ``Buffer`` bomb fails inside the code with a catchable
``RangeError: Array buffer allocation failed`` when the allocation is what fails first, and
otherwise ends the worker the same way (V8 cannot commit memory for its own collector). A
WebAssembly memory still works, which it would not under ``RLIMIT_AS``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from agently_core_isolation.sandbox import (
    Isolation,
    Limits,
    SandboxSpec,
    allocate_uid,
    kill_tree,
    wait_stopped,
)
from agently_core_isolation.workspace import DEFAULT_WORKSPACE_BYTES, Workspace, new_workspace
from anyio.streams.buffered import BufferedByteReceiveStream

NODE = "/usr/bin/node"  # under /usr: visible in every tier
MAX_REPLY = 64 * 1024 * 1024  # two 4 MB captures, JSON-escaped
#: Below this RLIMIT_DATA Node cannot even start its threads.
MIN_MEMORY = 64 << 20
#: Tasks the worker itself needs under RLIMIT_NPROC (which counts threads): Node's main
#: thread, two V8 and two libuv pool threads and two helpers; bubblewrap
#: adds two processes of its own. ``processes`` is what the code may start on top.
NODE_TASKS = 7
BUBBLEWRAP_TASKS = 2
#: The host-side log of the worker's raw fds 1 and 2 is emptied past this size.
LOG_KEEP = 1 << 20
_SOURCE: str | None = None
#: Lines of a dying Node's stderr that say nothing to the model: V8's native and GC traces.
NOISE = ("[", "<---", "-----", "at ", "Security context:")
#: ``args`` left out of a call: undefined in the code (``None`` is JSON null).
NO_ARGS: Any = object()


class WorkerError(RuntimeError):
    """The worker died, timed out or broke the protocol; it has been killed."""


def worker_source() -> str:
    global _SOURCE
    if _SOURCE is None:
        _SOURCE = Path(__file__).with_name("worker.js").read_text(encoding="utf-8")
    return _SOURCE


def heap_megabytes(memory_bytes: int) -> int:
    """V8's old-space cap: three quarters of the data limit, the rest for Buffers, code,
    thread stacks and the young generation."""
    return max(16, (memory_bytes * 3 // 4) >> 20)


def last_words(code: int | None, tail: bytes) -> str:
    """Why a worker died, from its exit status (``None``: still running; negative or above
    128: a signal) and the end of its raw stderr, without V8's native stack and GC traces."""
    lines: list[str] = []
    for line in tail.decode(errors="replace").splitlines():
        line = line.strip()
        if line and not line[0].isdigit() and not line.startswith(NOISE):
            lines.append(line)
    if code is None:
        status = "its reply channel closed"
    elif code < 0 or code > 128:  # bubblewrap passes a signal on as 128 + its number
        number = -code if code < 0 else code - 128
        try:
            status = f"killed by {signal.Signals(number).name}"
        except ValueError:
            status = f"exit status {code}"
    else:
        status = f"exit status {code}"
    words = " | ".join(lines[-3:])[-600:]
    return f"{status}{': ' + words if words else ''}"


#: A call that waited longer than this for the worker to start it shows the wait in its
#: record (``meta["queued_ms"]``).
QUEUED_AFTER = 0.005


class _Waiter:
    __slots__ = ("deadline", "error", "event", "reply", "started", "started_at")

    def __init__(self, deadline: float) -> None:
        self.event = anyio.Event()
        self.reply: dict[str, Any] | None = None
        self.error: str | None = None
        self.deadline = deadline
        #: The worker said the call began to run (until then a caller may drop it), and when.
        self.started = False
        self.started_at = 0.0

    @property
    def done(self) -> bool:
        return self.reply is not None or self.error is not None


class NodeWorker:
    """One isolated Node.js process that keeps its globals between calls and runs several
    calls at once.

    Requests are serialised on the way out (a lock around the send); replies are read by
    whichever waiting caller holds the reader role (no background task, so the worker
    belongs to no task group): it resolves the waiters of the replies it reads and, when
    its own reply has come, hands the role to another waiter.
    """

    def __init__(self, isolation: Isolation, limits: Limits, *, network: bool = False,
                 env: dict[str, str] | None = None, passed: frozenset[str] = frozenset(),
                 node: str = NODE, workspace_bytes: int | None = None) -> None:
        self.isolation = isolation
        self.limits = limits
        self.network = network
        self.env = dict(env or {})
        #: The names in ``env`` that came from the host's environment (env_passthrough),
        #: as opposed to values the host configured.
        self.passed = frozenset(passed)
        self.node = node
        self.uid = allocate_uid() if os.geteuid() == 0 else None
        #: The workspace's bound: the one asked for (then it must hold), or the default
        #: where the host can hold one.
        self.quota = workspace_bytes or DEFAULT_WORKSPACE_BYTES
        self.quota_required = workspace_bytes is not None
        self.workspace: Workspace | None = None
        self.workdir: Path | None = None
        self.process: Any = None
        self._stream: anyio.abc.SocketStream | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self._log: Any = None
        self._send_lock = anyio.Lock()
        self._waiters: dict[int, _Waiter] = {}
        #: Calls whose callers gave up before the worker started them (told to drop them).
        self._dropped: set[int] = set()
        self._reading = False
        self._seq = 0
        self.dead = False
        self.calls = 0

    # -- start ------------------------------------------------------------------------
    def argv(self, fd: int) -> list[str]:
        """What runs inside the sandbox: Node with its heap cap, the worker's source, and
        the number of the inherited protocol socket."""
        memory = self.limits.memory_bytes
        # the host's /etc/ssl/openssl.cnf is hidden (bubblewrap) or unreadable (Landlock, a
        # fatal error for Node): an empty configuration keeps OpenSSL's built-in defaults
        return [self.node, f"--max-old-space-size={heap_megabytes(memory or 4 << 30)}",
                "--v8-pool-size=2", "--openssl-config=/dev/null",
                "--disable-warning=ExperimentalWarning", "-e", worker_source(), str(fd)]

    def _sandbox_limits(self) -> Limits:
        processes = self.limits.processes
        if processes is not None:
            processes += NODE_TASKS + (BUBBLEWRAP_TASKS if self.isolation.tier == "bubblewrap"
                                       else 0)
        # RLIMIT_DATA instead of RLIMIT_AS (see the module docstring)
        return dataclasses.replace(self.limits, processes=processes, memory_bytes=None,
                                   data_bytes=self.limits.memory_bytes)

    async def start(self, ready_timeout: float = 15.0) -> NodeWorker:
        memory = self.limits.memory_bytes
        if memory is not None and memory < MIN_MEMORY:
            raise WorkerError(f"Node.js needs at least {MIN_MEMORY >> 20} MB of memory; the "
                              f"sandbox allows {memory >> 20} MB (memory_mb)")
        self.workspace = new_workspace(self.uid, self.quota, required=self.quota_required)
        self.workdir = self.workspace["work"]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # the worker's raw stdout and stderr: a host-side file nobody else can open, read
        # for the reason when the worker dies
        self._log = tempfile.TemporaryFile(prefix="agently-nodejs-")  # noqa: SIM115 - aclose()
        flags = fcntl.fcntl(self._log.fileno(), fcntl.F_GETFL)  # appends, so that the host
        fcntl.fcntl(self._log.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)  # may empty it
        try:
            spec = SandboxSpec(self.argv(theirs.fileno()), self.workdir, network=self.network,
                               env=self.env, limits=self._sandbox_limits(),
                               tmpdir=self.workspace["tmp"])
            argv, env = self.isolation.command(spec, uid=self.uid)
            self.process = await anyio.open_process(
                argv, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=self._log, pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            await self.aclose()
            raise
        finally:
            theirs.close()
        self._stream = await anyio.abc.UNIXSocketStream.from_socket(ours)
        self._reader = BufferedByteReceiveStream(self._stream)
        try:
            with anyio.fail_after(ready_timeout):
                ready = json.loads(await self._reader.receive_until(b"\n", MAX_REPLY))
        except BaseException as exc:
            with anyio.CancelScope(shield=True):  # nothing of it may outlive a cancellation
                detail = await self._last_words() if isinstance(exc, Exception) else ""
                await self.aclose()
            if isinstance(exc, Exception):
                raise WorkerError(f"the Node.js sandbox did not start: {detail or exc!r}") from exc
            raise
        if not isinstance(ready, dict) or not ready.get("ready"):
            await self.aclose()
            raise WorkerError(f"the Node.js sandbox answered {ready!r} instead of ready")
        return self

    async def _last_words(self) -> str:
        """Why the worker died: its exit status and the end of its raw stderr (V8's fatal
        errors land there), without V8's native stack and GC traces."""
        if self.process is None:
            return ""
        with anyio.move_on_after(0.5):
            await self.process.wait()
        tail = b""
        if self._log is not None:
            try:
                size = os.fstat(self._log.fileno()).st_size
                tail = os.pread(self._log.fileno(), 4096, max(0, size - 4096))
            except (OSError, ValueError):
                tail = b""
        return last_words(self.process.returncode, tail)

    # -- requests ---------------------------------------------------------------------
    async def request(self, payload: dict[str, Any], timeout: float, *,
                      what: str = "call", context: Any = None) -> dict[str, Any]:
        """Send one request and wait for its reply. A timeout, a cancellation or a broken
        reply of a call that started kills the worker, and with it every call in flight
        there; a call the worker has not started yet (it is busy in another) is dropped
        instead, and ``context`` (the call's ActionContext) records that it waited and
        never started."""
        if self.dead or self._stream is None:
            raise WorkerError("the Node.js worker is not running")
        self._seq += 1
        rid = self._seq
        waiter = self._waiters[rid] = _Waiter(anyio.current_time() + timeout)
        line = (json.dumps({**payload, "id": rid}) + "\n").encode()
        sent = anyio.current_time()
        try:
            with anyio.move_on_after(timeout) as scope:
                async with self._send_lock:
                    await self._stream.send(line)
                await self._wait(waiter)
        except Exception as exc:  # the socket broke: the worker is gone
            self._waiters.pop(rid, None)
            raise WorkerError(await self._died()) from exc
        except BaseException:  # cancelled: its code cannot be stopped on its own
            self._waiters.pop(rid, None)
            if not waiter.done:  # (its reply may have come in just before)
                if waiter.started or payload.get("op") != "run":
                    self.kill(f"another {what} in it was cancelled (it timed out or its "
                              "caller gave up)")
                else:
                    with anyio.CancelScope(shield=True):
                        await self._drop(rid, context, anyio.current_time() - sent)
            raise
        if scope.cancelled_caught:
            self._waiters.pop(rid, None)
            if not waiter.started and payload.get("op") == "run":
                await self._drop(rid, context, anyio.current_time() - sent)
                raise WorkerError(f"timed out after {timeout:g}s while the worker was busy "
                                  "with another call; it never started")
            self.kill(f"another {what} in it timed out after {timeout:g}s")
            raise WorkerError(f"timed out after {timeout:g}s; the worker was killed and the "
                              "next call gets a fresh one")
        if waiter.error is not None:
            raise WorkerError(waiter.error)
        assert waiter.reply is not None
        waited = waiter.started_at - sent
        if context is not None and waited > QUEUED_AFTER:  # the worker was busy in another
            context.queued_for = "the Node.js worker of its scope"
            context.queued_s += waited
        return waiter.reply

    async def _drop(self, rid: int, context: Any, waited: float) -> None:
        """Tell the worker to drop a call it has not started (its caller gave up while the
        worker was busy in another call): the call never runs, the worker and its other
        calls carry on. The call's ``context`` records the wait."""
        self._dropped.add(rid)
        if context is not None:
            context.queued, context.queued_for = True, "the Node.js worker of its scope"
            context.queued_s += waited
        try:
            async with self._send_lock:
                await self._stream.send((json.dumps({"op": "drop", "id": rid}) + "\n").encode())
        except Exception:  # the socket broke: the worker is gone
            self.kill("its request channel broke")

    async def _wait(self, waiter: _Waiter) -> None:
        while not waiter.done:
            if self._reading:  # another caller reads; it wakes us with our reply or the role
                event = waiter.event
                await event.wait()
                if not waiter.done:
                    waiter.event = anyio.Event()
                continue
            self._reading = True
            try:
                await self._read_until(waiter)
            finally:
                self._reading = False
                for other in self._waiters.values():  # hand the reader role over
                    other.event.set()
                    break

    async def _read_until(self, waiter: _Waiter) -> None:
        assert self._reader is not None
        while not waiter.done:
            try:
                raw = await self._reader.receive_until(b"\n", MAX_REPLY)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                    anyio.ClosedResourceError, OSError):
                await self._died()
                return
            except anyio.DelimiterNotFound:
                self.kill("it sent a reply larger than the protocol allows")
                return
            try:
                reply = json.loads(raw)
                rid = reply["id"]
                if rid in self._dropped:  # a call its caller gave up on before it started
                    self._dropped.discard(rid)
                    if not reply.get("dropped"):  # it started after all: nobody wants it
                        self.kill("a call whose caller had given up started after all")
                        return
                    continue
                if reply.get("started"):
                    started = self._waiters[rid]
                    started.started, started.started_at = True, anyio.current_time()
                    continue
                target = self._waiters.pop(rid)
            except (ValueError, TypeError, KeyError):  # garbage, or an id nobody waits for
                self.kill("it broke the protocol (a reply nobody asked for)")
                return
            target.reply = reply
            target.event.set()

    async def _died(self) -> str:
        """The worker went away by itself: say why to every call in flight, and kill what
        may be left of its tree."""
        self.dead = True  # no new request goes out while we look
        words = await self._last_words()
        self.kill(None)
        message = f"the Node.js worker died ({words}); the next call gets a fresh one"
        self._fail_all(message)
        return message

    def _fail_all(self, message: str) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.error = message
            waiter.event.set()

    async def run(self, code: str, *, args: Any = NO_ARGS, timeout: float, max_output: int,
                  max_capture: int | None = None, context: Any = None) -> dict[str, Any]:
        """Run ``code`` (``args`` is undefined in it unless given); the value is cut at
        ``max_output``, stdout and stderr at ``max_capture`` (default ``max_output``) bytes
        each."""
        payload = {"op": "run", "code": code, "max_output": max_output,
                   "max_capture": max_capture or max_output}
        if args is not NO_ARGS:
            payload["args"] = args
        reply = await self.request(payload, timeout, context=context)
        self.calls += 1
        self._trim_log()
        return reply

    async def ping(self, timeout: float = 5.0) -> bool:
        """A real round trip when no call is in flight. While calls are, the worker is
        alive when its process is: a call that stops being answered kills the worker at its
        own deadline, so a health check never waits behind a slow call, holding up every
        other caller outside their timeouts."""
        if self._waiters:
            return not self.dead and self.process is not None \
                and self.process.returncode is None
        try:
            reply = await self.request({"op": "ping"}, timeout, what="health check")
        except WorkerError:
            return False
        return bool(reply.get("pong"))

    def _trim_log(self) -> None:
        try:
            if self._log is not None and os.fstat(self._log.fileno()).st_size > LOG_KEEP:
                os.ftruncate(self._log.fileno(), 0)  # its writers append: no hole follows
        except (OSError, ValueError):
            pass

    # -- stop -------------------------------------------------------------------------
    @property
    def workspace_bytes(self) -> int | None:
        """What the worker's workspace and temporary files may hold together, where a bound
        holds (the host runs as root)."""
        return self.workspace.quota if self.workspace is not None else None

    def kill(self, reason: str | None = "it was closed") -> None:
        """Kill the process tree (its supervisor kills and reaps every process of it); every
        call still in flight fails with ``reason``."""
        self.dead = True
        if self.process is not None:
            sweep = None if self.isolation.tier == "bubblewrap" else self.uid
            kill_tree(self.process, sweep)
        if reason is not None and self._waiters:
            self._fail_all(f"the Node.js worker was killed: {reason}; the next call gets a "
                           "fresh one")

    async def aclose(self) -> None:
        """Kill the process tree and remove the workspace (idempotent)."""
        self.kill()
        with anyio.CancelScope(shield=True):
            if self.process is not None:
                await wait_stopped(self.process)
                await self.process.aclose()
            if self._stream is not None:
                await self._stream.aclose()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.workspace is not None:
            self.workspace.release()
            self.workspace = None
            self.workdir = None
