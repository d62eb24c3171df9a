"""A server's own event loop in a daemon thread (the guard proxy's and BrowserEnv's relay)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable


def start_loop_thread(setup: Callable[[], Awaitable[object]], name: str
                      ) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Run a new event loop in a daemon thread ``name``, awaiting ``setup()`` on it first.

    Returns ``(loop, thread)`` once ``setup()`` has finished, the loop then running until
    stopped; what ``setup()`` raised is raised here instead (the loop closed, the thread
    ended)."""
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(setup())
        except BaseException as exc:   # handed to the caller
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait()
    if failure:
        raise failure[0]
    return loop, thread
