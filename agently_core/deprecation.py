"""Deprecation warnings of the older surface (``tool_func``, ``use_tool(s)``,
``use_sandbox``, ``tool_logs``): each API warns once per process, and not at all where
the ``runtime.show_deprecation_warnings`` setting is off."""

from __future__ import annotations

import warnings

#: The deprecated APIs that warned in this process already.
_WARNED: set[str] = set()


def warn_deprecated(old: str, new: str, *, enabled: bool = True, stacklevel: int = 2) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``, the first time only.
    ``stacklevel`` counts from the caller of this function (2: its caller's caller, the
    user's code calling a deprecated method)."""
    if not enabled or old in _WARNED:
        return
    _WARNED.add(old)
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel + 1)
