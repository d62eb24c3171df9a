"""The ``agently`` ActionFlow: rounds of plan -> approval gate -> execute.

A run paused on an approval can be exported (:meth:`AgentlyActionFlow.export_state`, JSON)
and resumed from that state in another process (:meth:`AgentlyActionFlow.resume_from`):
how durable executions continue where they stopped.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agently_core.models import (
    ActionCall,
    ActionRecord,
    ApprovalDecision,
    ApprovalRequest,
    FlowResult,
    FlowRound,
)


@dataclass
class _State:
    """Where a run is, so a run paused on an approval can carry on."""

    result: FlowResult
    done_plans: list[dict[str, Any]] = field(default_factory=list)
    last_round: list[dict[str, Any]] = field(default_factory=list)
    next_round: int = 0
    waiting: list[tuple[ActionCall, ApprovalRequest | None]] = field(default_factory=list)
    #: Ids of waiting calls whose arguments held secrets that were not saved (a run
    #: restored in another process cannot run them).
    unsaved: set[str] = field(default_factory=set)

#: The version of :meth:`AgentlyActionFlow.export_state`'s format.
STATE_VERSION = 1


class AgentlyActionFlow:
    """Runs up to ``max_rounds`` rounds. Each round the runtime asks the planner; the
    dispatcher gates every call (unknown action, invalid arguments, policy, approval)
    before any runs, then runs the approved ones with at most ``concurrency`` at once. The
    loop stops when the planner answers, at ``max_rounds``, or when a call waits for
    approval: then the run pauses (``run.pause``) and resumes where it stopped once a
    person decides."""

    name = "agently"

    async def run(self, run: Any) -> FlowResult:
        state = _State(result=FlowResult(request=_plain(run.request)))
        _keep(run, state)
        return await self._rounds(run, state)

    # -- durable state ---------------------------------------------------------------------
    def export_state(self, run: Any, *, redactor: Any = None) -> dict[str, Any] | None:
        """The state of ``run`` as JSON (``None`` if this flow did not run it): the result
        so far (rounds and records), the planner's history, the next round and the calls
        waiting for approval. With ``redactor`` secrets are masked; a waiting call whose
        arguments held one is marked ``arguments_saved: false`` (restored elsewhere, it
        gets a failed record instead of running with masked arguments)."""
        state = getattr(run, "flow_state", None)
        if not isinstance(state, _State):
            return None
        secrets: list[str] = []
        waiting = []
        for call, request in state.waiting:
            kwargs = _plain(call.kwargs)
            saved = call.id not in state.unsaved
            if redactor is not None:
                extra = redactor.secret_arguments(kwargs)
                secrets += extra
                saved = saved and redactor.redact(kwargs, extra) == kwargs
            waiting.append({"call": call.model_dump(mode="json"),
                            "request": None if request is None else request.model_dump(mode="json"),
                            "arguments_saved": saved})
        for round_ in state.result.rounds:
            if redactor is not None:
                for call in round_.decision.calls:
                    secrets += redactor.secret_arguments(_plain(call.kwargs))
        data = _plain({
            "version": STATE_VERSION,
            "result": state.result.model_dump(mode="json"),
            "done_plans": state.done_plans,
            "last_round": state.last_round,
            "next_round": state.next_round,
            "waiting": waiting,
        })
        return data if redactor is None else redactor.redact(data, secrets)

    async def resume_from(self, run: Any, state: Mapping[str, Any],
                          decision: ApprovalDecision) -> FlowResult:
        """Continue a run from :meth:`export_state`'s state, in this process: the waiting
        calls run (approved; those whose arguments were not saved get a failed record) or
        get blocked records (denied), then planning goes on with the restored history."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"flow state version {state.get('version')!r} is not "
                             f"{STATE_VERSION}; it cannot be restored here")
        restored = _State(
            result=FlowResult.model_validate(state["result"]),
            done_plans=[dict(p) for p in state.get("done_plans") or ()],
            last_round=[dict(r) for r in state.get("last_round") or ()],
            next_round=int(state.get("next_round") or 0),
        )
        for item in state.get("waiting") or ():
            call = ActionCall.model_validate(item["call"])
            request = item.get("request")
            restored.waiting.append(
                (call, None if request is None else ApprovalRequest.model_validate(request)))
            if not item.get("arguments_saved", True):
                restored.unsaved.add(call.id)
        _keep(run, restored)
        return await self._resume(run, restored, decision)

    async def _rounds(self, run: Any, state: _State) -> FlowResult:
        result = state.result
        while state.next_round < run.max_rounds:
            round_index = state.next_round
            state.next_round += 1
            context = self._context(run, state, round_index)
            request = {
                "input": run.request,
                "action_list": run.action_list(),
                "planning_protocol": run.planning_protocol,
            }
            try:
                decision = await run.runtime.plan(run.planner, context, request)
            except Exception as exc:
                result.stop_reason = "failed"
                result.error = f"planner failed in round {round_index}: {type(exc).__name__}: {exc}"
                return result
            round_ = FlowRound(round_index=round_index, decision=decision)
            result.rounds.append(round_)
            records = [_invalid_record(problem, round_index) for problem in decision.invalid]
            if decision.next_action == "response":
                self._add(state, round_, records, round_index)
                result.response = decision.response
                result.stop_reason = "response"
                return result
            records += await self._execute(run, context, decision.calls)
            self._add(state, round_, records, round_index)
            waiting = [r for r in records if r.status == "approval_required"]
            if waiting:
                return self._pause(run, state, decision.calls, waiting)
        result.stop_reason = "max_rounds"
        return result

    def _pause(self, run: Any, state: _State, calls: list[ActionCall],
               waiting: list[ActionRecord]) -> FlowResult:
        by_id = {call.id: call for call in calls}
        state.waiting = [(by_id[r.call_id], _request_of(r)) for r in waiting if r.call_id in by_id]
        state.result.stop_reason = "approval_required"
        if run.pause is not None:
            run.pause([request for _, request in state.waiting if request is not None],
                      lambda decision: self._resume(run, state, decision))
        return state.result

    async def _resume(self, run: Any, state: _State, decision: ApprovalDecision) -> FlowResult:
        """Run (approved) or block (denied) the calls that waited, then go on with the
        next rounds."""
        waiting, state.waiting = state.waiting, []
        unsaved, state.unsaved = state.unsaved, set()
        records: list[ActionRecord] = []
        if decision.decision == "approved":
            manager = run.dispatcher.manager
            for _, request in waiting:
                if request is not None and request.subject_type == "environment":
                    manager.grant(request.subject_id)
            calls = [call for call, _ in waiting if call.id not in unsaved]
            ran = iter(await run.dispatcher.dispatch_many(calls, concurrency=run.concurrency,
                                                          approved=True) if calls else [])
            records = [
                await run.dispatcher.record(
                    call, "failed", error_type="ArgumentsNotSaved",
                    error=f"action {call.action!r} was approved, but its arguments held "
                          "secrets, which are not saved with a durable execution; it can "
                          "only run in the process that paused it",
                    approval_request_id=request.id if request else None)
                if call.id in unsaved else next(ran)
                for call, request in waiting
            ]
        else:
            who = f" by {decision.actor}" if decision.actor else ""
            reason = f": {decision.reason}" if decision.reason else ""
            records = [
                await run.dispatcher.record(call, "blocked", error_type="ApprovalDenied",
                                            error=f"action {call.action!r} was denied{who}{reason}",
                                            approval_request_id=request.id if request else None)
                for call, request in waiting
            ]
        if records:
            round_ = state.result.rounds[-1]
            self._add(state, round_, records, records[0].round_index or 0)
        if any(r.status == "approval_required" for r in records):
            return self._pause(run, state, [c for c, _ in waiting],
                               [r for r in records if r.status == "approval_required"])
        return await self._rounds(run, state)

    def _context(self, run: Any, state: _State, round_index: int) -> dict[str, Any]:
        return {
            "agent_name": run.agent_name,
            "round_index": round_index,
            "max_rounds": run.max_rounds,
            "done_plans": list(state.done_plans),
            "last_round_records": state.last_round,
            "execution_id": getattr(run.execution, "id", None),
        }

    @staticmethod
    def _add(state: _State, round_: FlowRound, records: list[ActionRecord],
             round_index: int) -> None:
        round_.record_ids.extend(r.call_id for r in records)
        state.result.records.extend(records)
        state.last_round = [_for_planner(r) for r in records]
        state.done_plans.extend(
            {"round_index": round_index, "action": r.action, "purpose": r.purpose,
             "status": r.status}
            for r in records
        )

    async def _execute(self, run: Any, context: Mapping[str, Any],
                       calls: list[ActionCall]) -> list[ActionRecord]:
        if not calls:
            return []
        if run.execution_handler is None:
            return await run.dispatcher.dispatch_many(calls, concurrency=run.concurrency)
        request = {"action_calls": calls, "concurrency": run.concurrency,
                   "dispatcher": run.dispatcher}
        try:
            produced = run.execution_handler(context, request)
            if inspect.isawaitable(produced):
                produced = await produced
            return [r if isinstance(r, ActionRecord) else ActionRecord.model_validate(r)
                    for r in produced or []]
        except Exception as exc:
            now = time.time()
            return [
                ActionRecord(call_id=c.id, action=c.action, status="failed", kwargs=c.kwargs,
                             purpose=c.purpose, round_index=c.round_index, started_at=now,
                             error_type=type(exc).__name__,
                             error=f"execution handler failed: {type(exc).__name__}: {exc}")
                for c in calls
            ]


def _keep(run: Any, state: _State) -> None:
    """Keep the run's state on the run (``FlowRun.flow_state``) for :meth:`export_state`."""
    try:
        run.flow_state = state
    except AttributeError:  # a run object that cannot hold it: not exportable
        pass


def _for_planner(record: ActionRecord) -> dict[str, Any]:
    """How the next round sees a record: whole, or, for an instruction-heavy action (code,
    a shell line, a query), its compact digest instead of the full code and output (both
    stay readable as artifacts)."""
    if record.digest is None:
        return record.model_dump()
    return {"call_id": record.call_id, "action": record.action, "status": record.status,
            "purpose": record.purpose, "round_index": record.round_index,
            "error": record.error, "digest": record.digest}


def _request_of(record: ActionRecord) -> ApprovalRequest | None:
    data = (record.meta or {}).get("approval_request")
    return ApprovalRequest.model_validate(data) if data else None


def _invalid_record(problem: Mapping[str, Any], round_index: int) -> ActionRecord:
    return ActionRecord(
        call_id=problem.get("call_id") or "", action=problem.get("action") or "<missing>",
        status="failed", error_type="InvalidCall", error=str(problem.get("error")),
        round_index=round_index, started_at=time.time(),
    )


def _plain(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=repr)
