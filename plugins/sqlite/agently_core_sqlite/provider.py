"""``sqlite``: live SQLite connections as managed execution environments.

``ensure`` opens one connection per requirement (the manager keeps it for the
requirement's scope), ``async_health_check`` is a real ``SELECT 1`` round trip, ``release``
closes the connection exactly once. Configuration (``EnvironmentRequirement.config``):

``database`` (required)
    Path of an existing SQLite file.
``read_only`` (default ``True``)
    Open with ``mode=ro`` and allow only reads; ``False`` opens ``mode=rw`` for statements
    that may write (``execute_sqlite``), still under the authorizer's rules.
``max_rows`` (1000), ``max_output_bytes`` (1 000 000)
    Caps on what one call returns.
``timeout_seconds`` (30)
    A statement running longer is stopped (the call's policy ``timeout_seconds`` stops it
    earlier): by the progress handler between SQLite's steps, and by killing its worker
    process when one step runs past the deadline.
``busy_timeout_seconds`` (5)
    How long a statement waits for another process's lock on the file.
``max_value_bytes`` (32 MiB)
    The largest string or blob a statement may build (``SQLITE_LIMIT_LENGTH``).
``heap_limit_bytes`` (512 MiB, ``None`` to leave it alone)
    ``PRAGMA hard_heap_limit`` in each worker process, whose address space is also capped
    (``RLIMIT_AS``) a little above it.

A live resource is a :class:`SQLiteConnection`: statements run in worker processes
(:mod:`agently_core_sqlite.child`), at most :data:`READ_WORKERS` (read-only) or
:data:`WRITE_WORKERS` (read-write) at a time, with at most :data:`MAX_WAITING` calls
queued behind them; the event loop never waits on the database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from agently_core.errors import ActionError, AgentlyError
from agently_core.protocols import ProviderHandle

from .pool import (
    SQLiteBusyError,
    SQLiteClosedError,
    SQLiteTimeoutError,
    Ticket,
    WorkerPool,
    queue_note,
)
from .worker import KILL_GRACE, Worker, WorkerGone

DEFAULTS: dict[str, Any] = {
    "read_only": True,
    "max_rows": 1000,
    "max_output_bytes": 1_000_000,
    "timeout_seconds": 30.0,
    "busy_timeout_seconds": 5.0,
    "max_value_bytes": 32 * 1024 * 1024,
    "heap_limit_bytes": 512 * 1024 * 1024,
}
CONFIG_KEYS = ("database", *DEFAULTS)
#: Worker processes per connection: reads run side by side; writes to one file are
#: serialised by SQLite anyway.
READ_WORKERS = 2
WRITE_WORKERS = 1
#: Calls that may wait for a busy connection; one more is refused at once.
MAX_WAITING = 32
#: Address space a worker needs besides SQLite's heap and the values it handles.
BASE_ADDRESS_SPACE = 256 * 1024 * 1024
#: Seconds a worker may take to start and open the file (plus the busy timeout).
START_TIMEOUT = 15.0
PING_TIMEOUT = 5.0


class SQLiteConfigError(AgentlyError, ValueError):
    """The ``sqlite`` provider refused a configuration."""


@dataclass(frozen=True, slots=True)
class Settings:
    database: Path
    read_only: bool
    max_rows: int
    max_output_bytes: int
    timeout_seconds: float
    busy_timeout_seconds: float
    max_value_bytes: int
    heap_limit_bytes: int | None


def _positive(name: str, value: Any, kind: type, *, allow_none: bool = False,
              allow_zero: bool = False) -> Any:
    if value is None and allow_none:
        return None
    numeric = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric):
        what = "a number" if kind is float else "an integer"
        raise SQLiteConfigError(f"sqlite config {name} must be {what}, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise SQLiteConfigError(f"sqlite config {name} must be positive, got {value!r}")
    return kind(value)


def settings(config: Mapping[str, Any] | None) -> Settings:
    """Validate a requirement's configuration (nothing is opened here)."""
    if not isinstance(config, Mapping):
        raise SQLiteConfigError(f"sqlite config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise SQLiteConfigError(f"unknown sqlite config key(s) {', '.join(map(repr, unknown))}; "
                                f"known: {', '.join(CONFIG_KEYS)}")
    values = {**DEFAULTS, **config}
    database = values.get("database")
    if not isinstance(database, (str, os.PathLike)) or not os.fspath(database):
        raise SQLiteConfigError(f"sqlite config database must be a file path, got {database!r}")
    path = Path(os.fspath(database)).expanduser().resolve()
    if not isinstance(values["read_only"], bool):
        raise SQLiteConfigError(f"sqlite config read_only must be true or false, got "
                                f"{values['read_only']!r}")
    return Settings(
        database=path,
        read_only=values["read_only"],
        max_rows=_positive("max_rows", values["max_rows"], int),
        max_output_bytes=_positive("max_output_bytes", values["max_output_bytes"], int),
        timeout_seconds=_positive("timeout_seconds", values["timeout_seconds"], float),
        busy_timeout_seconds=_positive("busy_timeout_seconds", values["busy_timeout_seconds"],
                                       float, allow_zero=True),
        max_value_bytes=_positive("max_value_bytes", values["max_value_bytes"], int),
        heap_limit_bytes=_positive("heap_limit_bytes", values["heap_limit_bytes"], int,
                                   allow_none=True),
    )


def check_database(path: Path, read_only: bool) -> None:
    """Refuse a database path that cannot be opened the way asked, with a clear error."""
    mode = "read-only" if read_only else "read-write"
    if not path.exists():
        raise SQLiteConfigError(f"sqlite database {str(path)!r} does not exist ({mode} mode "
                                "never creates a database; create it first)")
    if not path.is_file():
        raise SQLiteConfigError(f"sqlite database {str(path)!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise SQLiteConfigError(f"sqlite database {str(path)!r} is not readable")
    if not read_only and not os.access(path, os.W_OK):
        raise SQLiteConfigError(f"sqlite database {str(path)!r} is not writable")


def worker_config(s: Settings) -> dict[str, Any]:
    """What a worker process is told when it starts (see :mod:`agently_core_sqlite.child`)."""
    address_space = None
    if s.heap_limit_bytes is not None:
        address_space = (s.heap_limit_bytes + 3 * s.max_value_bytes + 4 * s.max_output_bytes
                         + BASE_ADDRESS_SPACE)
    return {
        "database": str(s.database),
        # Path.as_uri() percent-encodes the name: it cannot smuggle URI options
        "uri": f"{s.database.as_uri()}?mode={'ro' if s.read_only else 'rw'}",
        "read_only": s.read_only,
        "busy_timeout": min(s.busy_timeout_seconds, s.timeout_seconds),
        "max_value_bytes": s.max_value_bytes,
        "heap_limit_bytes": s.heap_limit_bytes,
        "address_space_bytes": address_space,
    }


class SQLiteConnection:
    """A connection: up to a few worker processes, each with its own SQLite connection to
    the file, and the queue in front of them (:class:`~agently_core_sqlite.pool.WorkerPool`).
    The first worker is started here, so a file that is not a database fails at once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.read_only = settings.read_only
        check_database(settings.database, settings.read_only)
        self._config = worker_config(settings)
        #: What a waiting call waits for (the dispatcher's timeout message names it).
        self.description = f"the SQLite connection to {settings.database.name}"
        self.pool = WorkerPool(self._start_worker,
                               size=READ_WORKERS if settings.read_only else WRITE_WORKERS,
                               max_waiting=MAX_WAITING)
        self.pool.prime()

    def _start_worker(self) -> Worker:
        s = self.settings
        check_database(s.database, s.read_only)
        try:
            return Worker(self._config, start_timeout=s.busy_timeout_seconds + START_TIMEOUT,
                          max_reply_bytes=6 * s.max_output_bytes + (1 << 20))
        except WorkerGone as exc:
            raise SQLiteConfigError(str(exc)) from None

    @property
    def closed(self) -> bool:
        return self.pool.closed

    @property
    def busy(self) -> bool:
        """Is a statement running on this connection right now?"""
        return self.pool.busy

    # -- running statements ------------------------------------------------------------------
    async def run(self, message: dict[str, Any], *, timeout: float,
                  context: Any = None) -> dict[str, Any]:
        """Run one request (see :mod:`agently_core_sqlite.child`) in a worker, stopped at
        ``timeout`` seconds from now, waiting included. Returns the result; raises an
        :class:`ActionError` for anything else. A call that has to wait says so on
        ``context`` (the call's ``ActionContext``: ``queued``, ``queued_for``,
        ``queued_s``). A cancelled caller (the dispatcher's timeout) leaves the queue, or
        stops its statement, at once."""
        deadline = time.monotonic() + timeout
        report = None
        if context is not None:
            def report(waited: float, served: bool) -> None:
                context.queued_s += waited
                if served:
                    context.queued = False
        ticket = self.pool.admit(give_up_at=deadline, report=report)
        if ticket.ahead is not None and context is not None:
            context.queued, context.queued_for = True, self.description
        try:
            return await anyio.to_thread.run_sync(self._call, message, deadline, timeout,
                                                  ticket, abandon_on_cancel=True)
        except BaseException:
            self.pool.withdraw(ticket)
            raise

    def _call(self, message: dict[str, Any], deadline: float, timeout: float,
              ticket: Ticket) -> dict[str, Any]:
        worker = self.pool.acquire(ticket)
        try:
            reply = worker.request({**message, "deadline": deadline, "timeout": timeout},
                                   until=deadline + KILL_GRACE, abort=ticket.abort)
        except WorkerGone as exc:
            if self.pool.closed:
                raise SQLiteClosedError("the database connection was closed while the "
                                        "statement ran") from None
            if exc.timed_out:
                raise SQLiteTimeoutError(
                    f"the statement was stopped at its {timeout:g}s timeout"
                    + _waited(ticket) + ": a single SQLite step ran past it, so its worker "
                    "process was killed (the next call gets a fresh one)") from None
            raise ActionError(f"{exc}; the next call gets a fresh worker") from None
        finally:
            self.pool.release(worker, replace=not self.read_only)
        if reply.get("ok"):
            return reply["result"]
        error = str(reply.get("error") or "the statement failed")
        if reply.get("type") == "SQLiteTimeoutError":
            raise SQLiteTimeoutError(error + _waited(ticket))
        raise ActionError(error)

    def ping(self) -> bool:
        """A real ``SELECT 1`` round trip in an idle worker (synchronous; call it from a
        worker thread). A connection whose workers are all busy is alive: their statements
        have deadlines."""
        worker = self.pool.idle_worker()
        if worker is None:
            return not self.closed
        try:
            return bool(worker.request({"op": "ping"}, until=time.monotonic() + PING_TIMEOUT,
                                       abort=None).get("ok"))
        except WorkerGone:
            return False
        finally:
            self.pool.release(worker)

    def close(self) -> bool:
        """Close once: waiting calls give up, idle workers end, busy ones are killed (no
        statement is waited for). Returns False when it was already closed."""
        return self.pool.close()


def _waited(ticket: Ticket) -> str:
    note = queue_note(ticket)
    return f", {note} (the wait counts against it)" if note else ""


class SQLiteProvider:
    """Connections to SQLite files as managed resources (kind ``sqlite``)."""

    kind = "sqlite"

    async def ensure(self, requirement: Any) -> SQLiteConnection:
        """Open the connection (in a worker thread) and return it."""
        config = settings(getattr(requirement, "config", None))
        return await anyio.to_thread.run_sync(SQLiteConnection, config)

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        resource = handle.resource
        if not isinstance(resource, SQLiteConnection) or resource.closed:
            return False
        try:
            return await anyio.to_thread.run_sync(resource.ping)
        except (ActionError, OSError):
            return False

    async def release(self, requirement: Any, resource: Any) -> None:
        """Close the connection; a second release of the same connection does nothing."""
        if not isinstance(resource, SQLiteConnection):
            raise SQLiteConfigError(f"{resource!r} is not a connection of the sqlite provider")
        await anyio.to_thread.run_sync(resource.close)


__all__ = ["CONFIG_KEYS", "DEFAULTS", "MAX_WAITING", "READ_WORKERS", "WRITE_WORKERS",
           "SQLiteBusyError", "SQLiteClosedError", "SQLiteConfigError", "SQLiteConnection", "SQLiteProvider",
           "SQLiteTimeoutError", "Settings", "check_database", "settings"]
