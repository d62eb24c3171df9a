"""Worker processes of one connection, and the queue in front of them.

A connection runs its statements in at most ``size`` worker processes. A call that finds
them all busy waits in a first-come-first-served queue of at most ``max_waiting`` calls;
one more is refused at once (:class:`SQLiteBusyError`, a
:class:`~agently_core.queueing.ResourceBusy`). A waiting call gives up at its own
deadline: the time it waits counts against its timeout, and its ticket reports the wait
once (:attr:`Ticket.report`), which the connection passes on to the call's
``ActionContext`` (``queued``, ``queued_s``: the record's ``meta["queued_ms"]`` and the
dispatcher's timeout message). A worker killed at a deadline leaves the pool; the next
call that needs one starts a fresh process.

Everything here is synchronous and thread-safe: the connection calls it from worker
threads, and from the event loop only for the non-blocking :meth:`WorkerPool.admit`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agently_core.errors import ActionError
from agently_core.queueing import ResourceBusy

from .worker import Worker


class SQLiteBusyError(ResourceBusy):
    """Every worker is busy and the queue is full: the call was not even queued."""


class SQLiteTimeoutError(ActionError):
    """A statement was stopped (or its wait for a worker ended) at its deadline."""


class SQLiteClosedError(ActionError):
    """The connection was closed."""


@dataclass(slots=True)
class Ticket:
    """One call's place in the queue."""

    give_up_at: float
    abort: threading.Event = field(default_factory=threading.Event)
    admitted: float = field(default_factory=time.monotonic)
    #: Calls running and waiting ahead of it when it had to queue (``None``: it did not).
    ahead: tuple[int, int] | None = None
    #: Seconds it waited for a worker (set once it has one, or gave up).
    waited: float = 0.0
    withdrawn: bool = False
    #: Called once, under the pool's lock, with the seconds waited and whether the call
    #: got a worker, when a call that had to queue stops waiting (``None``: nobody asks).
    report: Callable[[float, bool], None] | None = None
    settled: bool = False


def queue_note(ticket: Ticket) -> str:
    """``"after waiting 0.41s for the connection (2 statements running, 1 call ahead)"``."""
    if ticket.ahead is None:
        return ""
    running, waiting = ticket.ahead
    ahead = f", {waiting} call{'s' if waiting != 1 else ''} ahead" if waiting else ""
    return (f"after waiting {ticket.waited:.2f}s for the connection ({running} "
            f"statement{'s' if running != 1 else ''} running{ahead})")


def _settle(ticket: Ticket, now: float, served: bool) -> None:
    """Record the end of ``ticket``'s wait, once (the pool's lock is held)."""
    if ticket.settled:
        return
    ticket.settled = True
    ticket.waited = now - ticket.admitted
    if ticket.ahead is not None and ticket.report is not None:
        ticket.report(ticket.waited, served)


class WorkerPool:
    """Up to ``size`` workers made by ``start``, and a queue of ``max_waiting`` calls."""

    def __init__(self, start: Callable[[], Worker], size: int, max_waiting: int) -> None:
        self._start = start
        self.size = size
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0
        self._queue: deque[Ticket] = deque()
        self.closed = False

    # -- looking at it ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Is a statement running in one of the workers?"""
        with self._cond:
            return bool(self._busy or self._starting)

    @property
    def running(self) -> int:
        """How many statements are running (or having their worker started) right now."""
        with self._cond:
            return len(self._busy) + self._starting

    def pids(self) -> list[int]:
        """The live worker processes (for tests and diagnostics)."""
        with self._cond:
            return [w.pid for w in (*self._idle, *self._busy) if w.alive]

    def _count(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    def _free(self) -> bool:
        return bool(self._idle) or self._count() < self.size

    # -- a call's way through ----------------------------------------------------------------
    def prime(self) -> None:
        """Start the first worker now (opening the database reports a bad file early)."""
        ticket = self.admit(give_up_at=time.monotonic() + 3600)
        self.release(self.acquire(ticket))

    def admit(self, give_up_at: float,
              report: Callable[[float, bool], None] | None = None) -> Ticket:
        """Take a place in the queue, without waiting; :class:`SQLiteBusyError` when it is
        full, :class:`SQLiteClosedError` when the connection is closed. ``ticket.ahead`` is
        set when the call has to wait."""
        with self._cond:
            if self.closed:
                raise SQLiteClosedError("the database connection is closed")
            ticket = Ticket(give_up_at=give_up_at, report=report)
            if self._queue or not self._free():
                running = len(self._busy) + self._starting
                if len(self._queue) >= self.max_waiting:
                    raise SQLiteBusyError(
                        f"the database connection is busy: {running} statement(s) running "
                        f"and {len(self._queue)} call(s) already waiting, the most allowed; "
                        "nothing ran, try again later")
                ticket.ahead = (running, len(self._queue))
            self._queue.append(ticket)
            return ticket

    def withdraw(self, ticket: Ticket) -> None:
        """The caller went away: leave the queue (if still in it)."""
        ticket.abort.set()
        with self._cond:
            if ticket in self._queue:
                self._queue.remove(ticket)
                ticket.withdrawn = True
                _settle(ticket, time.monotonic(), False)
                self._cond.notify_all()

    def acquire(self, ticket: Ticket) -> Worker:
        """Wait for ``ticket``'s turn and a worker (started if the pool has room)."""
        with self._cond:
            while True:
                if self.closed or ticket.withdrawn or ticket.abort.is_set():
                    _settle(ticket, time.monotonic(), False)
                    self._leave(ticket)
                    if self.closed:
                        raise SQLiteClosedError("the database connection was closed")
                    raise ActionError("the call was cancelled while waiting for the database")
                if self._queue and self._queue[0] is ticket and self._free():
                    self._queue.popleft()
                    _settle(ticket, time.monotonic(), True)
                    self._cond.notify_all()
                    if self._idle:
                        worker = self._idle.pop()
                        self._busy.add(worker)
                        return worker
                    self._starting += 1
                    break
                now = time.monotonic()
                if now >= ticket.give_up_at:
                    _settle(ticket, now, False)
                    self._leave(ticket)
                    raise SQLiteTimeoutError(f"timed out {queue_note(ticket)}; the wait "
                                             "counts against the call's timeout; it never "
                                             "started")
                self._cond.wait(min(0.05, ticket.give_up_at - now))
        try:
            worker = self._start()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= 1
            if not self.closed:
                self._busy.add(worker)
                return worker
            self._cond.notify_all()
        worker.finish()
        raise SQLiteClosedError("the database connection was closed")

    def _leave(self, ticket: Ticket) -> None:
        if ticket in self._queue:
            self._queue.remove(ticket)
            self._cond.notify_all()

    def release(self, worker: Worker, *, replace: bool = False) -> None:
        """Give a worker back; a dead one leaves the pool (and the queue moves on). With
        ``replace``, a dead one is replaced before this returns: a read-write worker
        killed in the middle of a write leaves a hot journal, which only a read-write
        connection rolls back (a fresh worker does as it opens the file), and until then
        read-only connections to the file fail."""
        restart = False
        with self._cond:
            self._busy.discard(worker)
            keep = worker.alive and not self.closed
            if keep:
                self._idle.append(worker)
            elif replace and not self.closed:
                self._starting += 1  # the queue waits for the replacement
                restart = True
            self._cond.notify_all()
        if not keep:
            worker.kill()
        if restart:
            self._replace()

    def _replace(self) -> None:
        fresh: Worker | None
        try:
            fresh = self._start()
        except Exception:
            fresh = None  # the next call starts one, and reports what is wrong
        with self._cond:
            self._starting -= 1
            if fresh is not None and not self.closed:
                self._idle.append(fresh)
                fresh = None
            self._cond.notify_all()
        if fresh is not None:
            fresh.finish()

    def idle_worker(self) -> Worker | None:
        """An idle worker, taken as busy, if there is one and nobody is waiting."""
        with self._cond:
            if self.closed or self._queue or not self._idle:
                return None
            worker = self._idle.pop()
            self._busy.add(worker)
            return worker

    # -- the end -----------------------------------------------------------------------------
    def close(self) -> bool:
        """Refuse new calls, wake the waiting ones, end every worker: idle ones are told to
        stop, busy ones are killed at once. False when it was already closed."""
        with self._cond:
            if self.closed:
                return False
            self.closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._cond.notify_all()
        for worker in busy:
            worker.stop(wait=0.5)
        for worker in idle:
            worker.finish(wait=0.5)
        return True


__all__ = [
    "SQLiteBusyError",
    "SQLiteClosedError",
    "SQLiteTimeoutError",
    "Ticket",
    "WorkerPool",
    "queue_note",
]
