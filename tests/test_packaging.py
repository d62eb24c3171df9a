"""Installing plugins from a checkout never turns the core into an editable install.

The checkout is a uv project whose plugins are path dependencies of the root (no uv
workspace): a uv workspace makes ``uv pip install ./plugins/NAME`` pull ``agently-core``
from the checkout as an *editable* install, silently. Now a plugin installed alone asks
the registry for ``agently-core`` (and says so when it is not there), and the documented
command, ``uv pip install . ./plugins/NAME``, installs the core as a regular, non-editable
distribution. ``uv sync --locked --all-packages`` (what ``./dev`` runs) still installs
the core and every plugin editable, for development.

The install tests need ``uv`` (the project's set-up tool) and the package index for the
third-party dependencies; without uv they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pyproject(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))


def _plugin_dirs() -> list[Path]:
    return sorted(p.parent for p in [*ROOT.glob("plugins/*/pyproject.toml"),
                                     *ROOT.glob("contrib/*/pyproject.toml")])


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("this test needs uv (the project's set-up tool) on PATH: pip install uv")
    return found


def _env() -> dict[str, str]:
    """The caller's environment without what would point uv at the development venv."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX",
            "UV_NO_SOURCES"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(cmd: list[object], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def _direct_url(venv: Path, distribution: str) -> dict:
    """The PEP 610 ``direct_url.json`` of an installed distribution (``{}`` when absent)."""
    [info] = venv.glob(f"lib/python*/site-packages/{distribution.replace('-', '_')}-*.dist-info")
    path = info / "direct_url.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


# -- the packaging metadata ------------------------------------------------------------------
@pytest.mark.parametrize("plugin", _plugin_dirs(), ids=lambda p: p.name)
def test_plugins_name_no_workspace_sources(plugin: Path) -> None:
    """A plugin's pyproject has no ``[tool.uv.sources]``: what it declares is what pip, uv
    and an index see, the same from a checkout as from a wheel."""
    sources = _pyproject(plugin).get("tool", {}).get("uv", {}).get("sources")
    assert sources is None, f"{plugin.relative_to(ROOT)}/pyproject.toml has uv sources {sources}"


def test_the_root_is_no_uv_workspace_and_finds_every_plugin_by_path() -> None:
    """A uv workspace root makes ``uv pip install ./plugins/X`` install the core editable;
    the root names every plugin as an editable path source of the dev group instead (not
    of the ``[all]`` extra, which would install them editable from a checkout)."""
    root = _pyproject(ROOT)
    uv = root["tool"]["uv"]
    assert "workspace" not in uv, "a uv workspace turns the core editable in plugin installs"
    expected = {_pyproject(p)["project"]["name"]: p.relative_to(ROOT).as_posix()
                for p in _plugin_dirs()}
    assert uv["sources"] == {name: {"path": path, "editable": True, "group": "dev"}
                             for name, path in expected.items()}
    dev = set(root["dependency-groups"]["dev"])
    assert set(expected) <= dev, f"missing from the dev group: {set(expected) - dev}"


# -- real installs into fresh virtual environments --------------------------------------------
@pytest.fixture
def venv(tmp_path: Path) -> Path:
    path = tmp_path / "venv"
    _run([_uv(), "venv", "--quiet", "--python", sys.executable, path], cwd=tmp_path)
    return path


def test_one_plugin_alone_never_installs_the_checkout_editable(venv: Path, tmp_path: Path) -> None:
    """``uv pip install ./plugins/sqlite`` either fails saying where ``agently-core`` was
    looked for (it is not on the index yet) or installs a core that is not the checkout
    in editable form."""
    proc = _run([_uv(), "pip", "install", "--python", venv / "bin" / "python",
                 ROOT / "plugins" / "sqlite"], cwd=tmp_path, check=False)
    if proc.returncode != 0:
        assert "agently-core" in proc.stderr and "not found" in proc.stderr, proc.stderr
        return
    found = _direct_url(venv, "agently-core")
    assert not found.get("dir_info", {}).get("editable"), (
        f"installing one plugin made the core an editable install: {found}")


def test_the_all_extra_from_a_checkout_installs_no_editable_plugin(venv: Path) -> None:
    """``uv pip install '.[all]'`` from a checkout either fails saying a plugin is not on
    the index (not published yet) or installs none of them editable."""
    proc = _run([_uv(), "pip", "install", "--python", venv / "bin" / "python", ".[all]"],
                cwd=ROOT, check=False)
    if proc.returncode != 0:
        assert "agently-core-" in proc.stderr and "not found" in proc.stderr, proc.stderr
        return
    for info in venv.glob("lib/python*/site-packages/agently_core*.dist-info"):
        name = info.name.split("-")[0].replace("_", "-")
        assert not _direct_url(venv, name).get("dir_info", {}).get("editable"), name


@pytest.mark.parametrize("plugins", [("sqlite",), ("isolation", "bash")], ids="+".join)
def test_the_documented_command_installs_regular_distributions(
        venv: Path, tmp_path: Path, plugins: tuple[str, ...]) -> None:
    """``uv pip install . ./plugins/NAME`` (docs/getting-started.md) installs the core and
    the plugins as regular distributions: code copied into the venv, nothing editable, and
    the plugin is discovered there."""
    guide = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert "uv pip install . ./plugins/runtime ./plugins/sqlite" in guide
    python = venv / "bin" / "python"
    _run([_uv(), "pip", "install", "--quiet", "--python", python, ".",
          *(f"./plugins/{name}" for name in plugins)], cwd=ROOT)
    for name in ["agently-core", *(f"agently-core-{p}" for p in plugins)]:
        found = _direct_url(venv, name)
        assert not found.get("dir_info", {}).get("editable"), f"{name} is editable: {found}"
    where = _run([python, "-c", "import agently_core; print(agently_core.__file__)"],
                 cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), f"agently_core imports from {where}"
    listed = _run([venv / "bin" / "agently-core", "plugins", "--json"], cwd=tmp_path).stdout
    names = {p["name"]: p["status"] for p in json.loads(listed)["plugins"]}
    assert {names.get(p) for p in plugins} == {"loaded"}, names


def test_pip_installs_the_documented_command_as_regular_distributions(tmp_path: Path) -> None:
    """The same command with pip (``pip install . ./plugins/sqlite``, pip never reads uv
    sources) gives regular installs too."""
    venv = tmp_path / "pipvenv"
    _run([_uv(), "venv", "--quiet", "--seed", "--python", sys.executable, venv], cwd=tmp_path)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet",
          "--disable-pip-version-check", ".", "./plugins/sqlite"], cwd=ROOT)
    for name in ("agently-core", "agently-core-sqlite"):
        found = _direct_url(venv, name)
        assert found and not found.get("dir_info", {}).get("editable"), (name, found)


def test_dev_sync_still_installs_everything_editable(tmp_path: Path) -> None:
    """What ``./dev`` runs, ``uv sync --locked --all-packages``, accepts the lock as it is
    and installs the core and every plugin editable from the checkout."""
    env_dir = tmp_path / "devenv"
    proc = subprocess.run([_uv(), "sync", "--locked", "--all-packages", "--quiet",
                           "--python", sys.executable],
                          cwd=ROOT, env={**_env(), "UV_PROJECT_ENVIRONMENT": str(env_dir)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for plugin in [ROOT, *_plugin_dirs()]:
        name = _pyproject(plugin)["project"]["name"]
        found = _direct_url(env_dir, name)
        assert found.get("dir_info", {}).get("editable") is True, (name, found)
        assert found["url"] == plugin.as_uri(), (name, found)
