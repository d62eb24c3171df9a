"""Shared fixtures for the core test suite.

Every test runs with the ``AGENTLY_*`` variables of the developer's shell removed, and
agents are built from configuration that reads no file outside the test's ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


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
