"""The ActionDispatcher: validate -> policy -> approval gate -> environments -> executor ->
record.

Every failure becomes a record with a clear error; nothing raised by an action, an
executor, a provider or a handler reaches the caller. Cancellation of the caller still
propagates, and every environment reference taken for a call is released on every path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .actions import ActionContext, ActionRegistry, RegisteredAction
from .errors import (
    ActionError,
    AgentlyError,
    EnvironmentApprovalRequired,
    EnvironmentBlocked,
)
from .execution import current_execution, current_request, current_session
from .models import (
    ActionCall,
    ActionRecord,
    ApprovalRequest,
    EnvironmentRequirement,
    Policy,
    construct,
)
from .schema import ArgumentsError

if TYPE_CHECKING:
    from .artifacts import ArtifactStore
    from .environments import ExecutionEnvironmentManager
    from .events import EventCenter
    from .plugins import PluginManager
    from .policy_approval import PolicyApproval
    from .redaction import Redactor

_perf = time.perf_counter
_now = time.time
_EVENT_FOR_STATUS = {"success": "action.completed", "failed": "action.failed",
                     "blocked": "action.blocked", "approval_required": "action.approval_required",
                     "skipped": "action.skipped"}

Gated = tuple[RegisteredAction, dict[str, Any], Policy]


class ActionDispatcher:
    """Runs :class:`~agently_core.models.ActionCall` objects against one registry."""

    def __init__(
        self,
        registry: ActionRegistry,
        *,
        plugins: PluginManager,
        events: EventCenter,
        approval: PolicyApproval,
        policy: Policy | None = None,
        agent: Any = None,
        manager: ExecutionEnvironmentManager | None = None,
        redactor: Redactor | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.registry = registry
        self.plugins = plugins
        self.events = events
        self.approval = approval
        self.policy = policy or Policy()
        self.agent = agent
        self._manager = manager
        self.redactor = redactor
        self._artifacts = artifacts
        self._executors: dict[tuple[str, str | None], Any] = {}
        #: (id(requirement), owner) -> (requirement, its fields then, the owned copy): one
        #: copy per owner of a warm environment, not one per call (see :meth:`_owned`).
        self._owned_copies: dict[tuple[int, str], tuple[EnvironmentRequirement,
                                                        dict[str, Any],
                                                        EnvironmentRequirement]] = {}
        #: (scope, owner) of every request-, execution- and agent-scoped environment this
        #: dispatcher's calls pinned: what its agent releases when a call, a run or the
        #: agent itself ends.
        self.owners: set[tuple[str, str]] = set()

    @property
    def manager(self) -> ExecutionEnvironmentManager:
        if self._manager is None:
            from .environments import get_manager

            self._manager = get_manager()
        return self._manager

    @property
    def artifacts(self) -> ArtifactStore:
        """Where the artifacts of this dispatcher's calls are kept."""
        if self._artifacts is None:
            from .artifacts import ArtifactStore

            self._artifacts = ArtifactStore()
        return self._artifacts

    # -- schemas ---------------------------------------------------------------------
    def action_list(self) -> list[dict[str, Any]]:
        return [entry.spec.info() for entry in self.registry if entry.visible]

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        for entry in self.registry:
            entry.policy = None

    # -- one call --------------------------------------------------------------------
    async def dispatch(self, call: ActionCall, *, approved: bool = False) -> ActionRecord:
        """Gate and run one call; always returns a record."""
        gated = await self.gate(call, approved=approved)
        if isinstance(gated, ActionRecord):
            return gated
        return await self.execute(call, *gated)

    async def gate(self, call: ActionCall, *, approved: bool = False) -> ActionRecord | Gated:
        """Resolve, validate, check policy and approve a call. Returns a record when the
        call must not run; ``approved=True`` skips the approval question (a person already
        answered it)."""
        started = _now()
        entry = self.registry.get(call.action)
        if entry is None or (call.source == "model" and not entry.visible):
            names = ", ".join(self.registry.names(visible_only=call.source == "model"))
            return await self._finish(self._record(
                call, started, "failed", error_type="ActionNotFoundError",
                error=f"unknown action {call.action!r}; available: {names or 'none'}"))
        if not isinstance(call.kwargs, dict):
            return await self._finish(self._record(
                call, started, "failed", error_type="ArgumentsError",
                error=f"invalid arguments for {call.action!r}: kwargs must be an object, "
                f"got {type(call.kwargs).__name__}"))
        try:
            kwargs = entry.validate(call.kwargs)
        except ArgumentsError as exc:
            return await self._finish(self._record(
                call, started, "failed", error_type="ArgumentsError",
                error=f"invalid arguments for {call.action!r}: {exc}"))
        try:
            policy = entry.policy
            if policy is None:
                policy = entry.policy = self.policy.merge(entry.spec.policy)
            if call.policy:
                policy = policy.merge(call.policy, from_model=call.source == "model",
                                      grants=False)
        except (ValueError, TypeError, AgentlyError) as exc:  # pydantic's ValidationError too
            return await self._finish(self._record(
                call, started, "failed", error_type="PolicyError",
                error=f"invalid policy for {call.action!r}: {exc}"))
        try:
            executor = entry.executor or self._executor_for(entry)
        except AgentlyError as exc:
            return await self._finish(self._record(
                call, started, "failed", error_type=type(exc).__name__, error=str(exc)))
        unenforced = () if policy is entry.enforceable else (
            policy.constraints() - getattr(executor, "enforced_policy", frozenset())
            - frozenset(entry.spec.meta.get("enforced_policy", ())))
        if not unenforced and policy is entry.policy:
            entry.enforceable = policy  # checked once per cached policy, not per call
        if unenforced:
            return await self._finish(self._record(
                call, started, "blocked", error_type="PolicyNotEnforceable",
                error=f"neither the {entry.spec.kind!r} executor nor the action enforces policy "
                f"{', '.join(sorted(unenforced))} for {call.action!r}; refusing to run it"))
        if policy.env_passthrough and self.redactor is not None:
            import os  # values a child will see are secrets wherever else they appear

            self.redactor.add(*(os.environ.get(name) for name in policy.env_passthrough))
        mode = policy.approval_mode
        if mode == "deny" or (not approved and (mode == "always" or entry.spec.approval_required)):
            blocked = await self._approve(call, entry, policy, started)
            if blocked is not None:
                return await self._finish(blocked)
        return entry, kwargs, policy

    async def _approve(self, call: ActionCall, entry: RegisteredAction, policy: Policy,
                       started: float) -> ActionRecord | None:
        if policy.approval_mode in ("never", "deny"):
            return self._record(call, started, "blocked", error_type="ApprovalDenied",
                                error=f"action {call.action!r} needs approval and the policy's "
                                f"approval_mode is {policy.approval_mode!r}"
                                + (" (one layer says 'always', another 'never')"
                                   if policy.approval_mode == "deny" else ""))
        request = ApprovalRequest(
            subject_type="action", subject=call.action, subject_id=call.id,
            reason=self._redact(call.purpose or entry.spec.description[:200]),
            details={"kwargs": self._redact(call.kwargs), "source": call.source},
        )
        events = self.events
        if events.active:
            await events.emit("policy.approval.requested", "dispatcher", request_id=request.id,
                              call_id=call.id, action=call.action)
        decision = await self.approval.decide(request, self.agent)
        if events.active:
            await events.emit(f"policy.approval.{decision.decision}", "dispatcher",
                              request_id=request.id, call_id=call.id, action=call.action)
        if decision.decision == "approved":
            return None
        if decision.decision == "pending":
            return self._record(call, started, "approval_required", error_type="ApprovalRequired",
                                error=f"action {call.action!r} is waiting for approval",
                                approval_request=request)
        return self._record(call, started, "blocked", error_type="ApprovalDenied",
                            error=f"action {call.action!r} was denied"
                            + (f": {decision.reason}" if decision.reason else ""),
                            approval_request=request)

    async def execute(self, call: ActionCall, entry: RegisteredAction, kwargs: dict[str, Any],
                      policy: Policy) -> ActionRecord:
        """Run an already-gated call: ensure its environments, call the executor, release
        the call's environment references."""
        started = _now()
        t0 = _perf()
        events = self.events
        if events.active:
            await events.emit("action.started", "dispatcher", call_id=call.id, action=call.action)
        context = ActionContext(call, entry.spec, policy, entry.target, self.agent, events,
                                redactor=self.redactor)
        leases: list[Any] = []
        try:
            if entry.spec.execution_environments:
                stopped = await self._ensure_environments(call, entry, context, leases, started,
                                                          policy)
                if stopped is not None:
                    return await self._finish(stopped)
            record = await self._run(call, entry, kwargs, policy, context, started, t0)
        finally:
            if leases:
                # a reference that is not the resource's last goes at once (no await, so
                # no cancellation point); the others through the shielded release
                release_nowait = self.manager.release_nowait
                rest = [lease for lease in leases if release_nowait(lease) is None]
                if rest:
                    with anyio.CancelScope(shield=True):
                        for lease in rest:
                            await self.manager.async_release(lease, events=events)
        return await self._finish(record)

    async def _run(self, call: ActionCall, entry: RegisteredAction, kwargs: dict[str, Any],
                   policy: Policy, context: ActionContext, started: float,
                   t0: float) -> ActionRecord:
        status, result, error, error_type = "success", None, None, None
        try:
            executor = entry.executor or self._executor_for(entry)
            if entry.injects_context:
                kwargs = {**kwargs, "action_context": context}
            timeout = policy.timeout_seconds
            if timeout is None:
                result = await executor.execute(entry.spec, kwargs, context)
            else:
                with anyio.move_on_after(timeout) as scope:
                    result = await executor.execute(entry.spec, kwargs, context)
                if scope.cancelled_caught:
                    status, error_type, result = "failed", "TimeoutError", None
                    error = f"action {call.action!r} timed out after {timeout:g}s"
                    if context.queued:
                        error += (f" while it waited for {context.queued_for}, busy with other "
                                  "calls; it never started")
                    elif context.queued_s:
                        error += (f", {context.queued_s:.3g}s of it waiting for "
                                  f"{context.queued_for}")
        except ActionError as exc:
            status, error_type, error = "failed", type(exc).__name__, str(exc)
            result = exc.result
        except AgentlyError as exc:
            status, error_type, error = "failed", type(exc).__name__, str(exc)
        except (Exception, SystemExit) as exc:  # an action never takes the caller down
            status, error_type = "failed", type(exc).__name__
            error = f"action {call.action!r} raised {type(exc).__name__}: {exc}"
        meta: dict[str, Any] = {}
        if context.queued_s:
            meta["queued_ms"] = round(context.queued_s * 1000, 3)
        full = raw = None
        if result is not None:
            # redact before the output cap, so a cut can never leave half a secret behind
            full, raw, size = self._redact_result(result, call)
            max_bytes = policy.max_output_bytes
            if max_bytes is None or 0 <= size <= max_bytes:
                result = full  # bounded below the cap: no serialising to measure it
            else:
                result, capped = _capped(full, max_bytes, size)
                meta.update(capped)
        record = self._record(call, started, status, result=result, error=error,
                              error_type=error_type, t0=t0, meta=meta, result_redacted=True)
        instruction = entry.spec.meta.get("instruction") if entry.spec.meta else None
        if instruction or context.pending_artifacts:
            self._keep(record, call, entry, instruction, context, full, raw)
        return record

    def _keep(self, record: ActionRecord, call: ActionCall, entry: RegisteredAction,
              instruction: str | None, context: ActionContext, full: Any, raw: Any) -> None:
        """Store the call's artifacts (redacted) and, for an instruction-heavy action, its
        digest."""
        from .artifacts import preview, preview_limit, result_preview

        store = self.artifacts
        refs: list[dict[str, Any]] = []
        notes: list[str] = []
        text = record.kwargs.get(instruction) if instruction else None
        if isinstance(text, str):
            refs.append(store.put(call.id, call.action, "instruction", text).ref())
            original = call.kwargs.get(instruction) if isinstance(call.kwargs, dict) else None
            if original != text:
                notes.append("secret values were masked in the instruction")
        if instruction and full is not None:
            refs.append(store.put(call.id, call.action, "result", full,
                                  media_type="application/json").ref())
            if self.redactor is not None and self.redactor.active and full != raw:
                notes.append("secret values were masked in the result")
        if context.masked:  # the executor masked its output itself, before cutting it
            notes.append("secret values were masked in the output")
        for kind, content, media_type in context.pending_artifacts:
            if isinstance(content, bytes):
                content = content.decode(errors="replace")
            kept = self._redact(_jsonable(content), call)
            if kept != content and "secret values were masked in the output" not in notes:
                notes.append("secret values were masked in the output")
            refs.append(store.put(call.id, call.action, kind, kept, media_type=media_type).ref())
        record.artifact_refs = refs
        if instruction:
            if record.meta.get("truncated"):
                notes.append(f"the result was cut to {call.action}'s max_output_bytes; the full "
                             "result is an artifact")
            record.digest = {
                "action": call.action,
                "call_id": call.id,
                "purpose": record.purpose or entry.spec.description.split(". ")[0][:160],
                "status": record.status,
                "instruction_preview": preview(text),
                "result_preview": result_preview(record.result, record.error,
                                                 preview_limit(entry.spec.meta)),
                "redaction_notes": notes,
                "artifact_refs": [dict(ref) for ref in refs],
            }

    async def _ensure_environments(self, call: ActionCall, entry: RegisteredAction,
                                   context: ActionContext, leases: list[Any],
                                   started: float, policy: Policy) -> ActionRecord | None:
        """Ensure the spec's environments into ``context``; ``leases`` collects every
        reference taken (the caller releases them). Returns a record when the call cannot
        run."""
        manager = self.manager
        for requirement in entry.spec.execution_environments:
            try:
                owned = self._owned(requirement, call)
                handle, resource = await manager._ensure(owned, self.events, self.agent,
                                                         self.approval, policy)
            except EnvironmentApprovalRequired as exc:
                return self._record(call, started, "approval_required",
                                    error_type="ApprovalRequired", error=str(exc),
                                    approval_request=exc.request)
            except EnvironmentBlocked as exc:
                return self._record(call, started, "blocked", error_type="EnvironmentBlocked",
                                    error=str(exc))
            except AgentlyError as exc:
                return self._record(call, started, "failed", error_type=type(exc).__name__,
                                    error=f"environment for {call.action!r}: {exc}")
            leases.append(handle)
            key = requirement.resource_key or requirement.kind
            context.execution_environment_handles[key] = handle
            context.execution_environment_resources[key] = resource
        return None

    def _owned(self, requirement: EnvironmentRequirement, call: ActionCall) -> EnvironmentRequirement:
        """The requirement with its owner filled in from the call's context."""
        if requirement.owner_id is not None or requirement.scope == "global":
            return requirement
        scope = requirement.scope
        if scope == "action_call":
            owner = call.id
        elif scope == "agent":
            owner = current_session.get() or getattr(self.agent, "id", None)
        elif scope == "execution":
            execution = current_execution.get()
            if execution is None:
                raise AgentlyError(f"{requirement.kind!r} is execution-scoped but the call is "
                                   "not running inside an execution")
            owner = execution.id
        elif scope == "request":
            owner = current_request.get() or call.id
        else:  # session
            owner = current_session.get() or getattr(self.agent, "session_id", None)
            if owner is None:
                raise AgentlyError(f"{requirement.kind!r} is session-scoped: set agent.session_id "
                                   "or the requirement's owner_id")
        if scope in ("request", "execution", "agent"):
            self.owners.add((scope, owner))
        if scope in ("action_call", "request"):  # a new owner (nearly) every call
            return requirement.model_copy(update={"owner_id": owner,
                                                  "id": f"{requirement.id}@{owner}"})
        # the same owner call after call: one copy, so the manager knows it again; made
        # afresh when a field of the declared requirement changed since
        cache = self._owned_copies
        cache_key = (id(requirement), owner)
        found = cache.get(cache_key)
        if found is not None and found[0] is requirement and found[1] == requirement.__dict__:
            return found[2]
        owned = requirement.model_copy(update={"owner_id": owner,
                                               "id": f"{requirement.id}@{owner}"})
        if len(cache) >= 1024:
            cache.clear()
        cache[cache_key] = (requirement, dict(requirement.__dict__), owned)
        return owned

    def _executor_for(self, entry: RegisteredAction) -> Any:
        key = (entry.spec.kind, entry.spec.executor)
        executor = self._executors.get(key)
        if executor is None:
            registration = self.plugins.select("action_executor", entry.spec.executor,
                                               kind=entry.spec.kind)
            executor = self._executors[key] = registration.load()()
        entry.executor = executor
        return executor

    # -- many calls ------------------------------------------------------------------
    async def dispatch_many(self, calls: Sequence[ActionCall], *, concurrency: int = 8,
                            approved: bool = False) -> list[ActionRecord]:
        """Gate every call first, then run the approved ones, at most ``concurrency`` at
        a time. Records come back in call order."""
        gated = [await self.gate(call, approved=approved) for call in calls]
        runnable = [(i, g) for i, g in enumerate(gated) if not isinstance(g, ActionRecord)]
        results: list[Any] = list(gated)
        if not runnable:
            return results
        limit = max(1, int(concurrency))
        if limit == 1 or len(runnable) == 1:
            for index, (entry, kwargs, policy) in runnable:
                results[index] = await self.execute(calls[index], entry, kwargs, policy)
            return results
        pending = iter(runnable)

        async def worker() -> None:
            # A fixed pool of workers pulls calls in order: no task per call.
            for index, (entry, kwargs, policy) in pending:
                results[index] = await self.execute(calls[index], entry, kwargs, policy)

        async with anyio.create_task_group() as group:
            for _ in range(min(limit, len(runnable))):
                group.start_soon(worker)
        return results

    # -- records ---------------------------------------------------------------------
    async def _finish(self, record: ActionRecord) -> ActionRecord:
        if self.events.active:
            await self.events.emit(_EVENT_FOR_STATUS[record.status], "dispatcher",
                                   call_id=record.call_id, action=record.action,
                                   status=record.status, error_type=record.error_type,
                                   round_index=record.round_index,
                                   approval_request_id=record.approval_request_id)
        return record

    async def record(self, call: ActionCall, status: str, *, error: str | None = None,
                     error_type: str | None = None, approval_request_id: str | None = None
                     ) -> ActionRecord:
        """A record for a call that did not run (for flows: a call denied on resume),
        redacted and announced like every other record."""
        record = self._record(call, _now(), status, error=error, error_type=error_type)
        if approval_request_id is not None:
            record.approval_request_id = approval_request_id
        return await self._finish(record)

    def _redact_result(self, result: Any, call: ActionCall) -> tuple[Any, Any, int]:
        """``(redacted JSON-safe result, unredacted JSON-safe result, an upper bound of
        the first's serialised size or -1)``. A plain JSON result is redacted and bounded
        in one walk, without converting it."""
        redactor = self.redactor
        if redactor is not None:
            extra = redactor.secret_arguments(call.kwargs) if isinstance(
                call.kwargs, dict) else ()
            full, size = redactor.redact_json(result, extra)
            if size >= 0:
                return full, result, size
        raw = _jsonable(result)
        return self._redact(raw, call), raw, -1  # JSON-safe still: no new types

    def _redact(self, value: Any, call: ActionCall | None = None) -> Any:
        redactor = self.redactor
        if redactor is None:
            return value
        extra = redactor.secret_arguments(call.kwargs) if call is not None and isinstance(
            call.kwargs, dict) else ()
        return redactor.redact(value, extra)

    def _record(self, call: ActionCall, started: float, status: str, *, result: Any = None,
                error: str | None = None, error_type: str | None = None, t0: float | None = None,
                approval_request: ApprovalRequest | None = None,
                meta: dict[str, Any] | None = None, result_redacted: bool = False
                ) -> ActionRecord:
        duration = (_perf() - t0) * 1000 if t0 is not None else (_now() - started) * 1000
        redactor = self.redactor
        kwargs = _plain_kwargs(call.kwargs)
        purpose = call.purpose
        if redactor is not None:
            extra = redactor.secret_arguments(kwargs)  # masked in the whole record
            kwargs = redactor.redact(kwargs)
            if purpose:
                purpose = redactor.text(purpose, extra)
            if not result_redacted and result is not None and not isinstance(
                    result, (int, float, bool)):
                result = redactor.redact(result, extra)
            if error is not None:
                error = redactor.text(error, extra)
        if approval_request is not None:
            meta = {**(meta or {}), "approval_request": approval_request.model_dump(mode="json")}
        return construct(ActionRecord, {
            "call_id": call.id, "action": call.action, "status": status, "kwargs": kwargs,
            "result": result, "error": error, "error_type": error_type, "purpose": purpose,
            "round_index": call.round_index, "started_at": started, "duration_ms": duration,
            "approval_request_id": approval_request.id if approval_request else None,
            "digest": None, "artifact_refs": [], "meta": meta or {},
        })


_PLAIN = (str, int, float, bool, type(None))


def _plain_kwargs(kwargs: Any) -> dict[str, Any]:
    """The call's arguments as the record keeps them: JSON-safe, whatever the caller passed."""
    if isinstance(kwargs, dict) and all(type(v) in _PLAIN for v in kwargs.values()):
        return kwargs
    from pydantic_core import to_jsonable_python

    if not isinstance(kwargs, dict):
        return {"_invalid": repr(kwargs)}
    return to_jsonable_python(kwargs, fallback=repr)


def _jsonable(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=repr)


def _serialisable(value: Any, max_bytes: int | None) -> tuple[Any, dict[str, Any]]:
    """Make a result JSON-safe and enforce ``max_output_bytes``."""
    return _capped(_jsonable(value), max_bytes)


def _capped(value: Any, max_bytes: int | None, bound: int = -1) -> tuple[Any, dict[str, Any]]:
    """Enforce ``max_output_bytes`` on a JSON-safe result. A result whose serialised size
    is bounded below the cap (``bound``, an upper bound known already, else a cheap one
    from :func:`_size_bound`) is not serialised at all; any other is measured exactly."""
    if max_bytes is None:
        return value, {}
    if bound < 0 and not isinstance(value, str):
        bound = _size_bound(value, max_bytes)
    if 0 <= bound <= max_bytes:
        return value, {}
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    data = text.encode()
    if len(data) <= max_bytes:
        return value, {}
    if isinstance(value, dict):  # keep the structure: cut its longest texts first
        shrunk = _shrink_texts(value, max_bytes)
        if shrunk is not None:
            return shrunk, {"truncated": True, "original_bytes": len(data)}
    kept = data[:max_bytes].decode(errors="ignore")
    marker = f"\n[... truncated: {len(data) - len(kept.encode())} of {len(data)} bytes omitted]"
    return kept + marker, {"truncated": True, "original_bytes": len(data)}


_SCALAR_BOUND = {bool: 5, type(None): 4, float: 24}  # "false", "null", repr of a float


def _size_bound(value: Any, limit: int) -> int:
    """An upper bound of ``len(json.dumps(value, ensure_ascii=False).encode())`` for a
    JSON-safe value, or ``limit + 1`` once it exceeds ``limit`` or meets anything it cannot
    bound (the caller then measures exactly). A character takes at most 6 bytes (``\\u001f``;
    UTF-8 takes at most 4); the separators are ``", "`` and ``": "``."""
    total = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            total += 6 * len(item) + 2
        elif kind is dict:
            total += 2 + 4 * len(item)
            for key, sub in item.items():
                if type(key) is not str:
                    return limit + 1
                total += 6 * len(key) + 2
                push(sub)
        elif kind is list:
            total += 2 + 2 * len(item)
            for sub in item:
                push(sub)
        elif kind is int:
            bits = item.bit_length()
            if bits > 4096:  # beyond what an int prints cheaply (or at all)
                return limit + 1
            total += bits // 3 + 2  # digits (log10(2) < 1/3), a sign
        elif kind in _SCALAR_BOUND:
            total += _SCALAR_BOUND[kind]
        else:
            return limit + 1
        if total > limit:
            return limit + 1
    return total


def _shrink_texts(value: dict[str, Any], max_bytes: int) -> dict[str, Any] | None:
    """``value`` with its longest top-level strings cut (each with a marker) until its JSON
    fits ``max_bytes``; None when cutting strings cannot make it fit."""
    import json

    result = dict(value)
    for _ in range(64):
        size = len(json.dumps(result, ensure_ascii=False).encode())
        if size <= max_bytes:
            return result
        texts = [(len(v), k) for k, v in result.items() if isinstance(v, str) and len(v) > 64]
        if not texts:
            return None
        length, key = max(texts)
        keep = max(32, length - (size - max_bytes) - 64)
        keep = min(keep, length // 2) if keep >= length else keep
        result[key] = result[key][:keep] + f"\n[... truncated: {length - keep} characters omitted]"
    return None


def calls_from(items: Iterable[ActionCall | dict[str, Any]], *, source: str = "host") -> list[ActionCall]:
    """Turn dicts (``{"action", "kwargs"}``) into calls."""
    return [item if isinstance(item, ActionCall) else ActionCall(source=source, **item)
            for item in items]
