"""Fixtures for the docker plugin's tests: a Docker engine for the session (a running one,
or a dockerd started and stopped around the session), the tiny busybox image, and agents on
configuration isolated from the machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agently_core_docker.testing import (
    docker_default_image,
    docker_engine,
    docker_test_image,
    podman_engine,
)

__all__ = ["docker_default_image", "docker_engine", "docker_test_image", "podman_engine"]


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def make_agent(agently_agent_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``make_agent(**settings)``: an agent with every installed plugin, closed after the
    test (which releases its containers)."""
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        agent = agently_agent_factory(**settings)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()
