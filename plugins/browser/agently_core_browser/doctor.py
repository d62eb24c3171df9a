"""``agently-core doctor``: is Chromium there for the managed browser, and Playwright?"""

from __future__ import annotations

import importlib.util
import os
from typing import Any


def check_browser() -> list[dict[str, Any]]:
    """Checks (quick, nothing is launched): the Chromium binary and the playwright package."""
    from .settings import EXECUTABLE_VARIABLE, default_executable

    path = default_executable()
    found = os.path.isfile(path) and os.access(path, os.X_OK)
    checks = [{"name": "Chromium for the managed browser", "ok": found,
               "detail": f"{path} " + ("is executable" if found else "is missing"),
               "fix": None if found else
               f"apt-get install chromium (./dev does), or set {EXECUTABLE_VARIABLE}"}]
    has_playwright = importlib.util.find_spec("playwright") is not None
    checks.append({"name": "Playwright (Python)", "ok": has_playwright,
                   "detail": "installed" if has_playwright else "not installed",
                   "fix": None if has_playwright else "pip install playwright"})
    return checks


__all__ = ["check_browser"]
