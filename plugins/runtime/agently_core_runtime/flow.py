"""The ``agently`` ActionFlow: rounds of plan -> approval gate -> execute.

A run paused on an approval can be exported (:meth:`AgentlyActionFlow.export_state`, JSON)
and resumed from that state in another process (:meth:`AgentlyActionFlow.resume_from`):
how durable executions continue where they stopped. With ``run.checkpoint`` set, the
state is also handed over after every round the run continues past, and
:meth:`AgentlyActionFlow.continue_from` goes on from such a state at the next round (a
loop whose process died mid-run). The planning context's ``history`` is rebuilt from the
run's rounds and records, so a restored run replays the same history.

Events (on the run's EventCenter, ids and counts only): ``run.started`` (``resumed``
true when a paused run goes on), ``round.started``, ``round.completed`` and
``run.completed`` (also when the run pauses: ``stop_reason`` says so), as
docs/observability.md lists them; ``action.failed`` / ``action.skipped`` for the records
the flow makes itself (invalid and empty answers).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import anyio

from agently_core.action_handlers import (
    ActionExecutionRequest,
    ActionPlanningRequest,
    ActionRunContext,
)
from agently_core.actions import resolve_env_state
from agently_core.errors import ModelError
from agently_core.models import (
    ActionCall,
    ActionDecision,
    ActionRecord,
    ApprovalDecision,
    ApprovalRequest,
    FlowResult,
    FlowRound,
    new_id,
)
from agently_core.run_history import history_of


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
    #: The run's id (its execution's), the same in every round and after a resume.
    run_id: str = ""
    #: The history entries of the rounds planned so far (rebuilt from ``result``).
    history: list[dict[str, Any]] = field(default_factory=list)
    #: The class name of what failed the run (``run.completed``'s ``error_type``).
    error_type: str | None = None

#: The version of :meth:`AgentlyActionFlow.export_state`'s format (version 1, without
#: ``run_id``, is still restored).
STATE_VERSION = 2
_RESTORABLE = (1, 2)


class AgentlyActionFlow:
    """Runs up to ``max_rounds`` rounds. Each round the runtime asks the planner; the
    dispatcher gates every call (unknown action, invalid arguments, policy, approval)
    before any runs, then runs the approved ones with at most ``concurrency`` at once. The
    loop stops when the planner answers, at ``max_rounds``, or when a call waits for
    approval: then the run pauses (``run.pause``) and resumes where it stopped once a
    person decides."""

    name = "agently"

    async def run(self, run: Any) -> FlowResult:
        state = _State(result=FlowResult(request=_plain(run.request)),
                       run_id=getattr(run.execution, "id", None) or new_id("run_"))
        _keep(run, state)
        await _started(run, state, resumed=False)
        return await self._finish(run, state, await self._rounds(run, state))

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
            "run_id": state.run_id,
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
        restored = self._restored(run, state)
        return await self._continue(run, restored, decision)

    async def continue_from(self, run: Any, state: Mapping[str, Any]) -> FlowResult:
        """Continue a run from the state it handed to ``run.checkpoint`` after a round, in
        this process: planning goes on at the next round with the restored history;
        nothing of the rounds done runs again. ValueError for a state that waits for
        approval (that one resumes with :meth:`resume_from`)."""
        if state.get("waiting"):
            raise ValueError("this flow state waits for approval: resume it with "
                             "resume_from(run, state, decision)")
        restored = self._restored(run, state)
        await _started(run, restored, resumed=True)
        return await self._finish(run, restored, await self._rounds(run, restored))

    def _restored(self, run: Any, state: Mapping[str, Any]) -> _State:
        """:meth:`export_state`'s state as the run's own again."""
        if state.get("version") not in _RESTORABLE:
            raise ValueError(f"flow state version {state.get('version')!r} is not one of "
                             f"{_RESTORABLE}; it cannot be restored here")
        restored = _State(
            result=FlowResult.model_validate(state["result"]),
            done_plans=[dict(p) for p in state.get("done_plans") or ()],
            last_round=[dict(r) for r in state.get("last_round") or ()],
            next_round=int(state.get("next_round") or 0),
            run_id=str(state.get("run_id") or getattr(run.execution, "id", None)
                       or new_id("run_")),
        )
        for item in state.get("waiting") or ():
            call = ActionCall.model_validate(item["call"])
            request = item.get("request")
            restored.waiting.append(
                (call, None if request is None else ApprovalRequest.model_validate(request)))
            if not item.get("arguments_saved", True):
                restored.unsaved.add(call.id)
        _keep(run, restored)
        return restored

    async def _continue(self, run: Any, state: _State, decision: ApprovalDecision
                        ) -> FlowResult:
        await _started(run, state, resumed=True)
        return await self._finish(run, state, await self._resume(run, state, decision))

    async def _finish(self, run: Any, state: _State, result: FlowResult) -> FlowResult:
        usage = result.usage or {}
        await _emit(run, "run.completed", run_id=state.run_id, stop_reason=result.stop_reason,
                    error_type=state.error_type if result.stop_reason == "failed" else None,
                    rounds=len(result.rounds), records=len(result.records),
                    input_tokens=usage.get("input_tokens"),
                    output_tokens=usage.get("output_tokens"), requests=usage.get("requests"))
        return result

    async def _rounds(self, run: Any, state: _State) -> FlowResult:
        result = state.result
        while state.next_round < run.max_rounds:
            round_index = state.next_round
            state.next_round += 1
            _enter(run, "planning", round_index)
            try:
                context = await self._context(run, state, round_index)
            except Exception as exc:
                state.error_type = type(exc).__name__
                return _failed(result, f"env_state failed in round {round_index}: "
                                       f"{type(exc).__name__}: {exc}")
            request = ActionPlanningRequest(action_list=run.action_list(),
                                            planning_protocol=run.planning_protocol)
            await _emit(run, "round.started", run_id=state.run_id, round_index=round_index)
            try:
                decision = await run.runtime.plan(run.planner, context, request)
            except Exception as exc:
                state.error_type = type(exc).__name__
                await _emit(run, "round.completed", run_id=state.run_id,
                            round_index=round_index, next_action=None, calls=0, invalid=0,
                            error_type=state.error_type)
                if isinstance(exc, ModelError):  # says what to fix: shown as it is
                    return _failed(result, str(exc))
                return _failed(result, f"planner failed in round {round_index}: "
                                       f"{type(exc).__name__}: {exc}")
            round_ = FlowRound(round_index=round_index, decision=decision)
            result.rounds.append(round_)
            _add_usage(result, decision.usage)
            invalid = [(p.get("index"), _invalid_record(p, round_index)) for p in decision.invalid]
            await _announce(run, state, [record for _, record in invalid])
            if decision.next_action == "response":
                self._add(state, round_, [record for _, record in invalid], round_index)
                await _round_done(run, state, decision, round_index)
                result.response = decision.response
                result.stop_reason = "response"
                return result
            if not decision.calls and not invalid:
                records = [_skipped_record(decision, round_index)]
                await _announce(run, state, records)
            else:
                records = _in_call_order(invalid, await self._execute(run, context,
                                                                      decision.calls))
            self._add(state, round_, records, round_index)
            await _round_done(run, state, decision, round_index)
            waiting = [r for r in records if r.status == "approval_required"]
            if waiting:
                return self._pause(run, state, decision.calls, waiting)
            await self._checkpoint(run, state, round_index)
        result.stop_reason = "max_rounds"
        return result

    def _pause(self, run: Any, state: _State, calls: list[ActionCall],
               waiting: list[ActionRecord]) -> FlowResult:
        by_id = {call.id: call for call in calls}
        state.waiting = [(by_id[r.call_id], _request_of(r)) for r in waiting if r.call_id in by_id]
        state.result.stop_reason = "approval_required"
        if run.pause is not None:
            run.pause([request for _, request in state.waiting if request is not None],
                      lambda decision: self._continue(run, state, decision))
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
        if state.result.rounds:  # the round that waited is done now
            await self._checkpoint(run, state, state.result.rounds[-1].round_index)
        return await self._rounds(run, state)

    async def _checkpoint(self, run: Any, state: _State, round_index: int) -> None:
        """Hand ``run.checkpoint`` the run's exported state after a round it goes on
        past (nothing when the run has no such callback, or its last round is done)."""
        checkpoint = getattr(run, "checkpoint", None)
        if checkpoint is None or state.next_round >= run.max_rounds:
            return
        exported = self.export_state(run, redactor=getattr(run.dispatcher, "redactor", None))
        saved = checkpoint(round_index, exported)
        if inspect.isawaitable(saved):
            await saved

    async def _context(self, run: Any, state: _State, round_index: int) -> ActionRunContext:
        rounds = state.result.rounds
        if len(state.history) < len(rounds):  # rounds planned (and done) since last time
            state.history.extend(history_of(state.result, len(state.history)))
        agent = getattr(run.dispatcher, "agent", None)
        return ActionRunContext(
            prompt=run.request,
            settings=MappingProxyType({
                "max_rounds": run.max_rounds, "concurrency": run.concurrency,
                "planning_protocol": run.planning_protocol,
                "timeout": getattr(run, "timeout", None)}),
            agent_name=run.agent_name,
            round_index=round_index,
            max_rounds=run.max_rounds,
            done_plans=list(state.done_plans),
            last_round_records=list(state.last_round),
            action=getattr(agent, "action", None),
            runtime=run.runtime,
            run_id=state.run_id,
            execution_id=getattr(run.execution, "id", None),
            history=list(state.history),
            env_state=await _env_state(run),
            events=_events(run),
        )

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

    async def _execute(self, run: Any, context: ActionRunContext,
                       calls: list[ActionCall]) -> list[ActionRecord]:
        if not calls:
            return []
        _enter(run, "executing", context.round_index, calls)
        if run.execution_handler is None:
            return await _dispatch(run, calls)
        dispatcher = run.dispatcher

        async def async_call_action(call: ActionCall) -> ActionRecord:
            if not isinstance(call, ActionCall):
                raise TypeError(f"async_call_action() takes an ActionCall (one of "
                                f"request.action_calls), got {type(call).__name__}")
            record = await dispatcher.dispatch(call)
            _finished(run, record)
            return record

        time_left = getattr(run, "time_left", None)
        request = ActionExecutionRequest(
            action_calls=tuple(calls), async_call_action=async_call_action,
            concurrency=run.concurrency, timeout=time_left() if callable(time_left) else None)
        try:
            produced = run.execution_handler(context, request)
            if inspect.isawaitable(produced):
                produced = await produced
            return _results_as_records(produced, calls, getattr(dispatcher, "redactor", None))
        except Exception as exc:
            now = time.time()
            return [
                ActionRecord(call_id=c.id, action=c.action, status="failed", kwargs=c.kwargs,
                             purpose=c.purpose, round_index=c.round_index, started_at=now,
                             error_type=type(exc).__name__,
                             error=f"execution handler failed: {type(exc).__name__}: {exc}")
                for c in calls
            ]


def _enter(run: Any, stage: str, round_index: int | None,
           calls: list[ActionCall] | None = None) -> None:
    """Say where the run is (for a run stopped at its time bound), if it can hold it."""
    enter = getattr(run, "enter", None)
    if callable(enter):
        enter(stage, round_index, calls)


def _finished(run: Any, record: ActionRecord) -> None:
    finished = getattr(run, "finished", None)
    if isinstance(finished, dict):
        finished[record.call_id] = record


async def _dispatch(run: Any, calls: list[ActionCall]) -> list[ActionRecord]:
    """The round's calls through the dispatcher's gate, at most ``concurrency`` at once.
    Under a time bound each record is kept as soon as its call ends, so a run stopped
    at its bound keeps the records of the calls that finished."""
    dispatcher = run.dispatcher
    if getattr(run, "deadline", None) is None:
        return await dispatcher.dispatch_many(calls, concurrency=run.concurrency)
    gated = [await dispatcher.gate(call) for call in calls]
    records: list[Any] = list(gated)
    for record in gated:
        if isinstance(record, ActionRecord):
            _finished(run, record)
    pending = iter([(i, g) for i, g in enumerate(gated) if not isinstance(g, ActionRecord)])

    async def worker() -> None:
        for index, (entry, kwargs, policy) in pending:
            records[index] = await dispatcher.execute(calls[index], entry, kwargs, policy)
            _finished(run, records[index])

    async with anyio.create_task_group() as group:
        for _ in range(max(1, min(int(run.concurrency), len(calls)))):
            group.start_soon(worker)
    return records


def _results_as_records(produced: Any, calls: list[ActionCall],
                        redactor: Any) -> list[ActionRecord]:
    """An execution handler's results as the round's records, in call order: each an
    :class:`ActionRecord`, or a mapping (an ``ActionResult``) whose ``call_id`` names one
    of the round's calls (or, without one, the call at its position). A call the handler
    gave no result for gets a ``failed`` record saying so. ValueError for a result that
    is not one, or that names no call of the round."""
    if produced is None:
        produced = []
    if isinstance(produced, (str, bytes, Mapping)) or not hasattr(produced, "__iter__"):
        raise ValueError(f"the execution handler must return a list of results, one per "
                         f"call, got {type(produced).__name__}")
    by_id = {call.id: call for call in calls}
    found: dict[str, ActionRecord] = {}
    now = time.time()
    for index, item in enumerate(produced):
        if isinstance(item, ActionRecord):
            data = item.model_dump()
        elif isinstance(item, Mapping):
            data = dict(item)
        else:
            raise ValueError(f"result {index} of the execution handler is a "
                             f"{type(item).__name__}, not an ActionResult or ActionRecord")
        call_id = data.get("call_id")
        if call_id is None:
            if index >= len(calls):
                raise ValueError(f"the execution handler returned {index + 1} or more "
                                 f"results for {len(calls)} call(s)")
            call = calls[index]
        elif call_id in by_id:
            call = by_id[call_id]
        else:
            raise ValueError(f"result {index} of the execution handler names call "
                             f"{call_id!r}, which is not one of this round's calls")
        if call.id in found:
            raise ValueError(f"the execution handler returned two results for call {call.id!r}")
        if redactor is not None and getattr(redactor, "active", False) \
                and not isinstance(item, ActionRecord):
            data = redactor.redact(data)
        defaults = {"call_id": call.id, "action": call.action, "kwargs": call.kwargs,
                    "purpose": call.purpose, "round_index": call.round_index,
                    "started_at": now,
                    "status": "failed" if data.get("error") else "success"}
        found[call.id] = ActionRecord.model_validate({**defaults, **{
            k: v for k, v in data.items() if v is not None or k not in defaults}})
    return [found.get(call.id) or ActionRecord(
        call_id=call.id, action=call.action, status="failed", kwargs=call.kwargs,
        purpose=call.purpose, round_index=call.round_index, started_at=now,
        error_type="MissingResult", error=f"the execution handler returned no result for "
                                          f"call {call.id!r} ({call.action})")
        for call in calls]


def _events(run: Any) -> Any:
    """The run's EventCenter: its execution's, else its dispatcher's."""
    events = getattr(run.execution, "events", None)
    return events if events is not None else getattr(run.dispatcher, "events", None)


async def _emit(run: Any, event_type: str, **payload: Any) -> None:
    events = _events(run)
    if events is not None and events.active:
        await events.emit(event_type, "flow", **payload)


async def _env_state(run: Any) -> str | None:
    """The run's environment state: ``settings["env_state"]``, a string or a callable
    that returns one (asked every round)."""
    return await resolve_env_state((getattr(run, "settings", None) or {}).get("env_state"))


def _failed(result: FlowResult, error: str) -> FlowResult:
    result.stop_reason = "failed"
    result.error = error
    return result


def _add_usage(result: FlowResult, usage: Any) -> None:
    """Add one round's usage to the run's totals (``requests``: 1 unless it says more)."""
    if not isinstance(usage, Mapping):
        return
    total = dict(result.usage or {"input_tokens": 0, "output_tokens": 0, "requests": 0})
    for key, value in usage.items():
        if key != "requests" and type(value) is int:
            total[key] = total.get(key, 0) + value
    requests = usage.get("requests")
    total["requests"] += requests if type(requests) is int and requests >= 0 else 1
    result.usage = total


async def _started(run: Any, state: _State, *, resumed: bool) -> None:
    planner = run.planner
    await _emit(run, "run.started", run_id=state.run_id, agent_name=run.agent_name,
                agent_id=getattr(getattr(run.dispatcher, "agent", None), "id", None),
                planner=getattr(planner, "name", None) or type(planner).__name__,
                max_rounds=run.max_rounds, planning_protocol=run.planning_protocol,
                resumed=resumed)


async def _round_done(run: Any, state: _State, decision: ActionDecision,
                      round_index: int) -> None:
    usage = decision.usage or {}
    await _emit(run, "round.completed", run_id=state.run_id, round_index=round_index,
                next_action=decision.next_action, calls=len(decision.calls),
                invalid=len(decision.invalid), model=decision.model,
                input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"))


async def _announce(run: Any, state: _State, records: list[ActionRecord]) -> None:
    """The events of records the flow made itself (invalid and skipped calls), as the
    dispatcher announces the records of the calls it ran."""
    events = _events(run)
    if not records or events is None or not events.active:
        return
    for record in records:
        await events.emit(f"action.{record.status}", "flow",
                          call_id=record.call_id, action=record.action,
                          status=record.status, error_type=record.error_type,
                          run_id=state.run_id, round_index=record.round_index,
                          diagnostic_code=record.meta.get("diagnostic_code"))


def _in_call_order(invalid: list[tuple[Any, ActionRecord]],
                   executed: list[ActionRecord]) -> list[ActionRecord]:
    """The round's records in the order the planner gave the calls: each invalid call's
    record at its ``index`` (first when the runtime gave none)."""
    if any(type(index) is not int for index, _ in invalid):
        return [record for _, record in invalid] + executed
    records = list(executed)
    for index, record in sorted(invalid, key=lambda item: item[0]):
        records.insert(min(index, len(records)), record)
    return records


def _skipped_record(decision: ActionDecision, round_index: int) -> ActionRecord:
    """The record of an answer with nothing to run: ``skipped``, with the runtime's
    diagnostic code (``action_runtime.<protocol>.empty`` when it gave none)."""
    note = next((d for d in decision.diagnostics if isinstance(d, Mapping) and d.get("code")),
                None)
    code = str(note["code"]) if note else f"action_runtime.{decision.protocol}.empty"
    message = str(note.get("message") or "") if note else ""
    return ActionRecord(
        call_id=new_id("call_"), action="<none>", status="skipped", error_type="EmptyAnswer",
        error=message or "the answer had no call and no response, so nothing ran",
        round_index=round_index, started_at=time.time(), meta={"diagnostic_code": code},
    )


def _keep(run: Any, state: _State) -> None:
    """Keep the run's state on the run (``FlowRun.flow_state``) for :meth:`export_state`,
    and its result so far (``FlowRun.progress``) for a stop at the run's time bound."""
    try:
        run.flow_state = state
        run.progress = state.result
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
            "duration_ms": record.duration_ms, "error": record.error, "digest": record.digest}


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
