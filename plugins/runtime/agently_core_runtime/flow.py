"""The ``agently`` ActionFlow: rounds of plan -> approval gate -> execute."""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from typing import Any

from agently_core.models import ActionCall, ActionRecord, FlowResult, FlowRound


class AgentlyActionFlow:
    """Runs up to ``max_rounds`` rounds. Each round the runtime asks the planner; the
    dispatcher gates every call (unknown action, invalid arguments, approval) before any
    runs, then runs the approved ones with at most ``concurrency`` at once. The loop stops
    when the planner answers, when a call waits for approval, or at ``max_rounds``."""

    name = "agently"

    async def run(self, run: Any) -> FlowResult:
        result = FlowResult(request=_plain(run.request))
        done_plans: list[dict[str, Any]] = []
        last_round: list[dict[str, Any]] = []
        for round_index in range(run.max_rounds):
            context = {
                "agent_name": run.agent_name,
                "round_index": round_index,
                "max_rounds": run.max_rounds,
                "done_plans": list(done_plans),
                "last_round_records": last_round,
            }
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
                result.records.extend(records)
                round_.record_ids = [r.call_id for r in records]
                result.response = decision.response
                result.stop_reason = "response"
                return result
            records += await self._execute(run, context, decision.calls)
            round_.record_ids = [r.call_id for r in records]
            result.records.extend(records)
            last_round = [r.model_dump() for r in records]
            done_plans.extend(
                {"round_index": round_index, "action": r.action, "purpose": r.purpose,
                 "status": r.status}
                for r in records
            )
            if any(r.status == "approval_required" for r in records):
                result.stop_reason = "approval_required"
                return result
        result.stop_reason = "max_rounds"
        return result

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


def _invalid_record(problem: Mapping[str, Any], round_index: int) -> ActionRecord:
    return ActionRecord(
        call_id=problem.get("call_id") or "", action=problem.get("action") or "<missing>",
        status="failed", error_type="InvalidCall", error=str(problem.get("error")),
        round_index=round_index, started_at=time.time(),
    )


def _plain(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=repr)
