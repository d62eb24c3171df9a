"""``memory``: an in-memory WorkspaceBackend - the reference implementation for backend
authors, proven by :class:`agently_core.testing.WorkspaceBackendConformance`.

Values are stored as JSON text, so they are kept by value and anything a durable backend
could not store is refused here too. One :class:`anyio.Lock` guards every change, which
makes snapshot compare-and-set, lease claims and event idempotency atomic between
concurrent tasks of one event loop. Leases expire by :func:`time.monotonic`. Nothing
survives :meth:`MemoryWorkspaceBackend.aclose`; the backend is not ``durable`` and not
``multi_process``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import anyio

from ..workspace import (
    ARTIFACTS,
    CHECKPOINTS,
    COMPARE_AND_SET,
    EVENT_SEQUENCES,
    EVENTS,
    LEASES,
    LINKS,
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


class MemoryWorkspaceBackend:
    """Records, versioned snapshots, leases and ordered events in the memory of one
    process. ``read_only=True`` gives an (empty) store that refuses every write."""

    name = "memory"

    def __init__(self, *, read_only: bool = False, **options: Any) -> None:
        if options:
            raise WorkspaceError(
                f"the memory workspace backend takes no options, got {', '.join(options)}")
        self.read_only = bool(read_only)
        self._lock = anyio.Lock()
        self._records: dict[tuple[str, str], str] = {}
        self._snapshots: dict[str, tuple[int, str]] = {}
        self._checkpoints: dict[str, dict[str, tuple[int, str]]] = {}
        self._links: dict[tuple[tuple[str, str], tuple[str, str], str], str] = {}
        self._leases: dict[str, tuple[Lease, float]] = {}  # name -> (lease, monotonic deadline)
        self._fences: dict[str, int] = {}
        self._artifacts: dict[str, tuple[bytes, str]] = {}
        self._events: dict[str, list[tuple[int, str, str]]] = {}  # (sequence, event_id, payload)
        self._heads: dict[str, int] = {}
        self._event_index: dict[tuple[str, str], int] = {}
        self._closed = False

    def capabilities(self) -> frozenset[str]:
        return frozenset({RECORDS, SNAPSHOTS, COMPARE_AND_SET, EVENTS, SEARCH, LINKS,
                          CHECKPOINTS, LEASES, ARTIFACTS, RANGE_READS, RETENTION,
                          EVENT_SEQUENCES, READ_ONLY_MODE})

    # -- records -------------------------------------------------------------------------
    async def put_record(self, collection: str, key: str, value: Mapping[str, Any]) -> None:
        text = dump_value(value, f"record {collection}/{key}")
        key = (check_name(collection, "collection"), check_name(key, "key"))
        async with self._writing():
            self._records[key] = text

    async def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        self._check_open()
        text = self._records.get((collection, key))
        return None if text is None else json.loads(text)

    async def search_records(self, query: str, *, collection: str | None = None,
                             limit: int = 20) -> list[dict[str, Any]]:
        self._check_open()
        words = set(query_words(query))
        if not words or limit <= 0:
            return []
        hits = []
        for (coll, key), text in self._records.items():
            if collection is not None and coll != collection:
                continue
            value = json.loads(text)
            found = query_words(searchable_text(value))
            if words <= set(found):
                score = sum(found.count(word) for word in words) / (1 + len(found))
                hits.append({"collection": coll, "key": key, "value": value, "score": score})
        hits.sort(key=lambda hit: (-hit["score"], hit["collection"], hit["key"]))
        return hits[:limit]

    # -- links ---------------------------------------------------------------------------
    async def add_link(self, source: tuple[str, str], target: tuple[str, str],
                       relation: str = "related", data: Mapping[str, Any] | None = None) -> None:
        text = dump_value(data or {}, f"link {relation}")
        entry = (check_ref(source), check_ref(target), check_name(relation, "relation"))
        async with self._writing():
            self._links.pop(entry, None)
            self._links[entry] = text  # newest last: links read back in the order last set

    async def read_links(self, ref: tuple[str, str], *, relation: str | None = None,
                         direction: str = "out") -> list[dict[str, Any]]:
        self._check_open()
        ref = check_ref(ref)
        side = 0 if direction == "out" else 1
        return [
            {"source": source, "target": target, "relation": rel, "data": json.loads(text)}
            for (source, target, rel), text in self._links.items()
            if (source, target)[side] == ref and relation in (None, rel)
        ]

    # -- snapshots -----------------------------------------------------------------------
    async def read_snapshot(self, key: str) -> tuple[int, dict[str, Any]] | None:
        self._check_open()
        stored = self._snapshots.get(key)
        return None if stored is None else (stored[0], json.loads(stored[1]))

    async def write_snapshot(self, key: str, value: Mapping[str, Any], *,
                             expected_state_version: int | None = None) -> int:
        text = dump_value(value, f"snapshot {key}")
        check_name(key, "snapshot key")
        check_version(expected_state_version)
        async with self._writing():
            current = self._snapshots.get(key, (0, ""))[0]
            if expected_state_version is not None and expected_state_version != current:
                raise VersionConflict(key, expected_state_version, current)
            self._snapshots[key] = (current + 1, text)
            return current + 1

    async def save_checkpoint(self, key: str, label: str, *,
                              expected_state_version: int | None = None) -> int:
        check_name(label, "checkpoint label")
        check_version(expected_state_version)
        async with self._writing():
            stored = self._snapshots.get(key)
            current = stored[0] if stored else 0
            if expected_state_version is not None and expected_state_version != current:
                raise VersionConflict(key, expected_state_version, current)
            if stored is None:
                raise WorkspaceError(f"snapshot {key!r} does not exist; nothing to checkpoint")
            labels = self._checkpoints.setdefault(key, {})
            if label in labels:
                if labels[label][0] != current:
                    raise CheckpointExists(f"checkpoint {label!r} of {key!r} holds state "
                                           f"version {labels[label][0]}, not {current}")
                return current
            labels[label] = stored
            return current

    async def read_checkpoint(self, key: str, label: str) -> tuple[int, dict[str, Any]] | None:
        self._check_open()
        stored = self._checkpoints.get(key, {}).get(label)
        return None if stored is None else (stored[0], json.loads(stored[1]))

    async def list_checkpoints(self, key: str) -> list[dict[str, Any]]:
        self._check_open()
        return [{"label": label, "state_version": version}
                for label, (version, _) in self._checkpoints.get(key, {}).items()]

    # -- leases --------------------------------------------------------------------------
    async def claim_lease(self, name: str, owner: str, ttl: float) -> Lease | None:
        check_name(name, "lease name")
        check_name(owner, "lease owner")
        async with self._writing():
            if self._live(name) is not None:
                return None
            fence = self._fences.get(name, 0) + 1
            self._fences[name] = fence
            lease = Lease(name, owner, secrets.token_hex(16), fence, ttl, time.time() + ttl)
            self._leases[name] = (lease, time.monotonic() + ttl)
            return lease

    async def heartbeat_lease(self, name: str, token: str, ttl: float) -> Lease:
        async with self._writing():
            held = self._live(name)
            if held is None or not secrets.compare_digest(held.token, token):
                raise LeaseLost(f"lease {name!r} is no longer held by this token")
            lease = Lease(name, held.owner, token, held.fence, ttl, time.time() + ttl)
            self._leases[name] = (lease, time.monotonic() + ttl)
            return lease

    async def release_lease(self, name: str, token: str) -> bool:
        async with self._writing():
            held = self._leases.get(name)
            if held is None or not secrets.compare_digest(held[0].token, token):
                return False
            del self._leases[name]
            return True

    async def read_lease(self, name: str) -> Lease | None:
        self._check_open()
        held = self._live(name)
        return None if held is None else replace(held, token="")  # the token stays secret

    def _live(self, name: str) -> Lease | None:
        held = self._leases.get(name)
        if held is None or time.monotonic() >= held[1]:
            return None
        return held[0]

    # -- artifacts -----------------------------------------------------------------------
    async def put_artifact(self, data: bytes, *,
                           media_type: str = "application/octet-stream") -> dict[str, Any]:
        artifact_id = "sha256:" + hashlib.sha256(data).hexdigest()
        async with self._writing():
            self._artifacts.setdefault(artifact_id, (bytes(data), media_type))
            stored_type = self._artifacts[artifact_id][1]
        return {"artifact_id": artifact_id, "size": len(data), "media_type": stored_type}

    async def read_artifact(self, artifact_id: str) -> bytes:
        self._check_open()
        stored = self._artifacts.get(check_artifact_id(artifact_id))
        if stored is None:
            raise MissingArtifact(f"no artifact {artifact_id!r}")
        return stored[0]

    # -- events --------------------------------------------------------------------------
    async def append_event(self, execution_id: str, event_id: str,
                           payload: Mapping[str, Any]) -> int:
        text = dump_value(payload, f"event {event_id}")
        check_name(execution_id, "execution_id")
        check_name(event_id, "event_id")
        async with self._writing():
            known = self._event_index.get((execution_id, event_id))
            if known is not None:
                return known
            sequence = self._heads.get(execution_id, 0) + 1
            self._heads[execution_id] = sequence
            self._events.setdefault(execution_id, []).append((sequence, event_id, text))
            self._event_index[(execution_id, event_id)] = sequence
            return sequence

    async def read_events(self, execution_id: str, *, after: int = 0, before: int | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        self._check_open()
        if limit <= 0:
            return []
        found = []
        for sequence, event_id, text in self._events.get(execution_id, []):
            if sequence <= after:
                continue
            if (before is not None and sequence >= before) or len(found) == limit:
                break
            found.append({"execution_id": execution_id, "event_id": event_id,
                          "sequence": sequence, "payload": json.loads(text)})
        return found

    async def prune_events(self, execution_id: str, *, through: int) -> int:
        async with self._writing():
            events = self._events.get(execution_id, [])
            kept = [event for event in events if event[0] > through]
            for _, event_id, _ in events[:len(events) - len(kept)]:
                self._event_index.pop((execution_id, event_id), None)
            self._events[execution_id] = kept
            return len(events) - len(kept)

    # -- lifecycle -----------------------------------------------------------------------
    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            for table in (self._records, self._snapshots, self._checkpoints, self._links,
                          self._leases, self._artifacts, self._events, self._event_index,
                          self._heads, self._fences):
                table.clear()

    def close(self) -> None:
        """Sync close (used when a :class:`~agently_core.workspace.Workspace` is refused)."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise WorkspaceClosedError("the memory workspace backend is closed")

    def _writing(self) -> _Writing:
        if self.read_only:
            raise ReadOnlyError("the memory workspace backend was opened read-only")
        return _Writing(self)


class _Writing:
    """``async with backend._writing():`` the lock, after checking the backend is open."""

    def __init__(self, backend: MemoryWorkspaceBackend) -> None:
        self._backend = backend

    async def __aenter__(self) -> None:
        await self._backend._lock.acquire()
        try:
            self._backend._check_open()
        except BaseException:
            self._backend._lock.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._backend._lock.release()


__all__ = ["MemoryWorkspaceBackend"]
