"""``local``: the WorkspaceBackend on SQLite (WAL) plus files, safe across processes.

Each call validates and serialises its arguments on the event loop, then runs the blocking
SQLite work of :class:`~agently_core_workspace_local.store.LocalStore` in a worker thread,
so a writer waiting for another process's lock never blocks the loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.lowlevel
import anyio.to_thread

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
    Lease,
    WorkspaceError,
    check_artifact_id,
    check_name,
    check_ref,
    check_version,
    dump_value,
    searchable_text,
)

from .store import Busy, LocalStore

#: Payloads up to this size may be stored on the event loop's thread (see ``_call``).
IMMEDIATE_BYTES = 256 * 1024


class LocalWorkspaceBackend:
    """A workspace in directory ``path``: ``workspace.db`` (SQLite in WAL mode),
    ``artifacts/`` (content-addressed files) and ``files/`` (what the file actions serve).

    ``read_only=True`` opens an existing store read-only (SQLite ``mode=ro`` and
    ``query_only``) and refuses every write with ``ReadOnlyError``. ``busy_timeout`` is how
    long a writer waits for another process's write lock. ``synchronous`` is SQLite's
    setting: ``"NORMAL"`` (default) survives any process crash; ``"FULL"`` also survives
    power loss, at a cost per commit.
    """

    name = "local"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
                 busy_timeout: float = 30.0, synchronous: str = "NORMAL") -> None:
        if path is None:
            raise WorkspaceError("the local workspace backend needs path=... (a directory; "
                                 "it is created when missing)")
        self._store = LocalStore(path, read_only=read_only, busy_timeout=busy_timeout,
                                 synchronous=synchronous)
        self.path: Path = self._store.root
        self.read_only = self._store.read_only
        #: The directory the workspace's file actions serve.
        self.files_root: Path = self._store.files_dir
        found = {RECORDS, SNAPSHOTS, COMPARE_AND_SET, EVENTS, DURABLE, MULTI_PROCESS, LINKS,
                 CHECKPOINTS, LEASES, ARTIFACTS, RANGE_READS, RETENTION, EVENT_SEQUENCES,
                 READ_ONLY_MODE, FILES}
        if self._store.searchable:
            found.add(SEARCH)
        self._capabilities = frozenset(found)

    def __repr__(self) -> str:
        return f"<LocalWorkspaceBackend {str(self.path)!r}{' read-only' if self.read_only else ''}>"

    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    async def _call(self, fn: Any, *args: Any, size: int = 0) -> Any:
        """``fn(*args)`` on the store: right here when every lock is free at once and the
        payload is small (never waiting, so the loop is never blocked), else in a worker
        thread that may wait for another process's lock."""
        if size <= IMMEDIATE_BYTES:
            await anyio.lowlevel.checkpoint()  # other tasks run; a cancel lands before, not after
            try:
                result = self._store.run_now(fn, *args)
            except Busy:
                pass
            else:
                if self._store.checkpoint_due:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self._store.checkpoint)
                return result
        return await anyio.to_thread.run_sync(fn, *args)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    # -- records -------------------------------------------------------------------------
    async def put_record(self, collection: str, key: str, value: Mapping[str, Any]) -> None:
        text = dump_value(value, f"record {collection}/{key}")
        check_name(collection, "collection")
        check_name(key, "key")
        await self._call(self._store.put_record, collection, key, text,
                         searchable_text(json.loads(text)), size=len(text))

    async def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        text = await self._call(self._store.get_record, collection, key)
        return None if text is None else json.loads(text)

    async def search_records(self, query: str, *, collection: str | None = None,
                             limit: int = 20) -> list[dict[str, Any]]:
        rows = await self._in_thread(self._store.search, query, collection, limit)
        return [{"collection": coll, "key": key, "value": json.loads(text), "score": score}
                for coll, key, text, score in rows]

    # -- links ---------------------------------------------------------------------------
    async def add_link(self, source: tuple[str, str], target: tuple[str, str],
                       relation: str = "related", data: Mapping[str, Any] | None = None) -> None:
        text = dump_value(data or {}, f"link {relation}")
        await self._call(self._store.add_link, check_ref(source), check_ref(target),
                         check_name(relation, "relation"), text, size=len(text))

    async def read_links(self, ref: tuple[str, str], *, relation: str | None = None,
                         direction: str = "out") -> list[dict[str, Any]]:
        if direction not in ("out", "in"):
            raise WorkspaceError(f"direction must be 'out' or 'in', got {direction!r}")
        rows = await self._call(self._store.read_links, check_ref(ref), relation, direction)
        return [{"source": (sc, sk), "target": (tc, tk), "relation": rel,
                 "data": json.loads(data)} for sc, sk, tc, tk, rel, data in rows]

    # -- snapshots and checkpoints -------------------------------------------------------
    async def read_snapshot(self, key: str) -> tuple[int, dict[str, Any]] | None:
        row = await self._call(self._store.read_snapshot, key)
        return None if row is None else (row[0], json.loads(row[1]))

    async def write_snapshot(self, key: str, value: Mapping[str, Any], *,
                             expected_state_version: int | None = None) -> int:
        text = dump_value(value, f"snapshot {key}")
        check_name(key, "snapshot key")
        return await self._call(self._store.write_snapshot, key, text,
                                check_version(expected_state_version), size=len(text))

    async def save_checkpoint(self, key: str, label: str, *,
                              expected_state_version: int | None = None) -> int:
        return await self._call(self._store.save_checkpoint, check_name(key, "snapshot key"),
                                check_name(label, "checkpoint label"),
                                check_version(expected_state_version))

    async def read_checkpoint(self, key: str, label: str) -> tuple[int, dict[str, Any]] | None:
        row = await self._call(self._store.read_checkpoint, key, label)
        return None if row is None else (row[0], json.loads(row[1]))

    async def list_checkpoints(self, key: str) -> list[dict[str, Any]]:
        rows = await self._call(self._store.list_checkpoints, key)
        return [{"label": label, "state_version": version} for label, version in rows]

    # -- leases --------------------------------------------------------------------------
    async def claim_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        return await self._call(self._store.claim_lease, check_name(name, "lease name"),
                                check_name(owner, "lease owner"), float(ttl))

    async def heartbeat_lease(self, name: str, token: str, ttl: float) -> Lease:
        return await self._call(self._store.heartbeat_lease, name, token, float(ttl))

    async def release_lease(self, name: str, token: str) -> bool:
        return await self._call(self._store.release_lease, name, token)

    async def read_lease(self, name: str) -> Lease | None:
        return await self._call(self._store.read_lease, name)

    # -- artifacts -----------------------------------------------------------------------
    async def put_artifact(self, data: bytes, *,
                           media_type: str = "application/octet-stream") -> dict[str, Any]:
        return await self._in_thread(self._store.put_artifact, bytes(data),
                                     check_name(media_type, "media_type"))

    async def read_artifact(self, artifact_id: str) -> bytes:
        return await self._in_thread(self._store.read_artifact, check_artifact_id(artifact_id))

    # -- events --------------------------------------------------------------------------
    async def append_event(self, execution_id: str, event_id: str,
                           payload: Mapping[str, Any]) -> int:
        text = dump_value(payload, f"event {event_id}")
        return await self._call(self._store.append_event, check_name(execution_id,
                                "execution_id"), check_name(event_id, "event_id"), text,
                                size=len(text))

    async def read_events(self, execution_id: str, *, after: int = 0, before: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._call(self._store.read_events, execution_id, int(after),
                                None if before is None else int(before), int(limit))
        return [{"execution_id": execution_id, "event_id": event_id, "sequence": sequence,
                 "payload": json.loads(payload)} for sequence, event_id, payload in rows]

    async def prune_events(self, execution_id: str, *, through: int) -> int:
        return await self._call(self._store.prune_events, execution_id, int(through))

    # -- checks and lifecycle ------------------------------------------------------------
    async def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check``: ``["ok"]`` for a sound store."""
        return await self._in_thread(self._store.integrity_check)

    async def aclose(self) -> None:
        """Close the connection (idempotent); the files stay."""
        await self._in_thread(self._store.close)

    def close(self) -> None:
        """:meth:`aclose` from sync code."""
        self._store.close()
