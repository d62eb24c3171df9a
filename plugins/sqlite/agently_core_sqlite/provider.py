"""``sqlite``: live SQLite connections as managed execution environments.

``ensure`` opens one connection per requirement (the manager keeps it for the
requirement's scope), ``health_check`` is a real ``SELECT 1`` round trip, ``release``
closes the connection exactly once. Configuration (``EnvironmentRequirement.config``):

``database`` (required)
    Path of an existing SQLite file.
``read_only`` (default ``True``)
    Open with ``mode=ro`` and allow only reads; ``False`` opens ``mode=rw`` for statements
    that may write (``execute_sqlite``), still under the authorizer's rules.
``max_rows`` (1000), ``max_output_bytes`` (1 000 000)
    Caps on what one call returns.
``timeout_seconds`` (30)
    A statement running longer is stopped by the progress handler (the call's policy
    ``timeout_seconds`` stops it earlier).
``busy_timeout_seconds`` (5)
    How long a statement waits for another process's lock on the file.
``max_value_bytes`` (32 MiB)
    The largest string or blob a statement may build (``SQLITE_LIMIT_LENGTH``).
``heap_limit_bytes`` (512 MiB, ``None`` to leave it alone)
    ``PRAGMA hard_heap_limit``: SQLite's memory for the whole process. The pragma only
    ever lowers the limit, so several databases end up with the smallest one.

A live resource is a :class:`SQLiteConnection`. Statements run in worker threads, one
at a time per connection; the event loop never waits on the database.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from agently_core.errors import ActionError, AgentlyError

from .rules import READ_ONLY, SCHEMA_TABLES, WARM_TABLES, Rules, decide

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
#: Virtual machine steps between two looks at the deadline (about a millisecond).
PROGRESS_STEPS = 4000
MAX_SQL_LENGTH = 1_000_000
MAX_LIKE_PATTERN = 1000
_DML = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})


class SQLiteConfigError(AgentlyError, ValueError):
    """The ``sqlite`` provider refused a configuration."""


class SQLiteTimeoutError(ActionError):
    """A statement was stopped at its deadline."""


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


@dataclass(slots=True)
class _Call:
    """One statement's run: its deadline and rules, and what stopped it."""

    rules: Rules
    deadline: float
    abort: threading.Event = field(default_factory=threading.Event)
    denied: str | None = None
    denied_bookkeeping: bool = False
    stopped: bool = False


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class SQLiteConnection:
    """One open connection and the lock that lets one thread at a time use it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.read_only = settings.read_only
        self.closed = False
        self._lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._current: _Call | None = None
        self._conn = self._open()

    # -- opening -------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        s = self.settings
        check_database(s.database, s.read_only)
        uri = f"{s.database.as_uri()}?mode={'ro' if s.read_only else 'rw'}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                               cached_statements=0,  # every statement is authorized afresh
                               timeout=min(s.busy_timeout_seconds, s.timeout_seconds))
        try:
            conn.text_factory = _decode
            # Limits first, then settings, then the authorizer: nothing the host needs
            # runs under the model's rules, and nothing the model runs escapes them.
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, s.max_value_bytes)
            conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN)
            if s.read_only:
                conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cell_size_check = ON")
            if s.heap_limit_bytes is not None:
                conn.execute(f"PRAGMA hard_heap_limit = {int(s.heap_limit_bytes)}")
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            except sqlite3.DatabaseError as exc:
                raise SQLiteConfigError(f"{str(s.database)!r} is not a usable SQLite database: "
                                        f"{exc}") from None
            for table in WARM_TABLES:
                try:
                    conn.execute(f'SELECT * FROM "{table}" LIMIT 0').fetchall()
                except sqlite3.Error:
                    pass  # not compiled in: the authorizer refuses it later
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._progress, PROGRESS_STEPS)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- the hooks SQLite calls --------------------------------------------------------------
    def _authorize(self, op: int, a1: str | None, a2: str | None, db: str | None,
                   trigger: str | None) -> int:
        call = self._current
        refusal = decide(call.rules if call is not None else READ_ONLY, op, a1, a2, db, trigger)
        if refusal is None:
            return sqlite3.SQLITE_OK
        if call is not None:
            # Keep the first refusal, unless it was SQLite's own bookkeeping on the schema
            # table and the statement's real operation (CREATE, DROP, PRAGMA...) follows.
            bookkeeping = op in _DML and (a1 or "").lower() in SCHEMA_TABLES
            if call.denied is None or (call.denied_bookkeeping and not bookkeeping):
                call.denied, call.denied_bookkeeping = refusal, bookkeeping
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        call = self._current
        if call is not None and (call.abort.is_set() or time.monotonic() > call.deadline):
            call.stopped = True
            return 1  # SQLite stops the statement: "interrupted"
        return 0

    # -- running statements ------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Is a statement running on this connection right now?"""
        return self._lock.locked()

    async def run(self, operation: Any, *, rules: Rules, timeout: float) -> Any:
        """Run ``operation(conn, call)`` in a worker thread with the connection to itself,
        under ``rules``, stopped at ``timeout`` seconds. A cancelled caller (the
        dispatcher's timeout) stops the statement too: the thread does not run on."""
        call = _Call(rules=rules, deadline=time.monotonic() + timeout)
        try:
            return await anyio.to_thread.run_sync(self._run, operation, call,
                                                  abandon_on_cancel=True)
        except BaseException:
            call.abort.set()
            raise

    def _run(self, operation: Any, call: _Call) -> Any:
        while not self._lock.acquire(timeout=0.02):
            if call.abort.is_set() or self.closed:
                raise ActionError("the call was cancelled while waiting for the database")
            if time.monotonic() > call.deadline:
                raise SQLiteTimeoutError("timed out waiting for the database connection "
                                         "(another statement was still running on it)")
        try:
            if self.closed:
                raise ActionError("the database connection is closed")
            self._current = call
            try:
                return operation(self._conn, call)
            finally:
                self._current = None
        finally:
            self._lock.release()

    def ping(self) -> bool:
        """A real ``SELECT 1`` round trip (synchronous; call it from a worker thread). A
        connection busy with a statement is alive: that statement has a deadline."""
        if self.closed:
            return False
        if not self._lock.acquire(blocking=False):
            return not self.closed
        try:
            if self.closed:
                return False
            self._current = _Call(rules=READ_ONLY, deadline=time.monotonic() + 5.0)
            try:
                return self._conn.execute("SELECT 1").fetchone() == (1,)
            finally:
                self._current = None
        finally:
            self._lock.release()

    def close(self) -> bool:
        """Close the connection once: stop a running statement, wait for its thread, close.
        Returns False when it was already closed."""
        with self._close_lock:
            if self.closed:
                return False
            self.closed = True
            running = self._current
            if running is not None:
                running.abort.set()
            with self._lock:
                self._conn.close()
            return True


class SQLiteProvider:
    """Connections to SQLite files as managed resources (kind ``sqlite``)."""

    kind = "sqlite"

    async def ensure(self, requirement: Any) -> SQLiteConnection:
        """Open the connection (in a worker thread) and return it."""
        config = settings(getattr(requirement, "config", None))
        return await anyio.to_thread.run_sync(SQLiteConnection, config)

    async def health_check(self, requirement: Any, resource: Any) -> bool:
        if not isinstance(resource, SQLiteConnection) or resource.closed:
            return False
        try:
            return await anyio.to_thread.run_sync(resource.ping)
        except sqlite3.Error:
            return False

    async def release(self, requirement: Any, resource: Any) -> None:
        """Close the connection; a second release of the same connection does nothing."""
        if not isinstance(resource, SQLiteConnection):
            raise SQLiteConfigError(f"{resource!r} is not a connection of the sqlite provider")
        await anyio.to_thread.run_sync(resource.close)


__all__ = ["CONFIG_KEYS", "DEFAULTS", "SQLiteConfigError", "SQLiteConnection", "SQLiteProvider",
           "SQLiteTimeoutError", "Settings", "check_database", "settings"]
