"""The managed browser's settings: what a requirement's ``config`` may say, checked.

Every key is the host's (package options, configuration); a model never sets any of them.

``allow`` (``[]``)
    Egress allow-list entries (:class:`agently_core.egress.AllowEntry`): ``"127.0.0.1:8123"``,
    ``"10.0.0.0/8"``, ``"intranet.example:443"``. Everything else internal is refused.
``executable`` (``/usr/bin/chromium``, or ``AGENTLY_BROWSER_EXECUTABLE``)
    The Chromium binary Playwright drives.
``headless`` (``True``), ``viewport`` (``[1280, 800]``)
``navigation_timeout`` (30 s), ``action_timeout`` (10 s), ``launch_timeout`` (30 s)
``max_sessions`` (16)
    Browser contexts (one per session) one browser keeps open at once.
``max_text_chars`` (200 000)
    The most page text or snapshot one call keeps (the artifact holds it; the record a
    digest of it).
``isolation`` (``"none"``)
    ``"bubblewrap"`` runs Chromium under bubblewrap as a dedicated uid
    (:mod:`agently_core_browser.isolation`).
``resolver``
    Replace the system resolver of the guard (an async ``(host, port) -> [addresses]``;
    tests use a fake one to play DNS rebinding).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agently_core.egress import BROWSER_SCHEMES, EgressGuard, Resolver
from agently_core.errors import AgentlyError

DEFAULT_EXECUTABLE = "/usr/bin/chromium"
EXECUTABLE_VARIABLE = "AGENTLY_BROWSER_EXECUTABLE"

#: Chromium's switches (PLATFORM.md): no sandbox of its own, no GPU, none of the background
#: traffic to Google services, and WebRTC kept to the proxy: without
#: ``disable_non_proxied_udp`` a page's RTCPeerConnection sends STUN over UDP to any
#: address it names (loopback and metadata included), past the HTTP proxy.
CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-default-apps", "--disable-client-side-phishing-detection",
    "--disable-domain-reliability", "--no-pings", "--disable-breakpad",
    "--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter,"
    "Translate,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater",
)

DEFAULTS: dict[str, Any] = {
    "allow": [],
    "headless": True,
    "viewport": [1280, 800],
    "navigation_timeout": 30.0,
    "action_timeout": 10.0,
    "launch_timeout": 30.0,
    "max_sessions": 16,
    "max_text_chars": 200_000,
    "isolation": "none",
}
CONFIG_KEYS = ("executable", "resolver", *DEFAULTS)


class BrowserConfigError(AgentlyError, ValueError):
    """The ``browser`` provider refused a configuration."""


@dataclass(frozen=True)
class BrowserSettings:
    """Checked settings of one managed browser."""

    executable: str
    guard: EgressGuard
    headless: bool
    viewport: tuple[int, int]
    navigation_timeout: float
    action_timeout: float
    launch_timeout: float
    max_sessions: int
    max_text_chars: int
    isolation: str = "none"


def default_executable() -> str:
    return os.environ.get(EXECUTABLE_VARIABLE, "").strip() or DEFAULT_EXECUTABLE


def _number(name: str, value: Any, *, integer: bool = False, low: float = 0.0) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value \
            or value <= low:
        raise BrowserConfigError(f"browser config {name} must be a number above {low:g}, "
                                 f"got {value!r}")
    return int(value) if integer else float(value)


def settings(config: Mapping[str, Any] | None) -> BrowserSettings:
    """Check a requirement's ``config`` (nothing is started here)."""
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise BrowserConfigError(f"browser config must be a mapping, got "
                                 f"{type(config).__name__}")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise BrowserConfigError(f"unknown browser config key(s) "
                                 f"{', '.join(map(repr, unknown))}; known: {', '.join(CONFIG_KEYS)}")
    values = {**DEFAULTS, **config}
    executable = values.get("executable") or default_executable()
    if not isinstance(executable, str):
        raise BrowserConfigError(f"browser config executable must be a path, got {executable!r}")
    resolver: Resolver | None = values.get("resolver")
    if resolver is not None and not callable(resolver):
        raise BrowserConfigError("browser config resolver must be an async callable")
    try:
        guard = EgressGuard.build(values["allow"], schemes=BROWSER_SCHEMES, resolver=resolver)
    except (ValueError, TypeError) as exc:
        raise BrowserConfigError(f"browser config allow: {exc}") from None
    if not isinstance(values["headless"], bool):
        raise BrowserConfigError(f"browser config headless must be true or false, got "
                                 f"{values['headless']!r}")
    viewport = values["viewport"]
    if (not isinstance(viewport, (list, tuple)) or len(viewport) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 8192
                       for v in viewport)):
        raise BrowserConfigError(f"browser config viewport must be [width, height] in pixels "
                                 f"(100..8192), got {viewport!r}")
    if values["isolation"] not in ("none", "bubblewrap"):
        raise BrowserConfigError(f"browser config isolation must be 'none' or 'bubblewrap', "
                                 f"got {values['isolation']!r}")
    return BrowserSettings(
        isolation=values["isolation"], executable=executable, guard=guard, headless=values["headless"],
        viewport=(viewport[0], viewport[1]),
        navigation_timeout=_number("navigation_timeout", values["navigation_timeout"]),
        action_timeout=_number("action_timeout", values["action_timeout"]),
        launch_timeout=_number("launch_timeout", values["launch_timeout"]),
        max_sessions=_number("max_sessions", values["max_sessions"], integer=True),
        max_text_chars=_number("max_text_chars", values["max_text_chars"], integer=True,
                               low=99),
    )


def check_executable(path: str) -> None:
    """:class:`BrowserConfigError` unless ``path`` is an executable file."""
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise BrowserConfigError(
            f"no Chromium at {path!r} (apt-get install chromium; ./dev installs it; or set "
            f"{EXECUTABLE_VARIABLE} or the browser config executable)")


__all__ = ["CHROMIUM_FLAGS", "CONFIG_KEYS", "DEFAULTS", "BrowserConfigError", "BrowserSettings",
           "check_executable", "default_executable", "settings"]
