"""Fixtures for run_bash's tests: real agents on configuration isolated from the machine,
closed (their sandboxes released) after each test, host directories the sandbox's
dedicated uid can reach, and a Docker engine for the attack cases of the Docker tier
(``docker_engine``, ``docker_default_image``: set up only when a case asks for them)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
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
def bash_agent(agently_agent_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``bash_agent(settings=None, **enable_shell_options)``: a fresh agent on ``settings``
    (its configuration, e.g. ``{"providers": {"bash": "docker"}}``) with ``run_bash`` mounted;
    every agent made is closed at teardown."""
    agents: list[Any] = []

    def make(settings: dict[str, Any] | None = None, **options: Any) -> Any:
        agent = agently_agent_factory(**(settings or {}))
        agent.enable_shell(**options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


@pytest.fixture
def shared_dir() -> Iterator[Callable[[], Path]]:
    """``shared_dir()``: a new host directory under /tmp that any uid may use (mode 0777),
    as a root the sandbox's dedicated uid can write; removed at teardown."""
    made: list[Path] = []

    def make() -> Path:
        folder = Path(tempfile.mkdtemp(prefix="agently-bash-", dir="/tmp"))
        os.chmod(folder, 0o777)
        made.append(folder)
        return folder

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)
