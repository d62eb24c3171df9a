"""Fixtures of the browser plugin's tests: Chromium is required (it fails under CI when
missing); tests share browsers per module (a launch costs 0.3-1.5 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture(scope="session", autouse=True)
def _warm_driver() -> Iterator[None]:
    """Hold Playwright's driver for the whole run, so each browser the tests launch does
    not start (and stop) a driver of its own (~0.8 s each)."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        yield
        return
    from agently_core_browser import runtime

    runtime.call_here(runtime.acquire_driver, timeout=60)
    yield
    runtime.call_here(runtime.release_driver, timeout=60)
