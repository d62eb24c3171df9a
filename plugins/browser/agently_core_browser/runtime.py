"""Where Playwright runs: one event loop in a daemon thread, shared by every managed browser.

Playwright's objects belong to the loop that made them, while the environment manager and
the executors may run on any loop (an agent used synchronously, another used from async
code). So every browser, context and page lives on this one loop, and callers hand it
coroutines with :func:`run_here` (awaitable from any asyncio loop) or :func:`call_here`
(blocking). Playwright's driver starts with the first browser and stops when the last one
is released, so nothing is left running between uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_driver: Any = None           # playwright.async_api.Playwright
_users = 0
_driver_lock: asyncio.Lock | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The browser loop (started on first use)."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            ready = threading.Event()
            new = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(new)
                new.call_soon(ready.set)
                new.run_forever()

            threading.Thread(target=run, name="agently-browser-loop", daemon=True).start()
            ready.wait()
            _loop = new
        return _loop


def on_browser_loop() -> bool:
    """Is the caller running on the browser loop?"""
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, loop())


async def run_here(factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` on the browser loop and await its result from the caller's loop.
    Cancelling the caller cancels it there too, and waits (shielded, up to 30 s) until its
    clean-up has run, so a cancelled launch leaves nothing behind when the caller resumes."""
    if on_browser_loop():
        return await factory()
    started, finished = threading.Event(), threading.Event()

    async def wrapped() -> T:
        started.set()
        try:
            return await factory()
        finally:
            finished.set()

    future = submit(wrapped())
    try:
        return await asyncio.wrap_future(future)
    except BaseException:
        future.cancel()
        if started.is_set() and not finished.is_set():
            import anyio
            import anyio.to_thread

            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait, 30.0)
        raise


def call_here(factory: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
    """Blocking form of :func:`run_here` (never from the browser loop itself)."""
    if on_browser_loop():
        raise RuntimeError("call_here would block the browser loop; await run_here instead")

    async def wrapped() -> T:
        return await factory()

    return submit(wrapped()).result(timeout)


async def acquire_driver() -> Any:
    """The shared Playwright driver (on the browser loop), started when needed; pair each
    call with :func:`release_driver`."""
    global _driver, _users, _driver_lock
    if _driver_lock is None:
        _driver_lock = asyncio.Lock()
    async with _driver_lock:
        if _driver is None:
            from playwright.async_api import async_playwright

            _driver = await async_playwright().start()   # its stop() ends the manager
        _users += 1
        return _driver


async def release_driver() -> None:
    """Drop one use of the driver; the last one stops it (its node process exits)."""
    global _driver, _users
    assert _driver_lock is not None
    async with _driver_lock:
        _users = max(0, _users - 1)
        if _users == 0 and _driver is not None:
            driver, _driver = _driver, None
            with contextlib.suppress(Exception):
                await driver.stop()


def driver_running() -> bool:
    """Is Playwright's driver running now?"""
    return _driver is not None


__all__ = ["acquire_driver", "call_here", "driver_running", "loop", "on_browser_loop",
           "release_driver", "run_here", "submit"]
