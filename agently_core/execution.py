"""Flow executions: one run's environments and resources, open -> sealed -> closed.

An execution ensures its execution-scoped environments when it starts, injects their
live resources into :attr:`Execution.resources` under their resource keys (beside the
host's unmanaged ``runtime_resources``), and releases them when it closes. A run that
stops on a pending approval leaves its execution *paused*; ``async_continue_with(decision,
resume_request_id=...)`` resumes it once per resume id.

With a workspace the execution is *durable*: a pause saves its state (redacted) to the
workspace under the snapshot key ``execution:<id>`` with compare-and-set, and
:meth:`Execution.load` in another process claims the lease ``execution:<id>``, ensures
the execution-scoped environments again and resumes it there (``agent.load_execution``
wires the flow back in). With ``save_rounds=True`` the run also holds that lease while
it runs and is saved after every round it continues past (a resume state of kind
:data:`RUNNING`), and once more when it ends: a process that loads it after the runner
died continues the loop from the next round with :meth:`Execution.async_continue_run`.
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
#: The client session the current task serves, when one agent serves several clients (as
#: ``serve-mcp`` does): the owner of the call's session- and agent-scoped environments in
#: place of ``agent.session_id`` / ``agent.id``, so clients never share one.
current_session: ContextVar[str | None] = ContextVar("agently_session", default=None)

Resume = Callable[[ApprovalDecision], Awaitable[Any]]

#: The phases of a resume request in the resume ledger, in order (the last is one of the
#: two): see :meth:`Execution.async_continue_with`.
RESUME_PHASES = ("accepted", "dispatched", "completed", "dispatch_failed")
#: The format of a saved execution (the snapshot ``execution:<id>`` of a workspace).
SAVED_FORMAT = "agently.execution/1"
#: The kind of resume state saved after a round by an execution that saves every round
#: (``save_rounds``): "running, last saved after round N" (not paused).
RUNNING = "running"
#: Seconds a process holds the lease of an execution it loaded or resumes (heartbeaten
#: while a resume runs).
DEFAULT_LEASE_TTL = 60.0
_KEEP: Any = object()


class ExecutionStateError(AgentlyError):
    """The execution is in the wrong state for that operation."""


class ExecutionNotFound(ExecutionStateError, LookupError):
    """The workspace holds no saved execution with that id."""


class ExecutionBusy(ExecutionStateError):
    """Another process holds the execution's lease: it is loading or resuming it."""


class ExecutionConflict(ExecutionStateError):
    """The saved execution changed since this copy read or wrote it (another process
    resumed it); nothing was run. Load it again."""


def saved_key(execution_id: str) -> str:
    """The workspace snapshot (and lease) name of a durable execution."""
    return f"execution:{execution_id}"


class Execution:
    """A flow execution. Create one with ``agent.create_execution(...)`` or
    :func:`create_execution`; use it as ``async with execution:`` or call
    :meth:`async_start` and :meth:`async_close` (:meth:`start` and :meth:`close` from sync
    code).

    With ``workspace`` (a :class:`~agently_core.workspace.Workspace` reporting snapshots,
    compare-and-set and leases; with ``require_distributed_provider=True`` also everything
    in :data:`~agently_core.workspace.DISTRIBUTED_CAPABILITIES`, else
    :class:`~agently_core.workspace.CapabilityMissing` here) it is durable: see
    :meth:`save`, :meth:`load` and :meth:`async_continue_with`. ``workspace=False`` (or
    ``None``, the default) binds no workspace."""

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
        workspace: Any = None,
        require_distributed_provider: bool = False,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        save_rounds: bool = False,
    ) -> None:
        #: The workspace a pause is saved to (``None``: none bound, not durable).
        self.workspace = (None if workspace is None or workspace is False
                          else _durable_workspace(workspace, require_distributed_provider))
        if not isinstance(save_rounds, bool):
            raise TypeError(f"save_rounds must be True or False, got {save_rounds!r}")
        if save_rounds and self.workspace is None:
            raise ValueError("save_rounds=True needs a workspace to save the rounds to")
        #: Save the run after every round it continues past (and when it ends), holding the
        #: lease while it runs, so another process can continue it (see
        #: :meth:`async_continue_run`).
        self.save_rounds = save_rounds
        if not lease_ttl > 0:
            raise ValueError(f"lease_ttl must be a positive number of seconds, got {lease_ttl!r}")
        self.lease_ttl = float(lease_ttl)
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
        #: What a new process needs to resume the paused work (JSON-able; set with
        #: :meth:`suspend`, saved with the execution).
        self.resume_state: dict[str, Any] | None = None
        #: Requirement ids of execution-scoped environments a person approved.
        self.granted: list[str] = []
        #: The version of the saved execution this copy last read or wrote (0: unsaved).
        self.state_version = 0
        #: Turns a saved result (JSON) back into what ``async_continue_with`` returns.
        self.restore_result: Callable[[Any], Any] | None = None
        #: Why a resume of this durable execution raised (saved with it), or ``None``.
        self.error: str | None = None
        self._lease: Any = None
        self._lease_owner: str | None = None
        self._resuming = False
        #: Work of this copy holds the lease and saves when it ends (a resume, a run that
        #: saves every round, a continued run): ``save`` waits for that, ``close`` keeps it.
        self._holding = False
        self._continue: Callable[[], Awaitable[Any]] | None = None
        self._continued: Any = _KEEP

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, *, execution_environments: Iterable[
            EnvironmentRequirement | Mapping[str, Any]] = ()) -> Execution:
        """:meth:`async_start` from sync code."""
        from ._sync import run_sync

        return run_sync(self._start_kw, list(execution_environments))

    async def _start_kw(self, execution_environments: list[Any]) -> Execution:
        return await self.async_start(execution_environments=execution_environments)

    async def async_start(self, *, execution_environments: Iterable[
            EnvironmentRequirement | Mapping[str, Any]] = ()) -> Execution:
        """Ensure the execution-scoped environments and inject their resources. A pending
        approval pauses the execution (see :attr:`pending`) instead of raising.

        ``execution_environments`` adds requirements here as well as at creation (each
        resource key once; a sealed execution takes no more); starting again ensures
        the ones added since."""
        self._require("open", "sealed")
        added = [_execution_scoped(r, self.id) for r in execution_environments]
        if added:
            self._require("open")
            keys = {r.resource_key or r.kind for r in self.requirements}
            for requirement in added:
                key = requirement.resource_key or requirement.kind
                if key in keys:
                    raise ValueError(f"execution {self.id} already has an environment with "
                                     f"resource key {key!r}")
                keys.add(key)
            self.requirements.extend(added)
            self._started = False
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
                    if request.subject_id not in self.granted:
                        self.granted.append(request.subject_id)
            await self.async_start()
        return self

    def seal(self) -> Execution:
        """Open -> sealed: no more environments or runtime resources may be added; work
        already under way (and resuming a paused run) goes on. Idempotent."""
        self._require("open", "sealed")
        self.state = "sealed"
        return self

    async def async_seal(self) -> Execution:
        """:meth:`seal` from async code (the reference's async form)."""
        return self.seal()

    def add_runtime_resource(self, key: str, value: Any) -> None:
        """Add an unmanaged live object (the host owns its lifecycle)."""
        self._require("open")
        self.runtime_resources[key] = value
        self.resources[key] = value

    async def async_close(self) -> ExecutionSnapshot:
        """Release the execution's environments and return its snapshot. Idempotent.

        Closing a durable execution that is paused lets go of it *here* only (its
        environments and lease): the saved state stays paused, for another process to
        load and resume."""
        if self.state != "closed":
            with anyio.CancelScope(shield=True):
                await self.manager.async_release_scope("execution", self.id, events=self.events)
                # a run is the request of its calls: request-scoped environments end with it
                await self.manager.async_release_scope("request", self.id, events=self.events)
            self.state = "closed"
            self.closed_at = time.time()
            self.resources = {}
            self.handles = {key: handle.model_copy(update={"status": "released", "ref_count": 0})
                            for key, handle in self.handles.items()}
        if self._lease is not None and not self._holding:
            with anyio.CancelScope(shield=True):
                await self._let_go()
        return self.snapshot()

    def close(self) -> ExecutionSnapshot:
        """:meth:`async_close` from sync code."""
        from ._sync import run_sync

        return run_sync(self.async_close)

    async def __aenter__(self) -> Execution:
        await self.async_start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.async_close()

    def bind(self) -> _Bound:
        """Make this the current execution of the calling task (``with execution.bind():``)."""
        return _Bound(self)

    # -- approval pause and resume -------------------------------------------------------
    @property
    def paused(self) -> bool:
        return bool(self.pending) and self.state != "closed"

    @property
    def resuming(self) -> bool:
        """Is :meth:`async_continue_with` running the resumed work now?"""
        return self._resuming

    def suspend(self, requests: Iterable[ApprovalRequest], resume: Resume, *,
                state: dict[str, Any] | None = _KEEP) -> None:
        """Pause on pending approvals; ``resume(decision)`` continues the work. ``state``
        (JSON-able) is what another process needs to rebuild ``resume``; it is saved with
        a durable execution (left as it was when not given)."""
        self.pending = [r for r in requests if r is not None]
        self._resume = resume
        if state is not _KEEP:
            self.resume_state = state

    async def async_continue_with(self, decision: ApprovalDecision | str | bool, *,
                                  resume_request_id: str, actor: str | None = None) -> Any:
        """Resume a paused execution with a person's decision. The same
        ``resume_request_id`` resumes once: a repeat returns the first result.

        A durable execution first takes its lease (:class:`ExecutionBusy` while another
        process holds it) and checks that the saved state is still the one this copy
        knows (:class:`ExecutionConflict` if another process resumed it meanwhile; a
        repeat of the resume id that process used returns its result). When the resumed
        work ends or pauses again, the new state is saved with compare-and-set and the
        lease is released.

        The resume ledger: in a durable execution each resume request appends the
        RuntimeEvents ``execution.resume.accepted`` (the checks passed), ``.dispatched``
        (the resumed work starts) and ``.completed`` (its new state is saved) or
        ``.dispatch_failed`` (it raised, or its state could not be saved) under the
        execution's id, each carrying ``resume_request_id`` and ``actor`` (read them with
        ``workspace.query_runtime_events(execution.id)``; :data:`RESUME_PHASES`). A
        request refused before acceptance (busy, conflict, not paused) writes none, and a
        repeat of a completed one writes none and dispatches nothing."""
        if not isinstance(resume_request_id, str) or not resume_request_id:
            raise ValueError("resume_request_id must be a non-empty string (stable per "
                             f"callback or approval ticket), got {resume_request_id!r}")
        if actor is not None and not isinstance(actor, str):
            raise TypeError(f"actor must be a string or None, got {type(actor).__name__}")
        async with self._resume_lock:
            if resume_request_id in self._resumed:
                return self._resumed[resume_request_id]
            if self.state == "closed":
                raise ExecutionStateError(f"execution {self.id} is closed")
            if not self.pending or self._resume is None:
                raise ExecutionStateError(f"execution {self.id} is not waiting for approval")
            decision = self._decision(decision, actor)
            ledger: _ResumeLedger | None = None
            if self.workspace is not None:
                found, stored = await self._hold(resume_request_id)
                if found:
                    self._resumed[resume_request_id] = stored
                    return stored
                ledger = _ResumeLedger(self, resume_request_id, decision)
                try:  # both before anything changes here: a failed write can be retried
                    await ledger.record("accepted")
                    await ledger.record("dispatched")
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await self._let_go()
                    raise
            self.decisions.append(decision)
            resume, self._resume = self._resume, None
            self._resumed_requests, self.pending = self.pending, []
            if self.events is not None:
                await self.events.emit("policy.approval.resumed", "execution",
                                       execution_id=self.id, request_id=decision.request_id,
                                       resume_request_id=resume_request_id,
                                       decision=decision.decision)
            if ledger is None:
                result = await resume(decision)
                self._resumed[resume_request_id] = result
                return result
            self._resuming = self._holding = True
            try:
                result = await self._run_held(lambda: resume(decision))
            except BaseException as exc:
                self._resuming = self._holding = False
                with anyio.CancelScope(shield=True):
                    await self._save_failure(exc)
                    await ledger.record("dispatch_failed", error=self.error, quiet=True)
                raise
            self._resuming = self._holding = False
            self._resumed[resume_request_id] = result
            try:
                await self.save()
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await ledger.record("dispatch_failed", quiet=True, error=(
                        f"the resumed work ran but its state could not be saved: "
                        f"{type(exc).__name__}: {exc}"))
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    await self._let_go()
            await ledger.record("completed")
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

    # -- a run saved every round: continue it elsewhere ---------------------------------
    @property
    def saved_round(self) -> int | None:
        """The round after which this execution was last saved mid-run (``save_rounds``)
        while its loop goes on (not paused, not closed), else ``None``. A copy loaded in
        that state continues the loop with :meth:`async_continue_run`."""
        state = self.resume_state
        if self.state == "closed" or self.paused or not isinstance(state, dict) \
                or state.get("kind") != RUNNING:
            return None
        return state.get("round")

    async def save_checkpoint(self, state: dict[str, Any]) -> int:
        """Save this durable execution mid-run, its loop going on: ``state`` (JSON-able,
        ``kind`` :data:`RUNNING`, ``round`` the round just done) is what another process
        needs to continue the loop from the next round. Redacted and compare-and-set as
        :meth:`save` (:class:`ExecutionConflict` when another process changed it: the
        caller must stop); written inside a resume too. Returns the new state version.
        A save under way finishes before a cancellation (the run's time bound) lands, so
        this copy always knows the version it wrote."""
        if self.workspace is None:
            raise ExecutionStateError(f"execution {self.id} has no workspace to be saved to")
        if not isinstance(state, dict) or state.get("kind") != RUNNING:
            raise ValueError(f"a checkpoint's state is a dict of kind {RUNNING!r}")
        with anyio.CancelScope(shield=True):
            if self._holding:
                await self._still_held()
            self.resume_state = state
            return await self._put()

    def set_continuation(self, work: Callable[[], Awaitable[Any]]) -> None:
        """What continues this execution's loop from its last saved round (``await
        work()`` returns the loop's result); ``agent.load_execution`` sets it."""
        self._continue = work

    async def async_continue_run(self) -> Any:
        """Continue the loop of an execution saved mid-run (loaded with
        ``agent.async_load_execution`` in a process other than the one that ran it, which
        died) from the round after :attr:`saved_round`, and return its result. The lease
        is heartbeaten while it runs; every further round is saved as it ends, and the
        final state (closed, or paused on an approval) when the loop ends, then the lease
        is let go.

        Idempotent where it can be: called again on this copy it returns the first
        result; on a closed execution it returns the saved result. A copy whose saved
        state changed since it was read (another process continued it) raises
        :class:`ExecutionConflict` and runs nothing; :class:`ExecutionBusy` while another
        process holds the lease. :class:`ExecutionStateError` for a paused execution (it
        waits for ``async_continue_with``), one closed by a failure, or one not saved
        mid-run. If the continued loop raises, the execution is saved closed with the
        error (a cancelled one stays saved at its last round)."""
        async with self._resume_lock:
            if self._continued is not _KEEP:
                return self._continued
            if self.state == "closed":
                if self.error is not None or self.result is None:
                    raise ExecutionStateError(
                        f"execution {self.id} is closed without a result to return"
                        + (f": {self.error}" if self.error else ""))
                return self.result
            if self.paused:
                raise ExecutionStateError(
                    f"execution {self.id} waits for approval: resume it with "
                    "async_continue_with(decision, resume_request_id=...)")
            if self.error is not None:
                raise ExecutionStateError(f"execution {self.id} ended with an error; there is "
                                          f"nothing to continue: {self.error}")
            if self.saved_round is None or self._continue is None:
                raise ExecutionStateError(
                    f"execution {self.id} was not saved mid-run (save_rounds): there is no "
                    "round to continue from; load it with agent.async_load_execution(...)")
            if self.workspace is not None:
                await self._hold(None)
            work, self._continue = self._continue, None
            result = await self._held_work(work)
            self._continued = result
            return result

    def continue_run(self) -> Any:
        """:meth:`async_continue_run` from sync code."""
        from ._sync import run_sync

        return run_sync(self.async_continue_run)

    async def _run_saving(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run a new loop that saves every round: claim the lease (:class:`ExecutionBusy`
        if another process holds it; :class:`ExecutionConflict` if an execution with this
        id is saved already), run ``work`` holding it, save the final state, let go."""
        from .workspace import default_owner

        ws, key = self.workspace, saved_key(self.id)
        self._lease_owner = self._lease_owner or default_owner()
        self._lease = await ws.claim_lease(key, ttl=self.lease_ttl, owner=self._lease_owner)
        if self._lease is None:
            holder = await ws.read_lease(key)
            who = f" by {holder.owner}" if holder is not None else ""
            raise ExecutionBusy(f"execution {self.id} is held{who}: another process runs it")
        try:
            found = await ws.read_snapshot(key)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._let_go()
            raise
        if found is not None and found[0] != self.state_version:
            await self._let_go()
            raise ExecutionConflict(f"execution {self.id} is saved already (state version "
                                    f"{found[0]}); load it instead of running it again")
        return await self._held_work(work)

    async def _held_work(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``work`` holding the lease (heartbeaten); then save the final state and
        let go. A failure is saved (closed with the error) unless this copy lost the
        execution to another process or was cancelled."""
        self._holding = True
        try:
            result = await self._run_held(work)
        except BaseException as exc:
            self._holding = False
            with anyio.CancelScope(shield=True):
                if isinstance(exc, Exception) and not isinstance(exc, ExecutionStateError):
                    await self._save_failure(exc, "the run")
                else:  # lost to another process, or cancelled: the saved state stays
                    await self._let_go()
            raise
        self._holding = False
        try:
            await self.save()
        finally:
            with anyio.CancelScope(shield=True):
                await self._let_go()
        return result

    # -- durability ----------------------------------------------------------------------
    async def save(self) -> int:
        """Save this execution's state (redacted) to its workspace with compare-and-set
        and return the new state version; :class:`ExecutionConflict` when the saved state
        changed since this copy read or wrote it. Inside a resume (or a run that saves
        every round) this does nothing: that work saves when it ends or pauses again."""
        if self.workspace is None:
            raise ExecutionStateError(f"execution {self.id} has no workspace to be saved to")
        if self._holding:
            return self.state_version
        return await self._put()

    async def _put(self) -> int:
        from .workspace import VersionConflict

        document = self.document()
        try:
            self.state_version = await self.workspace.put_snapshot(
                saved_key(self.id), document, expected_state_version=self.state_version)
        except VersionConflict as exc:
            raise ExecutionConflict(
                f"execution {self.id} was changed by another process (saved state version "
                f"{exc.actual}, this copy knows {exc.expected}); load it again") from None
        return self.state_version

    def document(self) -> dict[str, Any]:
        """What :meth:`save` writes: JSON, redacted with the manager's redactor (by key
        name and registered secret values). A requirement whose configuration held a
        secret is marked ``redacted``: it must be passed again to :meth:`load`."""
        redactor = self.manager.redactor
        environments = []
        for requirement in self.requirements:
            dumped = requirement.model_dump(mode="json")
            environments.append({"requirement": dumped,  # (no key may look secret here)
                                 "redacted": redactor.redact(dumped) != dumped})
        document = {
            "format": SAVED_FORMAT, "id": self.id, "state": self.state,
            "paused": self.paused, "created_at": self.created_at, "closed_at": self.closed_at,
            "saved_at": time.time(), "saved_by": _owner(),
            "environments": environments, "granted": list(self.granted),
            "runtime_resource_keys": sorted(self.runtime_resources),
            "pending": [r.model_dump(mode="json") for r in self.pending],
            "decisions": [d.model_dump(mode="json") for d in self.decisions],
            "resumed": [{"id": rid, "result": _jsonable(result)}
                        for rid, result in self._resumed.items()],
            "resume": (self.resume_state if self.paused or self.saved_round is not None
                       else None),
            "save_rounds": self.save_rounds, "saved_round": self.saved_round,
            "result": _jsonable(self.result), "error": self.error,
        }
        return redactor.redact(document)

    @classmethod
    async def load(cls, manager: ExecutionEnvironmentManager, workspace: Any,
                   execution_id: str, *,
                   execution_environments: Iterable[EnvironmentRequirement
                                                    | Mapping[str, Any]] | None = None,
                   restore_result: Callable[[Any], Any] | None = None,
                   owner: str | None = None, **options: Any) -> Execution:
        """Load a saved execution in this process: read it, claim its lease (unless it is
        closed; :class:`ExecutionBusy` while another process holds it), ensure its
        execution-scoped environments again (unless it paused before they started) and
        restore its pending approvals, decisions and used resume ids. Rebuild what
        resumes it with :meth:`suspend` (``agent.load_execution`` does), then call
        :meth:`async_continue_with`.

        ``execution_environments`` gives requirements again (matched by resource key),
        which is required for those whose configuration held secrets: secrets are not
        saved. ``options`` are those of :class:`Execution` (``runtime_resources``,
        ``events``, ``approval``, ``lease_ttl``, ``require_distributed_provider``...)."""
        from .workspace import default_owner

        execution = cls(manager, workspace=workspace, id=execution_id, **options)
        execution.restore_result = restore_result
        ws = execution.workspace
        key = saved_key(execution_id)
        found = await ws.read_snapshot(key)
        if found is None:
            raise ExecutionNotFound(f"no saved execution {execution_id!r} in workspace "
                                    f"{ws.backend_name!r}")
        version, document = found
        if document.get("format") != SAVED_FORMAT or document.get("id") != execution_id:
            raise ExecutionStateError(f"snapshot {key!r} is not a saved execution this "
                                      f"version understands (format {document.get('format')!r})")
        execution.state_version = version
        execution.created_at = float(document.get("created_at") or execution.created_at)
        execution._resumed = {item["id"]: execution._restored(item.get("result"))
                              for item in document.get("resumed") or ()}
        execution.decisions = [ApprovalDecision.model_validate(d)
                               for d in document.get("decisions") or ()]
        execution.error = document.get("error")
        execution.save_rounds = bool(document.get("save_rounds"))
        if document.get("state") == "closed":
            execution.state = "closed"
            execution.closed_at = document.get("closed_at")
            execution.result = execution._restored(document.get("result"))
            return execution
        execution._lease_owner = owner or default_owner()
        lease = await ws.claim_lease(key, ttl=execution.lease_ttl,
                                     owner=execution._lease_owner)
        if lease is None:
            holder = await ws.read_lease(key)
            who = f" by {holder.owner}" if holder is not None else ""
            raise ExecutionBusy(f"execution {execution_id} is held{who}: another process is "
                                "loading or resuming it; try again later")
        execution._lease = lease
        try:
            execution.requirements = _restored_requirements(
                document.get("environments") or (), execution_environments, execution_id,
                manager)
            execution.granted = list(document.get("granted") or ())
            for requirement_id in execution.granted:
                manager.grant(requirement_id)
            if document.get("state") == "sealed":  # it had started: start it again
                await execution.async_start()
                if execution.pending:
                    raise ExecutionStateError(
                        f"execution {execution_id}'s environments wait for approval again; "
                        "they could not be ensured in this process")
                execution.state = "sealed"
            execution.pending = [ApprovalRequest.model_validate(r)
                                 for r in document.get("pending") or ()]
            execution.resume_state = document.get("resume")
            execution.result = execution._restored(document.get("result"))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await execution.async_close()
            raise
        return execution

    def _restored(self, value: Any) -> Any:
        if value is None or self.restore_result is None:
            return value
        return self.restore_result(value)

    async def _hold(self, resume_request_id: str | None) -> tuple[bool, Any]:
        """Take (or keep) the lease and check the saved state is still the one this copy
        knows. Returns ``(True, result)`` when another process already resumed with
        ``resume_request_id``."""
        from .workspace import LeaseLost, default_owner

        ws, key = self.workspace, saved_key(self.id)
        if self._lease is not None:
            try:
                self._lease = await ws.heartbeat_lease(self._lease, ttl=self.lease_ttl)
            except LeaseLost:
                self._lease = None
        if self._lease is None:
            owner = self._lease_owner or default_owner()
            self._lease = await ws.claim_lease(key, ttl=self.lease_ttl, owner=owner)
            if self._lease is None:
                holder = await ws.read_lease(key)
                who = f" by {holder.owner}" if holder is not None else ""
                raise ExecutionBusy(f"execution {self.id} is held{who}: another process is "
                                    "resuming it")
        found = await ws.read_snapshot(key)
        version = found[0] if found is not None else 0
        if version == self.state_version:
            return False, None
        await self._let_go()
        saved = (found[1].get("resumed") or ()) if found is not None else ()
        stored = {item.get("id"): item.get("result") for item in saved}
        if resume_request_id is not None and resume_request_id in stored:
            return True, self._restored(stored[resume_request_id])
        raise ExecutionConflict(
            f"execution {self.id} was changed by another process (saved state version "
            f"{version}, this copy knows {self.state_version}); load it again")

    async def _run_held(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``work`` (a resume, a loop), heartbeating the lease meanwhile."""
        if self._lease is None:
            return await work()
        outcome: list[tuple[bool, Any]] = []
        async with anyio.create_task_group() as group:
            group.start_soon(self._heartbeat)
            try:
                outcome.append((True, await work()))
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:  # re-raised below, not wrapped in a group
                outcome.append((False, exc))
            group.cancel_scope.cancel()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    async def _still_held(self) -> None:
        """Before a save mid-run: extend this copy's lease, or, when it lapsed, claim it
        again and check nobody saved meanwhile. :class:`ExecutionBusy` (another process
        holds it now) or :class:`ExecutionConflict` stop this copy before it writes."""
        from .workspace import LeaseLost

        if self._lease is not None:
            try:
                self._lease = await self.workspace.heartbeat_lease(self._lease,
                                                                   ttl=self.lease_ttl)
                return
            except LeaseLost:
                self._lease = None
        await self._hold(None)

    async def _heartbeat(self) -> None:
        """Extend the held lease every third of its TTL until cancelled. A lease found
        lost is dropped (the next save of a run claims it again, or stops, see
        :meth:`save_checkpoint`; the compare-and-set of a save still decides); a failed
        heartbeat is tried again at the next beat, while the lease still runs (a lasting
        failure then surfaces at the next save, which extends the lease itself)."""
        from .workspace import LeaseLost

        while True:
            await anyio.sleep(self.lease_ttl / 3)
            if self._lease is None:
                continue
            try:
                self._lease = await self.workspace.heartbeat_lease(self._lease,
                                                                   ttl=self.lease_ttl)
            except LeaseLost:
                self._lease = None
            except Exception:  # the store did not answer this time (a dropped connection)
                pass

    async def _save_failure(self, exc: BaseException, what: str = "the resume") -> None:
        """A resume (or a run saving every round) that raised ends the execution (the agent
        closes it): save that, so no other process runs the work again."""

        self.error = f"{what} raised {type(exc).__name__}: {exc}"
        self.pending, self._resume = [], None
        try:
            await self.save()
        except Exception:  # the workspace's own error or its driver's: the cause stays
            pass
        finally:
            await self._let_go()

    async def _let_go(self) -> None:

        lease, self._lease = self._lease, None
        if lease is not None and self.workspace is not None and not self.workspace.closed:
            try:
                await self.workspace.release_lease(lease)
            except Exception:  # it lapses at its TTL; a failure here must not hide another
                pass

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


class _ResumeLedger:
    """The RuntimeEvents one resume request of a durable execution appends (see
    :meth:`Execution.async_continue_with`); idempotent per request and phase."""

    def __init__(self, execution: Execution, resume_request_id: str,
                 decision: ApprovalDecision) -> None:
        self.execution = execution
        self.resume_request_id = resume_request_id
        self.decision = decision
        self.lease_owner = execution._lease.owner if execution._lease is not None else None

    async def record(self, phase: str, *, error: str | None = None,
                     quiet: bool = False) -> None:
        """Append the phase's event; with ``quiet`` a workspace error is swallowed (the
        caller is already raising the error that matters)."""
        from .workspace import WorkspaceError

        execution = self.execution
        payload: dict[str, Any] = {
            "type": f"execution.resume.{phase}", "phase": phase,
            "execution_id": execution.id, "resume_request_id": self.resume_request_id,
            "actor": self.decision.actor, "request_id": self.decision.request_id,
            "decision": self.decision.decision,
            "state_version": execution.state_version,
            "snapshot_ref": saved_key(execution.id),
            "lease_owner_id": self.lease_owner,
            "at": time.time(),
        }
        if error is not None:
            payload["error"] = error
        payload = execution.manager.redactor.redact(payload)
        try:
            await execution.workspace.append_runtime_event(
                execution.id, f"resume:{self.resume_request_id}:{phase}", payload)
        except WorkspaceError:
            if not quiet:
                raise


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


def _durable_workspace(workspace: Any, require_distributed_provider: bool) -> Any:
    """The workspace a durable execution saves to, checked up front (fail closed)."""
    from .workspace import (
        COMPARE_AND_SET,
        DISTRIBUTED_CAPABILITIES,
        LEASES,
        SNAPSHOTS,
        CapabilityMissing,
        ReadOnlyError,
        Workspace,
        WorkspaceClosedError,
    )

    if workspace is True:
        raise TypeError("workspace=True is not a workspace: pass a Workspace, or False (or "
                        "None) for none")
    if isinstance(workspace, str):
        raise TypeError("workspace must be a Workspace (agently_core.Workspace(...) or "
                        f"agent.workspace), not the name {workspace!r}")
    if not isinstance(workspace, Workspace):
        workspace = Workspace(workspace)  # a backend object, used as it is
    if workspace.closed:
        raise WorkspaceClosedError("the workspace is closed; a durable execution needs it")
    if workspace.read_only:
        raise ReadOnlyError("the workspace is read-only; a durable execution writes its state")
    distributed = require_distributed_provider or workspace.require_distributed_provider
    needed = {SNAPSHOTS, COMPARE_AND_SET, LEASES}
    if distributed:
        needed |= DISTRIBUTED_CAPABILITIES
    missing = needed - set(workspace.capabilities())
    if missing:
        why = " (require_distributed_provider=True)" if distributed else ""
        raise CapabilityMissing(
            f"durable executions need {', '.join(sorted(missing))}{why}, which workspace "
            f"backend {workspace.backend_name!r} does not report")
    return workspace


def _restored_requirements(saved: Iterable[Mapping[str, Any]],
                           given: Iterable[EnvironmentRequirement | Mapping[str, Any]] | None,
                           execution_id: str, manager: Any) -> list[EnvironmentRequirement]:
    """The saved requirements, each replaced by the one given again for its resource key
    (needed when the saved one held secrets)."""
    from .environments import _as_requirement

    supplied: dict[str, EnvironmentRequirement] = {}
    for item in given or ():
        requirement = _as_requirement(item)
        supplied[requirement.resource_key or requirement.kind] = requirement
    restored = []
    for item in saved:
        dumped = item["requirement"]
        key = dumped.get("resource_key") or dumped.get("kind")
        if key in supplied:
            requirement = supplied.pop(key).model_copy(update={
                "id": dumped["id"], "scope": "execution", "owner_id": execution_id})
            manager.redactor.add_from_config(requirement.config)
        elif item.get("redacted"):
            raise ExecutionStateError(
                f"execution {execution_id}'s environment {key!r} held secrets, which are not "
                "saved; pass it again: load_execution(..., execution_environments=[...])")
        else:
            requirement = EnvironmentRequirement.model_validate(dumped)
        restored.append(requirement)
    if supplied:
        raise ExecutionStateError(f"execution {execution_id} has no environment "
                                  f"{', '.join(map(repr, sorted(supplied)))}")
    return restored


def _jsonable(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=repr)


def _owner() -> str:
    from .workspace import default_owner

    return default_owner()


def create_execution(*, manager: ExecutionEnvironmentManager | None = None, **options: Any
                     ) -> Execution:
    """A new :class:`Execution` on ``manager`` (default: the process-wide manager)."""
    if manager is None:
        from .environments import get_manager

        manager = get_manager()
    return Execution(manager, **options)
