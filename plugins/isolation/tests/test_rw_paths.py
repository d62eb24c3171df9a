"""``SandboxSpec.rw_paths`` and ``cwd`` in both real tiers: host directories usable
read-write at their own paths, the program starting in one of them, read-only paths inside
them staying read-only, nothing else writable, and a missing tree failing closed."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from agently_core_isolation.sandbox import Isolation, Limits, SandboxSpec, allocate_uid, run
from agently_core_isolation.testing import PY, TIERS

PROBE = """
import os, sys
print("CWD", os.getcwd())
open("made-here.txt", "w").write("x")
for target in sys.argv[1:]:
    try:
        open(target, "w").write("x")
        print("WROTE", target)
    except OSError:
        print("DENIED", target)
"""


@pytest.fixture
def uid() -> int | None:
    return allocate_uid() if os.geteuid() == 0 else None


@pytest.fixture
def owned(uid: int | None) -> Iterator[object]:
    """Makes host directories under /tmp that the sandbox's uid owns (as a host would give
    a project directory to the sandbox); removed after the test."""
    made: list[str] = []

    def make(parent: str = "/tmp") -> str:
        path = tempfile.mkdtemp(prefix="agently-rw-", dir=parent)
        os.chmod(path, 0o755)
        if uid is not None:
            os.chown(path, uid, uid)
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def sandbox_run(tier: str, spec: SandboxSpec, uid: int | None):
    return anyio.run(functools.partial(run, Isolation(tier), spec, uid=uid))


@pytest.mark.parametrize("tier", TIERS)
def test_rw_paths_at_their_own_paths_and_nothing_else(tier: str, uid: int | None,
                                                      owned) -> None:
    root, other = owned(), owned()
    start = owned(root)  # the program starts here, inside the root
    kept = owned()  # read-only, outside the root
    workdir = Path(owned())
    spec = SandboxSpec([*PY, PROBE, f"{root}/new.txt", f"{kept}/x", f"{other}/x"], workdir,
                       rw_paths=(root,), ro_paths=(kept,), cwd=start,
                       limits=Limits(wall_seconds=20))
    result = sandbox_run(tier, spec, uid)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"CWD {start}"
    assert f"WROTE {root}/new.txt" in lines
    assert f"DENIED {kept}/x" in lines and f"DENIED {other}/x" in lines
    assert Path(start, "made-here.txt").exists() and Path(root, "new.txt").exists()
    assert not Path(kept, "x").exists() and not Path(other, "x").exists()


@pytest.mark.parametrize("tier", TIERS)
def test_a_read_only_path_inside_a_rw_path(tier: str, uid: int | None, owned) -> None:
    root = owned()
    kept = owned(root)
    workdir = Path(owned())
    spec = SandboxSpec([*PY, PROBE, f"{kept}/x"], workdir, rw_paths=(root,), ro_paths=(kept,),
                       cwd=root, limits=Limits(wall_seconds=20))
    if tier == "landlock":  # Landlock only adds rights beneath a tree: refused, not run
        with pytest.raises(ValueError, match="Landlock cannot keep it read-only"):
            sandbox_run(tier, spec, uid)
        assert not Path(root, "made-here.txt").exists()
        return
    result = sandbox_run(tier, spec, uid)  # bubblewrap binds it read-only above the root
    assert result.exit_code == 0, result.stderr
    assert f"DENIED {kept}/x" in result.stdout.splitlines()
    assert not Path(kept, "x").exists()


@pytest.mark.parametrize("tier", TIERS)
def test_the_default_start_is_the_workdir(tier: str, uid: int | None, owned) -> None:
    workdir = Path(owned())
    spec = SandboxSpec([*PY, PROBE], workdir, cwd="/work", limits=Limits(wall_seconds=20))
    result = sandbox_run(tier, spec, uid)
    assert result.exit_code == 0, result.stderr
    assert (workdir / "made-here.txt").exists()  # /work is the workdir in every tier


@pytest.mark.parametrize("tier", TIERS)
def test_a_missing_rw_path_fails_closed(tier: str, uid: int | None, owned) -> None:
    workdir = Path(owned())
    missing = f"/tmp/agently-rw-missing-{os.getpid()}"
    spec = SandboxSpec([*PY, PROBE], workdir, rw_paths=(missing,),
                       limits=Limits(wall_seconds=20))
    result = sandbox_run(tier, spec, uid)
    assert result.exit_code != 0
    assert "CWD" not in result.stdout and not (workdir / "made-here.txt").exists()
    assert not os.path.exists(missing)
