"""The action registry: specs beside the live objects that run them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ActionNotFoundError

if TYPE_CHECKING:
    from .dispatch import ActionDispatcher
    from .events import EventCenter
    from .models import ActionCall, ActionRecord, ActionSpec, FlowResult, Policy
    from .protocols import ActionExecutor, ActionRuntime, Planner


@dataclass(slots=True)
class ActionContext:
    """The live side of one call, handed to the executor (and to a function that declares
    an ``action_context`` parameter). Never serialised."""

    call: ActionCall
    spec: ActionSpec
    policy: Policy
    target: Any = None
    agent: Any = None
    events: EventCenter | None = None
    execution_environment_handles: dict[str, Any] = field(default_factory=dict)
    execution_environment_resources: dict[str, Any] = field(default_factory=dict)
    #: Artifacts the executor produced, stored (redacted) by the dispatcher after the call.
    pending_artifacts: list[tuple[str, Any, str]] = field(default_factory=list)
    #: The agent's redactor (None: nothing to mask).
    redactor: Any = None
    #: Set by a :class:`~agently_core.queueing.Turnstile`: is the call waiting for a shared
    #: resource now, which one, and how long it has waited in all.
    queued: bool = False
    queued_for: str = ""
    queued_s: float = 0.0
    #: Did :meth:`redact` mask anything (the record's digest says so)?
    masked: bool = False

    def add_artifact(self, kind: str, content: Any, *, media_type: str = "text/plain") -> None:
        """Keep ``content`` (text, bytes or JSON-able data) as an artifact of this call,
        e.g. the full output behind a truncated result. The dispatcher redacts and stores
        it after the call; its ref lands in the record's ``artifact_refs`` and digest. Output
        that was cut at its end before it reached you goes through :meth:`redact` with
        ``cut=True`` first."""
        self.pending_artifacts.append((kind, content, media_type))

    def redact(self, value: Any, *, cut: bool = False) -> Any:
        """``value`` with the call's secrets masked (registered values, and the call's own
        secret-named arguments). Redact output *before* cutting it to a limit, so a cut can
        never leave part of a secret behind; ``cut=True`` for a text that was already cut
        at its end (masks a secret the cut split)."""
        redactor = self.redactor
        if redactor is None:
            return value
        extra = redactor.secret_arguments(self.call.kwargs) \
            if isinstance(self.call.kwargs, dict) else ()
        if isinstance(value, str):
            masked = redactor.cut_text(value, extra) if cut else redactor.text(value, extra)
        else:
            masked = redactor.redact(value, extra)
        if masked != value:
            self.masked = True
        return masked


@dataclass(slots=True)
class RegisteredAction:
    """One registered action: its spec, its target (a function, a tool name...), how to
    validate its arguments, and whether planners may see it."""

    spec: ActionSpec
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    target: Any = None
    visible: bool = False
    injects_context: bool = False
    executor: ActionExecutor | None = None
    policy: Policy | None = None  # cached global -> agent -> spec merge
    enforceable: Policy | None = None  # the cached policy, once its executor could enforce it


class ActionRegistry:
    """Actions by name, for one agent."""

    def __init__(self) -> None:
        self._actions: dict[str, RegisteredAction] = {}

    def add(self, entry: RegisteredAction, *, replace: bool = True) -> RegisteredAction:
        name = entry.spec.name
        if not replace and name in self._actions:
            raise ValueError(f"action {name!r} is already registered")
        previous = self._actions.get(name)
        if previous is not None and previous.visible:
            entry.visible = True
        self._actions[name] = entry
        return entry

    def get(self, name: str) -> RegisteredAction | None:
        return self._actions.get(name)

    def require(self, name: str) -> RegisteredAction:
        entry = self._actions.get(name)
        if entry is None:
            known = ", ".join(sorted(self._actions)) or "none"
            raise ActionNotFoundError(f"unknown action {name!r}; registered actions: {known}")
        return entry

    def remove(self, name: str) -> None:
        self._actions.pop(name, None)

    def names(self, *, visible_only: bool = False) -> list[str]:
        return [n for n, e in self._actions.items() if e.visible or not visible_only]

    def __iter__(self) -> Iterator[RegisteredAction]:
        return iter(list(self._actions.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __len__(self) -> int:
        return len(self._actions)


async def resolve_env_state(value: Any) -> str | None:
    """The text of an environment state: a string, ``None``, or a callable (sync or
    async) that returns one, asked each time. TypeError for anything else."""
    if callable(value):
        value = value()
        import inspect

        if inspect.isawaitable(value):
            value = await value
    if value is not None and not isinstance(value, str):
        raise TypeError(f"env_state must be a string or None, got {type(value).__name__}")
    return value


@dataclass
class FlowRun:
    """Everything an ActionFlow needs for one request."""

    request: Any
    agent_name: str
    runtime: ActionRuntime
    planner: Planner
    dispatcher: ActionDispatcher
    max_rounds: int = 5
    concurrency: int = 8
    planning_protocol: str = "structured_plan"
    execution_handler: Callable[..., Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: The flow execution the rounds run in (its environments and resources).
    execution: Any = None
    #: ``pause(approval_requests, resume)``: stop on pending approvals; ``await
    #: resume(decision)`` continues the run later and returns its FlowResult.
    pause: Callable[..., Any] | None = None
    #: ``await checkpoint(round_index, state)``: a round ended and the run goes on;
    #: ``state`` is the flow's ``export_state`` (redacted), which the agent saves with a
    #: durable execution that saves every round (``save_rounds``). ``None``: nothing is
    #: handed over mid-run (flows without it keep working).
    checkpoint: Callable[..., Any] | None = None
    #: The flow's own state of this run, for flows that can export it (``export_state``).
    flow_state: Any = None
    #: The bound of the whole run in seconds (``get_action_result(timeout=...)``), or None.
    timeout: float | None = None
    #: When that bound ends (``anyio.current_time()`` clock) while the bounded call runs.
    deadline: float | None = None
    #: Where the run is, kept current by the flow: ``"planning"`` or ``"executing"`` (with
    #: :attr:`round_index`, and the calls running in :attr:`running`). A run stopped at
    #: its time bound names it.
    stage: str = ""
    round_index: int | None = None
    running: list[ActionCall] = field(default_factory=list)
    #: The records of :attr:`running` calls that finished, by call id (kept while the
    #: bounded call runs, so a stop keeps them).
    finished: dict[str, ActionRecord] = field(default_factory=dict)
    #: The result so far (rounds and records), kept by flows that can report it.
    progress: FlowResult | None = None

    def action_list(self) -> list[dict[str, Any]]:
        """The schemas planners may choose from."""
        return self.dispatcher.action_list()

    def time_left(self) -> float | None:
        """Seconds left of the run's time bound (None without one)."""
        if self.deadline is None:
            return None
        import anyio

        return max(0.0, self.deadline - anyio.current_time())

    def enter(self, stage: str, round_index: int | None,
              running: list[ActionCall] | None = None) -> None:
        """Say where the run is (a flow calls it before planning and executing)."""
        self.stage, self.round_index, self.running = stage, round_index, list(running or ())
        self.finished = {}


def stalled_result(run: FlowRun, timeout: float, request: Any) -> FlowResult:
    """The result of a run stopped at its time bound: what it did so far (the records of
    the round's calls that finished included), then one ``failed`` record
    (``error_type="ActionLoopStalled"``) per call still running, or, when none was, one for
    the stage that gave no answer (``<planning>``, ``<executing>``, ``<starting>``), each
    saying where it stalled after how long."""
    from .models import ActionRecord, FlowResult, new_id

    result = (run.progress.model_copy(deep=True) if run.progress is not None
              else FlowResult(request=request))
    where = run.stage or "starting"
    if where == "starting":
        where = "starting the execution's environments"
    elif run.round_index is not None:
        where = f"{where} round {run.round_index}"
    recorded = {record.call_id for record in result.records}
    running = [call for call in run.running if call.id not in recorded]
    names = [call.action for call in running if call.id not in run.finished]
    detail = f" (unfinished calls: {', '.join(names)})" if names else ""
    result.stop_reason = "failed"
    result.error = (f"the action loop stalled: no result after {timeout:g} s, while "
                    f"{where}{detail}; it was stopped and its environments released")
    meta = {"diagnostic_code": "action_loop.stalled", "stage": run.stage or "starting",
            "timeout_s": timeout}
    now = time.time()
    records = [run.finished.get(call.id) or ActionRecord(
        call_id=call.id, action=call.action, status="failed", kwargs=call.kwargs,
        purpose=call.purpose, round_index=call.round_index, started_at=now,
        error_type="ActionLoopStalled", meta=meta,
        error=f"action {call.action!r} did not finish within the run's time bound of "
              f"{timeout:g} s ({where}); it was cancelled") for call in running]
    if not names:  # no call was cut short: the stage itself gave no result
        records.append(ActionRecord(
            call_id=new_id("call_"), action=f"<{run.stage or 'starting'}>", status="failed",
            round_index=run.round_index, started_at=now, error_type="ActionLoopStalled",
            meta=meta, error=f"the action loop stalled: no result after {timeout:g} s, "
                             f"while {where}"))
    result.records.extend(records)
    if run.stage == "executing" and result.rounds:
        result.rounds[-1].record_ids.extend(r.call_id for r in records)
    return result


async def announce_stalled(events: EventCenter | None, run_id: str, result: FlowResult) -> None:
    """``run.completed`` for a run stopped at its time bound (its flow could not say it
    ended): ``stop_reason`` failed, ``error_type`` ActionLoopStalled."""
    if events is None or not events.active:
        return
    usage = result.usage or {}
    await events.emit("run.completed", "agent", run_id=run_id, stop_reason="failed",
                      error_type="ActionLoopStalled", rounds=len(result.rounds),
                      records=len(result.records), input_tokens=usage.get("input_tokens"),
                      output_tokens=usage.get("output_tokens"), requests=usage.get("requests"))
