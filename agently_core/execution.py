"""Flow executions: one run's environments and resources, open -> sealed -> closed.

An execution ensures its execution-scoped environments when it starts, injects their
live resources into :attr:`Execution.resources` under their resource keys (beside the
host's unmanaged ``runtime_resources``), and releases them when it closes. A run that
stops on a pending approval leaves its execution *paused*; ``continue_with(decision,
resume_request_id=...)`` resumes it once per resume id.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anyio

from .errors import AgentlyError, EnvironmentApprovalRequired
from .models import (
    ApprovalDecision,
    ApprovalRequest,
    EnvironmentHandle,
    EnvironmentRequirement,
    ExecutionSnapshot,
    new_id,
)

if TYPE_CHECKING:
    from .environments import ExecutionEnvironmentManager
    from .events import EventCenter

#: The execution the current task runs in (set while a flow runs its rounds).
current_execution: ContextVar[Execution | None] = ContextVar("agently_execution", default=None)
#: The id of the request the current task serves (a flow run or one direct call).
current_request: ContextVar[str | None] = ContextVar("agently_request", default=None)

Resume = Callable[[ApprovalDecision], Awaitable[Any]]


class ExecutionStateError(AgentlyError):
    """The execution is in the wrong state for that operation."""


class Execution:
    """A flow execution. Create one with ``agent.create_execution(...)`` or
    :func:`create_execution`; use it as ``async with execution:`` or call
    :meth:`start` and :meth:`aclose`."""

    def __init__(
        self,
        manager: ExecutionEnvironmentManager,
        *,
        execution_environments: Iterable[EnvironmentRequirement | Mapping[str, Any]] = (),
        runtime_resources: Mapping[str, Any] | None = None,
        events: EventCenter | None = None,
        approval_context: Any = None,
        approval: Any = None,
        policy: Any = None,
        id: str | None = None,
    ) -> None:
        self.id = id or new_id("exec_")
        self.manager = manager
        self.events = events
        self.approval_context = approval_context
        self._approval = approval
        self._policy = policy
        self.state = "open"
        self.created_at = time.time()
        self.closed_at: float | None = None
        self.requirements = [
            _execution_scoped(r, self.id) for r in execution_environments
        ]
        self.runtime_resources: dict[str, Any] = dict(runtime_resources or {})
        self.handles: dict[str, EnvironmentHandle] = {}
        self.resources: dict[str, Any] = dict(self.runtime_resources)
        self.pending: list[ApprovalRequest] = []
        self.decisions: list[ApprovalDecision] = []
        self.result: Any = None
        self._resume: Resume | None = None
        self._resumed: dict[str, Any] = {}
        self._resume_lock = anyio.Lock()
        self._resumed_requests: list[ApprovalRequest] = []
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> Execution:
        """Ensure the execution-scoped environments and inject their resources. A pending
        approval pauses the execution (see :attr:`pending`) instead of raising."""
        self._require("open", "sealed")
        if self._started:
            return self
        for requirement in self.requirements:
            key = requirement.resource_key or requirement.kind
            if key in self.handles:
                continue
            try:
                handle = await self.manager.async_ensure(
                    requirement, events=self.events, approval_context=self.approval_context,
                    approval=self._approval, policy=self._policy)
            except EnvironmentApprovalRequired as exc:
                self.suspend([exc.request], self.resume_start)
                return self
            self.resources[key] = self.manager.resource(handle)
            # the execution's own pin (the scope's owner reference) keeps the resource
            # until close; this ensure's lease is not needed
            await self.manager.async_release(handle, events=self.events)
            self.handles[key] = handle.model_copy(update={"lease_id": None})
        self._started = True
        return self

    async def resume_start(self, decision: ApprovalDecision) -> Any:
        if decision.decision == "approved":
            for request in self._resumed_requests:
                if request.subject_type == "environment" and request.subject_id:
                    self.manager.grant(request.subject_id)
            await self.start()
        return self

    def seal(self) -> Execution:
        """No more environments or runtime resources may be added."""
        self._require("open", "sealed")
        self.state = "sealed"
        return self

    def add_runtime_resource(self, key: str, value: Any) -> None:
        """Add an unmanaged live object (the host owns its lifecycle)."""
        self._require("open")
        self.runtime_resources[key] = value
        self.resources[key] = value

    async def aclose(self) -> ExecutionSnapshot:
        """Release the execution's environments and return its snapshot. Idempotent."""
        if self.state != "closed":
            with anyio.CancelScope(shield=True):
                await self.manager.async_release_scope("execution", self.id, events=self.events)
            self.state = "closed"
            self.closed_at = time.time()
            self.resources = {}
        return self.snapshot()

    def close(self) -> ExecutionSnapshot:
        from ._sync import run_sync

        return run_sync(self.aclose)

    async def __aenter__(self) -> Execution:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def bind(self) -> _Bound:
        """Make this the current execution of the calling task (``with execution.bind():``)."""
        return _Bound(self)

    # -- approval pause and resume -------------------------------------------------------
    @property
    def paused(self) -> bool:
        return bool(self.pending) and self.state != "closed"

    def suspend(self, requests: Iterable[ApprovalRequest], resume: Resume) -> None:
        """Pause on pending approvals; ``resume(decision)`` continues the work."""
        self.pending = [r for r in requests if r is not None]
        self._resume = resume

    async def continue_with(self, decision: ApprovalDecision | str | bool, *,
                            resume_request_id: str, actor: str | None = None) -> Any:
        """Resume a paused execution with a person's decision. The same
        ``resume_request_id`` resumes once: a repeat returns the first result."""
        async with self._resume_lock:
            if resume_request_id in self._resumed:
                return self._resumed[resume_request_id]
            if self.state == "closed":
                raise ExecutionStateError(f"execution {self.id} is closed")
            if not self.pending or self._resume is None:
                raise ExecutionStateError(f"execution {self.id} is not waiting for approval")
            decision = self._decision(decision, actor)
            self.decisions.append(decision)
            resume, self._resume = self._resume, None
            self._resumed_requests, self.pending = self.pending, []
            if self.events is not None:
                await self.events.emit("policy.approval.resumed", "execution",
                                       execution_id=self.id, request_id=decision.request_id,
                                       resume_request_id=resume_request_id,
                                       decision=decision.decision)
            result = await resume(decision)
            self._resumed[resume_request_id] = result
            return result

    def _decision(self, decision: ApprovalDecision | str | bool, actor: str | None
                  ) -> ApprovalDecision:
        request_id = self.pending[0].id
        if isinstance(decision, ApprovalDecision):
            return decision if actor is None else decision.model_copy(update={"actor": actor})
        value = {True: "approved", False: "denied"}.get(decision, decision)  # type: ignore[call-overload]
        if value not in ("approved", "denied"):
            raise ValueError(f"a resume decision is approved or denied, got {decision!r}")
        return ApprovalDecision(request_id=request_id, decision=value, actor=actor)

    # -- views ---------------------------------------------------------------------------
    def snapshot(self) -> ExecutionSnapshot:
        from pydantic_core import to_jsonable_python

        return ExecutionSnapshot(
            id=self.id, state=self.state, created_at=self.created_at, closed_at=self.closed_at,
            environments=list(self.handles.values()),
            runtime_resource_keys=sorted(self.runtime_resources),
            pending_approvals=list(self.pending), decisions=list(self.decisions),
            resumed=sorted(self._resumed),
            result=self.manager.redactor.redact(to_jsonable_python(self.result, fallback=repr)),
        )

    def _require(self, *states: str) -> None:
        if self.state not in states:
            raise ExecutionStateError(
                f"execution {self.id} is {self.state}; this needs {' or '.join(states)}")


class _Bound:
    def __init__(self, execution: Execution) -> None:
        self._execution = execution
        self._token: Any = None

    def __enter__(self) -> Execution:
        self._token = current_execution.set(self._execution)
        return self._execution

    def __exit__(self, *exc: object) -> None:
        current_execution.reset(self._token)


def _execution_scoped(requirement: EnvironmentRequirement | Mapping[str, Any],
                      execution_id: str) -> EnvironmentRequirement:
    from .environments import _as_requirement

    requirement = _as_requirement(requirement)
    return requirement.model_copy(update={"scope": "execution", "owner_id": execution_id,
                                          "id": f"{requirement.id}@{execution_id}"})


def create_execution(*, manager: ExecutionEnvironmentManager | None = None, **options: Any
                     ) -> Execution:
    """A new :class:`Execution` on ``manager`` (default: the process-wide manager)."""
    if manager is None:
        from .environments import get_manager

        manager = get_manager()
    return Execution(manager, **options)
