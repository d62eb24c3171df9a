"""agently-core-otel: OpenTelemetry spans for agently-core runs, rounds, model requests and
action calls, following the GenAI semantic conventions.

Install it and set ``AGENTLY_OTEL=1``: every agent's events then become spans on the global
``TracerProvider`` (set up exporters the usual OpenTelemetry way). In code,
:func:`observe` subscribes an observer to one event center instead. Importing this package
imports neither OpenTelemetry nor the observer.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["EVENT_PATTERNS", "SpanObserver", "__version__", "observe"]


def __getattr__(name: str) -> Any:
    if name in {"SpanObserver", "observe", "EVENT_PATTERNS"}:
        from . import observer

        return getattr(observer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
