"""``memory``: an in-memory WorkspaceBackend - the reference implementation for backend
authors, proven by :class:`agently_core.testing.WorkspaceBackendConformance`.

Values are stored as JSON text, so they are kept by value and anything a durable backend
could not store is refused here too. One :class:`anyio.Lock` guards every change, which
makes snapshot compare-and-set and event idempotency atomic between concurrent tasks of one
event loop. Nothing survives :meth:`MemoryWorkspaceBackend.aclose`; the backend is not
``durable`` and not ``multi_process``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio

from ..workspace import (
    COMPARE_AND_SET,
    EVENTS,
    RECORDS,
    SNAPSHOTS,
    VersionConflict,
    WorkspaceClosedError,
    WorkspaceError,
)


class MemoryWorkspaceBackend:
    """Records, versioned snapshots and ordered events in the memory of one process."""

    name = "memory"

    def __init__(self, **options: Any) -> None:
        if options:
            raise WorkspaceError(
                f"the memory workspace backend takes no options, got {', '.join(options)}")
        self._lock = anyio.Lock()
        self._records: dict[tuple[str, str], str] = {}
        self._snapshots: dict[str, tuple[int, str]] = {}
        self._events: dict[str, list[tuple[int, str, str]]] = {}  # (sequence, event_id, payload)
        self._event_index: dict[tuple[str, str], int] = {}
        self._closed = False

    def capabilities(self) -> frozenset[str]:
        return frozenset({RECORDS, SNAPSHOTS, COMPARE_AND_SET, EVENTS})

    # -- records -------------------------------------------------------------------------
    async def put_record(self, collection: str, key: str, value: Mapping[str, Any]) -> None:
        text = _dump(value, f"record {collection}/{key}")
        async with self._lock:
            self._check_open()
            self._records[(_name(collection, "collection"), _name(key, "key"))] = text

    async def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        self._check_open()
        text = self._records.get((collection, key))
        return None if text is None else json.loads(text)

    # -- snapshots -----------------------------------------------------------------------
    async def read_snapshot(self, key: str) -> tuple[int, dict[str, Any]] | None:
        self._check_open()
        stored = self._snapshots.get(key)
        return None if stored is None else (stored[0], json.loads(stored[1]))

    async def write_snapshot(self, key: str, value: Mapping[str, Any], *,
                             expected_state_version: int | None = None) -> int:
        text = _dump(value, f"snapshot {key}")
        _name(key, "snapshot key")
        if expected_state_version is not None and (
                isinstance(expected_state_version, bool)
                or not isinstance(expected_state_version, int)):
            raise WorkspaceError(
                f"expected_state_version must be an int, got {expected_state_version!r}")
        async with self._lock:
            self._check_open()
            current = self._snapshots.get(key, (0, ""))[0]
            if expected_state_version is not None and expected_state_version != current:
                raise VersionConflict(key, expected_state_version, current)
            self._snapshots[key] = (current + 1, text)
            return current + 1

    # -- events --------------------------------------------------------------------------
    async def append_event(self, execution_id: str, event_id: str,
                           payload: Mapping[str, Any]) -> int:
        text = _dump(payload, f"event {event_id}")
        _name(execution_id, "execution_id")
        _name(event_id, "event_id")
        async with self._lock:
            self._check_open()
            known = self._event_index.get((execution_id, event_id))
            if known is not None:
                return known
            events = self._events.setdefault(execution_id, [])
            sequence = events[-1][0] + 1 if events else 1
            events.append((sequence, event_id, text))
            self._event_index[(execution_id, event_id)] = sequence
            return sequence

    async def read_events(self, execution_id: str, *, after: int = 0,
                          limit: int = 100) -> list[dict[str, Any]]:
        self._check_open()
        if limit <= 0:
            return []
        events = self._events.get(execution_id, [])
        # sequences are 1, 2, 3... so the first event after ``after`` is at index ``after``
        start = max(0, int(after))
        return [
            {"execution_id": execution_id, "event_id": event_id, "sequence": sequence,
             "payload": json.loads(text)}
            for sequence, event_id, text in events[start:start + limit]
        ]

    # -- lifecycle -----------------------------------------------------------------------
    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            self._records.clear()
            self._snapshots.clear()
            self._events.clear()
            self._event_index.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise WorkspaceClosedError("the memory workspace backend is closed")


def _dump(value: Any, what: str) -> str:
    if not isinstance(value, Mapping):
        raise WorkspaceError(f"{what}: the value must be a JSON object, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WorkspaceError(f"{what}: the value is not JSON-serialisable: {exc}") from None


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise WorkspaceError(f"{what} must be a non-empty string, got {value!r}")
    return value


__all__ = ["MemoryWorkspaceBackend"]
