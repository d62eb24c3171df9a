"""The PostgreSQL schema of a workspace, and how it is created or checked.

Each workspace lives in its own PostgreSQL schema (namespace), ``agently`` by default:
several workspaces (or test runs) share one database without seeing each other. The
schema is created on first use under a transaction-level advisory lock, so processes
opening a new workspace at once do not trip over each other's ``CREATE TABLE``. The table
``meta`` records the schema version; a workspace written by a newer version is refused
rather than misread.

Values are kept as ``text`` (the JSON exactly as serialised), not ``jsonb``: ``jsonb``
would reorder keys, turn ``1e20`` into an integer and refuse ``\\u0000``, and values must
come back as they went in.
"""

from __future__ import annotations

import re
from typing import Any

from agently_core.workspace import WorkspaceError

SCHEMA_VERSION = 1
#: The longest identifier PostgreSQL keeps (NAMEDATALEN - 1), in bytes.
MAX_IDENTIFIER_BYTES = 63
#: Words longer than this are indexed by their first characters only (a GIN key must stay
#: far below its ~2.7 kB limit); a search for such a word is re-checked on the full text.
MAX_INDEXED_WORD = 100
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")

#: The statements that create a workspace; ``{s}`` is the quoted schema name.
TABLES = (
    "CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE IF NOT EXISTS {s}.records (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        collection text NOT NULL,
        key text NOT NULL,
        value text NOT NULL,
        words text[] NOT NULL,
        word_count integer NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        UNIQUE (collection, key))""",
    "CREATE INDEX IF NOT EXISTS records_words ON {s}.records USING gin (words)",
    """CREATE TABLE IF NOT EXISTS {s}.snapshots (
        key text PRIMARY KEY,
        version bigint NOT NULL,
        value text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE TABLE IF NOT EXISTS {s}.checkpoints (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key text NOT NULL,
        label text NOT NULL,
        version bigint NOT NULL,
        value text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        UNIQUE (key, label))""",
    """CREATE TABLE IF NOT EXISTS {s}.links (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source_collection text NOT NULL,
        source_key text NOT NULL,
        target_collection text NOT NULL,
        target_key text NOT NULL,
        relation text NOT NULL,
        data text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        UNIQUE (source_collection, source_key, target_collection, target_key, relation))""",
    """CREATE INDEX IF NOT EXISTS links_by_target
        ON {s}.links (target_collection, target_key, relation)""",
    # token_hash is NULL once released; fence survives so the next claim gets a higher one.
    # deadline is on the server's clock (clock_timestamp()), the one clock all clients share.
    """CREATE TABLE IF NOT EXISTS {s}.leases (
        name text PRIMARY KEY,
        owner text,
        token_hash bytea,
        fence bigint NOT NULL,
        ttl double precision,
        deadline timestamptz)""",
    """CREATE TABLE IF NOT EXISTS {s}.artifacts (
        artifact_id text PRIMARY KEY,
        size bigint NOT NULL,
        media_type text NOT NULL,
        data bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    # stored out of line, uncompressed: artifacts are often compressed already
    "ALTER TABLE {s}.artifacts ALTER COLUMN data SET STORAGE EXTERNAL",
    # the highest sequence ever given per execution: pruning never lowers it
    """CREATE TABLE IF NOT EXISTS {s}.event_heads (
        execution_id text PRIMARY KEY,
        last_sequence bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}.events (
        execution_id text NOT NULL,
        sequence bigint NOT NULL,
        event_id text NOT NULL,
        payload text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (execution_id, sequence),
        UNIQUE (execution_id, event_id))""",
    # One call, one round trip: idempotency check, head row lock, dense sequence, insert.
    # PL/pgSQL takes a fresh snapshot per statement (READ COMMITTED), so once the head row
    # is locked every earlier append to this execution is visible.
    """CREATE OR REPLACE FUNCTION {s}.append_event(p_execution text, p_event text,
                                                   p_payload text)
    RETURNS bigint LANGUAGE plpgsql AS $fn$
    DECLARE
        seq bigint;
    BEGIN
        SELECT e.sequence INTO seq FROM {s}.events e
            WHERE e.execution_id = p_execution AND e.event_id = p_event;
        IF FOUND THEN
            RETURN seq;
        END IF;
        UPDATE {s}.event_heads SET last_sequence = last_sequence + 1
            WHERE execution_id = p_execution RETURNING last_sequence INTO seq;
        IF NOT FOUND THEN
            INSERT INTO {s}.event_heads (execution_id, last_sequence) VALUES (p_execution, 1)
                ON CONFLICT (execution_id) DO NOTHING RETURNING last_sequence INTO seq;
            IF NOT FOUND THEN  -- another append created the head first
                UPDATE {s}.event_heads SET last_sequence = last_sequence + 1
                    WHERE execution_id = p_execution RETURNING last_sequence INTO seq;
            END IF;
        END IF;
        -- the head row is locked until commit: no other append to this execution runs now
        INSERT INTO {s}.events (execution_id, sequence, event_id, payload)
            VALUES (p_execution, seq, p_event, p_payload)
            ON CONFLICT (execution_id, event_id) DO NOTHING;
        IF FOUND THEN
            RETURN seq;
        END IF;
        -- committed by an append that held the lock before us: give the number back
        UPDATE {s}.event_heads SET last_sequence = last_sequence - 1
            WHERE execution_id = p_execution;
        SELECT e.sequence INTO seq FROM {s}.events e
            WHERE e.execution_id = p_execution AND e.event_id = p_event;
        RETURN seq;
    END
    $fn$""",
)


def quote_identifier(name: str) -> str:
    """``name`` as a PostgreSQL identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'


def check_schema_name(name: Any) -> str:
    """A usable schema name, or :class:`WorkspaceError`: 1 to 63 ASCII letters, digits,
    ``_`` or ``-``, starting with a letter or ``_``, and not PostgreSQL's own (``pg_*``,
    ``information_schema``, ``public``)."""
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise WorkspaceError(f"schema must be 1 to {MAX_IDENTIFIER_BYTES} ASCII letters, digits, "
                             f"'_' or '-', starting with a letter or '_'; got {name!r}")
    if name.lower().startswith("pg_") or name.lower() in ("information_schema", "public"):
        raise WorkspaceError(f"schema {name!r} belongs to PostgreSQL; choose another name")
    return name


def lock_key(schema: str) -> str:
    """The text whose ``hashtext`` names the advisory lock of a schema's creation."""
    return f"agently-core-workspace:{schema}"


def setup(conn: Any, schema: str, *, read_only: bool) -> None:
    """Create the workspace schema (or check an existing one) on a synchronous psycopg
    connection in autocommit mode."""
    q = quote_identifier(schema)
    found = _version(conn, schema)
    if found == SCHEMA_VERSION:
        return
    if found is not None and found > SCHEMA_VERSION:
        raise WorkspaceError(f"PostgreSQL schema {schema!r} holds a workspace of schema "
                             f"version {found}; this agently-core-workspace-postgres knows up "
                             f"to {SCHEMA_VERSION}: upgrade it")
    if read_only:
        raise WorkspaceError(f"PostgreSQL schema {schema!r} is not an initialised workspace; "
                             "open it once without read_only")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key(schema),))
        if _version(conn, schema) == SCHEMA_VERSION:
            return  # another process made it while we waited for the lock
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q}")
        for statement in TABLES:
            conn.execute(statement.replace("{s}", q))
        conn.execute(f"INSERT INTO {q}.meta (key, value) VALUES ('schema_version', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     (str(SCHEMA_VERSION),))


def _version(conn: Any, schema: str) -> int | None:
    """The schema version recorded in ``schema``, or ``None`` when it has no workspace."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{quote_identifier(schema)}.meta",)
                       ).fetchone()
    if row is None or row[0] is None:
        return None
    row = conn.execute(f"SELECT value FROM {quote_identifier(schema)}.meta "
                       "WHERE key = 'schema_version'").fetchone()
    try:
        return None if row is None else int(row[0])
    except ValueError:
        raise WorkspaceError(f"PostgreSQL schema {schema!r}: meta.schema_version is "
                             f"{row[0]!r}, not a number") from None
