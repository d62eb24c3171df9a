"""The host's handle on one worker process (:mod:`agently_core_sqlite.child`).

Requests and replies are JSON lines over the process's standard input and output. A
request waits for its reply at most until a point in time; past it the process is killed
(SIGKILL) and reaped, so no SQLite step, however long, outlives its deadline by more than
that. A caller that goes away first is passed on as SIGUSR1 (the worker stops the
statement at its next step) and the process is killed if it has not answered a moment
later. All of it is synchronous, for the connection's worker threads.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .child import BOOT

#: How long a worker that was asked to stop (or whose deadline passed) may take to answer
#: before it is killed.
KILL_GRACE = 0.15
_POLL_SLICE = 0.02
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class WorkerGone(Exception):
    """The process is gone: killed at its deadline (``timed_out``), or it died."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Worker:
    """One worker process with its SQLite connection."""

    def __init__(self, config: dict[str, Any], *, start_timeout: float,
                 max_reply_bytes: int) -> None:
        if not sys.executable:
            raise WorkerGone("no Python interpreter to start the SQLite worker with")
        self.max_reply_bytes = max_reply_bytes
        self._seq = 0
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._finished = False
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", BOOT, _PACKAGE_PARENT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd="/", env={"LC_ALL": "C.UTF-8"}, close_fds=True, start_new_session=True)
        self.pid = self.process.pid
        assert self.process.stdin and self.process.stdout
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        self._poll_in = select.poll()
        self._poll_in.register(self._in, select.POLLOUT)
        self._poll_out = select.poll()
        self._poll_out.register(self._out, select.POLLIN)
        try:
            ready = self._exchange(config, time.monotonic() + start_timeout, None)
        except WorkerGone as exc:
            self.kill()
            raise WorkerGone(f"the SQLite worker process did not start: {exc}") from None
        except BaseException:
            self.kill()
            raise
        if not ready.get("ready"):
            self.finish()
            raise WorkerGone(str(ready.get("error") or ready), timed_out=False) from None
        self.sqlite_version = ready.get("sqlite")

    @property
    def alive(self) -> bool:
        return not self._finished and self.process.poll() is None

    # -- talking --------------------------------------------------------------------------
    def request(self, message: dict[str, Any], *, until: float,
                abort: threading.Event | None) -> dict[str, Any]:
        """Send ``message`` and return the reply. Past ``until`` (or ``KILL_GRACE`` after
        ``abort`` is set) the process is killed and :class:`WorkerGone` raised."""
        self._seq += 1
        try:
            reply = self._exchange({**message, "id": self._seq}, until, abort)
        except WorkerGone:
            raise
        except BaseException:  # the reply may still come: nobody could tell it from the next
            self.kill()
            raise
        if reply.get("id") != self._seq:
            self.kill()
            raise WorkerGone("the SQLite worker broke the protocol and was killed")
        return reply

    def _exchange(self, message: dict[str, Any], until: float,
                  abort: threading.Event | None) -> dict[str, Any]:
        data = (json.dumps(message, ensure_ascii=True) + "\n").encode("ascii")
        signalled = False
        while data:
            self._check_time(until)
            try:
                written = os.write(self._in, data)
            except BlockingIOError:
                self._poll_in.poll(_POLL_SLICE * 1000)
                continue
            except OSError as exc:
                raise self._died(f"writing to it failed ({exc})") from None
            data = data[written:]
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[:newline + 1]
                try:
                    return json.loads(line)
                except ValueError:
                    self.kill()
                    raise WorkerGone("the SQLite worker sent garbage and was killed") from None
            now = time.monotonic()
            if abort is not None and abort.is_set() and not signalled:
                signalled = True
                self.signal(signal.SIGUSR1)
                until = min(until, now + KILL_GRACE)
            self._check_time(until)
            if not self._poll_out.poll(min(_POLL_SLICE, max(until - now, 0.0)) * 1000):
                continue
            try:
                chunk = os.read(self._out, 1 << 20)
            except OSError as exc:
                raise self._died(f"reading from it failed ({exc})") from None
            if not chunk:
                raise self._died("it exited")
            self._buffer += chunk
            if len(self._buffer) > self.max_reply_bytes:
                self.kill()
                raise WorkerGone("the SQLite worker's reply was larger than allowed; it was "
                                 "killed")

    def _check_time(self, until: float) -> None:
        if time.monotonic() >= until:
            self.kill()
            raise WorkerGone("killed at its deadline", timed_out=True)

    def _died(self, what: str) -> WorkerGone:
        self.signal(signal.SIGKILL)
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        detail = self._stderr_tail()
        self.finish()
        code = self.process.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return WorkerGone(f"the SQLite worker process died ({what}, {how})"
                          + (f": {detail}" if detail else ""))

    def _stderr_tail(self) -> str:
        """The last line the dead process wrote to its standard error, if any."""
        stderr = self.process.stderr
        if stderr is None or stderr.closed:
            return ""
        try:
            os.set_blocking(stderr.fileno(), False)
            data = stderr.read(8192) or b""
        except (OSError, ValueError):
            return ""
        lines = data.decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:500] if lines else ""

    # -- ending ---------------------------------------------------------------------------
    def signal(self, signum: int) -> None:
        try:
            if self.process.poll() is None:
                os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL, reap, close the pipes (idempotent). Only the thread that talks to the
        worker may call it; another thread stops a busy worker with :meth:`stop`."""
        self.signal(signal.SIGKILL)
        self.finish(wait=1.0)

    def stop(self, wait: float = 1.0) -> None:
        """SIGKILL and reap, from any thread; the pipes stay to the thread that owns them
        (it reads the end of the output and calls :meth:`kill`)."""
        self.signal(signal.SIGKILL)
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass

    def finish(self, wait: float = 0.5) -> None:
        """Close standard input (the worker ends), wait ``wait`` seconds, then kill."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        try:
            self.process.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            try:
                self.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass  # stuck in the kernel; the process table keeps it until it goes
        for stream in (self.process.stdout, self.process.stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass


__all__ = ["KILL_GRACE", "Worker", "WorkerGone"]
