"""The ``web`` ActionExecutor: runs the ``browse`` and ``search`` actions.

Each action mounted by the :mod:`~agently_core_web.browse` or :mod:`~agently_core_web.search`
package is registered with its mount's settings bound into an async callable, its target;
the executor awaits ``target(kwargs, context)``. The dispatcher owns the rest: argument
validation against the schema, the policy's timeout, the record, its digest and artifacts.
"""

from __future__ import annotations

from typing import Any

from agently_core.errors import ActionError, ConfigError


def check_number(package: str, name: str, value: Any, *, low: float,
                 integer: bool = False) -> Any:
    """``value`` if it is a number (an integer when ``integer``) >= ``low``, else a
    :class:`ConfigError` naming ``package`` and the option ``name``."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) \
            or value < low:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{package}: {name} must be {kind} >= {low:g}, got {value!r}")
    return value


class WebExecutor:
    """Executor for ``kind="web"``."""

    kind = "web"

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        run = context.target
        if not callable(run):
            raise ActionError(f"action {spec.name!r} was not mounted by the browse or search "
                              "package (it has no target to run)")
        return await run(kwargs, context)


__all__ = ["WebExecutor", "check_number"]
