"""Entry point of agently-core-otel: registers names only; imports nothing heavy.

The observer is registered only when ``AGENTLY_OTEL`` is on when plugins are discovered,
so an installed but disabled plugin adds no observer: emitting events stays free.
"""

from agently_core.hookspecs import hookimpl

from .settings import enabled


@hookimpl
def register_event_observers(register):
    if enabled():
        from .observer import EVENT_PATTERNS

        register("otel", "agently_core_otel.observer:default_observer", events=EVENT_PATTERNS)


@hookimpl
def register_diagnostics(register):
    register("otel", "agently_core_otel.diagnostics:check")
