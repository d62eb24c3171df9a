"""The history of an action loop's rounds, as planners see it (``context["history"]``).

One entry per round, oldest first::

    {"round_index": int,
     "model_message": <what the planner returned as "model_message" that round, or None>,
     "response": <the text it said beside its calls, or None>,
     "calls": [{"id", "action", "kwargs"}],
     "invalid": [{"call_id", "action", "error"}],
     "records": [<ActionRecord.model_dump(mode="json")>, ...]}

Records are in call order; a call that waited for approval shows its outcome, in its
place. Everything is rebuilt from a :class:`~agently_core.models.FlowResult`
(its rounds and records), so a run restored in another process has the same history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import ActionRecord, FlowResult, FlowRound


def records_by_round(result: FlowResult, start: int = 0) -> list[list[ActionRecord]]:
    """The records of each round of ``result`` from round position ``start`` on."""
    # A flow appends a round's records to ``result.records`` as it extends that round's
    # ``record_ids``, and only the last round ever grows: the records lie round by round.
    offset = sum(len(r.record_ids) for r in result.rounds[:start])
    rounds: list[list[ActionRecord]] = []
    for round_ in result.rounds[start:]:
        size = len(round_.record_ids)
        chunk = result.records[offset:offset + size]
        if [r.call_id for r in chunk] != round_.record_ids:  # laid out otherwise: by id
            ids = set(round_.record_ids)
            chunk = [r for r in result.records if r.call_id in ids
                     and r.round_index in (round_.round_index, None)]
        rounds.append(chunk)
        offset += size
    return rounds


def history_entry(round_: FlowRound, records: list[ActionRecord]) -> dict[str, Any]:
    """One round as a history entry (see the module's docstring)."""
    kept: list[ActionRecord] = []
    position: dict[str, int] = {}
    for record in records:  # a call that waited for approval: its place, its outcome
        at = position.get(record.call_id)
        if at is not None and kept[at].status == "approval_required":
            kept[at] = record
        else:
            position[record.call_id] = len(kept)
            kept.append(record)
    decision = round_.decision
    return {
        "round_index": round_.round_index,
        "model_message": decision.model_message,
        "response": decision.response,
        "calls": [{"id": c.id, "action": c.action, "kwargs": c.kwargs} for c in decision.calls],
        "invalid": [{"call_id": p.get("call_id"), "action": p.get("action"),
                     "error": p.get("error")} for p in decision.invalid],
        "records": [r.model_dump(mode="json") for r in kept],
    }


def history_of(result: FlowResult, start: int = 0) -> list[dict[str, Any]]:
    """The history entries of ``result``'s rounds from round position ``start`` on."""
    return [history_entry(round_, records) for round_, records in
            zip(result.rounds[start:], records_by_round(result, start), strict=True)]


__all__ = ["history_entry", "history_of", "records_by_round"]
