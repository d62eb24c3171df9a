"""The SQLite schema of a local workspace and how a connection to it is opened.

One ``workspace.db`` per workspace directory, in WAL mode: readers never block the writer
and one writer at a time holds the write lock for a whole ``BEGIN IMMEDIATE`` transaction,
across every process that opens the file. ``PRAGMA user_version`` records the schema
version; a store written by a newer version is refused rather than misread.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from agently_core.workspace import WorkspaceError

SCHEMA_VERSION = 1

TABLES = (
    """CREATE TABLE IF NOT EXISTS records (
        id INTEGER PRIMARY KEY,
        collection TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (collection, key))""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        key TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL,
        label TEXT NOT NULL,
        version INTEGER NOT NULL,
        value TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (key, label))""",
    """CREATE TABLE IF NOT EXISTS links (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source_collection TEXT NOT NULL,
        source_key TEXT NOT NULL,
        target_collection TEXT NOT NULL,
        target_key TEXT NOT NULL,
        relation TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (source_collection, source_key, target_collection, target_key, relation))""",
    """CREATE INDEX IF NOT EXISTS links_by_target
        ON links (target_collection, target_key, relation)""",
    # token is NULL once released; fence survives so the next claim gets a higher one
    """CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        owner TEXT,
        token TEXT,
        fence INTEGER NOT NULL,
        ttl REAL,
        epoch TEXT,
        deadline REAL,
        expires_at REAL)""",
    """CREATE TABLE IF NOT EXISTS artifacts (
        artifact_id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        media_type TEXT NOT NULL,
        created_at REAL NOT NULL)""",
    # the highest sequence ever given per execution: pruning never lowers it
    """CREATE TABLE IF NOT EXISTS event_heads (
        execution_id TEXT PRIMARY KEY,
        last_sequence INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS events (
        execution_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (execution_id, sequence),
        UNIQUE (execution_id, event_id)) WITHOUT ROWID""",
)
#: Full-text index of records; its rowid is ``records.id``.
SEARCH_TABLE = "CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5(body)"

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def fts5_available() -> bool:
    """Was this SQLite built with FTS5?"""
    try:
        sqlite3.connect(":memory:").execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    return True


def open_connection(db: Path, *, read_only: bool, busy_timeout: float,
                    synchronous: str) -> sqlite3.Connection:
    """A connection to an existing store, in autocommit mode (transactions are explicit)."""
    if synchronous.upper() not in SYNCHRONOUS:
        raise WorkspaceError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, "
                             f"got {synchronous!r}")
    if read_only:
        if not db.is_file():
            raise WorkspaceError(f"no local workspace at {db.parent}: {db.name} is missing")
        target, uri = f"file:{quote(str(db))}?mode=ro", True
    else:
        target, uri = str(db), False
    conn = sqlite3.connect(target, uri=uri, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def connect(db: Path, *, read_only: bool, busy_timeout: float,
            synchronous: str) -> sqlite3.Connection:
    """Open ``db`` with the busy timeout and the ``synchronous`` level, switch it to WAL,
    and create or check the schema."""
    conn = open_connection(db, read_only=read_only, busy_timeout=busy_timeout,
                           synchronous=synchronous)
    try:
        if not read_only:
            _wal(conn, busy_timeout)
        _schema(conn, read_only=read_only, db=db)
    except BaseException:
        conn.close()
        raise
    return conn


def _wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch to WAL (persistent in the file). Another process switching at the same moment
    can make this report busy: retry until the busy timeout."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if str(mode).lower() != "wal":
        raise WorkspaceError(f"SQLite refused WAL mode (journal_mode is {mode!r}); the local "
                             "workspace needs a local file system")


def _schema(conn: sqlite3.Connection, *, read_only: bool, db: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise WorkspaceError(f"{db} has schema version {version}; this agently-core-workspace-"
                             f"local knows up to {SCHEMA_VERSION}: upgrade it")
    if read_only:
        raise WorkspaceError(f"{db} is not an initialised local workspace (schema version "
                             f"{version}); open it once without read_only")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            for statement in TABLES:
                conn.execute(statement)
            if fts5_available():
                conn.execute(SEARCH_TABLE)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def has_search(conn: sqlite3.Connection) -> bool:
    """Does this store have the full-text index?"""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'records_fts'"
                        ).fetchone() is not None
