"""The planning and execution handler contract: one run context and two requests.

Every round of the action loop, the flow builds an :class:`ActionRunContext` (who runs,
which round, what happened so far) and asks

* the planner (a planning handler, :data:`ActionPlanningHandler`) with an
  :class:`ActionPlanningRequest` (the visible actions and the planning protocol): it
  answers with the round's decision;
* the execution handler (:data:`ActionExecutionHandler`, when the host registered one)
  with an :class:`ActionExecutionRequest` (the round's calls, ``async_call_action`` to run
  one through the gate, the concurrency and the time left): it answers with one
  :class:`ActionResult` per call.

Both are ``(context, request)``; there is no other signature. The objects are typed
(attribute access, ``context.round_index``) and read-only mappings of their fields as well
(``context["round_index"]``, ``request.get("action_list")``), so planners written against
either style see the same values.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from .events import EventCenter
    from .models import ActionCall, ActionRecord

__all__ = [
    "ActionExecutionHandler",
    "ActionExecutionRequest",
    "ActionPlanningHandler",
    "ActionPlanningRequest",
    "ActionResult",
    "ActionRunContext",
]


class _Fields(Mapping[str, Any]):
    """A dataclass that reads like a mapping of its fields (never written through it)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.__dataclass_fields__  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (live objects such as ``action`` included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class ActionRunContext(_Fields):
    """What a planning or execution handler knows about the run, in one round.

    ``prompt``: what the run was asked (the request given to ``input``/``run``);
    ``settings``: the run's loop settings (``max_rounds``, ``concurrency``,
    ``planning_protocol``, ``timeout``); ``agent_name``; ``round_index`` (0 first) of
    ``max_rounds``; ``done_plans``: every earlier call as ``{"round_index", "action",
    "purpose", "status"}``; ``last_round_records``: the previous round's records as
    dicts (an instruction-heavy call as its compact digest); ``action``: the agent's
    :class:`~agently_core.agent.Action` (its actions' schemas, artifacts); ``runtime``: the
    ActionRuntime of the run; ``run_id`` (the same in every round and after a resume) and
    ``execution_id``; ``history``: every earlier round, oldest first (see
    :class:`~agently_core.protocols.Planner`); ``env_state``: the environment's description
    or None; ``events``: the run's :class:`~agently_core.events.EventCenter`."""

    prompt: Any = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    agent_name: str = ""
    round_index: int = 0
    max_rounds: int = 1
    done_plans: Sequence[Mapping[str, Any]] = ()
    last_round_records: Sequence[Mapping[str, Any]] = ()
    action: Any = None
    runtime: Any = None
    run_id: str = ""
    execution_id: str | None = None
    history: Sequence[Mapping[str, Any]] = ()
    env_state: str | None = None
    events: EventCenter | None = None

    def __repr__(self) -> str:  # no history, records or prompt: they may be large
        return (f"ActionRunContext(agent_name={self.agent_name!r}, run_id={self.run_id!r}, "
                f"round_index={self.round_index}, max_rounds={self.max_rounds})")


@dataclass(frozen=True, eq=False)
class ActionPlanningRequest(_Fields):
    """What a planning handler is asked for: the next decision among ``action_list`` (the
    visible actions, ``[{"name", "description", "kwargs": <JSON schema>}]``) in
    ``planning_protocol`` (``structured_plan`` or ``native_tool_calls``)."""

    action_list: Sequence[Mapping[str, Any]] = ()
    planning_protocol: str = "structured_plan"


@dataclass(frozen=True, eq=False)
class ActionExecutionRequest(_Fields):
    """What an execution handler is asked to run: ``action_calls`` (the round's
    :class:`~agently_core.models.ActionCall` objects, in the planner's order), at most
    ``concurrency`` at a time, within ``timeout`` seconds (what is left of the run's time
    bound, None without one). ``await async_call_action(call)`` runs one call through the
    agent's gate (unknown action, arguments, policy, approval) and returns its record;
    results a handler makes any other way are its own responsibility."""

    action_calls: Sequence[ActionCall] = ()
    async_call_action: Callable[[ActionCall], Awaitable[ActionRecord]] | None = None
    concurrency: int = 1
    timeout: float | None = None

    def __repr__(self) -> str:
        return (f"ActionExecutionRequest(action_calls={[c.action for c in self.action_calls]}, "
                f"concurrency={self.concurrency}, timeout={self.timeout})")


class ActionResult(TypedDict, total=False):
    """One call's outcome as an execution handler returns it (an
    :class:`~agently_core.models.ActionRecord` is one too). Results come in the order of
    ``request.action_calls``; ``call_id`` and ``action`` default to that call's. ``status``
    is ``success`` (the default without ``error``), ``failed``, ``blocked``, ``skipped`` or
    ``approval_required``; ``result`` the value, ``error``/``error_type`` why it failed."""

    call_id: str
    action: str
    status: str
    result: Any
    error: str | None
    error_type: str | None
    digest: dict[str, Any] | None
    artifact_refs: list[dict[str, Any]]
    meta: dict[str, Any]


#: ``async def handler(context, request) -> ActionDecision`` (or a raw decision the
#: runtime normalises: a plan, native tool calls, or the answer's text; a plain function
#: works too).
ActionPlanningHandler = Callable[[ActionRunContext, ActionPlanningRequest], Awaitable[Any]]
#: ``async def handler(context, request) -> list[ActionResult]`` (an ActionRecord is one).
ActionExecutionHandler = Callable[[ActionRunContext, ActionExecutionRequest],
                                  Awaitable[Sequence[ActionResult]]]
