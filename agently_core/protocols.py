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
    """Durable records, versioned snapshots and ordered runtime events.

    ``write_snapshot`` is compare-and-set: with ``expected_state_version`` it succeeds
    only when the stored version matches, and raises
    :class:`~agently_core.workspace.VersionConflict` otherwise. ``append_event`` is
    idempotent by ``event_id`` and returns the event's sequence number.
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
