"""The synchronous heart of the local workspace: one SQLite connection, one lock.

Every change runs in a ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock
before reading anything. Read-check-write steps (compare-and-set, lease claims, event
idempotency and sequence numbers) therefore see no other writer between their read and
their write, in this process or any other: the lock is a file lock on the database,
released by the kernel when a process dies. A writer that finds the lock taken waits up to
``busy_timeout`` seconds (SQLite's busy handler). WAL makes a commit atomic: a process
killed mid-transaction leaves the previous committed state, recovered by the next opener.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from agently_core.workspace import (
    CheckpointExists,
    Lease,
    LeaseLost,
    MissingArtifact,
    ReadOnlyError,
    VersionConflict,
    WorkspaceClosedError,
    WorkspaceError,
    query_words,
)

from . import clock
from .schema import connect, has_search, open_connection

T = TypeVar("T")


class Busy(Exception):
    """The fast path could not take a lock at once; run the call in a worker thread."""


class LocalStore:
    """The store in directory ``root``: ``workspace.db`` (+ ``-wal``, ``-shm``),
    ``artifacts/`` and ``files/``. Thread-safe; every method blocks.

    Two connections: the *waiting* one (SQLite busy timeout ``busy_timeout``) for calls in
    worker threads, and the *immediate* one (busy timeout 0, no automatic WAL checkpoint)
    for :meth:`run_now`, which an event loop may call on its own thread: it never waits
    for a lock - it raises :class:`Busy` instead - so it never blocks the loop.
    """

    #: Commits on the immediate connection between two WAL checkpoints.
    checkpoint_every = 1000

    def __init__(self, root: str | os.PathLike[str], *, read_only: bool = False,
                 busy_timeout: float = 30.0, synchronous: str = "NORMAL") -> None:
        self.root = Path(root).absolute()
        self.read_only = bool(read_only)
        self.artifacts_dir = self.root / "artifacts"
        self.files_dir = self.root / "files"
        if not read_only:
            for directory in (self.root, self.artifacts_dir, self.files_dir):
                directory.mkdir(parents=True, exist_ok=True)
        db = self.root / "workspace.db"
        self._conn: sqlite3.Connection | None = connect(
            db, read_only=self.read_only, busy_timeout=float(busy_timeout),
            synchronous=synchronous)
        self._now: sqlite3.Connection | None = open_connection(
            db, read_only=self.read_only, busy_timeout=0.0, synchronous=synchronous)
        if not self.read_only:
            self._now.execute("PRAGMA wal_autocheckpoint = 0")  # done in a thread instead
        self.searchable = has_search(self._conn)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._commits_since_checkpoint = 0

    # -- plumbing ------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            for conn in (self._conn, self._now):
                if conn is not None:
                    conn.close()
            self._conn = self._now = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def checkpoint_due(self) -> bool:
        return self._commits_since_checkpoint >= self.checkpoint_every

    def checkpoint(self) -> None:
        """Copy the WAL back into the database without blocking anyone (``PASSIVE``)."""
        self._commits_since_checkpoint = 0
        self.read(lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())

    def run_now(self, method: Callable[..., T], *args: Any) -> T:
        """``method(*args)`` on the calling thread if every lock is free at once, else
        :class:`Busy` (nothing done)."""
        self._local.now = True
        try:
            return method(*args)
        finally:
            self._local.now = False

    @contextmanager
    def _connection(self) -> Iterator[tuple[sqlite3.Connection, bool]]:
        """The connection to use, under the lock: ``(conn, immediate)``."""
        if getattr(self._local, "now", False):
            if not self._lock.acquire(blocking=False):
                raise Busy
            try:
                if self._now is None:
                    raise WorkspaceClosedError("the local workspace backend is closed")
                yield self._now, True
            finally:
                self._lock.release()
        else:
            with self._lock:
                if self._conn is None:
                    raise WorkspaceClosedError("the local workspace backend is closed")
                yield self._conn, False

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` as one read (a consistent view in WAL mode)."""
        with self._connection() as (conn, immediate):
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                if immediate and _is_busy(exc):
                    raise Busy from exc
                raise

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction."""
        if self.read_only:
            raise ReadOnlyError(f"the local workspace at {self.root} was opened read-only")
        with self._connection() as (conn, immediate):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if immediate and _is_busy(exc):
                    raise Busy from exc
                raise WorkspaceError(f"the local workspace at {self.root} stayed locked by "
                                     f"another writer past the busy timeout: {exc}") from exc
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if immediate and isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    raise Busy from exc
                raise
            if immediate:
                self._commits_since_checkpoint += 1
            return result

    # -- records -------------------------------------------------------------------------
    def put_record(self, collection: str, key: str, text: str, body: str) -> None:
        def put(conn: sqlite3.Connection) -> None:
            (row_id,) = conn.execute(
                "INSERT INTO records (collection, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at RETURNING id",
                (collection, key, text, time.time())).fetchone()
            if self.searchable:
                conn.execute("DELETE FROM records_fts WHERE rowid = ?", (row_id,))
                conn.execute("INSERT INTO records_fts (rowid, body) VALUES (?, ?)",
                             (row_id, body))

        self.write(put)

    def get_record(self, collection: str, key: str) -> str | None:
        row = self.read(lambda conn: conn.execute(
            "SELECT value FROM records WHERE collection = ? AND key = ?",
            (collection, key)).fetchone())
        return None if row is None else row[0]

    def search(self, query: str, collection: str | None, limit: int
               ) -> list[tuple[str, str, str, float]]:
        words = query_words(query)
        if not words or limit <= 0:
            return []
        # every word quoted: FTS5 sees plain terms, never operators or column filters
        match = " ".join('"' + word.replace('"', '""') + '"' for word in words)
        sql = ("SELECT r.collection, r.key, r.value, -bm25(records_fts) FROM records_fts "
               "JOIN records r ON r.id = records_fts.rowid WHERE records_fts MATCH ?")
        params: list[Any] = [match]
        if collection is not None:
            sql += " AND r.collection = ?"
            params.append(collection)
        sql += " ORDER BY bm25(records_fts), r.collection, r.key LIMIT ?"
        params.append(limit)
        return self.read(lambda conn: conn.execute(sql, params).fetchall())

    # -- links ---------------------------------------------------------------------------
    def add_link(self, source: tuple[str, str], target: tuple[str, str], relation: str,
                 data: str) -> None:
        self.write(lambda conn: conn.execute(
            "INSERT INTO links (source_collection, source_key, target_collection, target_key, "
            "relation, data, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source_collection, source_key, target_collection, target_key, "
            "relation) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (*source, *target, relation, data, time.time())))

    def read_links(self, ref: tuple[str, str], relation: str | None, direction: str
                   ) -> list[tuple[str, str, str, str, str, str]]:
        side = "source" if direction == "out" else "target"
        sql = ("SELECT source_collection, source_key, target_collection, target_key, "
               f"relation, data FROM links WHERE {side}_collection = ? AND {side}_key = ?")
        params: list[Any] = list(ref)
        if relation is not None:
            sql += " AND relation = ?"
            params.append(relation)
        return self.read(lambda conn: conn.execute(sql + " ORDER BY id", params).fetchall())

    # -- snapshots and checkpoints -------------------------------------------------------
    def read_snapshot(self, key: str) -> tuple[int, str] | None:
        return self.read(lambda conn: conn.execute(
            "SELECT version, value FROM snapshots WHERE key = ?", (key,)).fetchone())

    def write_snapshot(self, key: str, text: str, expected: int | None) -> int:
        def cas(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT version FROM snapshots WHERE key = ?", (key,)).fetchone()
            current = 0 if row is None else row[0]
            if expected is not None and expected != current:
                raise VersionConflict(key, expected, current)
            conn.execute(
                "INSERT INTO snapshots (key, version, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET version = excluded.version, "
                "value = excluded.value, updated_at = excluded.updated_at",
                (key, current + 1, text, time.time()))
            return current + 1

        return self.write(cas)

    def save_checkpoint(self, key: str, label: str, expected: int | None) -> int:
        def save(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT version, value FROM snapshots WHERE key = ?",
                               (key,)).fetchone()
            current = 0 if row is None else row[0]
            if expected is not None and expected != current:
                raise VersionConflict(key, expected, current)
            if row is None:
                raise WorkspaceError(f"snapshot {key!r} does not exist; nothing to checkpoint")
            held = conn.execute("SELECT version FROM checkpoints WHERE key = ? AND label = ?",
                                (key, label)).fetchone()
            if held is not None:
                if held[0] != current:
                    raise CheckpointExists(f"checkpoint {label!r} of {key!r} holds state "
                                           f"version {held[0]}, not {current}")
                return current
            conn.execute("INSERT INTO checkpoints (key, label, version, value, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (key, label, current, row[1], time.time()))
            return current

        return self.write(save)

    def read_checkpoint(self, key: str, label: str) -> tuple[int, str] | None:
        return self.read(lambda conn: conn.execute(
            "SELECT version, value FROM checkpoints WHERE key = ? AND label = ?",
            (key, label)).fetchone())

    def list_checkpoints(self, key: str) -> list[tuple[str, int]]:
        return self.read(lambda conn: conn.execute(
            "SELECT label, version FROM checkpoints WHERE key = ? ORDER BY id",
            (key,)).fetchall())

    # -- leases --------------------------------------------------------------------------
    def claim_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        def claim(conn: sqlite3.Connection) -> Lease | None:
            row = conn.execute("SELECT token, fence, epoch, deadline FROM leases "
                               "WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is not None and not clock.expired(row[2], row[3]):
                return None
            fence = (0 if row is None else row[1]) + 1
            token = secrets.token_hex(16)
            epoch, now = clock.now()  # read after taking the write lock, never stale
            expires_at = time.time() + ttl
            conn.execute(
                "INSERT INTO leases (name, owner, token, fence, ttl, epoch, deadline, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "owner = excluded.owner, token = excluded.token, fence = excluded.fence, "
                "ttl = excluded.ttl, epoch = excluded.epoch, deadline = excluded.deadline, "
                "expires_at = excluded.expires_at",
                (name, owner, token, fence, ttl, epoch, now + ttl, expires_at))
            return Lease(name, owner, token, fence, ttl, expires_at)

        return self.write(claim)

    def heartbeat_lease(self, name: str, token: str, ttl: float) -> Lease:
        def heartbeat(conn: sqlite3.Connection) -> Lease:
            row = conn.execute("SELECT owner, token, fence, epoch, deadline FROM leases "
                               "WHERE name = ?", (name,)).fetchone()
            if (row is None or row[1] is None or not secrets.compare_digest(row[1], token)
                    or clock.expired(row[3], row[4])):
                raise LeaseLost(f"lease {name!r} is no longer held by this token")
            epoch, now = clock.now()
            expires_at = time.time() + ttl
            conn.execute("UPDATE leases SET ttl = ?, epoch = ?, deadline = ?, expires_at = ? "
                         "WHERE name = ?", (ttl, epoch, now + ttl, expires_at, name))
            return Lease(name, row[0], token, row[2], ttl, expires_at)

        return self.write(heartbeat)

    def release_lease(self, name: str, token: str) -> bool:
        def release(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT token FROM leases WHERE name = ?", (name,)).fetchone()
            if row is None or row[0] is None or not secrets.compare_digest(row[0], token):
                return False
            conn.execute("UPDATE leases SET token = NULL, owner = NULL, deadline = NULL "
                         "WHERE name = ?", (name,))
            return True

        return self.write(release)

    def read_lease(self, name: str) -> Lease | None:
        row = self.read(lambda conn: conn.execute(
            "SELECT owner, token, fence, ttl, epoch, deadline, expires_at FROM leases "
            "WHERE name = ?", (name,)).fetchone())
        if row is None or row[1] is None or clock.expired(row[4], row[5]):
            return None
        return Lease(name, row[0], "", row[2], row[3], row[6])

    # -- artifacts -----------------------------------------------------------------------
    def put_artifact(self, data: bytes, media_type: str) -> dict[str, Any]:
        if self.read_only:
            raise ReadOnlyError(f"the local workspace at {self.root} was opened read-only")
        digest = hashlib.sha256(data).hexdigest()
        artifact_id = f"sha256:{digest}"
        path = self._artifact_path(digest)
        if not (path.is_file() and path.stat().st_size == len(data)):
            _write_atomically(path, data)  # the file first: a row always has its file

        def record(conn: sqlite3.Connection) -> str:
            conn.execute("INSERT OR IGNORE INTO artifacts (artifact_id, size, media_type, "
                         "created_at) VALUES (?, ?, ?, ?)",
                         (artifact_id, len(data), media_type, time.time()))
            return conn.execute("SELECT media_type FROM artifacts WHERE artifact_id = ?",
                                (artifact_id,)).fetchone()[0]

        stored_type = self.write(record)
        return {"artifact_id": artifact_id, "size": len(data), "media_type": stored_type}

    def read_artifact(self, artifact_id: str) -> bytes:
        if self.closed:
            raise WorkspaceClosedError("the local workspace backend is closed")
        digest = artifact_id.removeprefix("sha256:")
        try:
            data = self._artifact_path(digest).read_bytes()
        except FileNotFoundError:
            raise MissingArtifact(f"no artifact {artifact_id!r}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise WorkspaceError(f"artifact {artifact_id!r} is corrupt on disk "
                                 f"({self._artifact_path(digest)})")
        return data

    def _artifact_path(self, digest: str) -> Path:
        return self.artifacts_dir / digest[:2] / digest

    # -- events --------------------------------------------------------------------------
    def append_event(self, execution_id: str, event_id: str, payload: str) -> int:
        def append(conn: sqlite3.Connection) -> int:
            known = conn.execute("SELECT sequence FROM events WHERE execution_id = ? "
                                 "AND event_id = ?", (execution_id, event_id)).fetchone()
            if known is not None:
                return known[0]
            (sequence,) = conn.execute(
                "INSERT INTO event_heads (execution_id, last_sequence) VALUES (?, 1) "
                "ON CONFLICT (execution_id) DO UPDATE SET last_sequence = last_sequence + 1 "
                "RETURNING last_sequence", (execution_id,)).fetchone()
            conn.execute("INSERT INTO events (execution_id, sequence, event_id, payload, "
                         "created_at) VALUES (?, ?, ?, ?, ?)",
                         (execution_id, sequence, event_id, payload, time.time()))
            return sequence

        return self.write(append)

    def read_events(self, execution_id: str, after: int, before: int | None, limit: int
                    ) -> list[tuple[int, str, str]]:
        if limit <= 0:
            return []
        sql = ("SELECT sequence, event_id, payload FROM events WHERE execution_id = ? "
               "AND sequence > ?")
        params: list[Any] = [execution_id, after]
        if before is not None:
            sql += " AND sequence < ?"
            params.append(before)
        params.append(limit)
        return self.read(lambda conn: conn.execute(sql + " ORDER BY sequence LIMIT ?",
                                                   params).fetchall())

    def prune_events(self, execution_id: str, through: int) -> int:
        return self.write(lambda conn: conn.execute(
            "DELETE FROM events WHERE execution_id = ? AND sequence <= ?",
            (execution_id, through)).rowcount)

    # -- checks --------------------------------------------------------------------------
    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check``: ``["ok"]`` for a sound database."""
        return [row[0] for row in self.read(
            lambda conn: conn.execute("PRAGMA integrity_check").fetchall())]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
