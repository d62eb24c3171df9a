"""Fixtures for this plugin's tests: agents on configuration isolated from the machine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_agently_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AGENTLY_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def make_agent(tmp_path: Path) -> Callable[..., Any]:
    """``make_agent(**settings)``: an agent whose configuration reads only ``settings``."""
    from agently_core import Config, PluginManager, create_agent

    home = tmp_path / "home"
    home.mkdir()
    (home / "agently.toml").write_text("", encoding="utf-8")

    def make(**settings: Any) -> Any:
        config = Config.load(env={}, cwd=home, overrides=settings or None)
        return create_agent(plugins=PluginManager(config).load())

    return make
