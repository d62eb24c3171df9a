"""The one setting that turns the spans on: ``AGENTLY_OTEL``."""

from __future__ import annotations

import os
from collections.abc import Mapping

from agently_core.errors import ConfigError

#: The environment variable that enables the observer (read when plugins are discovered).
ENV = "AGENTLY_OTEL"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Is ``AGENTLY_OTEL`` set to a true value? Unset or empty means off; a value that is
    not a boolean is a :class:`~agently_core.errors.ConfigError` naming the variable."""
    value = (os.environ if env is None else env).get(ENV, "")
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{ENV} must be a boolean (1/0, true/false, yes/no, on/off), "
                      f"got {value!r}")
