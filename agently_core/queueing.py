"""A shared resource that serves one call at a time, with a bounded and visible queue.

A warm sandbox (a Python worker, a Bash sandbox, a SQLite connection) is shared by every
call of its scope owner but runs one call at a time. :class:`Turnstile` is how a call
waits for its turn: the number of waiting calls is bounded (one more fails at once with
:class:`ResourceBusy`, nothing run), and the wait is recorded on the call's
:class:`~agently_core.actions.ActionContext`, so its record says how long it queued
(``meta["queued_ms"]``) and a timeout that strikes while it still waits says that the
call never started.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .errors import ActionError


class ResourceBusy(ActionError):
    """The shared resource already has as many calls waiting as it allows; nothing ran."""


class Turnstile:
    """One call at a time through a shared resource; at most ``max_waiting`` waiting."""

    def __init__(self, what: str, *, max_waiting: int = 16) -> None:
        if max_waiting < 0:
            raise ValueError("max_waiting must be 0 or more")
        self.what = what
        self.max_waiting = max_waiting
        self.waiting = 0
        self._lock = anyio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @asynccontextmanager
    async def turn(self, context: Any = None) -> AsyncIterator[None]:
        """Wait for the resource (recording the wait on ``context``), hold it for the
        block, then hand it to the next caller."""
        if self._lock.locked():
            if self.waiting >= self.max_waiting:
                raise ResourceBusy(
                    f"{self.what} is busy: {self.waiting} call(s) already wait for it (at most "
                    f"{self.max_waiting}); nothing ran, try again later")
            started = time.perf_counter()
            self.waiting += 1
            if context is not None:
                context.queued, context.queued_for = True, self.what
            try:
                await self._lock.acquire()
            finally:  # cancelled while waiting: ``queued`` stays set (it never started)
                self.waiting -= 1
                if context is not None:
                    context.queued_s += time.perf_counter() - started
            if context is not None:
                context.queued = False
        else:
            await self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()
