"""Run local Python functions: async functions on the loop, sync ones in worker threads."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import anyio
import anyio.to_thread

from agently_core.errors import ActionError


class FunctionExecutor:
    """Executor for ``kind="function"``.

    Sync functions run in a worker thread (at most ``max_threads`` at once) so they never
    block the event loop. When a call times out the caller gets its record at the deadline;
    a sync function cannot be interrupted, so its thread is abandoned and finishes on its
    own while holding one of the ``max_threads`` slots.
    """

    kind = "function"

    def __init__(self, max_threads: int = 64) -> None:
        self._limiter = anyio.CapacityLimiter(max_threads)

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        fn = context.target
        if not callable(fn):
            raise ActionError(f"action {spec.name!r} has no function bound to it")
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn)):
            return await fn(**kwargs)
        result = await anyio.to_thread.run_sync(
            functools.partial(fn, **kwargs), abandon_on_cancel=True, limiter=self._limiter
        )
        if inspect.isawaitable(result):
            result = await result
        return result
