"""Run coroutines from synchronous code.

All synchronous entry points share one asyncio event loop in a daemon thread, so they
behave the same inside Jupyter, inside a running loop or in a plain script, and warm
resources created by one sync call stay usable by the next (they live on that loop).
anyio runs on it like on any asyncio loop. At interpreter exit the registered cleanups
run on that loop (releasing global-scope resources), then the loop stops.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_cleanups: list[Callable[[], Awaitable[Any]]] = []


def on_shutdown(cleanup: Callable[[], Awaitable[Any]]) -> None:
    """Run ``await cleanup()`` at interpreter exit, newest first."""
    with _lock:
        _cleanups.append(cleanup)


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    loop = _loop
    if loop is None:
        with _lock:
            loop = _loop
            if loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                _thread = threading.Thread(target=serve, name="agently-core-sync", daemon=True)
                _thread.start()
                ready.wait()
                _loop = loop
    return loop


@atexit.register
def shutdown() -> None:
    """Run the cleanups, then stop the shared loop (called at interpreter exit)."""
    global _loop, _thread
    with _lock:
        cleanups = _cleanups[::-1]
        _cleanups.clear()
    for cleanup in cleanups:
        try:
            run_sync(cleanup)
        except Exception:
            pass
    with _lock:
        loop, thread, _loop, _thread = _loop, _thread, None, None
    if loop is None or thread is None:
        return

    async def finish() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()

    try:
        asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=5)
    except Exception:
        pass
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not loop.is_running():
        loop.close()


async def on_shared_loop(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """``await fn(*args, **kwargs)`` on the shared loop, from async code on any loop.

    What the synchronous API starts (processes, streams, locks) lives on the shared loop, so
    async calls that touch the same objects (the process-wide environment manager) run
    there too: mixing ``ensure`` and ``await async_ensure`` in one program then works.
    Cancelling the caller cancels the call on the shared loop."""
    loop = _get_loop()
    if threading.current_thread() is _thread:
        return await fn(*args, **kwargs)
    future = asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), loop)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another async library (trio): wait in a worker thread
        import anyio.to_thread

        try:
            return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        finally:
            future.cancel()
    return await asyncio.wrap_future(future)


def run_sync(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Call ``await fn(*args)`` on the shared loop and return its result. Must not be called
    from the shared loop's own thread (that would deadlock)."""
    loop = _get_loop()
    if threading.current_thread() is _thread:
        raise RuntimeError("synchronous agently-core APIs cannot be called from async code "
                           "running on their own loop; await the async_* variant instead")
    return asyncio.run_coroutine_threadsafe(fn(*args), loop).result()
