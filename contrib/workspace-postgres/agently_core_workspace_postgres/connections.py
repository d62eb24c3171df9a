"""Connections of the PostgreSQL workspace: DSN handling, a small pool, error mapping.

The pool keeps up to ``size`` :class:`psycopg.AsyncConnection` objects in autocommit mode
(each single-statement operation is its own transaction; multi-statement ones open an
explicit transaction). Taking a free, healthy connection never awaits. An idle
connection is checked before reuse without a round trip: an idle connection has nothing to
read, so a readable socket means the server closed it or said goodbye (a restart,
``pg_terminate_backend``), and it is dropped instead of used.
A connection that failed, timed out or was left inside a transaction is closed, never
reused. The pool belongs to one asyncio event loop at a time; on another loop the idle
connections of the old one are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections import deque
from typing import Any

import anyio
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from agently_core.workspace import ReadOnlyError, WorkspaceError


class PostgresUnavailable(WorkspaceError):
    """The PostgreSQL server could not be reached, or the connection was lost mid-call (then
    the outcome of that call is unknown). The next call connects again."""


def parse_dsn(dsn: str) -> dict[str, Any]:
    """The connection parameters of a libpq DSN (``"host=... dbname=..."`` or a
    ``postgresql://`` URL), or :class:`WorkspaceError` for a malformed one."""
    if not isinstance(dsn, str):
        raise WorkspaceError(f"dsn must be a string, got {type(dsn).__name__}")
    try:
        return dict(conninfo_to_dict(dsn))
    except psycopg.ProgrammingError as exc:
        raise WorkspaceError(f"the PostgreSQL DSN is malformed: {_first_line(exc)}") from None


def describe(params: dict[str, Any]) -> str:
    """Where a DSN points, for messages: host, port, database and user; never the password."""
    shown = [f"{name}={params[name]}" for name in ("host", "hostaddr", "port", "dbname", "user")
             if params.get(name) not in (None, "")]
    return " ".join(shown) or "libpq defaults"


def build_conninfo(params: dict[str, Any], *, read_only: bool, connect_timeout: float,
                   statement_timeout: float) -> str:
    """The DSN the backend connects with: ``application_name`` and ``connect_timeout``
    unless given; ``statement_timeout`` (seconds) unless the DSN's ``options`` set one, so
    the server itself cancels (and rolls back) a statement that waits too long; and a
    read-only session (``default_transaction_read_only``) when asked."""
    params = dict(params)
    params.setdefault("application_name", "agently-core-workspace")
    params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
    options = str(params.get("options") or "")
    if "statement_timeout" not in options:
        options += f" -c statement_timeout={max(1, round(statement_timeout * 1000))}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    params["options"] = options.strip()
    return make_conninfo(**params)


class Pool:
    """Up to ``size`` connections to ``conninfo``, handed out one caller at a time.

    :meth:`acquire` returns at once (no await) when a slot is free and an idle connection
    is healthy; otherwise it connects, or waits for :meth:`release`."""

    def __init__(self, conninfo: str, *, size: int, where: str) -> None:
        self._conninfo = conninfo
        self._size = size
        self._where = where
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._busy = 0
        self._waiters: deque[anyio.Event] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def _bind(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise WorkspaceError("the postgres workspace backend runs on asyncio (psycopg's "
                                 "async API); this event loop is not asyncio") from None
        if loop is not self._loop:
            self.drop_idle()  # made on a loop that is gone
            self._loop, self._busy, self._waiters = loop, 0, deque()

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        """A connection for one operation; give it back with :meth:`release`."""
        self._bind()
        while self._busy >= self._size:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            except BaseException:
                if event in self._waiters:
                    self._waiters.remove(event)
                elif self._waiters and self._busy < self._size:
                    self._waiters.popleft().set()  # pass the wake-up on
                raise
        self._busy += 1
        try:
            return self._take_idle() or await self._connect()
        except BaseException:
            self._free_slot()
            raise

    def release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Back to the pool if it is clean (idle, outside a transaction), else closed."""
        if (self.closed or conn.closed or conn.broken
                or conn.info.transaction_status != TransactionStatus.IDLE):
            _finish(conn)
        else:
            self._idle.append(conn)
        self._free_slot()

    def _free_slot(self) -> None:
        self._busy = max(0, self._busy - 1)
        if self._waiters:
            self._waiters.popleft().set()

    def _take_idle(self) -> psycopg.AsyncConnection[Any] | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.broken or _readable(conn):
                _finish(conn)  # the server closed it (restart, terminate): never use it
                continue
            return conn
        return None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise PostgresUnavailable(f"cannot connect to PostgreSQL ({self._where}): "
                                      f"{_first_line(exc)}") from None

    def drop_idle(self) -> None:
        """Close every idle connection now (sync)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            _finish(conn)

    def close(self) -> None:
        """No new connections; idle ones closed now, busy ones when they come back."""
        self.closed = True
        self.drop_idle()


def _readable(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Has the server sent anything to this idle connection (a goodbye, or EOF)?"""
    try:
        fd = conn.fileno()
    except (psycopg.Error, OSError, ValueError):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _finish(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close the libpq connection without an event loop (what ``close()`` does anyway)."""
    with contextlib.suppress(Exception):
        if not conn.closed:
            conn.pgconn.finish()


# -- errors -------------------------------------------------------------------------------
#: SQLSTATE classes and codes that mean the connection or the server went away.
_GONE_CLASSES = ("08",)
_GONE_CODES = {"57P01", "57P02", "57P03", "57P04", "57P05"}


def translate(exc: BaseException, what: str, where: str) -> BaseException:
    """The workspace error a psycopg error becomes; anything else unchanged."""
    if not isinstance(exc, psycopg.Error):
        return exc
    state = exc.sqlstate or ""
    detail = _first_line(exc)
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return ReadOnlyError(f"{what} was refused: the PostgreSQL session is read-only ({detail})")
    if isinstance(exc, (pg_errors.UndefinedTable, pg_errors.UndefinedFunction,
                        pg_errors.InvalidSchemaName)):
        return WorkspaceError(f"{what}: the workspace's tables are missing in PostgreSQL "
                              f"({detail}); was its schema dropped? Open the backend again "
                              "without read_only to recreate it")
    if isinstance(exc, psycopg.OperationalError) and (
            not state or state.startswith(_GONE_CLASSES) or state in _GONE_CODES):
        return PostgresUnavailable(f"lost the connection to PostgreSQL ({where}) during {what}; "
                                   f"its outcome is unknown (read back to check); the next call "
                                   f"connects again: {detail}")
    if isinstance(exc, pg_errors.QueryCanceled):
        return WorkspaceError(f"PostgreSQL cancelled {what} ({detail}): it waited too long, "
                              "probably for a lock another session holds; nothing was written")
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
        return WorkspaceError(f"PostgreSQL refused {what}: {detail}")
    return WorkspaceError(f"PostgreSQL failed {what}: {type(exc).__name__}: {detail}")


def retryable(exc: BaseException) -> bool:
    """A serialization failure or deadlock: the transaction rolled back, so a retry is safe."""
    return isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("40")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
