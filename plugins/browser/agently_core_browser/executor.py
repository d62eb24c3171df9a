"""The ``browser`` ActionExecutor: one page action per call on the session's page.

The operation comes from ``spec.meta["browser"]["operation"]``; the managed browser from
the call's ensured environment (kind ``browser``); the session from the run's session id
(``default`` outside one). Results:

* ``navigate``, ``click``, ``type``, ``select``, ``press``, ``scroll``, ``back``: the page's
  ``url`` and ``title`` after the action (plus what the action reports);
* ``snapshot`` / ``read``: the accessibility snapshot (with refs) / the page's text, cut to
  the browser's ``max_text_chars`` (the whole is kept as an artifact when cut); both are
  instruction-heavy, so their records carry a digest and the full result as an artifact;
* ``screenshot``: a PNG artifact (base64), described in the result.

Whatever the session refused, closed or dismissed since the last call (requests the egress
guard refused, pop-ups, downloads, navigations to ``file:`` and the like) comes back under
``blocked``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from agently_core.errors import ActionError

from .provider import DEFAULT_SESSION, ManagedBrowser

OPERATIONS = ("navigate", "snapshot", "click", "type", "select", "press", "scroll", "back",
              "screenshot", "read")
_ARGS: dict[str, tuple[str, ...]] = {
    "navigate": ("url",), "click": ("ref",), "type": ("ref", "text", "submit"),
    "select": ("ref", "values"), "press": ("key",), "scroll": ("direction", "amount", "ref"),
    "screenshot": ("full_page",), "snapshot": (), "read": (), "back": (),
}


def session_key(context: Any) -> str:
    """The run's session id, else the agent's, else ``default``."""
    from agently_core.execution import current_session

    key = current_session.get() or getattr(getattr(context, "agent", None), "session_id", None)
    return str(key) if key else DEFAULT_SESSION


def _plain_error(exc: Exception) -> str:
    """Playwright's message without its call log."""
    text = str(exc).strip().split("\nCall log:", 1)[0].strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _blocked_note(events: list[dict[str, str]]) -> str:
    if not events:
        return ""
    shown = "; ".join(f"{e['type']} {e['target']}" for e in events[:5])
    return f" (blocked meanwhile: {shown}{'...' if len(events) > 5 else ''})"


class BrowserExecutor:
    """Executor for ``kind="browser"``."""

    kind = "browser"

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        meta = spec.meta.get("browser") if isinstance(spec.meta, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        operation = meta.get("operation")
        if operation not in OPERATIONS:
            raise ActionError(f"action {spec.name!r}: unknown browser operation {operation!r}")
        key = meta.get("resource_key", "browser")
        browser = context.execution_environment_resources.get(key)
        if not isinstance(browser, ManagedBrowser):
            raise ActionError(f"action {spec.name!r} has no managed browser (it must declare an "
                              f"execution environment of kind 'browser' with resource_key "
                              f"{key!r})")
        args = {name: kwargs[name] for name in _ARGS[operation] if name in kwargs}
        session = session_key(context)
        try:
            result, events = await browser.act(session, operation, **args)
        except ActionError:
            raise
        except TypeError as exc:
            raise ActionError(f"{spec.name}: {exc}") from None
        except Exception as exc:   # Playwright's errors: timeouts, detached elements...
            try:
                sess = browser.sessions.get(session)
                events = sess.drain_events() if sess is not None else []
            except Exception:
                events = []
            raise ActionError(f"{spec.name} failed: {_plain_error(exc)}"
                              + _blocked_note(events)) from None
        limit = browser.settings.max_text_chars
        state: dict[str, Any] = {}
        if operation in ("snapshot", "read", "screenshot"):
            state, more = await browser.act(session, "state")
            events = [*events, *more]
        if operation in ("snapshot", "read"):
            field = "snapshot" if operation == "snapshot" else "text"
            full = context.redact(result)
            shown, cut = full, len(full) > limit
            if cut:
                shown = context.redact(full[:limit], cut=True)
                context.add_artifact(f"page_{field}", full)
            out: dict[str, Any] = {**state, field: shown, "chars": len(full),
                                   "truncated": cut}
            if operation == "snapshot":
                out["note"] = ("Act on elements by their ref (click_element(ref='e5'), "
                               "type_text(...)); refs go stale when the page navigates.")
        elif operation == "screenshot":
            context.add_artifact("screenshot", base64.b64encode(result).decode(),
                                 media_type="image/png;base64")
            out = {**state, "screenshot": {"artifact": "screenshot", "format": "png",
                                              "encoding": "base64", "bytes": len(result)}}
        else:
            out = dict(result)
        if events:
            out["blocked"] = events
        return out


__all__ = ["OPERATIONS", "BrowserExecutor", "session_key"]
