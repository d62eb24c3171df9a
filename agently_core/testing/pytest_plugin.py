"""pytest plugin (entry point ``pytest11``): fixtures for plugin authors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


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
