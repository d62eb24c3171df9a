"""Many action loops at once: each request's loop runs as a Ray task on the cluster.

:func:`run_many` keeps at most ``max_concurrent`` loops in flight, reports progress, and
returns one :class:`~agently_core.models.FlowResult` per request, in the requests' order;
:func:`resume_many` continues loops paused for approval (saved to a shared workspace) on
any node.
A failure stays with its request: a loop that raised, or whose worker process or node
died, comes back as a ``failed`` FlowResult with the cause in ``error``; the others are
unaffected. Records are redacted on the worker, by the agent's own redactor, before they
leave it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agently_core.models import FlowResult

from .settings import RaySettings, ray_settings


async def _loop(agent: Any, job: tuple[str, Any], run_options: Mapping[str, Any],
                workspace: Any) -> Any:
    if job[0] == "resume":
        execution_id, decision, resume_id = job[1]
        execution = await agent.async_load_execution(execution_id, workspace=workspace)
        return await execution.async_continue_with(decision, resume_request_id=resume_id)
    options = dict(run_options)
    if workspace is not None:
        options["workspace"] = workspace
    return await agent.async_run(job[1], **options)


def _run_one(agent_factory: Callable[[], Any], job: tuple[str, Any],
             run_options: Mapping[str, Any],
             workspace_factory: Callable[[], Any] | None = None) -> dict[str, Any]:
    """On the worker: a fresh agent runs (or resumes) one loop; its result as redacted
    data."""
    import anyio

    async def main() -> dict[str, Any]:
        agent = agent_factory()
        workspace = workspace_factory() if workspace_factory is not None else None
        try:
            result = await _loop(agent, job, run_options, workspace)
            return agent.redactor.redact(result.model_dump(mode="json"))
        finally:
            with anyio.CancelScope(shield=True):
                await agent.aclose()
                if workspace is not None:
                    await workspace.aclose()

    return anyio.run(main)


_REMOTE: Any = None


def _remote() -> Any:
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(_run_one)
    return _REMOTE


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
             settings: RaySettings | Mapping[str, Any] | None = None) -> list[FlowResult]:
    """Run ``agent_factory().run(request, **run_options)`` for every request as Ray tasks.

    ``agent_factory`` is called on the worker (it must be picklable: a module-level
    function, or a closure cloudpickle can carry); each agent is closed after its loop.
    ``max_concurrent`` bounds the loops in flight; ``progress`` is True (a bar on stderr),
    False, or a callable ``(index, result)`` called as each loop ends. ``task_options``
    are Ray's (``num_cpus``, ``resources``, ``max_retries``: a task whose worker or node
    died is retried that many times, default 3, from the loop's start). ``workspace``, a
    factory called on the worker (``lambda: Workspace("postgres", dsn=...)``), makes each
    loop's execution durable there: a loop paused for approval returns
    ``stop_reason="approval_required"`` with its ``execution_id``, and
    :func:`resume_many` continues it on any node. ``settings`` (the ``[ray]`` table) say
    which cluster to connect to when this process is not connected yet."""
    requests = list(requests)
    return _many(agent_factory, [("run", r) for r in requests], requests,
                 max_concurrent=max_concurrent, progress=progress, run_options=run_options,
                 task_options=task_options, workspace=workspace, settings=settings)


def resume_many(agent_factory: Callable[[], Any], resumes: Iterable[tuple[str, Any, str]], *,
                workspace: Callable[[], Any], max_concurrent: int = 8,
                progress: bool | Callable[[int, FlowResult], None] = True,
                task_options: Mapping[str, Any] | None = None,
                settings: RaySettings | Mapping[str, Any] | None = None) -> list[FlowResult]:
    """Continue paused loops, each as a Ray task on any node: ``resumes`` are
    ``(execution_id, decision, resume_request_id)`` (``decision`` as
    ``Execution.async_continue_with`` takes it: ``"approved"``, ``"denied"``, or a
    decision object); each is loaded from ``workspace()`` and continued once (a repeated
    ``resume_request_id`` returns the first result, running nothing). FlowResults in
    order; failures kept to their own resume, as in :func:`run_many`."""
    if not callable(workspace):
        raise TypeError("workspace must be a factory of the Workspace the loops were saved to")
    resumes = [tuple(r) for r in resumes]
    if any(len(r) != 3 for r in resumes):
        raise ValueError("each resume is (execution_id, decision, resume_request_id)")
    return _many(agent_factory, [("resume", r) for r in resumes], [r[0] for r in resumes],
                 max_concurrent=max_concurrent, progress=progress, run_options=None,
                 task_options=task_options, workspace=workspace, settings=settings)


def _many(agent_factory: Callable[[], Any], jobs: list[tuple[str, Any]], requests: list[Any],
          *, max_concurrent: int, progress: bool | Callable[[int, FlowResult], None],
          run_options: Mapping[str, Any] | None, task_options: Mapping[str, Any] | None,
          workspace: Callable[[], Any] | None,
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
            pending[remote.remote(factory_ref, jobs[index], options, workspace_ref)] = index

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
