"""The host side of a warm Python worker: start it inside the isolation, talk JSON lines to
it, and kill its whole process tree on a timeout, a cancellation or a broken reply."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
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

from agently_core.queueing import Turnstile

PYTHON = "/usr/bin/python3"  # reachable by the sandbox uid, unlike a venv under /root
MAX_REPLY = 32 * 1024 * 1024
#: Calls that may wait for a busy worker; one more is refused at once (ResourceBusy).
MAX_WAITING = 32


class WorkerError(RuntimeError):
    """The worker died, timed out or broke the protocol; it has been killed."""


class PythonWorker:
    """One isolated interpreter that keeps its variables between calls."""

    def __init__(self, isolation: Isolation, limits: Limits, *, network: bool = False,
                 env: dict[str, str] | None = None, passed: frozenset[str] = frozenset(),
                 python: str = PYTHON, workspace_bytes: int | None = None) -> None:
        self.isolation = isolation
        self.limits = limits
        self.network = network
        self.env = dict(env or {})
        #: The names in ``env`` passed through from the host's environment (as opposed to
        #: values the host configured).
        self.passed = frozenset(passed)
        self.python = python
        self.uid = allocate_uid() if os.geteuid() == 0 else None
        #: The workspace's bound: the one asked for (then it must hold), or the default
        #: where the host can hold one.
        self.quota = workspace_bytes or DEFAULT_WORKSPACE_BYTES
        self.quota_required = workspace_bytes is not None
        self.workspace: Workspace | None = None
        self.workdir: Path | None = None
        self.process: Any = None
        self._reader: BufferedByteReceiveStream | None = None
        #: One call at a time; the calls waiting behind it are bounded and their wait shows
        #: in their records (a call that times out while it waits never started).
        self.turnstile = Turnstile("the Python sandbox of its scope",
                                   max_waiting=MAX_WAITING)
        self._seq = 0
        self.dead = False
        self.calls = 0

    async def start(self, ready_timeout: float = 15.0) -> PythonWorker:
        source = Path(__file__).with_name("worker.py").read_text(encoding="utf-8")
        self.workspace = new_workspace(self.uid, self.quota, required=self.quota_required)
        self.workdir = self.workspace["work"]
        spec = SandboxSpec([self.python, "-I", "-S", "-u", "-c", source], self.workdir,
                           network=self.network, env=self.env, limits=self.limits,
                           tmpdir=self.workspace["tmp"])
        argv, env = self.isolation.command(spec, uid=self.uid)
        self.process = await anyio.open_process(argv, env=env, start_new_session=True)
        self._reader = BufferedByteReceiveStream(self.process.stdout)
        try:
            with anyio.fail_after(ready_timeout):
                ready = await self._read()
        except BaseException as exc:
            detail = await self._stderr()
            await self.aclose()
            if isinstance(exc, Exception):
                raise WorkerError(f"the Python sandbox did not start: {detail or exc}") from exc
            raise
        if not ready.get("ready"):
            await self.aclose()
            raise WorkerError(f"the Python sandbox answered {ready!r} instead of ready")
        return self

    async def _stderr(self) -> str:
        if self.process is None or self.process.stderr is None:
            return ""
        with anyio.move_on_after(0.5):
            data = await self.process.stderr.receive(4096)
            return data.decode(errors="replace").strip()
        return ""

    async def _read(self) -> dict[str, Any]:
        assert self._reader is not None
        line = await self._reader.receive_until(b"\n", MAX_REPLY)
        return json.loads(line)

    async def request(self, payload: dict[str, Any], timeout: float,
                      context: Any = None) -> dict[str, Any]:
        """Send one request and wait for its reply (its turn first: ``context``, the call's
        ActionContext, records the wait); any failure kills the worker."""
        async with self.turnstile.turn(context):
            if self.dead or self.process is None:
                raise WorkerError("the Python worker is not running")
            self._seq += 1
            payload = {**payload, "id": self._seq}
            try:
                await self.process.stdin.send((json.dumps(payload) + "\n").encode())
                with anyio.move_on_after(timeout) as scope:
                    reply = await self._read()
            except BaseException as exc:  # cancelled, crashed, garbage: the state is lost
                self.kill()
                if isinstance(exc, Exception):
                    raise WorkerError(f"the Python worker failed: {type(exc).__name__}: {exc}"
                                      ) from exc
                raise
            if scope.cancelled_caught:
                self.kill()
                raise WorkerError(f"timed out after {timeout:g}s; the worker was killed and "
                                  "the next call gets a fresh one")
            if reply.get("id") != self._seq:
                self.kill()
                raise WorkerError("the Python worker broke the protocol; it was killed")
            self.calls += 1
            return reply

    async def run(self, code: str, *, timeout: float, max_output: int,
                  max_capture: int | None = None, context: Any = None) -> dict[str, Any]:
        """Run ``code``; the value's repr is cut at ``max_output``, stdout and stderr at
        ``max_capture`` (default ``max_output``) bytes each."""
        return await self.request({"op": "run", "code": code, "max_output": max_output,
                                   "max_capture": max_capture or max_output}, timeout, context)

    async def ping(self, timeout: float = 5.0) -> bool:
        """A real round trip; while a call runs, the worker is alive when its process is
        (the call itself kills a worker that stops answering), so a health check never
        queues behind a slow call, holding up every other caller outside their timeouts."""
        if self.turnstile.busy:
            return not self.dead and self.process is not None \
                and self.process.returncode is None
        try:
            reply = await self.request({"op": "ping"}, timeout)
        except WorkerError:
            return False
        return bool(reply.get("pong"))

    @property
    def workspace_bytes(self) -> int | None:
        """What the worker's workspace and temporary files may hold together, where a bound
        holds (the host runs as root)."""
        return self.workspace.quota if self.workspace is not None else None

    def kill(self) -> None:
        """Stop the worker: its supervisor kills and reaps every process of it."""
        self.dead = True
        if self.process is not None:
            sweep = None if self.isolation.tier == "bubblewrap" else self.uid
            kill_tree(self.process, sweep)

    async def aclose(self) -> None:
        """Kill the process tree and remove the workspace (idempotent)."""
        self.kill()
        if self.process is not None:
            await wait_stopped(self.process)
            with anyio.CancelScope(shield=True):
                await self.process.aclose()
        if self.workspace is not None:
            self.workspace.release()
            self.workspace = None
            self.workdir = None
