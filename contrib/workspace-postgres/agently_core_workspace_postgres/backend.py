"""``postgres``: the WorkspaceBackend on PostgreSQL (psycopg 3, async), safe across
processes, connections and hosts.

Every promise is decided by the server, inside one statement or one transaction, so it
holds for any number of clients anywhere:

* **compare-and-set**: ``UPDATE snapshots SET version = version + 1 ... WHERE key = $1 AND
  version = $2`` (``INSERT ... ON CONFLICT DO NOTHING`` when expecting version 0). The
  row lock makes a second writer wait; PostgreSQL then re-checks its ``WHERE`` on the
  committed row, finds the old version gone and updates nothing: exactly one winner;
* **events**: the server function ``append_event`` looks the event id up, locks the
  execution's head row (``UPDATE ... RETURNING``), takes the next sequence and inserts, in
  one round trip: sequences are dense and never reused (pruning leaves the head alone);
  a repeated id returns its first sequence; ``UNIQUE (execution_id, event_id)`` backs it;
* **leases**: one ``INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE token_hash IS NULL OR
  deadline <= clock_timestamp()``; deadlines are on the **server's clock**
  (``clock_timestamp()`` when the row is decided), the one clock every client shares, so
  client clock drift does not matter. The token is kept as its SHA-256 only.

``read_only=True`` refuses every write with ``ReadOnlyError`` before anything is sent, and
its sessions are read-only in PostgreSQL too (``default_transaction_read_only``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import psycopg

from agently_core.workspace import (
    ARTIFACTS,
    CHECKPOINTS,
    COMPARE_AND_SET,
    DURABLE,
    EVENT_SEQUENCES,
    EVENTS,
    FILES,
    LEASES,
    LINKS,
    MULTI_PROCESS,
    RANGE_READS,
    READ_ONLY_MODE,
    RECORDS,
    RETENTION,
    SEARCH,
    SNAPSHOTS,
    CheckpointExists,
    Lease,
    LeaseLost,
    MissingArtifact,
    ReadOnlyError,
    VersionConflict,
    WorkspaceClosedError,
    WorkspaceError,
    check_artifact_id,
    check_name,
    check_ref,
    check_version,
    dump_value,
    query_words,
    searchable_text,
)

from . import schema as ddl
from .connections import (
    Pool,
    PostgresUnavailable,
    build_conninfo,
    describe,
    parse_dsn,
    retryable,
    translate,
)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]

#: The variable read when no ``dsn`` is given.
DSN_VARIABLE = "AGENTLY_POSTGRES_DSN"
#: How often a transaction that PostgreSQL rolled back (deadlock, serialization) is retried.
RETRIES = 5


class PostgresWorkspaceBackend:
    """A workspace in PostgreSQL schema ``schema`` of the database ``dsn`` names.

    ``dsn`` is a libpq connection string or ``postgresql://`` URL (default: the
    ``AGENTLY_POSTGRES_DSN`` variable). ``schema`` (default ``"agently"``) is the
    PostgreSQL schema holding this workspace's tables; it is created on first use, so
    different names give separate workspaces in one database. ``read_only=True`` opens an
    existing workspace read-only. ``files`` is an optional local directory for the
    workspace's file actions (reported as the ``files`` capability); artifacts are kept in
    the database (``bytea``), so every host sees them. ``pool_size`` caps the connections
    this instance opens. ``connect_timeout`` (seconds) bounds connecting;
    ``operation_timeout`` (seconds) is the longest one statement may run or wait for a
    lock: it becomes the session's ``statement_timeout`` (unless the DSN's ``options`` set
    one), so the server cancels the statement and nothing is written.

    The constructor connects once (synchronously) to create or check the schema, so a bad
    DSN or an unreachable server fails here with a clear :class:`WorkspaceError`. The data
    methods then use psycopg's async API on the running asyncio loop.
    """

    name = "postgres"

    def __init__(self, dsn: str | None = None, *, schema: str = "agently",
                 read_only: bool = False, files: str | os.PathLike[str] | None = None,
                 pool_size: int = 10, connect_timeout: float = 10.0,
                 operation_timeout: float = 60.0) -> None:
        if dsn is None:
            dsn = os.environ.get(DSN_VARIABLE)
            if dsn is None:
                raise WorkspaceError("the postgres workspace backend needs dsn=... (a libpq "
                                     "connection string or postgresql:// URL) or the "
                                     f"{DSN_VARIABLE} variable")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise WorkspaceError(f"pool_size must be an int >= 1, got {pool_size!r}")
        for label, value in (("connect_timeout", connect_timeout),
                             ("operation_timeout", operation_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise WorkspaceError(f"{label} must be a positive number, got {value!r}")
        self.schema = ddl.check_schema_name(schema)
        self.read_only = bool(read_only)
        self.operation_timeout = float(operation_timeout)
        self._backstop = self.operation_timeout + 10.0
        params = parse_dsn(dsn)
        self.where = describe(params)
        conninfo = build_conninfo(params, read_only=self.read_only,
                                  connect_timeout=float(connect_timeout),
                                  statement_timeout=self.operation_timeout)
        self._setup(conninfo)
        #: The directory the workspace's file actions serve, when ``files`` was given.
        self.files_root: Path | None = None
        if files is not None:
            self.files_root = Path(files).absolute()
            if not self.read_only:
                self.files_root.mkdir(parents=True, exist_ok=True)
        self._pool = Pool(conninfo, size=pool_size, where=self.where)
        self._closed = False
        found = {RECORDS, SNAPSHOTS, COMPARE_AND_SET, EVENTS, DURABLE, MULTI_PROCESS, SEARCH,
                 LINKS, CHECKPOINTS, LEASES, ARTIFACTS, RANGE_READS, RETENTION,
                 EVENT_SEQUENCES, READ_ONLY_MODE}
        if self.files_root is not None:
            found.add(FILES)
        self._capabilities = frozenset(found)
        self._sql = _statements(ddl.quote_identifier(self.schema))

    def _setup(self, conninfo: str) -> None:
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                ddl.setup(conn, self.schema, read_only=self.read_only)
        except psycopg.OperationalError as exc:
            raise PostgresUnavailable(f"cannot connect to PostgreSQL ({self.where}): "
                                      f"{str(exc).strip().splitlines()[0]}") from None
        except psycopg.Error as exc:
            raise translate(exc, f"opening workspace schema {self.schema!r}",
                            self.where) from None

    def __repr__(self) -> str:
        mode = " read-only" if self.read_only else ""
        return f"<PostgresWorkspaceBackend {self.where} schema={self.schema!r}{mode}>"

    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    # -- plumbing ------------------------------------------------------------------------
    async def _run(self, what: str, op: Callable[[Conn], Awaitable[T]], *,
                   write: bool = False) -> T:
        """``await op(conn)`` on a pooled connection. A cancel lands before the call, never
        in the middle: once sent, the call finishes (or times out) and its connection is
        returned clean or closed."""
        if self._closed:
            raise WorkspaceClosedError("the postgres workspace backend is closed")
        if write and self.read_only:
            raise ReadOnlyError(f"the postgres workspace (schema {self.schema!r}) was opened "
                                f"read-only; {what} was refused")
        await anyio.lowlevel.checkpoint_if_cancelled()
        pool = self._pool
        for attempt in range(RETRIES + 1):
            # shielded from outer cancels; the deadline is a backstop behind the server's
            # statement_timeout (operation_timeout), for a server that stopped answering
            with anyio.CancelScope(shield=True,
                                   deadline=anyio.current_time() + self._backstop) as scope:
                try:
                    conn = await pool.acquire()
                    try:
                        return await op(conn)
                    finally:
                        pool.release(conn)
                except psycopg.Error as exc:
                    if not (retryable(exc) and attempt < RETRIES):
                        raise translate(exc, what, self.where) from None
                    await anyio.sleep(0.005 * 2 ** attempt * (1 + secrets.randbelow(100) / 100))
            if scope.cancelled_caught:
                raise PostgresUnavailable(
                    f"PostgreSQL ({self.where}) did not answer {what} within "
                    f"{self._backstop} s; its outcome is unknown")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetchone(self, what: str, query: str, params: Any = None, *,
                        write: bool = False) -> Any:
        async def op(conn: Conn) -> Any:
            return await (await conn.execute(query, params)).fetchone()

        return await self._run(what, op, write=write)

    async def _fetchall(self, what: str, query: str, params: Any = None) -> list[Any]:
        async def op(conn: Conn) -> list[Any]:
            return await (await conn.execute(query, params)).fetchall()

        return await self._run(what, op)

    # -- records -------------------------------------------------------------------------
    async def put_record(self, collection: str, key: str, value: Mapping[str, Any]) -> None:
        text = dump_value(value, f"record {collection}/{key}")
        check_name(collection, "collection")
        check_name(key, "key")
        words = [word[:ddl.MAX_INDEXED_WORD]
                 for word in query_words(searchable_text(json.loads(text)))]

        async def op(conn: Conn) -> None:
            await conn.execute(self._sql["put_record"], (collection, key, text, words,
                                                         len(words)))

        await self._run("put_record", op, write=True)

    async def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        row = await self._fetchone("get_record", self._sql["get_record"], (collection, key))
        return None if row is None else json.loads(row[0])

    async def search_records(self, query: str, *, collection: str | None = None,
                             limit: int = 20) -> list[dict[str, Any]]:
        words = query_words(query)
        if not words or limit <= 0:
            return []
        indexed = sorted({word[:ddl.MAX_INDEXED_WORD] for word in words})
        long_words = any(len(word) > ddl.MAX_INDEXED_WORD for word in words)
        sql = self._sql["search"]
        params: dict[str, Any] = {"words": indexed, "collection": collection,
                                  "limit": None if long_words else limit}
        rows = await self._fetchall("search_records", sql, params)
        hits = [{"collection": coll, "key": key, "value": json.loads(text), "score": score}
                for coll, key, text, score in rows]
        if long_words:  # the index knows only their first characters: check the full words
            wanted = set(words)
            hits = [hit for hit in hits
                    if wanted <= set(query_words(searchable_text(hit["value"])))][:limit]
        return hits

    # -- links ---------------------------------------------------------------------------
    async def add_link(self, source: tuple[str, str], target: tuple[str, str],
                       relation: str = "related", data: Mapping[str, Any] | None = None) -> None:
        text = dump_value(data or {}, f"link {relation}")
        params = (*check_ref(source), *check_ref(target), check_name(relation, "relation"), text)

        async def op(conn: Conn) -> None:
            await conn.execute(self._sql["add_link"], params)

        await self._run("add_link", op, write=True)

    async def read_links(self, ref: tuple[str, str], *, relation: str | None = None,
                         direction: str = "out") -> list[dict[str, Any]]:
        if direction not in ("out", "in"):
            raise WorkspaceError(f"direction must be 'out' or 'in', got {direction!r}")
        collection, key = check_ref(ref)
        rows = await self._fetchall("read_links", self._sql[f"links_{direction}"],
                                    (collection, key, relation, relation))
        return [{"source": (sc, sk), "target": (tc, tk), "relation": rel,
                 "data": json.loads(data)} for sc, sk, tc, tk, rel, data in rows]

    # -- snapshots and checkpoints -------------------------------------------------------
    async def read_snapshot(self, key: str) -> tuple[int, dict[str, Any]] | None:
        row = await self._fetchone("read_snapshot", self._sql["read_snapshot"], (key,))
        return None if row is None else (row[0], json.loads(row[1]))

    async def write_snapshot(self, key: str, value: Mapping[str, Any], *,
                             expected_state_version: int | None = None) -> int:
        text = dump_value(value, f"snapshot {key}")
        check_name(key, "snapshot key")
        expected = check_version(expected_state_version)
        sql = self._sql

        async def op(conn: Conn) -> int:
            if expected is None:
                cursor = await conn.execute(sql["write_snapshot"], (key, text))
            elif expected == 0:
                cursor = await conn.execute(sql["create_snapshot"], (key, text))
            else:
                cursor = await conn.execute(sql["cas_snapshot"], (text, key, expected))
            row = await cursor.fetchone()
            if row is not None:
                return row[0]
            found = await (await conn.execute(sql["snapshot_version"], (key,))).fetchone()
            raise VersionConflict(key, expected or 0, 0 if found is None else found[0])

        return await self._run("write_snapshot", op, write=True)

    async def save_checkpoint(self, key: str, label: str, *,
                              expected_state_version: int | None = None) -> int:
        check_name(key, "snapshot key")
        check_name(label, "checkpoint label")
        expected = check_version(expected_state_version)
        sql = self._sql

        async def op(conn: Conn) -> int:
            async with conn.transaction():
                # FOR SHARE: no write to this snapshot until the checkpoint is decided
                row = await (await conn.execute(sql["snapshot_for_share"], (key,))).fetchone()
                current = 0 if row is None else row[0]
                if expected is not None and expected != current:
                    raise VersionConflict(key, expected, current)
                if row is None:
                    raise WorkspaceError(f"snapshot {key!r} does not exist; nothing to "
                                         "checkpoint")
                cursor = await conn.execute(sql["insert_checkpoint"], (key, label, current,
                                                                       row[1]))
                if await cursor.fetchone() is None:  # the label exists: same version?
                    held = await (await conn.execute(sql["checkpoint_version"],
                                                     (key, label))).fetchone()
                    if held[0] != current:
                        raise CheckpointExists(f"checkpoint {label!r} of {key!r} holds state "
                                               f"version {held[0]}, not {current}")
                return current

        return await self._run("save_checkpoint", op, write=True)

    async def read_checkpoint(self, key: str, label: str) -> tuple[int, dict[str, Any]] | None:
        row = await self._fetchone("read_checkpoint", self._sql["read_checkpoint"],
                                   (key, label))
        return None if row is None else (row[0], json.loads(row[1]))

    async def list_checkpoints(self, key: str) -> list[dict[str, Any]]:
        rows = await self._fetchall("list_checkpoints", self._sql["list_checkpoints"], (key,))
        return [{"label": label, "state_version": version} for label, version in rows]

    # -- leases --------------------------------------------------------------------------
    async def claim_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        check_name(name, "lease name")
        check_name(owner, "lease owner")
        ttl = _ttl(ttl)
        token = secrets.token_hex(16)
        row = await self._fetchone("claim_lease", self._sql["claim_lease"], {
            "name": name, "owner": owner, "hash": _token_hash(token), "ttl": ttl}, write=True)
        if row is None:
            return None
        fence, expires_at = row
        return Lease(name, owner, token, fence, ttl, expires_at)

    async def heartbeat_lease(self, name: str, token: str, ttl: float) -> Lease:
        ttl = _ttl(ttl)
        row = await self._fetchone("heartbeat_lease", self._sql["heartbeat_lease"],
                                   {"ttl": ttl, "name": name, "hash": _token_hash(token)},
                                   write=True)
        if row is None:
            raise LeaseLost(f"lease {name!r} is no longer held by this token")
        owner, fence, expires_at = row
        return Lease(name, owner, token, fence, ttl, expires_at)

    async def release_lease(self, name: str, token: str) -> bool:
        row = await self._fetchone("release_lease", self._sql["release_lease"],
                                   (name, _token_hash(token)), write=True)
        return row is not None

    async def read_lease(self, name: str) -> Lease | None:
        row = await self._fetchone("read_lease", self._sql["read_lease"], (name,))
        if row is None:
            return None
        owner, fence, ttl, expires_at = row
        return Lease(name, owner, "", fence, ttl, expires_at)

    # -- artifacts -----------------------------------------------------------------------
    async def put_artifact(self, data: bytes, *,
                           media_type: str = "application/octet-stream") -> dict[str, Any]:
        data = bytes(data)
        check_name(media_type, "media_type")
        artifact_id = "sha256:" + hashlib.sha256(data).hexdigest()
        sql = self._sql

        async def op(conn: Conn) -> str:
            for query, params in ((sql["artifact_type"], (artifact_id,)),
                                  (sql["insert_artifact"], (artifact_id, len(data), media_type,
                                                            data)),
                                  (sql["artifact_type"], (artifact_id,))):
                row = await (await conn.execute(query, params)).fetchone()
                if row is not None:
                    return row[0]
            raise WorkspaceError(f"artifact {artifact_id} was neither stored nor found")

        stored_type = await self._run("put_artifact", op, write=True)
        return {"artifact_id": artifact_id, "size": len(data), "media_type": stored_type}

    async def read_artifact(self, artifact_id: str) -> bytes:
        check_artifact_id(artifact_id)

        async def op(conn: Conn) -> Any:
            cursor = conn.cursor(binary=True)
            await cursor.execute(self._sql["read_artifact"], (artifact_id,))
            return await cursor.fetchone()

        row = await self._run("read_artifact", op)
        if row is None:
            raise MissingArtifact(f"no artifact {artifact_id!r}")
        data = bytes(row[0])
        if "sha256:" + hashlib.sha256(data).hexdigest() != artifact_id:
            raise WorkspaceError(f"artifact {artifact_id!r} is corrupt in PostgreSQL")
        return data

    # -- events --------------------------------------------------------------------------
    async def append_event(self, execution_id: str, event_id: str,
                           payload: Mapping[str, Any]) -> int:
        text = dump_value(payload, f"event {event_id}")
        check_name(execution_id, "execution_id")
        check_name(event_id, "event_id")
        row = await self._fetchone("append_event", self._sql["append_event"],
                                   (execution_id, event_id, text), write=True)
        return row[0]

    async def read_events(self, execution_id: str, *, after: int = 0, before: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        if int(limit) <= 0:
            return []
        rows = await self._fetchall("read_events", self._sql["read_events"], {
            "execution": execution_id, "after": int(after),
            "before": None if before is None else int(before), "limit": int(limit)})
        return [{"execution_id": execution_id, "event_id": event_id, "sequence": sequence,
                 "payload": json.loads(payload)} for sequence, event_id, payload in rows]

    async def prune_events(self, execution_id: str, *, through: int) -> int:
        async def op(conn: Conn) -> int:
            cursor = await conn.execute(self._sql["prune_events"], (execution_id, int(through)))
            return cursor.rowcount

        return await self._run("prune_events", op, write=True)

    # -- checks and lifecycle ------------------------------------------------------------
    async def check_consistency(self) -> list[str]:
        """What is wrong with the stored events and snapshots (``[]`` when nothing):
        events above their execution's head, or snapshots at version 0 or below."""
        rows = await self._fetchall("check_consistency", self._sql["consistency"])
        return [problem for (problem,) in rows]

    async def aclose(self) -> None:
        """Close the connections (idempotent); the data stays in PostgreSQL."""
        self.close()

    def close(self) -> None:
        """:meth:`aclose` from sync code."""
        self._closed = True
        self._pool.close()


def _ttl(ttl: Any) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise WorkspaceError(f"a lease ttl is a positive number of seconds, got {ttl!r}")
    return float(ttl)


def _token_hash(token: Any) -> bytes:
    """What is stored of a lease token: its SHA-256 (compared in SQL, so no timing leak
    about the token itself, and a database dump holds no usable token)."""
    if not isinstance(token, str):
        raise WorkspaceError(f"a lease token is a string, got {type(token).__name__}")
    return hashlib.sha256(token.encode()).digest()


def _statements(s: str) -> dict[str, str]:
    """Every statement the backend runs, with the schema ``s`` (quoted) filled in."""
    statements = {
        "put_record": """INSERT INTO {s}.records (collection, key, value, words, word_count)
            VALUES (%s, %s, %s, %s, %s) ON CONFLICT (collection, key) DO UPDATE SET
            value = excluded.value, words = excluded.words, word_count = excluded.word_count,
            updated_at = clock_timestamp()""",
        "get_record": "SELECT value FROM {s}.records WHERE collection = %s AND key = %s",
        # score: the share of the record's words that are query words (denser ranks first)
        "search": """SELECT collection, key, value,
            (SELECT count(*) FROM unnest(words) AS w WHERE w = ANY(%(words)s::text[]))::float8
                / greatest(word_count, 1) AS score
            FROM {s}.records WHERE words @> %(words)s::text[]
            AND (%(collection)s::text IS NULL OR collection = %(collection)s::text)
            ORDER BY score DESC, collection, key LIMIT %(limit)s::bigint""",
        "add_link": """INSERT INTO {s}.links (source_collection, source_key, target_collection,
            target_key, relation, data) VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (source_collection, source_key, target_collection, target_key, relation)
            DO UPDATE SET data = excluded.data, updated_at = clock_timestamp()""",
        "links_out": """SELECT source_collection, source_key, target_collection, target_key,
            relation, data FROM {s}.links WHERE source_collection = %s AND source_key = %s
            AND (%s::text IS NULL OR relation = %s::text) ORDER BY id""",
        "links_in": """SELECT source_collection, source_key, target_collection, target_key,
            relation, data FROM {s}.links WHERE target_collection = %s AND target_key = %s
            AND (%s::text IS NULL OR relation = %s::text) ORDER BY id""",
        "read_snapshot": "SELECT version, value FROM {s}.snapshots WHERE key = %s",
        "snapshot_version": "SELECT version FROM {s}.snapshots WHERE key = %s",
        "snapshot_for_share": "SELECT version, value FROM {s}.snapshots WHERE key = %s FOR SHARE",
        "write_snapshot": """INSERT INTO {s}.snapshots AS t (key, version, value)
            VALUES (%s, 1, %s) ON CONFLICT (key) DO UPDATE SET version = t.version + 1,
            value = excluded.value, updated_at = clock_timestamp() RETURNING version""",
        "create_snapshot": """INSERT INTO {s}.snapshots (key, version, value) VALUES (%s, 1, %s)
            ON CONFLICT (key) DO NOTHING RETURNING version""",
        "cas_snapshot": """UPDATE {s}.snapshots SET version = version + 1, value = %s,
            updated_at = clock_timestamp() WHERE key = %s AND version = %s RETURNING version""",
        "insert_checkpoint": """INSERT INTO {s}.checkpoints (key, label, version, value)
            VALUES (%s, %s, %s, %s) ON CONFLICT (key, label) DO NOTHING RETURNING version""",
        "checkpoint_version": "SELECT version FROM {s}.checkpoints WHERE key = %s AND label = %s",
        "read_checkpoint": """SELECT version, value FROM {s}.checkpoints
            WHERE key = %s AND label = %s""",
        "list_checkpoints": "SELECT label, version FROM {s}.checkpoints WHERE key = %s ORDER BY id",
        # decided on the server's clock, after the row lock is taken
        "claim_lease": """INSERT INTO {s}.leases AS l (name, owner, token_hash, fence, ttl,
            deadline) VALUES (%(name)s, %(owner)s, %(hash)s, 1, %(ttl)s,
            clock_timestamp() + make_interval(secs => %(ttl)s))
            ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
            token_hash = excluded.token_hash, fence = l.fence + 1, ttl = excluded.ttl,
            deadline = clock_timestamp() + make_interval(secs => excluded.ttl)
            WHERE l.token_hash IS NULL OR l.deadline <= clock_timestamp()
            RETURNING fence, extract(epoch FROM deadline)::float8""",
        "heartbeat_lease": """UPDATE {s}.leases SET ttl = %(ttl)s,
            deadline = clock_timestamp() + make_interval(secs => %(ttl)s)
            WHERE name = %(name)s AND token_hash = %(hash)s AND deadline > clock_timestamp()
            RETURNING owner, fence, extract(epoch FROM deadline)::float8""",
        "release_lease": """UPDATE {s}.leases SET token_hash = NULL, owner = NULL,
            deadline = NULL WHERE name = %s AND token_hash = %s RETURNING fence""",
        "read_lease": """SELECT owner, fence, ttl, extract(epoch FROM deadline)::float8
            FROM {s}.leases WHERE name = %s AND token_hash IS NOT NULL
            AND deadline > clock_timestamp()""",
        "artifact_type": "SELECT media_type FROM {s}.artifacts WHERE artifact_id = %s",
        "insert_artifact": """INSERT INTO {s}.artifacts (artifact_id, size, media_type, data)
            VALUES (%s, %s, %s, %b) ON CONFLICT (artifact_id) DO NOTHING RETURNING media_type""",
        "read_artifact": "SELECT data FROM {s}.artifacts WHERE artifact_id = %s",
        "append_event": "SELECT {s}.append_event(%s, %s, %s)",
        "read_events": """SELECT sequence, event_id, payload FROM {s}.events
            WHERE execution_id = %(execution)s AND sequence > %(after)s
            AND (%(before)s::bigint IS NULL OR sequence < %(before)s::bigint)
            ORDER BY sequence LIMIT %(limit)s""",
        "prune_events": "DELETE FROM {s}.events WHERE execution_id = %s AND sequence <= %s",
        "consistency": """SELECT format('event %s/%s is above the head %s', e.execution_id,
                e.sequence, h.last_sequence)
            FROM {s}.events e LEFT JOIN {s}.event_heads h USING (execution_id)
            WHERE h.last_sequence IS NULL OR e.sequence > h.last_sequence
            UNION ALL
            SELECT format('snapshot %s has version %s', key, version)
            FROM {s}.snapshots WHERE version < 1""",
    }
    return {name: query.replace("{s}", s) for name, query in statements.items()}


__all__ = ["DSN_VARIABLE", "PostgresUnavailable", "PostgresWorkspaceBackend"]
