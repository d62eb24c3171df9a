"""Shared fixtures for the core test suite.

Every test runs with the ``AGENTLY_*`` variables of the developer's shell removed, and
agents are built from configuration that reads no file outside the test's ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# the sandbox attack kit's checks get pytest's reports here too (tests import it before
# the plugins' own conftests, which register it as well, are loaded)
pytest.register_assert_rewrite("agently_core_isolation.testing")


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    """A directory with an empty agently.toml, so the file search stops there."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "agently.toml").write_text("", encoding="utf-8")
    return home


@pytest.fixture
def load_config(config_home: Path) -> Callable[..., Any]:
    """``load_config(env={...}, **settings)``: a Config isolated from the real machine."""
    from agently_core import Config

    def load(env: dict[str, str] | None = None, **settings: Any) -> Any:
        return Config.load(env=dict(env or {}), cwd=config_home, overrides=settings or None)

    return load


@pytest.fixture
def make_plugins(load_config: Callable[..., Any]) -> Callable[..., Any]:
    """``make_plugins(env=..., autoload=..., **settings)``: a loaded PluginManager."""
    from agently_core import PluginManager

    def make(env: dict[str, str] | None = None, *, autoload: bool | None = None,
             **settings: Any) -> Any:
        return PluginManager(load_config(env, **settings), autoload=autoload).load()

    return make


@pytest.fixture
def make_agent(make_plugins: Callable[..., Any]) -> Callable[..., Any]:
    """``make_agent(env=..., autoload=..., **settings)``: an agent on isolated config."""
    from agently_core import create_agent

    def make(env: dict[str, str] | None = None, *, autoload: bool | None = None,
             name: str | None = None, **settings: Any) -> Any:
        return create_agent(name, plugins=make_plugins(env, autoload=autoload, **settings))

    return make


@pytest.fixture
def build_agent(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``build_agent(*plugins, toml="", providers=None, **create_agent_options)``: an agent
    on a plugin manager that reads only ``tmp_path/agently.toml``, with the function
    executor, the runtime, the environment ``providers`` (kind -> factory) and ``plugins``
    registered in code. Every agent it built is closed at teardown."""
    from agently_core_function import plugin as function_plugin
    from agently_core_runtime import plugin as runtime_plugin

    from agently_core import Config, PluginManager, create_agent
    from agently_core.testing import make_plugin

    agents: list[Any] = []

    def make(*plugins: Any, toml: str = "", providers: dict[str, Any] | None = None,
             **options: Any) -> Any:
        (tmp_path / "agently.toml").write_text(toml, encoding="utf-8")
        manager = PluginManager(Config.load(env={}, cwd=tmp_path), autoload=False).load()
        manager.register(function_plugin, name="function")
        manager.register(runtime_plugin, name="runtime")
        if providers:
            manager.register(make_plugin(environment_provider=providers), name="providers")
        for n, extra in enumerate(plugins):
            info = manager.register(extra, name=f"test-plugin-{n}")
            assert info.status == "loaded", info.error
        agent = create_agent(plugins=manager, **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()
