"""The ``browser`` action package: ``agent.enable("browser", allow=[...])`` or
``agent.use_actions(Browser(...))``.

It mounts page actions on a managed Chromium (kind ``browser``, one per scope owner, one
context per session): ``navigate_page``, ``snapshot_page``, ``click_element``,
``type_text``, ``select_option``, ``press_key``, ``scroll_page``, ``go_back``,
``screenshot_page`` and ``read_page``. Elements are named by the reference ids of the last
snapshot. Every option is the host's; ``allow`` is the egress allow-list (nothing internal
is reachable without it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agently_core import artifacts
from agently_core.egress import EgressGuard
from agently_core.errors import ConfigError
from agently_core.models import ActionSpec

from .provider import requirement
from .settings import DEFAULTS, BrowserConfigError

SCOPES = ("request", "execution", "session", "agent", "global")
#: How much of a snapshot or page text the digest shows by default.
PREVIEW_CHARS = 8000
_REF = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$",
        "description": "The element's reference id from the last snapshot_page, such as 'e12'."}


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


def _actions(allowed: str) -> list[tuple[str, str, str, dict[str, Any], bool]]:
    """``(name, operation, description, input schema, instruction-heavy)`` of each action."""
    reach = "public http(s) sites" + (f" and {allowed}" if allowed else "")
    return [
        ("navigate_page", "navigate",
         f"Open a URL in the browser page and get back its url, title and HTTP status. Only "
         f"{reach} can be opened; file:, data:, chrome: and the like are refused, and every "
         "request the page makes is checked the same way.",
         _schema({"url": {"type": "string", "minLength": 1, "maxLength": 4096,
                          "description": "An http:// or https:// URL."}}, ("url",)), False),
        ("snapshot_page", "snapshot",
         "Get the page's accessibility snapshot: a YAML outline of its elements (roles, "
         "names, values), each actionable one tagged [ref=eN]. Use those refs with "
         "click_element, type_text, select_option and scroll_page; take a new snapshot "
         "after the page changes.", _schema({}), True),
        ("click_element", "click", "Click the element with this ref (from snapshot_page).",
         _schema({"ref": _REF}, ("ref",)), False),
        ("type_text", "type",
         "Replace the text of the input or text area with this ref, optionally pressing "
         "Enter afterwards (submit).",
         _schema({"ref": _REF, "text": {"type": "string", "maxLength": 100_000},
                  "submit": {"type": "boolean", "default": False,
                             "description": "Press Enter after typing."}},
                 ("ref", "text")), False),
        ("select_option", "select",
         "Choose option(s) of the <select> element with this ref, by value or label.",
         _schema({"ref": _REF, "values": {"type": "array", "minItems": 1, "maxItems": 100,
                                          "items": {"type": "string"}}},
                 ("ref", "values")), False),
        ("press_key", "press",
         "Press a key (or a combination such as 'Control+a') in the page: 'Enter', 'Tab', "
         "'Escape', 'ArrowDown', 'PageDown', a letter...",
         _schema({"key": {"type": "string", "minLength": 1, "maxLength": 40}}, ("key",)),
         False),
        ("scroll_page", "scroll",
         "Scroll the page (direction, amount in pixels; a screen by default) or bring the "
         "element with this ref into view.",
         _schema({"direction": {"type": "string", "enum": ["up", "down", "left", "right"],
                                "default": "down"},
                  "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 100_000},
                  "ref": _REF}), False),
        ("go_back", "back", "Go back to the previous page in the history.", _schema({}),
         False),
        ("screenshot_page", "screenshot",
         "Take a PNG screenshot of the page (the visible part, or all of it with "
         "full_page); it is kept as an artifact of the call.",
         _schema({"full_page": {"type": "boolean", "default": False}}), False),
        ("read_page", "read",
         "Read the page as plain text (what a person would see), without the markup.",
         _schema({}), True),
    ]


def mount(agent: Any, *, allow: Iterable[str] | str | None = None, scope: str = "agent",
          executable: str | None = None, headless: bool = DEFAULTS["headless"],
          navigation_timeout: float = DEFAULTS["navigation_timeout"],
          action_timeout: float = DEFAULTS["action_timeout"],
          max_sessions: int = DEFAULTS["max_sessions"],
          max_text_chars: int = DEFAULTS["max_text_chars"],
          viewport: tuple[int, int] | list[int] = tuple(DEFAULTS["viewport"]),
          isolation: str = DEFAULTS["isolation"], preview_chars: int = PREVIEW_CHARS,
          resolver: Any = None, policy: Mapping[str, Any] | None = None,
          prefix: str = "") -> list[str]:
    """Mount the page actions on a managed browser kept for ``scope`` (one context per
    session inside it). ``allow`` lists the egress allow-list entries the host permits
    (``"127.0.0.1:8080"``, ``"10.0.0.0/8"``); ``prefix`` is put before every action name.
    ``preview_chars`` is how much of a snapshot or of the page's text the model reads in
    the record's digest (the whole is an artifact). Returns the names mounted."""
    if scope not in SCOPES:
        raise ConfigError(f"browser package: unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")
    if (isinstance(preview_chars, bool) or not isinstance(preview_chars, int)
            or not artifacts.PREVIEW_CHARS <= preview_chars <= artifacts.MAX_PREVIEW_CHARS):
        raise ConfigError(f"browser package: preview_chars must be an integer from "
                          f"{artifacts.PREVIEW_CHARS} to {artifacts.MAX_PREVIEW_CHARS}, "
                          f"got {preview_chars!r}")
    options: dict[str, Any] = {
        "headless": headless, "navigation_timeout": navigation_timeout,
        "action_timeout": action_timeout, "max_sessions": max_sessions,
        "max_text_chars": max_text_chars, "viewport": list(viewport)}
    if isolation != DEFAULTS["isolation"]:
        options["isolation"] = isolation
    if executable is not None:
        options["executable"] = executable
    if resolver is not None:
        options["resolver"] = resolver
    try:
        needed = requirement(allow=allow, scope=scope, **options)
    except BrowserConfigError as exc:
        raise ConfigError(f"browser package: {exc}") from None
    allowed = ", ".join(_entries(needed.config.get("allow")))
    names = []
    for name, operation, description, schema, heavy in _actions(allowed):
        full = prefix + name
        meta: dict[str, Any] = {"browser": {"operation": operation, "resource_key": "browser"}}
        if heavy:
            # The page's text is the instruction-heavy part; no argument carries it. The
            # model reads the digest: a preview long enough to hold the page or snapshot.
            meta["instruction"] = "page"
            meta["preview_chars"] = preview_chars
        agent.action.register_action(ActionSpec(
            name=full, description=description, input_schema=schema, kind="browser",
            policy=dict(policy or {}), tags=["browser", "web"],
            execution_environments=[needed], meta=meta))
        names.append(full)
    return names


def _entries(value: Any) -> list[str]:
    """The allow-list entries of a config value, as text (for descriptions)."""
    return [str(entry) for entry in EgressGuard.build(value).allow] if value else []


__all__ = ["mount"]
