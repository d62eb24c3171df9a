"""Discovery proven for real: wheels of the core and two plugins, installed into a fresh
virtual environment, are exactly what ``agently-core plugins --json`` lists there;
uninstalling one removes it; a broken plugin distribution is reported with its error
while the others keep working.

This needs ``uv`` (the project's set-up tool). Without it the test fails; it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = {
    "agently-core": ROOT,
    "agently-core-runtime": ROOT / "plugins" / "runtime",
    "agently-core-function": ROOT / "plugins" / "function",
}
BROKEN_ERROR = "agently-core-broken is broken on purpose"


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    pytest.fail("this test needs uv (the project's set-up tool) on PATH or as "
                f"'{sys.executable} -m uv'; install it with: pip install uv")


def _env() -> dict[str, str]:
    """The caller's environment minus anything that would leak the development venv or
    the developer's agently settings into the fresh one."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX"}
    return {k: v for k, v in os.environ.items()
            if k not in drop and not k.startswith("AGENTLY_")}


def _run(cmd: list[str], *, cwd: Path, check: bool = True,
         timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def _write_broken_project(root: Path) -> Path:
    """A plugin distribution whose entry-point module raises ImportError on import."""
    project = root / "broken-plugin"
    package = project / "agently_core_broken"
    package.mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [project]
        name = "agently-core-broken"
        version = "0.0.1"
        requires-python = ">=3.11"
        dependencies = ["agently-core"]

        [project.entry-points.agently_core]
        broken = "agently_core_broken.plugin"

        [build-system]
        requires = ["hatchling>=1.25"]
        build-backend = "hatchling.build"

        [tool.hatch.build.targets.wheel]
        packages = ["agently_core_broken"]
        """), encoding="utf-8")
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "plugin.py").write_text(f"raise ImportError({BROKEN_ERROR!r})\n", encoding="utf-8")
    return project


def _wheel(directory: Path, distribution: str) -> Path:
    [wheel] = directory.glob(distribution.replace("-", "_") + "-*.whl")
    return wheel


def _plugins(cli: Path, cwd: Path, code: int = 0) -> dict[str, dict[str, Any]]:
    """``plugins --json``, which exits 1 when a plugin failed."""
    proc = _run([cli, "plugins", "--json"], cwd=cwd, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["conflicts"] == []
    return {p["name"]: p for p in data["plugins"]}


def test_installed_wheels_are_exactly_what_is_discovered(tmp_path: Path) -> None:
    uv = _uv()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    wheels = tmp_path / "wheels"
    work = tmp_path / "work"  # an empty agently.toml: default configuration, no file search
    work.mkdir()
    (work / "agently.toml").write_text("", encoding="utf-8")
    broken_project = _write_broken_project(tmp_path)
    sources = [*PROJECTS.values(), broken_project]

    # 1. Build the four wheels (in parallel; each build is its own uv process).
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        list(pool.map(lambda src: _run([*uv, "build", "--wheel", "--quiet", "--out-dir", wheels,
                                        src], cwd=work), sources))
    built = {name: _wheel(wheels, name) for name in [*PROJECTS, "agently-core-broken"]}
    timings["build"] = time.perf_counter() - started

    # 2. A fresh virtual environment with only the core and two plugins.
    venv = tmp_path / "venv"
    _run([*uv, "venv", "--quiet", "--python", sys.executable, venv], cwd=work)
    python = venv / "bin" / "python"
    cli = venv / "bin" / "agently-core"
    _run([*uv, "pip", "install", "--quiet", "--python", python,
          *(built[name] for name in PROJECTS)], cwd=work)
    timings["install"] = time.perf_counter() - started - timings["build"]
    assert cli.exists(), "the wheel did not install the agently-core console script"
    where = _run([python, "-c", "import agently_core, agently_core_runtime, "
                  "agently_core_function as f; print(agently_core.__file__); print(f.__file__)"],
                 cwd=work).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), (
        f"the fresh venv imports from outside itself: {where}")

    # 3. Exactly what is installed is listed: the core's own entry, runtime and function.
    plugins = _plugins(cli, work)
    assert set(plugins) == {"agently-core", "runtime", "function"}
    assert {n: p["distribution"] for n, p in plugins.items()} == {
        "agently-core": "agently-core",
        "runtime": "agently-core-runtime",
        "function": "agently-core-function",
    }
    assert all(p["status"] == "loaded" and p["error"] is None for p in plugins.values())
    assert all(p["version"] == "0.1.0" for p in plugins.values())
    assert plugins["runtime"]["roles"] == {"action_runtime": ["agently"],
                                           "action_flow": ["agently"], "planner": ["scripted"]}
    assert plugins["function"]["roles"] == {"action_executor": ["function"],
                                            "action_package": ["examples"]}

    # 4. Uninstalling a plugin removes it, and doctor says how to get it back.
    _run([*uv, "pip", "uninstall", "--quiet", "--python", python, "agently-core-function"],
         cwd=work)
    plugins = _plugins(cli, work)
    assert set(plugins) == {"agently-core", "runtime"}
    doctor = _run([cli, "doctor"], cwd=work, check=False)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert "pip install agently-core-function" in doctor.stdout

    # 5. A broken plugin is reported with its error; everything else still works.
    _run([*uv, "pip", "install", "--quiet", "--python", python,
          built["agently-core-function"], built["agently-core-broken"]], cwd=work)
    plugins = _plugins(cli, work, code=1)
    assert set(plugins) == {"agently-core", "runtime", "function", "broken"}
    broken = plugins["broken"]
    assert broken["status"] == "failed"
    assert broken["distribution"] == "agently-core-broken"
    assert broken["version"] == "0.0.1"
    assert BROKEN_ERROR in broken["error"] and "ImportError" in broken["error"]
    assert all(plugins[n]["status"] == "loaded" for n in ("agently-core", "runtime", "function"))

    call = _run([cli, "call", "add", "--kwargs", '{"a": 1, "b": 2}'], cwd=work, check=False)
    assert call.returncode == 0, call.stdout + call.stderr
    record = json.loads(call.stdout)
    assert record["status"] == "success" and record["result"] == 3

    doctor = _run([cli, "doctor", "--json"], cwd=work, check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["usable"] is True
    assert [p["distribution"] for p in report["problems"]] == ["agently-core-broken"]

    timings["total"] = time.perf_counter() - started
    print("wheel discovery timings (s):", {k: round(v, 2) for k, v in timings.items()})
