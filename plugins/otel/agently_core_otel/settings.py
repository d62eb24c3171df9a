"""The one setting that turns the spans on: ``otel`` (``AGENTLY_OTEL``, ``otel = true``
in agently.toml, ``create_agent(config={"otel": True})``), and the events the observer
listens to."""

from __future__ import annotations

#: The environment form of the setting.
ENV = "AGENTLY_OTEL"
#: The event types the observer is subscribed to.
EVENT_PATTERNS = ("run.*", "round.*", "model.*", "action.*", "policy.approval.*")


def enabled() -> bool:
    """Is the ``otel`` setting on in this process's configuration (files and environment)?
    Raises :class:`~agently_core.errors.ConfigError` for a value that is not a boolean."""
    from agently_core.config import Config

    return Config.load().otel
