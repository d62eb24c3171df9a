"""Entry point of agently-core-otel: registers names only; imports nothing heavy.

The observer is registered for the ``otel`` setting (``otel = true`` in agently.toml,
``AGENTLY_OTEL=1``, ``create_agent(config={"otel": True})``): an agent subscribes it only
when the setting is on, so an installed but disabled plugin adds no observer and emitting
events stays free.
"""

from agently_core.hookspecs import hookimpl

from .settings import EVENT_PATTERNS


@hookimpl
def register_event_observers(register):
    register("otel", "agently_core_otel.observer:default_observer", events=EVENT_PATTERNS,
             setting="otel")


@hookimpl
def register_diagnostics(register):
    register("otel", "agently_core_otel.diagnostics:check")
