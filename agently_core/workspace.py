"""Workspaces: durable records, snapshots, leases and events behind one facade.

:class:`Workspace` (also ``agently_core.create_workspace(...)``) wraps a
:class:`~agently_core.protocols.WorkspaceBackend` chosen by name (``"local"``,
``"memory"``, any name a plugin registers through ``register_workspace_backends`` or code
registers with :func:`register_backend_provider`) or given as an object. This module also
holds the vocabulary every backend shares: capability names, :class:`Lease` and the
exceptions. It stays tiny (no pydantic, no anyio, no I/O at import) so a backend can import
it at no cost.

The facade speaks the reference's names; a backend keeps its own, shorter protocol names
(which third-party backends already implement): ``Workspace.put_snapshot`` calls the
backend's ``write_snapshot``, ``append_runtime_event`` / ``query_runtime_events`` call
``append_event`` / ``read_events``, ``put_artifact_ref`` calls ``put_artifact``, and
``link_evidence`` is ``add_link`` with relation :data:`EVIDENCE`. ``latest_checkpoint``,
``get_data`` and ``ref_envelope`` are built on the backend's other methods.

The backend contract, proven by :class:`agently_core.testing.WorkspaceBackendConformance`
(the optional parts only when the backend reports their capability):

* **Records** (required) ``put_record(collection, key, value)`` / ``get_record(collection,
  key)``: JSON objects stored by value (later changes to the caller's dict do not leak in,
  changes to a returned dict do not leak back); ``get_record`` returns ``None`` for a
  missing key; collections are separate namespaces.
* **Snapshots** (required) ``read_snapshot(key)`` returns ``(state_version, value)`` or
  ``None``; ``write_snapshot(key, value, expected_state_version=None)`` returns the new
  version. A missing snapshot has version ``0`` and each write raises the version. With
  ``expected_state_version`` the write is a compare-and-set: it succeeds only when the
  stored version equals it and otherwise raises :class:`VersionConflict`, changing nothing.
  Among concurrent writers that expect the same version exactly one wins.
* **Events** (required) ``append_event(execution_id, event_id, payload)`` returns the
  event's sequence number; sequences increase within an execution; appending an
  ``event_id`` again returns its first sequence and stores nothing new. ``read_events(
  execution_id, after=0, limit=100)`` returns up to ``limit`` events with ``sequence >
  after`` in order, each a dict ``{"execution_id", "event_id", "sequence", "payload"}``.
* ``aclose()`` releases the backend; calling it again does nothing; other calls on a closed
  backend should raise :class:`WorkspaceClosedError`.
* :data:`SEARCH` ``search_records(query, *, collection=None, limit=20)``: records whose
  text (the string values inside them) holds every word of ``query`` (case-insensitive),
  best first, as ``{"collection", "key", "value", "score"}``; an update re-indexes.
* :data:`LINKS` ``add_link(source, target, relation="related", data=None)`` between
  ``(collection, key)`` refs (idempotent per source, target and relation; ``data``
  replaced) and ``read_links(ref, *, relation=None, direction="out")`` (``"out"``: links
  from ``ref``; ``"in"``: links to it) as ``{"source", "target", "relation", "data"}``.
  An *evidence link* is a link with relation :data:`EVIDENCE`.
* :data:`CHECKPOINTS` ``save_checkpoint(key, label, *, expected_state_version=None)``
  freezes the snapshot's current version under ``label`` and returns that version (saving
  the same label at the same version again returns it; at another version raises
  :class:`CheckpointExists`; a missing snapshot raises :class:`WorkspaceError`);
  ``read_checkpoint(key, label)`` returns ``(state_version, value)`` or ``None``;
  ``list_checkpoints(key)`` returns ``[{"label", "state_version"}]`` oldest first.
* :data:`LEASES` ``claim_lease(name, owner, ttl)`` returns a :class:`Lease` with a fresh
  ``token`` or ``None`` while another unexpired lease holds ``name``; an expired lease may
  be claimed again, and each successful claim of a name gets a higher ``fence``.
  ``heartbeat_lease(name, token, ttl)`` extends the holder's lease or raises
  :class:`LeaseLost` (wrong token, released or expired); ``release_lease(name, token)``
  returns whether the token held it; ``read_lease(name)`` returns the unexpired lease
  (its ``token`` blank: only the holder knows it) or ``None``. Among concurrent claimants
  exactly one wins.
* :data:`ARTIFACTS` ``put_artifact(data, *, media_type=...)`` stores bytes by content and
  returns ``{"artifact_id": "sha256:<hex>", "size", "media_type"}``;
  ``read_artifact(artifact_id)`` returns the bytes or raises :class:`MissingArtifact`.
* :data:`RANGE_READS` ``read_events`` also takes ``before=`` (only ``sequence < before``).
* :data:`RETENTION` ``prune_events(execution_id, *, through)`` deletes the events with
  ``sequence <= through`` and returns how many; sequences are never reused afterwards.
* :data:`EVENT_SEQUENCES` sequences are dense per execution (1, 2, 3... with no gaps
  except where :data:`RETENTION` pruned) and never reused.
* :data:`READ_ONLY_MODE` the factory takes ``read_only=True``; that instance has
  ``read_only = True`` and every write raises :class:`ReadOnlyError` without changing data.
* :data:`FILES` the backend has ``files_root``: a directory the workspace's file actions
  serve.
* :data:`DURABLE` data survives ``aclose()`` and a new process; :data:`MULTI_PROCESS`
  several processes may share one store, with compare-and-set and leases still atomic.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AgentlyError

if TYPE_CHECKING:
    from .plugins import PluginManager

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
#: Full-text search over records: ``search_records``.
SEARCH = "search"
#: Links (and evidence links) between records: ``add_link``/``read_links``.
LINKS = "links"
#: Labelled, immutable copies of a snapshot version: ``save_checkpoint`` and friends.
CHECKPOINTS = "checkpoints"
#: Leases with owner tokens, TTLs and fences: ``claim_lease`` and friends.
LEASES = "leases"
#: Content-addressed blobs for large payloads: ``put_artifact``/``read_artifact``.
ARTIFACTS = "artifacts"
#: ``read_events(..., before=N)``: an upper bound on the sequence range.
RANGE_READS = "range_reads"
#: ``prune_events``: old events can be deleted without reusing their sequences.
RETENTION = "retention"
#: Event sequences are dense per execution (1, 2, 3...) and never reused.
EVENT_SEQUENCES = "event_sequences"
#: The factory takes ``read_only=True`` and that instance refuses every write.
READ_ONLY_MODE = "read_only_mode"
#: The backend has a ``files_root`` directory for the workspace's file actions.
FILES = "files"

#: What every backend must offer.
REQUIRED_CAPABILITIES = frozenset({RECORDS, SNAPSHOTS, COMPARE_AND_SET, EVENTS})
#: What ``require_distributed_provider=True`` insists on: executions saved by one process
#: may be claimed and continued by another.
DISTRIBUTED_CAPABILITIES = frozenset({COMPARE_AND_SET, LEASES, RANGE_READS, RETENTION,
                                      EVENT_SEQUENCES, DURABLE, MULTI_PROCESS})
#: The relation of an evidence link.
EVIDENCE = "evidence"
#: The ``format`` of an envelope made by :meth:`Workspace.ref_envelope`.
ENVELOPE_FORMAT = "agently.ref_envelope/1"
#: Characters of a payload a ref envelope keeps as its preview by default.
DEFAULT_PREVIEW_CHARS = 200


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


class ReadOnlyError(WorkspaceError):
    """A write was refused because the workspace (or its backend) is read-only."""


class CapabilityMissing(WorkspaceError):
    """The backend does not report a capability this call or setting needs."""


class LeaseLost(WorkspaceError):
    """The token no longer holds the lease: it expired, was released or was taken over."""


class MissingArtifact(WorkspaceError):
    """No artifact has that id."""


class CheckpointExists(WorkspaceError):
    """The checkpoint label is already used for another state version."""


@dataclass(frozen=True)
class Lease:
    """A held lease. ``token`` proves ownership (keep it secret between holder and store);
    ``fence`` increases with every successful claim of ``name``, so a resource guarded by
    the lease can refuse writes from an older holder. ``expires_at`` is wall-clock time
    for display; backends decide expiry by their own clock (see the backend's docs)."""

    name: str
    owner: str
    token: str
    fence: int
    ttl: float
    expires_at: float


# -- backend providers -----------------------------------------------------------------
_PROVIDERS: dict[str, Any] = {
    "memory": "agently_core.testing.memory_workspace:MemoryWorkspaceBackend",
}


def register_backend_provider(name: str, factory: Callable[..., Any] | str, *,
                              replace: bool = False) -> None:
    """Make ``Workspace(name, root=root, **options)`` (and ``agent.use_workspace(root,
    provider=name, provider_options=options)``) call ``factory(root, **options)`` in this
    process (``factory(**options)`` without a root). The factory returns a backend
    implementing :class:`~agently_core.protocols.WorkspaceBackend`.

    ``factory`` is a callable or a lazy ``"module:attribute"`` string. Names registered
    here are looked up before those plugins register through ``register_workspace_backends``.
    """
    if not isinstance(name, str) or not name:
        raise WorkspaceError(f"a backend provider name must be a non-empty string, got {name!r}")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise WorkspaceError(f"backend provider {name!r}: the factory must be callable or a "
                             f"'module:attribute' string, got {factory!r}")
    if name in _PROVIDERS and not replace:
        raise WorkspaceError(f"a backend provider named {name!r} is already registered; "
                             "pass replace=True to replace it")
    _PROVIDERS[name] = factory


def unregister_backend_provider(name: str) -> None:
    """Forget a provider registered with :func:`register_backend_provider`."""
    _PROVIDERS.pop(name, None)


def backend_provider_names() -> frozenset[str]:
    """The names registered with :func:`register_backend_provider` (``"memory"`` built in);
    plugins' backends are listed by the plugin manager."""
    return frozenset(_PROVIDERS)


def _load(factory: Any) -> Callable[..., Any]:
    if isinstance(factory, str):
        import importlib

        module, _, attr = factory.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    return factory


def create_backend(name: str | None = None, *, root: str | os.PathLike[str] | None = None,
                   plugins: PluginManager | None = None, **options: Any) -> Any:
    """A new backend by name: providers registered in code first, then plugins; with no
    name, the ``workspace_backend`` setting, else ``"local"`` when installed, else the
    only installed one. The factory is called as ``factory(root, **options)``, or
    ``factory(**options)`` when ``root`` is ``None``."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise WorkspaceError(f"a workspace root is a path or a string (a directory, a "
                             f"connection string), got {type(root).__name__}")
    if name is not None and name in _PROVIDERS:
        factory = _load(_PROVIDERS[name])
    else:
        if plugins is None:
            from .plugins import get_plugin_manager

            plugins = get_plugin_manager()
        if name is None:
            registration = plugins.select_default("workspace_backend", "local")
        else:
            registration = plugins.get("workspace_backend", name)
        factory = registration.load()
    try:
        backend = factory(**options) if root is None else factory(root, **options)
    except TypeError as exc:
        raise WorkspaceError(f"workspace backend {name or 'default'!r} refused its options "
                             f"{sorted(options)}: {exc}") from None
    if hasattr(backend, "__await__"):
        backend.close()  # type: ignore[union-attr]
        raise WorkspaceError(f"workspace backend {name!r}: the factory must return the "
                             "backend, not a coroutine; pass the backend object instead")
    return backend


# -- the facade --------------------------------------------------------------------------
Ref = tuple[str, str]


class Workspace:
    """A workspace over one backend.

    ``Workspace("local", root="./ws")``, ``Workspace("memory")``, ``Workspace(backend)``
    or ``Workspace()`` (the configured or only installed backend). ``root`` (a directory, a
    connection string) is the factory's first argument; other keyword options go to the
    backend's factory as they are. ``read_only=True`` refuses every write here with
    :class:`ReadOnlyError` and, for a named backend, also opens the backend read-only
    (backends reporting :data:`READ_ONLY_MODE`). ``files`` names the directory the file
    actions serve (default: the backend's ``files_root``). ``require`` lists capabilities
    the backend must report; ``require_distributed_provider=True`` adds
    :data:`DISTRIBUTED_CAPABILITIES`. A missing one raises :class:`CapabilityMissing`
    here, before anything is used (fail closed).

    Every data method is async. Use it as ``async with Workspace(...) as ws:`` or call
    :meth:`aclose` (or :meth:`close` from sync code).
    """

    def __init__(self, backend: Any = None, /, *, root: str | os.PathLike[str] | None = None,
                 read_only: bool = False, files: str | os.PathLike[str] | None = None,
                 plugins: PluginManager | None = None,
                 require: Iterable[str] = (), require_distributed_provider: bool = False,
                 **options: Any) -> None:
        self.read_only = bool(read_only)
        if backend is None or isinstance(backend, str):
            if read_only:
                options["read_only"] = True
            self.backend_name = backend
            self.backend = create_backend(backend, root=root, plugins=plugins, **options)
            self._owns_backend = True
        else:
            if root is not None:
                options["root"] = root
            if options:
                raise WorkspaceError(f"options {sorted(options)} are for a named backend; "
                                     "this one is already made")
            self.backend = backend
            self.backend_name = getattr(backend, "name", type(backend).__name__)
            self._owns_backend = False
        self._capabilities = frozenset(self.backend.capabilities())
        self.require_distributed_provider = bool(require_distributed_provider)
        needed = set(require) | set(REQUIRED_CAPABILITIES)
        if require_distributed_provider:
            needed |= DISTRIBUTED_CAPABILITIES
        missing = needed - self._capabilities
        if missing:
            self._close_now()
            why = (" (require_distributed_provider=True)" if require_distributed_provider
                   and missing & DISTRIBUTED_CAPABILITIES else "")
            raise CapabilityMissing(
                f"workspace backend {self.backend_name!r} does not report "
                f"{', '.join(sorted(missing))}{why}; it reports "
                f"{', '.join(sorted(self._capabilities))}")
        root = files if files is not None else getattr(self.backend, "files_root", None)
        #: The directory file actions serve, or ``None``.
        self.files_root: Path | None = None if root is None else Path(root)
        self.closed = False

    def __repr__(self) -> str:
        mode = " read-only" if self.read_only else ""
        return f"<Workspace {self.backend_name!r}{mode}>"

    # -- capabilities ------------------------------------------------------------------
    def capabilities(self) -> frozenset[str]:
        """What the backend reports (see the capability names in this module)."""
        return self._capabilities

    def supports(self, *capabilities: str) -> bool:
        return set(capabilities) <= self._capabilities

    def require(self, *capabilities: str) -> Workspace:
        """Raise :class:`CapabilityMissing` unless the backend reports all of them."""
        missing = set(capabilities) - self._capabilities
        if missing:
            raise CapabilityMissing(f"workspace backend {self.backend_name!r} does not report "
                                    f"{', '.join(sorted(missing))}")
        return self

    def _need(self, capability: str, what: str) -> Any:
        if self.closed:
            raise WorkspaceClosedError(f"the workspace is closed; {what} is not possible")
        if capability not in self._capabilities:
            raise CapabilityMissing(f"{what} needs the {capability!r} capability, which "
                                    f"workspace backend {self.backend_name!r} does not report")
        return self.backend

    def _write(self, capability: str, what: str) -> Any:
        backend = self._need(capability, what)
        if self.read_only:
            raise ReadOnlyError(f"the workspace is read-only; {what} was refused")
        return backend

    # -- records -----------------------------------------------------------------------
    async def put_record(self, collection: str, key: str, value: Mapping[str, Any]) -> None:
        await self._write(RECORDS, "put_record").put_record(collection, key, value)

    async def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        return await self._need(RECORDS, "get_record").get_record(collection, key)

    async def search(self, query: str, *, collection: str | None = None,
                     limit: int = 20) -> list[dict[str, Any]]:
        """Records holding every word of ``query``, best first (full-text search)."""
        backend = self._need(SEARCH, "search")
        return await backend.search_records(query, collection=collection, limit=_limit(limit))

    # -- links -------------------------------------------------------------------------
    async def link(self, source: Ref, target: Ref, relation: str = "related",
                   data: Mapping[str, Any] | None = None) -> None:
        """Link two records, ``(collection, key)`` each."""
        await self._write(LINKS, "link").add_link(_ref(source), _ref(target), relation, data)

    async def links(self, ref: Ref, *, relation: str | None = None,
                    direction: str = "out") -> list[dict[str, Any]]:
        if direction not in ("out", "in"):
            raise WorkspaceError(f"direction must be 'out' or 'in', got {direction!r}")
        return await self._need(LINKS, "links").read_links(_ref(ref), relation=relation,
                                                            direction=direction)

    async def link_evidence(self, claim: Ref, source: Ref, *, quote: str | None = None,
                            locator: str | None = None, **data: Any) -> None:
        """Record that ``source`` supports ``claim`` (an evidence link), optionally with the
        quoted passage and where it is (a page, a line range, a URL fragment)."""
        details = {**data, **({"quote": quote} if quote is not None else {}),
                   **({"locator": locator} if locator is not None else {})}
        await self.link(claim, source, EVIDENCE, details)

    async def evidence(self, claim: Ref) -> list[dict[str, Any]]:
        """The evidence links of ``claim``."""
        return await self.links(claim, relation=EVIDENCE)

    # -- snapshots and checkpoints -----------------------------------------------------
    async def read_snapshot(self, key: str) -> tuple[int, dict[str, Any]] | None:
        return await self._need(SNAPSHOTS, "read_snapshot").read_snapshot(key)

    async def put_snapshot(self, key: str, value: Mapping[str, Any], *,
                           expected_state_version: int | None = None) -> int:
        """Write a snapshot; with ``expected_state_version`` only if it still matches
        (else :class:`VersionConflict`, a compare-and-set guarded write). Returns the new
        state version."""
        return await self._write(SNAPSHOTS, "put_snapshot").write_snapshot(
            key, value, expected_state_version=expected_state_version)

    async def get_data(self, key: str, *, label: str | None = None) -> dict[str, Any] | None:
        """The data of snapshot ``key`` (of its checkpoint ``label`` when given), or
        ``None`` when there is none: the state to hand back to whatever restores it."""
        found = (await self.read_snapshot(key) if label is None
                 else await self.read_checkpoint(key, label))
        return None if found is None else found[1]

    async def checkpoint(self, key: str, label: str, *,
                         expected_state_version: int | None = None) -> int:
        """Freeze the snapshot's current version under ``label``; returns that version."""
        return await self._write(CHECKPOINTS, "checkpoint").save_checkpoint(
            key, label, expected_state_version=expected_state_version)

    async def read_checkpoint(self, key: str, label: str) -> tuple[int, dict[str, Any]] | None:
        return await self._need(CHECKPOINTS, "read_checkpoint").read_checkpoint(key, label)

    async def checkpoints(self, key: str) -> list[dict[str, Any]]:
        return await self._need(CHECKPOINTS, "checkpoints").list_checkpoints(key)

    async def latest_checkpoint(self, key: str) -> dict[str, Any] | None:
        """The newest checkpoint of snapshot ``key`` (the highest state version; of equal
        ones the last saved) as ``{"key", "label", "state_version", "data"}``, or ``None``
        when it has none. Restore from it with ``data`` or :meth:`restore_checkpoint`."""
        listed = await self.checkpoints(key)
        if not listed:
            return None
        newest = max(enumerate(listed), key=lambda item: (item[1]["state_version"], item[0]))[1]
        found = await self.read_checkpoint(key, newest["label"])
        if found is None:  # a backend that lists a label it cannot read
            raise WorkspaceError(f"checkpoint {newest['label']!r} of {key!r} is listed but "
                                 "cannot be read")
        return {"key": key, "label": newest["label"], "state_version": found[0],
                "data": found[1]}

    async def restore_checkpoint(self, key: str, label: str, *,
                                 expected_state_version: int | None = None) -> int:
        """Write the checkpoint's value as the snapshot's next version (versions only go
        up); compare-and-set on ``expected_state_version`` like :meth:`put_snapshot`."""
        found = await self.read_checkpoint(key, label)
        if found is None:
            raise WorkspaceError(f"snapshot {key!r} has no checkpoint {label!r}")
        return await self.put_snapshot(key, found[1],
                                       expected_state_version=expected_state_version)

    # -- leases ------------------------------------------------------------------------
    async def claim_lease(self, name: str, *, ttl: float = 30.0,
                          owner: str | None = None) -> Lease | None:
        """Claim ``name`` for ``ttl`` seconds; ``None`` while someone else holds it."""
        backend = self._write(LEASES, "claim_lease")
        return await backend.claim_lease(name, owner or default_owner(), _ttl(ttl))

    async def heartbeat_lease(self, lease: Lease, *, ttl: float | None = None) -> Lease:
        """Extend a held lease by ``ttl`` (default: its own) or raise :class:`LeaseLost`."""
        backend = self._write(LEASES, "heartbeat_lease")
        return await backend.heartbeat_lease(lease.name, lease.token,
                                             _ttl(lease.ttl if ttl is None else ttl))

    async def release_lease(self, lease: Lease) -> bool:
        return await self._write(LEASES, "release_lease").release_lease(lease.name,
                                                                         lease.token)

    async def read_lease(self, name: str) -> Lease | None:
        return await self._need(LEASES, "read_lease").read_lease(name)

    # -- artifacts ---------------------------------------------------------------------
    async def put_artifact_ref(self, data: bytes, *,
                               media_type: str = "application/octet-stream") -> dict[str, Any]:
        """Store a large payload by content and return its durable ref
        ``{"artifact_id", "size", "media_type"}``; keep the ref in a record or snapshot."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise WorkspaceError(f"artifacts are bytes, got {type(data).__name__}")
        if not isinstance(media_type, str) or not media_type:
            raise WorkspaceError(f"media_type must be a non-empty string, got {media_type!r}")
        return await self._write(ARTIFACTS, "put_artifact_ref").put_artifact(
            bytes(data), media_type=media_type)

    async def read_artifact(self, ref: str | Mapping[str, Any]) -> bytes:
        """The bytes behind an artifact id, an artifact ref or a :meth:`ref_envelope`."""
        if isinstance(ref, Mapping) and isinstance(ref.get("ref"), Mapping):
            ref = ref["ref"]
        artifact_id = ref.get("artifact_id") if isinstance(ref, Mapping) else ref
        return await self._need(ARTIFACTS, "read_artifact").read_artifact(
            check_artifact_id(artifact_id))

    async def ref_envelope(self, payload: Any, *, media_type: str | None = None,
                           preview_chars: int = DEFAULT_PREVIEW_CHARS) -> dict[str, Any]:
        """Keep a large payload behind a ref: store it as an artifact and return a compact
        envelope ``{"format", "ref", "encoding", "media_type", "size", "preview",
        "truncated"}`` to keep in records, snapshots and events instead of the payload.

        ``payload`` is bytes, a string or a JSON value (``encoding`` says which); ``size``
        is the stored bytes, ``preview`` the first ``preview_chars`` characters of the
        text (empty for bytes). :meth:`read_envelope` returns the payload as it was given
        and :meth:`read_artifact` the stored bytes."""
        if isinstance(preview_chars, bool) or not isinstance(preview_chars, int) or (
                preview_chars < 0):
            raise WorkspaceError(f"preview_chars must be an int >= 0, got {preview_chars!r}")
        if isinstance(payload, (bytes, bytearray, memoryview)):
            encoding, data, text = "bytes", bytes(payload), ""
            default_type = "application/octet-stream"
        elif isinstance(payload, str):
            encoding, text = "text", payload
            data, default_type = payload.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            try:
                text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise WorkspaceError(f"ref_envelope takes bytes, a string or a JSON value; "
                                     f"this payload is none of them: {exc}") from None
            encoding, data, default_type = "json", text.encode("utf-8"), "application/json"
        ref = await self.put_artifact_ref(data, media_type=media_type or default_type)
        return {"format": ENVELOPE_FORMAT, "ref": ref, "encoding": encoding,
                "media_type": ref["media_type"], "size": ref["size"],
                "preview": text[:preview_chars], "truncated": len(text) > preview_chars
                or encoding == "bytes"}

    async def read_envelope(self, envelope: Mapping[str, Any]) -> Any:
        """The payload behind a :meth:`ref_envelope`, read back through its ref: bytes, a
        string or the JSON value, as it was given."""
        if not isinstance(envelope, Mapping) or envelope.get("format") != ENVELOPE_FORMAT:
            raise WorkspaceError(f"not a ref envelope (format {ENVELOPE_FORMAT!r}): "
                                 f"{envelope!r:.200}")
        data = await self.read_artifact(envelope["ref"])
        encoding = envelope.get("encoding")
        if encoding == "bytes":
            return data
        if encoding == "text":
            return data.decode("utf-8")
        if encoding == "json":
            return json.loads(data)
        raise WorkspaceError(f"ref envelope encoding {encoding!r} is not bytes, text or json")

    # -- runtime events ------------------------------------------------------------------
    async def append_runtime_event(self, execution_id: str, event_id: str,
                                   payload: Mapping[str, Any]) -> int:
        """Append a RuntimeEvent fact for ``execution_id``; returns its sequence number.
        Appending ``event_id`` again returns its first sequence and stores nothing."""
        return await self._write(EVENTS, "append_runtime_event").append_event(
            execution_id, event_id, payload)

    async def query_runtime_events(self, execution_id: str, *, after: int = 0,
                                   before: int | None = None, limit: int = 100
                                   ) -> list[dict[str, Any]]:
        """A bounded range of ``execution_id``'s RuntimeEvents: ``after < sequence`` (and
        ``< before``), oldest first, at most ``limit``; each ``{"execution_id",
        "event_id", "sequence", "payload"}``."""
        if before is None:
            return await self._need(EVENTS, "query_runtime_events").read_events(
                execution_id, after=after, limit=_limit(limit))
        backend = self._need(RANGE_READS, "query_runtime_events(before=...)")
        return await backend.read_events(execution_id, after=after, before=before,
                                         limit=_limit(limit))

    async def prune_events(self, execution_id: str, *, through: int) -> int:
        """Delete the events with ``sequence <= through``; returns how many went."""
        return await self._write(RETENTION, "prune_events").prune_events(execution_id,
                                                                          through=through)

    def record_events(self, events: Any, patterns: Iterable[str] = ("*",)
                      ) -> Callable[[], None]:
        """Append every event emitted on ``events`` (an
        :class:`~agently_core.events.EventCenter`) inside a flow execution to this
        workspace, under the execution's id and idempotent by the event's id. Returns the
        function that stops recording."""
        if self.read_only:
            raise ReadOnlyError("the workspace is read-only; it cannot record events")

        async def record(event: Any) -> None:
            execution_id = event.payload.get("execution_id")
            if not isinstance(execution_id, str):
                from .execution import current_execution

                execution_id = getattr(current_execution.get(), "id", None)
            if execution_id and not self.closed:
                await self.append_runtime_event(execution_id, event.id,
                                                event.model_dump(mode="json"))

        return events.subscribe(record, tuple(patterns), name=f"workspace:{self.backend_name}")

    # -- lifecycle ---------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the backend if this workspace made it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._owns_backend:
            await self.backend.aclose()

    def close(self) -> None:
        """:meth:`aclose` from sync code."""
        from ._sync import run_sync

        run_sync(self.aclose)

    def _close_now(self) -> None:
        closer = getattr(self.backend, "close", None)
        if self._owns_backend and callable(closer):
            closer()

    async def __aenter__(self) -> Workspace:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def create_workspace(backend: Any = None, /, **options: Any) -> Workspace:
    """A :class:`Workspace`: ``create_workspace("local", root="./ws")``; the arguments
    are :class:`Workspace`'s."""
    return Workspace(backend, **options)


def default_owner() -> str:
    """``host:pid``: who claims a lease when no owner is given."""
    return f"{socket.gethostname()}:{os.getpid()}"


# -- helpers for backend authors: the same checks and text rules in every backend ---------
_WORD = re.compile(r"[^\W_]+")
_ARTIFACT_ID = re.compile(r"sha256:[0-9a-f]{64}")


def dump_value(value: Any, what: str) -> str:
    """JSON text of a JSON object (how backends keep values by value), or
    :class:`WorkspaceError` naming ``what``."""
    if not isinstance(value, Mapping):
        raise WorkspaceError(f"{what}: the value must be a JSON object, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise WorkspaceError(f"{what}: the value is not JSON-serialisable: {exc}") from None


def check_name(value: Any, what: str) -> str:
    """A non-empty string, or :class:`WorkspaceError`."""
    if not isinstance(value, str) or not value:
        raise WorkspaceError(f"{what} must be a non-empty string, got {value!r}")
    return value


def check_ref(ref: Any) -> Ref:
    """A ``(collection, key)`` record ref as a tuple, or :class:`WorkspaceError`."""
    if isinstance(ref, (tuple, list)) and len(ref) == 2:
        return (check_name(ref[0], "ref collection"), check_name(ref[1], "ref key"))
    raise WorkspaceError(f"a record ref is (collection, key), got {ref!r}")


def check_version(value: Any) -> int | None:
    """``None`` or an int state version, or :class:`WorkspaceError`."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise WorkspaceError(f"expected_state_version must be an int, got {value!r}")
    return value


def check_artifact_id(value: Any) -> str:
    """``"sha256:<64 hex>"``, or :class:`WorkspaceError`."""
    if not isinstance(value, str) or not _ARTIFACT_ID.fullmatch(value):
        raise WorkspaceError(f"an artifact id looks like 'sha256:<64 hex digits>', got {value!r}")
    return value


def searchable_text(value: Any) -> str:
    """What search indexes of a record: every string inside it, one per line."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(filter(None, (searchable_text(item) for item in value.values())))
    if isinstance(value, list):
        return "\n".join(filter(None, (searchable_text(item) for item in value)))
    return ""


def query_words(query: str) -> list[str]:
    """The words of a search query, case-folded: letters and digits; everything else
    (quotes, operators, ``*``, ``:``) separates words and has no meaning."""
    return _WORD.findall(query.casefold()) if isinstance(query, str) else []


def _ref(ref: Any) -> Ref:
    return check_ref(ref)


def _ttl(ttl: Any) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not (
            math.isfinite(ttl) and ttl > 0):
        raise WorkspaceError(f"a lease ttl is a positive number of seconds, got {ttl!r}")
    return float(ttl)


def _limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise WorkspaceError(f"limit must be an int >= 0, got {limit!r}")
    return limit


__all__ = [
    "ARTIFACTS",
    "CHECKPOINTS",
    "COMPARE_AND_SET",
    "DEFAULT_PREVIEW_CHARS",
    "DISTRIBUTED_CAPABILITIES",
    "DURABLE",
    "ENVELOPE_FORMAT",
    "EVENTS",
    "EVENT_SEQUENCES",
    "EVIDENCE",
    "FILES",
    "LEASES",
    "LINKS",
    "MULTI_PROCESS",
    "RANGE_READS",
    "READ_ONLY_MODE",
    "RECORDS",
    "REQUIRED_CAPABILITIES",
    "RETENTION",
    "SEARCH",
    "SNAPSHOTS",
    "CapabilityMissing",
    "CheckpointExists",
    "Lease",
    "LeaseLost",
    "MissingArtifact",
    "ReadOnlyError",
    "VersionConflict",
    "Workspace",
    "WorkspaceClosedError",
    "WorkspaceError",
    "backend_provider_names",
    "check_artifact_id",
    "check_name",
    "check_ref",
    "check_version",
    "create_backend",
    "create_workspace",
    "default_owner",
    "dump_value",
    "query_words",
    "register_backend_provider",
    "searchable_text",
    "unregister_backend_provider",
]
