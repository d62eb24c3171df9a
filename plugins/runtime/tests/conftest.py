"""Fixtures for this plugin's tests: agents on configuration isolated from the machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def make_agent(agently_agent_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``make_agent(**settings)``: an agent whose configuration reads only ``settings``."""
    return agently_agent_factory
