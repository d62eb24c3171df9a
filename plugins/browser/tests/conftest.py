"""Fixtures of the browser plugin's tests: Chromium is required (it fails under CI when
missing); tests share browsers per module (a launch costs 0.3-1.5 s)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""
