"""pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

The conformance suites themselves are plain classes: import one from
:mod:`agently_core.testing` and subclass it in a test module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Plain ``assert`` in the suites reports values, as in a test module. This module is loaded
# before any test module, so the suites are not imported yet.
pytest.register_assert_rewrite(
    "agently_core.testing._base",
    "agently_core.testing.executor_suite",
    "agently_core.testing.provider_suite",
    "agently_core.testing.runtime_suite",
    "agently_core.testing.planner_suite",
    "agently_core.testing.workspace_suite",
)


@pytest.fixture
def fake_distributions(tmp_path: Path) -> Iterator[Any]:
    """Install fake distributions for one test: ``fake_distributions(name, entry_points=...,
    modules=...)``. Everything is removed from ``sys.path`` and ``sys.modules`` afterwards."""
    from .distributions import activate, deactivate, make_distribution

    root = tmp_path / "site"
    prefixes: list[str] = []

    def install(name: str, **kwargs: Any) -> Path:
        prefixes.extend(m.split(".")[0] for m in kwargs.get("modules", {}) or {})
        make_distribution(root, name, **kwargs)
        activate(root)
        return root

    yield install
    deactivate(root, *prefixes)


@pytest.fixture
def agently_plugin_manager() -> Callable[..., Any]:
    """``agently_plugin_manager(executors={...}, providers={...}, runtimes={...},
    workspace_backends={...}, ..., config=None)``: a loaded plugin manager that holds only
    the given factories (names mapped to a factory or ``(factory, options)``), isolated from
    installed plugins, configuration files and ``AGENTLY_*`` variables."""
    from .harness import make_plugin, make_plugin_manager

    aliases = {
        "executors": "action_executor",
        "providers": "environment_provider",
        "runtimes": "action_runtime",
        "flows": "action_flow",
        "workspace_backends": "workspace_backend",
        "planners": "planner",
        "action_packages": "action_package",
        "approval_handlers": "approval_handler",
        "event_observers": "event_observer",
    }

    def make(*, config: Any = None, **roles: Any) -> Any:
        unknown = sorted(set(roles) - set(aliases))
        if unknown:
            raise TypeError(f"unknown role(s) {unknown}; use {', '.join(aliases)}")
        plugin = make_plugin(**{aliases[key]: value for key, value in roles.items()})
        return make_plugin_manager(plugin, config=config)

    return make


@pytest.fixture
def agently_clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Remove every ``AGENTLY_*`` variable for the test, and forget the process-wide plugin
    manager afterwards, so neither the developer's shell nor another test leaks in. Make
    it autouse in a conftest: ``@pytest.fixture(autouse=True) def _iso(agently_clean_
    environment): ...``."""
    import os

    for name in list(os.environ):
        if name.startswith("AGENTLY_"):
            monkeypatch.delenv(name)
    yield
    from agently_core.plugins import reset_plugin_manager

    reset_plugin_manager()


@pytest.fixture
def agently_agent_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make(**settings)``: an agent with every installed plugin whose configuration
    reads only ``settings`` (no environment variables, no file outside ``tmp_path``);
    every agent made is closed after the test."""
    from agently_core import Config, PluginManager, create_agent

    home = tmp_path / "agently-home"
    home.mkdir(exist_ok=True)
    (home / "agently.toml").write_text("", encoding="utf-8")
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        config = Config.load(env={}, cwd=home, overrides=settings or None)
        agent = create_agent(plugins=PluginManager(config).load())
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


@pytest.fixture
def agently_model_server() -> Iterator[Callable[..., Any]]:
    """``start(replies, **options)``: a started
    :class:`~agently_core.testing.model_servers.LoopbackModelServer` (a stand-in model
    provider on 127.0.0.1), closed after the test."""
    from .model_servers import LoopbackModelServer

    started: list[Any] = []

    def start(replies: Any = (), **options: Any) -> Any:
        server = LoopbackModelServer(replies, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def agently_needs_root() -> None:
    """The test runs as root (CI does; elsewhere it is skipped when not root):
    ``needs_root = pytest.mark.usefixtures("agently_needs_root")``."""
    from .requirements import require_root

    require_root("run this test (it mounts or changes owners)")
