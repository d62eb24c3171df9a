"""Run coroutines from synchronous code.

All synchronous entry points share one event loop in a background thread (an anyio
blocking portal), so they work the same inside Jupyter, inside a running loop, or in a
plain script, and warm resources stay tied to one loop.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_portal: Any = None
_portal_cm: Any = None


def _get_portal() -> Any:
    global _portal, _portal_cm
    if _portal is None:
        with _lock:
            if _portal is None:
                from anyio.from_thread import start_blocking_portal

                _portal_cm = start_blocking_portal()
                _portal = _portal_cm.__enter__()
                atexit.register(_shutdown)
    return _portal


def _shutdown() -> None:
    global _portal, _portal_cm
    with _lock:
        cm, _portal, _portal_cm = _portal_cm, None, None
    if cm is not None:
        try:
            cm.__exit__(None, None, None)
        except Exception:
            pass


def run_sync(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Call ``await fn(*args)`` on the shared loop and return its result."""
    return _get_portal().call(fn, *args)
