"""Behaviour protocols for every plugin type. Async-first, on anyio.

A factory registered through a hook in :mod:`agently_core.hookspecs` returns an object
that satisfies one of these protocols. They are structural: subclassing is not needed.
The conformance suites in :mod:`agently_core.testing` check them for real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .actions import ActionContext, FlowRun
    from .models import (
        ActionDecision,
        ActionSpec,
        EnvironmentRequirement,
        FlowResult,
    )
    from .workspace import Lease


@runtime_checkable
class ActionExecutor(Protocol):
    """Runs actions of one kind (``function``, ``python``, ``mcp``, ...).

    ``execute`` receives the spec, the validated keyword arguments and the live
    :class:`~agently_core.actions.ActionContext` (target object, effective policy, injected
    environment handles and resources). It returns the result value, or raises
    :class:`~agently_core.errors.ActionError` for a failure with a clear message. The
    dispatcher applies the timeout, turns exceptions into ``failed`` records and never lets
    them reach the caller.

    An executor may declare ``enforced_policy``: the :class:`~agently_core.models.Policy`
    fields it enforces itself (``network``, ``read_only``, ``max_memory_bytes``, ...). A
    call whose policy constrains a field the executor does not list is blocked before it
    runs, so a policy field is either enforced or refused, never silently ignored.
    """

    kind: str

    async def execute(self, spec: ActionSpec, kwargs: dict[str, Any],
                      context: ActionContext) -> Any: ...


@runtime_checkable
class ExecutionEnvironmentProvider(Protocol):
    """Starts, checks and releases live resources of one kind.

    ``ensure`` returns the live resource (kept by the manager, never put in a model);
    ``health_check`` answers with a real round trip; ``release`` frees everything
    ``ensure`` made and is called exactly once per resource.
    """

    kind: str

    async def ensure(self, requirement: EnvironmentRequirement) -> Any: ...

    async def health_check(self, requirement: EnvironmentRequirement, resource: Any) -> bool: ...

    async def release(self, requirement: EnvironmentRequirement, resource: Any) -> None: ...


@runtime_checkable
class Planner(Protocol):
    """Chooses the next calls. ``plan(context, request)`` returns the raw decision in either
    planning protocol:

    * ``structured_plan``: ``{"next_action": "execute" | "response", "action_calls":
      [{"action_id", "action_input", "purpose", "todo_suggestion"}], "response": ...}``
      (``execution_commands`` is accepted for ``action_calls``);
    * ``native_tool_calls``: ``{"tool_calls": [{"id", "function": {"name", "arguments"}}],
      "content": ...}`` as a chat model returns them (``arguments`` a JSON string or dict).

    ``context`` carries ``agent_name``, ``round_index``, ``max_rounds``, ``done_plans`` and
    ``last_round_records``; ``request`` carries ``input``, ``action_list`` (the visible
    schemas) and ``planning_protocol``.
    """

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class ActionRuntime(Protocol):
    """Owns the planning protocol: asks the planner and normalises what it says."""

    name: str
    planning_protocols: Sequence[str]

    async def plan(self, planner: Planner, context: Mapping[str, Any],
                   request: Mapping[str, Any]) -> ActionDecision: ...

    def normalize(self, raw: Any, *, protocol: str) -> ActionDecision: ...


@runtime_checkable
class ActionFlow(Protocol):
    """Drives rounds of plan -> approval gate -> execute for one request."""

    name: str

    async def run(self, run: FlowRun) -> FlowResult: ...


@runtime_checkable
class WorkspaceBackend(Protocol):
    """Durable records, versioned snapshots and ordered runtime events: what every backend
    offers. The full contract is in :mod:`agently_core.workspace`.

    ``write_snapshot`` is compare-and-set: with ``expected_state_version`` it succeeds
    only when the stored version matches, and raises
    :class:`~agently_core.workspace.VersionConflict` otherwise. ``append_event`` is
    idempotent by ``event_id`` and returns the event's sequence number.

    Optional parts come with a capability name in ``capabilities()`` and the methods of the
    matching protocol below: :class:`WorkspaceSearch` (``search``), :class:`WorkspaceLinks`
    (``links``), :class:`WorkspaceCheckpoints` (``checkpoints``), :class:`WorkspaceLeases`
    (``leases``), :class:`WorkspaceArtifacts` (``artifacts``), :class:`WorkspaceRetention`
    (``retention``); ``range_reads`` adds ``before=`` to ``read_events``.
    """

    def capabilities(self) -> frozenset[str]: ...

    async def put_record(self, collection: str, key: str, value: Mapping[str, Any]) -> None: ...

    async def get_record(self, collection: str, key: str) -> dict[str, Any] | None: ...

    async def read_snapshot(self, key: str) -> tuple[int, dict[str, Any]] | None: ...

    async def write_snapshot(self, key: str, value: Mapping[str, Any], *,
                             expected_state_version: int | None = None) -> int: ...

    async def append_event(self, execution_id: str, event_id: str,
                           payload: Mapping[str, Any]) -> int: ...

    async def read_events(self, execution_id: str, *, after: int = 0,
                          limit: int = 100) -> list[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class WorkspaceSearch(Protocol):
    """Capability ``search``: full-text search over records."""

    async def search_records(self, query: str, *, collection: str | None = None,
                             limit: int = 20) -> list[dict[str, Any]]: ...


@runtime_checkable
class WorkspaceLinks(Protocol):
    """Capability ``links``: links (and evidence links) between ``(collection, key)`` refs."""

    async def add_link(self, source: tuple[str, str], target: tuple[str, str],
                       relation: str = "related", data: Mapping[str, Any] | None = None
                       ) -> None: ...

    async def read_links(self, ref: tuple[str, str], *, relation: str | None = None,
                         direction: str = "out") -> list[dict[str, Any]]: ...


@runtime_checkable
class WorkspaceCheckpoints(Protocol):
    """Capability ``checkpoints``: labelled, immutable copies of snapshot versions."""

    async def save_checkpoint(self, key: str, label: str, *,
                              expected_state_version: int | None = None) -> int: ...

    async def read_checkpoint(self, key: str, label: str
                              ) -> tuple[int, dict[str, Any]] | None: ...

    async def list_checkpoints(self, key: str) -> list[dict[str, Any]]: ...


@runtime_checkable
class WorkspaceLeases(Protocol):
    """Capability ``leases``: exclusive, expiring claims with owner tokens and fences."""

    async def claim_lease(self, name: str, owner: str, ttl: float) -> Lease | None: ...

    async def heartbeat_lease(self, name: str, token: str, ttl: float) -> Lease: ...

    async def release_lease(self, name: str, token: str) -> bool: ...

    async def read_lease(self, name: str) -> Lease | None: ...


@runtime_checkable
class WorkspaceArtifacts(Protocol):
    """Capability ``artifacts``: content-addressed bytes for large payloads."""

    async def put_artifact(self, data: bytes, *,
                           media_type: str = "application/octet-stream") -> dict[str, Any]: ...

    async def read_artifact(self, artifact_id: str) -> bytes: ...


@runtime_checkable
class WorkspaceRetention(Protocol):
    """Capability ``retention``: delete old events without reusing their sequences."""

    async def prune_events(self, execution_id: str, *, through: int) -> int: ...
