"""Fake installed distributions for tests: real ``*.dist-info`` folders on ``sys.path``, so
:mod:`importlib.metadata` discovers their entry points exactly as it would after
``pip install``."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path


def make_distribution(
    root: Path,
    name: str,
    *,
    version: str = "1.0.0",
    entry_points: Mapping[str, str] | None = None,
    modules: Mapping[str, str] | None = None,
    group: str = "agently_core",
) -> Path:
    """Write distribution ``name`` under ``root``: a dist-info with ``entry_points``
    (entry-point name -> ``module`` or ``module:attr``) in ``group``, and ``modules``
    (dotted module name -> source). Returns ``root``; put it on ``sys.path`` (see
    :func:`activate`) for it to be found."""
    root.mkdir(parents=True, exist_ok=True)
    normalized = name.replace("-", "_")
    info = root / f"{normalized}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = [f"[{group}]"] + [f"{ep} = {target}" for ep, target in (entry_points or {}).items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for dotted, source in (modules or {}).items():
        parts = dotted.split(".")
        package = root.joinpath(*parts[:-1])
        for depth in range(1, len(parts)):
            init = root.joinpath(*parts[:depth], "__init__.py")
            init.parent.mkdir(parents=True, exist_ok=True)
            if not init.exists():
                init.write_text("", encoding="utf-8")
        package.mkdir(parents=True, exist_ok=True)
        (package / f"{parts[-1]}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return root


def activate(root: Path) -> None:
    """Put ``root`` first on ``sys.path`` and drop import caches so it is seen."""
    import importlib

    path = str(root)
    if path not in sys.path:
        sys.path.insert(0, path)
    importlib.invalidate_caches()


def deactivate(root: Path, *module_prefixes: str) -> None:
    """Undo :func:`activate` and forget modules imported from ``root``."""
    import importlib

    path = str(root)
    while path in sys.path:
        sys.path.remove(path)
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in module_prefixes):
            del sys.modules[name]
    importlib.invalidate_caches()
