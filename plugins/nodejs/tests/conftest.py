"""Fixtures for the Node.js sandbox's tests: real agents on configuration isolated from the
machine, closed (their workers killed) after each test, and a Docker engine for the attack
cases of the Docker tier (``docker_engine``, ``docker_default_image``: set up only when
a case asks for them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agently_core_docker.testing import docker_default_image, docker_engine

__all__ = ["docker_default_image", "docker_engine"]

# The shared kit's checks (next_call_works, Box.contained, ...) report values like a test's
# own asserts; this runs before any test module imports the kit.
pytest.register_assert_rewrite("agently_core_isolation.testing")


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def node_agent(agently_agent_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``node_agent(settings=None, **enable_nodejs_options)``: a fresh agent on ``settings``
    (its configuration, e.g. ``{"providers": {"node": "docker"}}``) with ``run_nodejs`` mounted;
    every agent made is closed at teardown."""
    agents: list[Any] = []

    def make(settings: dict[str, Any] | None = None, **options: Any) -> Any:
        agent = agently_agent_factory(**(settings or {}))
        agent.enable_nodejs(**options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()
