"""Behaviour protocols for every plugin type. Async-first, on anyio.

A factory registered through a hook in :mod:`agently_core.hookspecs` returns an object
that satisfies one of these protocols. They are structural: subclassing is not needed.
The conformance suites in :mod:`agently_core.testing` check them for real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .action_handlers import ActionPlanningRequest, ActionRunContext
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


@dataclass(frozen=True, slots=True)
class ProviderHandle:
    """The provider's view of one ready resource, as ``async_health_check`` receives it.

    ``id`` is the handle id the manager's events and records show
    (:class:`~agently_core.models.EnvironmentHandle` ``.id``), ``requirement`` the
    requirement the resource was started for, and ``resource`` the live object the
    provider's ``ensure`` returned. It never leaves the manager and its provider: the
    :class:`~agently_core.models.EnvironmentHandle` that goes into events, records and
    snapshots carries ids and status only, never the resource.
    """

    id: str
    requirement: EnvironmentRequirement
    resource: Any = field(repr=False)

    @property
    def kind(self) -> str:
        return self.requirement.kind

    @property
    def scope(self) -> str:
        return self.requirement.scope

    @property
    def owner_id(self) -> str | None:
        return self.requirement.owner_id


@runtime_checkable
class ExecutionEnvironmentProvider(Protocol):
    """Starts, checks and releases live resources of one kind.

    * ``ensure(requirement)`` starts a resource and returns the live object (kept by the
      manager, never put in a model); on failure it raises with a clear message and leaves
      nothing behind.
    * ``async_health_check(handle)`` answers whether a ready resource still works, with a
      real round trip. The manager calls it before every reuse of a ready handle, with a
      :class:`ProviderHandle` (``handle.resource``, ``handle.requirement``, ``handle.id``);
      ``False`` or an exception makes the manager emit ``execution_environment.unhealthy``,
      release that resource and start a fresh one.
    * ``release(requirement, resource)`` frees everything ``ensure`` made; the manager calls
      it exactly once per resource.
    * optional: ``use_config(config)``, called once with the manager's
      :class:`~agently_core.config.Config` when the manager first makes the provider (a
      provider with settings of its own reads them there).
    """

    kind: str

    async def ensure(self, requirement: EnvironmentRequirement) -> Any: ...

    async def async_health_check(self, handle: ProviderHandle) -> bool: ...

    async def release(self, requirement: EnvironmentRequirement, resource: Any) -> None: ...


@runtime_checkable
class Planner(Protocol):
    """Chooses the next calls. ``plan(context, request)`` returns the raw decision of one
    round in either planning protocol:

    * ``structured_plan``: ``{"next_action": "execute" | "response", "action_calls":
      [{"action_id", "action_input", "purpose", "todo_suggestion"}], "response": ...}``
      (``execution_commands`` is accepted for ``action_calls``);
    * ``native_tool_calls``: ``{"tool_calls": [{"id", "type": "function", "function":
      {"name", "arguments"}}], "content": ...}`` as a chat model returns them
      (``arguments`` a JSON string or dict).

    A mapping answer may also carry ``model`` (the model's name), ``usage``
    (``{"input_tokens", "output_tokens"}``, plus ``requests`` when the round took more
    than one request) and ``model_message`` (JSON: the provider-native message to replay
    in later rounds); the runtime keeps them on the decision and the flow totals usage in
    ``FlowResult.usage``. An answer with neither calls nor text (``{"tool_calls": [],
    "content": None}``; a plan with no calls and no response) becomes a ``skipped``
    record (``meta["diagnostic_code"] == "action_runtime.native_tool_calls.empty"`` or
    ``"action_runtime.structured_plan.empty"``, no call id the model gave) and the loop
    asks again.

    ``context`` is an :class:`~agently_core.action_handlers.ActionRunContext` and
    ``request`` an :class:`~agently_core.action_handlers.ActionPlanningRequest`: typed
    objects that read like mappings too (``context.round_index`` or
    ``context["round_index"]``). ``request`` carries ``action_list`` (the visible actions:
    ``[{"name", "description", "kwargs": <JSON schema>}]``) and ``planning_protocol`` (the
    agent's loop setting). ``context`` carries ``prompt`` (the user's request),
    ``settings`` (the run's loop settings), ``agent_name``, ``round_index``,
    ``max_rounds``, ``done_plans``, ``last_round_records``, ``action`` (the agent's
    Action), ``runtime``, ``execution_id`` and:

    * ``run_id``: the run's id (its execution's), the same in every round and after a
      resume;
    * ``history``: every earlier round of the run, oldest first, each ``{"round_index",
      "model_message", "response", "calls": [{"id", "action", "kwargs"}], "invalid":
      [{"call_id", "action", "error"}], "records": [ActionRecord.model_dump(mode="json"),
      ...]}`` (records in call order, under the model's tool-call ids; an invalid call has
      a ``failed`` record with ``error_type="InvalidCall"``; a record with a ``digest`` is
      sent back as its digest, not its raw result). A planner rebuilds its transcript from
      it every round: it stays right across a pause/resume in another process;
    * ``env_state``: a string describing the agent's environment, or None (a model
      planner puts it in its system prompt);
    * ``events``: the run's :class:`~agently_core.events.EventCenter` (``await
      events.emit("model.request", "planner", ...)``).

    A failed model request (refused key, missing model, bad request, timeout, unreachable
    server, retries exhausted) raises :class:`~agently_core.errors.ModelError` with a
    message a person can act on and no key in it; the run ends ``failed`` with it.

    Optional: ``bind(agent)``, called when the agent takes the planner (a model planner
    registers its key there: ``agent.redactor.add(key)``), and ``generate(context,
    request)`` (:class:`OutputPlanner`, for ``@agent.auto_func``).
    """

    async def plan(self, context: ActionRunContext, request: ActionPlanningRequest) -> Any: ...


@runtime_checkable
class OutputPlanner(Protocol):
    """A planner that produces a value for ``@agent.auto_func`` with one model request:
    ``generate(context, request)``.

    ``request``: ``instruction`` (the function's docstring with its arguments filled in),
    ``function`` (its name), ``input`` (the arguments, JSON), ``output_schema`` (a JSON
    schema of an object; a value that is not an object is asked for under ``"result"``),
    ``attempt`` (0 first) and ``feedback`` (the earlier attempts' ``{"output", "error"}``:
    tell the model what was wrong). ``context``: ``agent_name``, ``run_id``, ``history``
    (of the action loop that ran first, or empty), ``env_state`` and ``events``, as for
    :meth:`Planner.plan`.

    Returns a mapping with ``output`` (the value, already parsed) or ``text`` (the model's
    text; the JSON in it is read tolerantly: a fenced block or an object inside chatty
    text), and optionally ``model`` and ``usage``. Failures raise
    :class:`~agently_core.errors.ModelError`, as ``plan`` does.
    """

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any: ...

    async def generate(self, context: Mapping[str, Any],
                       request: Mapping[str, Any]) -> Mapping[str, Any]: ...


@runtime_checkable
class ActionRuntime(Protocol):
    """Owns the planning protocol: asks the planner (with the round's context and request
    themselves, not copies) and normalises what it says."""

    name: str
    planning_protocols: Sequence[str]

    async def plan(self, planner: Planner, context: ActionRunContext,
                   request: ActionPlanningRequest) -> ActionDecision: ...

    def normalize(self, raw: Any, *, protocol: str) -> ActionDecision: ...


@runtime_checkable
class ActionFlow(Protocol):
    """Drives rounds of plan -> approval gate -> execute for one request: each round it
    builds an :class:`~agently_core.action_handlers.ActionRunContext` and asks
    ``run.runtime.plan(run.planner, context, ActionPlanningRequest(...))``, then runs the
    calls (through ``run.execution_handler`` with an
    :class:`~agently_core.action_handlers.ActionExecutionRequest` when one is set). It
    says where it is with ``run.enter(stage, round_index, calls)`` and keeps its result so
    far in ``run.progress``, so a run stopped at its time bound can say where it stalled."""

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
