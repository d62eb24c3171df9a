"""What the observer keeps about open spans, and how it tells that a run has ended when
no ``run.completed`` event says so (its execution closed or paused)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import attributes as attr

#: Run ends a flow reports that are not errors.
CLEAN_STOPS = frozenset({"response", "max_rounds", "approval_required"})


@dataclass(slots=True, eq=False)
class OpenSpan:
    """An open span and what its events add up to."""

    span: Any
    start: int
    last: int
    index: int | None = None
    deltas: int = 0
    first_delta: int | None = None


@dataclass(slots=True, eq=False)
class OpenRun:
    """An open run span (``key`` None: the container of spans outside any run)."""

    key: str | None
    span: Any
    start: int
    last: int
    execution: Any = None  # weakref.ref of the Execution, for runs without run events
    explicit: bool = False  # seen in run.* events: run.completed ends it
    round: OpenSpan | None = None
    chats: list[OpenSpan] = field(default_factory=list)
    tools: dict[str, OpenSpan] = field(default_factory=dict)
    rounds: int = 0
    requests: int = 0
    responses: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    error_type: str | None = None

    def parent(self) -> Any:
        return self.round.span if self.round is not None else self.span


def settled(run: OpenRun) -> tuple[str, str | None, int, dict[str, Any]] | None:
    """``(stop reason, error type, end time, attributes)`` of a run whose execution closed
    or paused, else ``None``. A run the flow announced (``run.started``) waits
    for its ``run.completed`` unless its execution closed without one (cancelled)."""
    execution = run.execution() if run.execution is not None else None
    if execution is None:
        return ("aborted", "aborted", run.last, {}) if run.execution is not None else None
    if getattr(execution, "state", None) == "closed":
        result = getattr(execution, "result", None)
        closed = getattr(execution, "closed_at", None)
        end = max(run.last, int(closed * 1e9) if isinstance(closed, float) else run.last)
        stop = attr.identifier(getattr(result, "stop_reason", None))
        if stop is None:  # cancelled, or an exception went through the run
            return "aborted", "aborted", end, {}
        found = result_attributes(result)
        if stop in CLEAN_STOPS:
            return stop, None, end, found
        error = run.error_type or attr.error_name(getattr(result, "error", None)) or stop
        return stop, error, end, found
    if getattr(execution, "paused", False) and not run.explicit:
        return "approval_required", None, run.last, result_attributes(execution.result)
    return None


def result_attributes(result: Any) -> dict[str, Any]:
    """The round count and token totals of a FlowResult (its ``usage`` when it has one)."""
    rounds = getattr(result, "rounds", None)
    found = {} if not isinstance(rounds, list) else {attr.ROUNDS: len(rounds)}
    usage = getattr(result, "usage", None)
    if isinstance(usage, Mapping):
        found.update(attr.pick(usage, {key: value for key, value in attr.RUN_END_FIELDS.items()
                                       if key in {"input_tokens", "output_tokens",
                                                  "requests"}}))
    return found
