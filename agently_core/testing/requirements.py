"""What a test needs from the machine: a program, root, a server.

A real part a test needs and does not find *fails* the test under CI (``CI`` set to a
true value: the set-up installs and starts everything the suite needs, as root) and
*skips* it elsewhere (a developer's machine may lack an optional part). Never a silent
skip in CI.
"""

from __future__ import annotations

import os
import shutil


def in_ci() -> bool:
    """Is ``CI`` set to a true value?"""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def require(present: bool, what: str) -> None:
    """Go on when ``present``; else fail under CI, skip elsewhere, saying ``what`` is
    missing and how to get it."""
    if present:
        return
    import pytest

    if in_ci():
        pytest.fail(f"CI must have it, and it is missing: {what}", pytrace=False)
    pytest.skip(what)


def require_program(name: str, package: str | None = None) -> str:
    """The path of the program ``name`` (from the Debian package ``package``, default the
    same name)."""
    found = shutil.which(name)
    require(found is not None,
            f"{name} is not installed (apt-get install {package or name}; ./dev installs it)")
    assert found is not None
    return found


def require_root(what: str) -> None:
    """The test runs as root (CI does): to ``what``."""
    require(os.geteuid() == 0, f"needs root to {what}")
