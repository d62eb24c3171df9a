"""Fixtures for the Node.js sandbox's tests: real agents on configuration isolated from the
machine, closed (their workers killed) after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

# The shared kit's checks (next_call_works, Box.contained, ...) report values like a test's
# own asserts; this runs before any test module imports the kit.
pytest.register_assert_rewrite("agently_core_isolation.testing")


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def node_agent(agently_agent_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``node_agent(**enable_nodejs_options)``: a fresh agent with ``run_nodejs`` mounted;
    every agent made is closed at teardown."""
    agents: list[Any] = []

    def make(**options: Any) -> Any:
        agent = agently_agent_factory()
        agent.enable_nodejs(**options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()
