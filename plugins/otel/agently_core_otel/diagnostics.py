"""``agently-core doctor``: is the OpenTelemetry observer on, and can it record spans?"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from agently_core.errors import ConfigError

from .settings import ENV, enabled


def check() -> list[dict[str, Any]]:
    """One row: whether the ``otel`` setting turns the observer on and the SDK is
    installed."""
    try:
        on = enabled()
    except ConfigError as exc:
        return [{"name": "otel spans", "ok": False, "detail": str(exc),
                 "fix": f"set {ENV}=1 to record spans, or unset it"}]
    if not on:
        return [{"name": "otel spans", "ok": True,
                 "detail": f"installed, off (set otel = true or {ENV}=1 to record spans)",
                 "fix": None}]
    if find_spec("opentelemetry.sdk") is None:
        return [{"name": "otel spans", "ok": False,
                 "detail": "on, but opentelemetry-sdk is not installed",
                 "fix": "pip install opentelemetry-sdk"}]
    return [{"name": "otel spans", "ok": True,
             "detail": "on (the otel setting); spans go to the global TracerProvider, which the host "
                       "sets up with its exporters",
             "fix": None}]
