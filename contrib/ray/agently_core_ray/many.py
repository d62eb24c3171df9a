"""Many action loops at once: each request's loop runs as a Ray task on the cluster.

:func:`run_many` keeps at most ``max_concurrent`` loops in flight, reports progress, and
returns one :class:`~agently_core.models.FlowResult` per request, in the requests' order;
:func:`resume_many` continues loops paused for approval (saved to a shared workspace) on
any node. With a workspace each loop is saved after every round under an execution id
fixed on the driver (``<batch_id>-<index>``), and a task first loads it: a task Ray
retries because its worker or node died goes on from the last saved round (a finished
loop returns its saved result, a paused one its ``approval_required`` result) instead of
starting the loop again.
A failure stays with its request: a loop that raised, or whose worker process or node
died, comes back as a ``failed`` FlowResult with the cause in ``error``; the others are
unaffected. Records are redacted on the worker, by the agent's own redactor, before they
leave it.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agently_core.models import FlowResult

from .settings import RaySettings, ray_settings

#: Seconds a loop's execution lease lasts (heartbeaten while it runs): how long a retried
#: task waits at most for the lease of a task whose worker died.
DEFAULT_LEASE_TTL = 20.0


async def _loop(agent: Any, job: tuple[Any, ...], run_options: Mapping[str, Any],
                workspace: Any, lease_ttl: float) -> Any:
    if job[0] == "resume":
        execution_id, decision, resume_id = job[1]
        execution = await _load(agent, execution_id, workspace, lease_ttl, {})
        if execution.saved_round is not None:  # its task died after resuming: go on
            return await execution.async_continue_run()
        return await execution.async_continue_with(decision, resume_request_id=resume_id)
    if workspace is None:
        return await agent.async_run(job[1], **run_options)
    return await _saved_loop(agent, job[1], job[2], run_options, workspace, lease_ttl)


async def _saved_loop(agent: Any, request: Any, execution_id: str,
                      run_options: Mapping[str, Any], workspace: Any,
                      lease_ttl: float) -> Any:
    """The loop of ``execution_id``: loaded when saved (finished: its result; paused: its
    approval_required result; saved mid-run: continued from the next round), else run
    anew, saved every round."""
    from agently_core.execution import ExecutionBusy, ExecutionConflict, ExecutionNotFound

    options = dict(run_options)
    new = {"execution_environments": options.pop("execution_environments", ()),
           "runtime_resources": options.pop("runtime_resources", None)}
    deadline = _lease_deadline(lease_ttl)
    while True:
        try:
            execution = await _load(agent, execution_id, workspace, lease_ttl, new)
        except ExecutionNotFound:
            execution = agent.create_execution(workspace=workspace, save_rounds=True,
                                               execution_id=execution_id,
                                               lease_ttl=lease_ttl, **new)
            try:
                return await agent.async_run(request, execution=execution, **options)
            except (ExecutionBusy, ExecutionConflict) as exc:
                # another task of this request holds it (one Ray thought dead), or saved it
                # first: load what it saved, once its lease ends
                await _wait_for_lease(deadline, exc)
                continue
        if execution.paused:
            return _paused_result(execution, request)
        return await execution.async_continue_run()  # closed: its saved result


async def _load(agent: Any, execution_id: str, workspace: Any, lease_ttl: float,
                new: Mapping[str, Any]) -> Any:
    """Load the saved execution, waiting (at most about twice the lease's TTL) while the
    lease of a task that died holds it."""
    from agently_core.execution import ExecutionBusy

    deadline = _lease_deadline(lease_ttl)
    while True:
        try:
            return await agent.async_load_execution(
                execution_id, workspace=workspace, lease_ttl=lease_ttl,
                execution_environments=new.get("execution_environments") or None,
                runtime_resources=new.get("runtime_resources"))
        except ExecutionBusy as exc:
            await _wait_for_lease(deadline, exc)


def _lease_deadline(lease_ttl: float) -> float:
    return time.monotonic() + 2 * lease_ttl + 5


async def _wait_for_lease(deadline: float, busy: Exception) -> None:
    """Sleep a little before trying a held lease again; ``busy`` is raised past
    ``deadline`` (a live task holds it)."""
    import anyio

    if time.monotonic() > deadline:
        raise busy
    await anyio.sleep(0.5)


def _paused_result(execution: Any, request: Any) -> FlowResult:
    result = execution.result if isinstance(execution.result, FlowResult) else FlowResult(
        request=request, stop_reason="approval_required",
        error="the execution's environments wait for approval")
    return result.model_copy(update={"execution_id": execution.id})


def _run_one(agent_factory: Callable[[], Any], job: tuple[Any, ...],
             run_options: Mapping[str, Any],
             workspace_factory: Callable[[], Any] | None = None,
             lease_ttl: float = DEFAULT_LEASE_TTL) -> dict[str, Any]:
    """On the worker: a fresh agent runs (or resumes, or continues) one loop; its result
    as redacted data. It runs on agently-core's shared event loop of the worker process
    (as the sync API does), which outlives the task: no loop is made per loop."""
    import anyio

    from agently_core._sync import run_sync

    async def main() -> dict[str, Any]:
        agent = agent_factory()
        workspace = workspace_factory() if workspace_factory is not None else None
        try:
            result = await _loop(agent, job, run_options, workspace, lease_ttl)
            return agent.redactor.redact(result.model_dump(mode="json"))
        finally:
            with anyio.CancelScope(shield=True):
                await agent.aclose()
                if workspace is not None:
                    await workspace.aclose()

    return run_sync(main)


@functools.cache
def _remote() -> Any:
    import ray

    return ray.remote(_run_one)


class Progress:
    """A one-line progress bar on ``stream`` (stderr): done/total, failed, rate."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self.done = self.failed = 0
        self.began = time.monotonic()

    def __call__(self, index: int, result: FlowResult) -> None:
        self.done += 1
        self.failed += result.stop_reason == "failed"
        filled = self.width * self.done // max(self.total, 1)
        rate = self.done / max(time.monotonic() - self.began, 1e-9)
        end = "\n" if self.done == self.total else ""
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/"
                          f"{self.total} ({self.failed} failed) {rate:.1f}/s{end}")
        self.stream.flush()


def _failed(request: Any, exc: BaseException) -> FlowResult:
    from .cluster import cause

    return FlowResult(request=request, stop_reason="failed",
                      error=f"the loop's Ray task failed: {cause(exc)}")


def run_many(agent_factory: Callable[[], Any], requests: Iterable[Any], *,
             max_concurrent: int = 8, progress: bool | Callable[[int, FlowResult], None] = True,
             run_options: Mapping[str, Any] | None = None,
             task_options: Mapping[str, Any] | None = None,
             workspace: Callable[[], Any] | None = None,
             batch_id: str | None = None, lease_ttl: float = DEFAULT_LEASE_TTL,
             settings: RaySettings | Mapping[str, Any] | None = None) -> list[FlowResult]:
    """Run ``agent_factory().run(request, **run_options)`` for every request as Ray tasks.

    ``agent_factory`` is called on the worker (it must be picklable: a module-level
    function, or a closure cloudpickle can carry); each agent is closed after its loop.
    ``max_concurrent`` bounds the loops in flight; ``progress`` is True (a bar on stderr),
    False, or a callable ``(index, result)`` called as each loop ends. ``task_options``
    are Ray's (``num_cpus``, ``resources``, ``max_retries``: a task whose worker or node
    died is retried that many times, default 3: from the loop's start without a
    workspace, from its last saved round with one). ``workspace``, a factory called on
    the worker (``lambda: Workspace("postgres", dsn=...)``), makes each loop's execution
    durable there, saved after every round under the id ``<batch_id>-<index>``
    (``batch_id``: a new one per call by default; the same again picks a batch up: each
    loop returns its saved result, or goes on from where it was saved). A loop paused for
    approval returns ``stop_reason="approval_required"`` with its ``execution_id``, and
    :func:`resume_many` continues it on any node. ``lease_ttl`` (seconds) is how long a
    loop's lease outlives a dead task, so how long its retry waits at most before going
    on. ``settings`` (the ``[ray]`` table) say which cluster to connect to when this
    process is not connected yet."""
    from agently_core.models import new_id

    requests = list(requests)
    if batch_id is not None and (not isinstance(batch_id, str) or not batch_id.strip()):
        raise ValueError(f"batch_id must be a non-empty string, got {batch_id!r}")
    batch = batch_id or new_id("batch_")
    jobs = [("run", r, f"{batch}-{n}" if workspace is not None else None)
            for n, r in enumerate(requests)]
    return _many(agent_factory, jobs, requests,
                 max_concurrent=max_concurrent, progress=progress, run_options=run_options,
                 task_options=task_options, workspace=workspace, lease_ttl=lease_ttl,
                 settings=settings)


def resume_many(agent_factory: Callable[[], Any], resumes: Iterable[tuple[str, Any, str]], *,
                workspace: Callable[[], Any], max_concurrent: int = 8,
                progress: bool | Callable[[int, FlowResult], None] = True,
                task_options: Mapping[str, Any] | None = None,
                lease_ttl: float = DEFAULT_LEASE_TTL,
                settings: RaySettings | Mapping[str, Any] | None = None) -> list[FlowResult]:
    """Continue paused loops, each as a Ray task on any node: ``resumes`` are
    ``(execution_id, decision, resume_request_id)`` (``decision`` as
    ``Execution.async_continue_with`` takes it: ``"approved"``, ``"denied"``, or a
    decision object); each is loaded from ``workspace()`` and continued once (a repeated
    ``resume_request_id`` returns the first result, running nothing). A loop saved every
    round (as :func:`run_many` saves them) whose resume task died goes on, when Ray
    retries it, from its last saved round. FlowResults in order; failures kept to their
    own resume, as in :func:`run_many`."""
    if not callable(workspace):
        raise TypeError("workspace must be a factory of the Workspace the loops were saved to")
    resumes = [tuple(r) for r in resumes]
    if any(len(r) != 3 for r in resumes):
        raise ValueError("each resume is (execution_id, decision, resume_request_id)")
    return _many(agent_factory, [("resume", r) for r in resumes], [r[0] for r in resumes],
                 max_concurrent=max_concurrent, progress=progress, run_options=None,
                 task_options=task_options, workspace=workspace, lease_ttl=lease_ttl,
                 settings=settings)


def _many(agent_factory: Callable[[], Any], jobs: list[tuple[Any, ...]], requests: list[Any],
          *, max_concurrent: int, progress: bool | Callable[[int, FlowResult], None],
          run_options: Mapping[str, Any] | None, task_options: Mapping[str, Any] | None,
          workspace: Callable[[], Any] | None, lease_ttl: float,
          settings: RaySettings | Mapping[str, Any] | None) -> list[FlowResult]:
    import ray

    from .cluster import connect

    if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) \
            or max_concurrent < 1:
        raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
    if not callable(agent_factory):
        raise TypeError(f"agent_factory must be callable, got {type(agent_factory).__name__}")
    if workspace is not None and not callable(workspace):
        raise TypeError("workspace must be a factory (called on the worker) of a Workspace")
    if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, (int, float)) \
            or not lease_ttl > 0:
        raise ValueError(f"lease_ttl must be a number of seconds above 0, got {lease_ttl!r}")
    connect(settings if isinstance(settings, RaySettings) else ray_settings(settings))
    report = Progress(len(requests)) if progress is True else progress or None
    remote = _remote().options(**dict(task_options or {})) if task_options else _remote()
    factory_ref = ray.put(agent_factory)
    workspace_ref = ray.put(workspace) if workspace is not None else None
    options = dict(run_options or {})
    results: list[FlowResult | None] = [None] * len(requests)
    pending: dict[Any, int] = {}
    following = iter(range(len(requests)))

    def submit() -> None:
        index = next(following, None)
        if index is not None:
            pending[remote.remote(factory_ref, jobs[index], options, workspace_ref,
                                  float(lease_ttl))] = index

    for _ in range(min(max_concurrent, len(requests))):
        submit()
    try:
        while pending:
            done, rest = ray.wait(list(pending), num_returns=1)
            if rest:  # every other one that is ready too, without waiting
                done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in done:
                index = pending.pop(ref)
                try:
                    result = FlowResult.model_validate(ray.get(ref))
                except Exception as exc:  # this request's failure only
                    result = _failed(requests[index], exc)
                results[index] = result
                if report:
                    report(index, result)
                submit()
    except BaseException:
        for ref in pending:  # interrupted: no loop keeps running for nobody
            ray.cancel(ref, force=True)
        raise
    return [result for result in results if result is not None]


__all__ = ["Progress", "resume_many", "run_many"]
