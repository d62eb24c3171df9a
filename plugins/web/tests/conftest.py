"""Fixtures for agently-core-web's tests: agents on configuration isolated from the
machine, shared by a module (the servers they talk to are module fixtures too)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agently_core_web.testing import Tripwire


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture(scope="module")
def make_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``make()``: an agent with every installed plugin and an empty configuration (no
    environment variable, no file outside a temporary home), closed after the module."""
    from agently_core import Config, PluginManager, create_agent

    home = tmp_path_factory.mktemp("agently-home")
    (home / "agently.toml").write_text("", encoding="utf-8")
    made: list[Any] = []

    def make() -> Any:
        agent = create_agent(plugins=PluginManager(Config.load(env={}, cwd=home)).load())
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


@pytest.fixture(scope="module")
def tripwire() -> Iterator[Tripwire]:
    """A loopback address (127.0.0.2) that must never be reached: it counts connections."""
    wire = Tripwire("127.0.0.2")
    yield wire
    wire.stop()
