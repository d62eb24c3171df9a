"""Fixtures for the isolation library's tests: configuration isolated from the machine."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""
