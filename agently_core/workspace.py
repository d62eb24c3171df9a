"""Workspace vocabulary shared by every :class:`~agently_core.protocols.WorkspaceBackend`:
its exceptions and the names of its capabilities.

This module stays tiny (no pydantic, no I/O) so a backend can import it at no cost.

The contract, proven for any backend by
:class:`agently_core.testing.WorkspaceBackendConformance`:

* **Records** ``put_record(collection, key, value)`` / ``get_record(collection, key)``: JSON
  objects stored by value (later changes to the caller's dict do not leak in, changes to a
  returned dict do not leak back); ``get_record`` returns ``None`` for a missing key;
  collections are separate namespaces.
* **Snapshots** ``read_snapshot(key)`` returns ``(state_version, value)`` or ``None``;
  ``write_snapshot(key, value, expected_state_version=None)`` returns the new version.
  A missing snapshot has version ``0`` and each write raises the version. With
  ``expected_state_version`` the write is a compare-and-set: it succeeds only when the
  stored version equals it and otherwise raises :class:`VersionConflict`, changing nothing.
  Among concurrent writers that expect the same version exactly one wins.
* **Events** ``append_event(execution_id, event_id, payload)`` returns the event's sequence
  number; sequences increase within an execution; appending an ``event_id`` again returns
  its first sequence and stores nothing new. ``read_events(execution_id, after=0,
  limit=100)`` returns up to ``limit`` events with ``sequence > after`` in order, each a
  dict ``{"execution_id", "event_id", "sequence", "payload"}``.
* ``aclose()`` releases the backend; calling it again does nothing.
"""

from __future__ import annotations

from .errors import AgentlyError

#: Durable records: ``put_record``/``get_record``.
RECORDS = "records"
#: Versioned snapshots: ``read_snapshot``/``write_snapshot``.
SNAPSHOTS = "snapshots"
#: ``write_snapshot(..., expected_state_version=N)`` is an atomic compare-and-set.
COMPARE_AND_SET = "compare_and_set"
#: Ordered, idempotent runtime events: ``append_event``/``read_events``.
EVENTS = "events"
#: Data survives ``aclose()`` and a new process (a file or a database, not memory).
DURABLE = "durable"
#: Several processes may share one store safely.
MULTI_PROCESS = "multi_process"

#: What every backend must offer.
REQUIRED_CAPABILITIES = frozenset({RECORDS, SNAPSHOTS, COMPARE_AND_SET, EVENTS})


class WorkspaceError(AgentlyError):
    """Base class for workspace errors."""


class VersionConflict(WorkspaceError):
    """``write_snapshot`` expected one state version and found another; nothing was written.

    ``key``, ``expected`` and ``actual`` (``0`` when the snapshot does not exist) say which.
    """

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(key, expected, actual)
        self.key = key
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return (f"snapshot {self.key!r} is at state version {self.actual}, "
                f"not the expected {self.expected}; read it again and retry")


class WorkspaceClosedError(WorkspaceError):
    """The backend was closed with ``aclose()``."""


__all__ = [
    "COMPARE_AND_SET",
    "DURABLE",
    "EVENTS",
    "MULTI_PROCESS",
    "RECORDS",
    "REQUIRED_CAPABILITIES",
    "SNAPSHOTS",
    "VersionConflict",
    "WorkspaceClosedError",
    "WorkspaceError",
]
