"""Blocking calls under a hard deadline, with a bound on the threads they may hold.

A synchronous library call (ddgs's search engines) cannot be interrupted. :class:`Runner`
starts each call in its own daemon thread and waits for it on the event loop only until
the deadline; past it the caller gets :class:`Overdue` at once and the thread is abandoned
to finish on its own. Every call holds one of ``limit`` slots for as long as its thread
lives (abandoned or not), and a call that finds no free slot before its deadline fails
with :class:`Busy` instead of starting another thread: calls that hang can never pile up
more than ``limit`` threads.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")
_POLL_S = 0.01


class Overdue(TimeoutError):
    """The call did not return before its deadline (its thread may still be running)."""


class Busy(RuntimeError):
    """Every slot is held by a call still running, past the caller's deadline."""


class Runner:
    """Runs blocking callables in threads named ``{name}-N``, at most ``limit`` at once."""

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.name = name
        self._slots = threading.BoundedSemaphore(limit)
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        self._alive = 0

    @property
    def alive(self) -> int:
        """Threads of this runner still running (abandoned ones included)."""
        return self._alive

    async def run(self, fn: Callable[..., T], *args: Any, deadline: float) -> T:
        """``fn(*args)`` in a thread; ``deadline`` is a :func:`time.monotonic` time."""
        while not self._slots.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise Busy(f"{self.limit} earlier calls are still running past their "
                           "deadlines; try again later")
            await anyio.sleep(_POLL_S)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def work() -> None:
            try:
                value, ok = fn(*args), True
            except BaseException as exc:
                value, ok = exc, False
            finally:
                with self._lock:
                    self._alive -= 1
                self._slots.release()
            try:
                loop.call_soon_threadsafe(settle, ok, value)
            except RuntimeError:  # the caller's loop is gone: nobody waits any more
                pass

        with self._lock:
            self._alive += 1
        try:
            threading.Thread(target=work, name=f"{self.name}-{next(self._count)}",
                             daemon=True).start()
        except BaseException:
            with self._lock:
                self._alive -= 1
            self._slots.release()
            raise
        remaining = deadline - time.monotonic()
        try:
            with anyio.move_on_after(max(0.0, remaining)):
                return await future
        finally:
            if not future.done():  # the thread's late answer then goes nowhere
                future.cancel()
        raise Overdue(f"no answer within the deadline ({max(0.0, remaining):.3g}s)")


__all__ = ["Busy", "Overdue", "Runner"]
