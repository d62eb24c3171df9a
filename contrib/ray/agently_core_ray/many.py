"""Many action loops at once: each request's loop runs as a Ray task on the cluster.

:func:`run_many` keeps at most ``max_concurrent`` loops in flight, reports progress, and
returns one :class:`~agently_core.models.FlowResult` per request, in the requests' order.
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


def _run_one(agent_factory: Callable[[], Any], request: Any,
             run_options: Mapping[str, Any]) -> dict[str, Any]:
    """On the worker: a fresh agent runs ``request``'s loop; its result as redacted data."""
    agent = agent_factory()
    try:
        result = agent.run(request, **dict(run_options))
        data = result.model_dump(mode="json")
        return agent.redactor.redact(data)
    finally:
        agent.close()


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
             settings: RaySettings | Mapping[str, Any] | None = None) -> list[FlowResult]:
    """Run ``agent_factory().run(request, **run_options)`` for every request as Ray tasks.

    ``agent_factory`` is called on the worker (it must be picklable: a module-level
    function, or a closure cloudpickle can carry); each agent is closed after its loop.
    ``max_concurrent`` bounds the loops in flight; ``progress`` is True (a bar on stderr),
    False, or a callable ``(index, result)`` called as each loop ends. ``task_options``
    are Ray's (``num_cpus``, ``resources``, ``max_retries``: a task whose worker or node
    died is retried that many times, default 3). ``settings`` (the ``[ray]`` table) say
    which cluster to connect to when this process is not connected yet."""
    import ray

    from .cluster import connect

    if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) \
            or max_concurrent < 1:
        raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
    if not callable(agent_factory):
        raise TypeError(f"agent_factory must be callable, got {type(agent_factory).__name__}")
    requests = list(requests)
    connect(settings if isinstance(settings, RaySettings) else ray_settings(settings))
    report = Progress(len(requests)) if progress is True else progress or None
    remote = _remote().options(**dict(task_options or {})) if task_options else _remote()
    factory_ref = ray.put(agent_factory)
    options = dict(run_options or {})
    results: list[FlowResult | None] = [None] * len(requests)
    pending: dict[Any, int] = {}
    following = iter(range(len(requests)))

    def submit() -> None:
        index = next(following, None)
        if index is not None:
            pending[remote.remote(factory_ref, requests[index], options)] = index

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


__all__ = ["Progress", "run_many"]
