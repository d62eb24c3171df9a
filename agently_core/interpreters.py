"""Which Python runs the small standard-library helper processes (sandbox supervisors, the
MCP stdio supervisor): they sit on every cold start, so their start-up time counts."""

from __future__ import annotations

import functools
import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"


@functools.lru_cache(maxsize=1)
def helper_python() -> str:
    """The system's Python when it is the same minor version as the running one (a
    distribution's optimised build starts a helper several milliseconds sooner than a
    virtual environment's interpreter may), else the running interpreter."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if os.path.realpath(SYSTEM_PYTHON).endswith(version) and os.access(SYSTEM_PYTHON, os.X_OK):
        return SYSTEM_PYTHON
    return sys.executable
