"""The allowlist holds when the line analyser is fooled: the fuzz lines of
test_bash_exec_fuzz.py go straight to the sandbox (``BashSandbox.run`` with the
allowlist, no check at all), under ``strace -f``; every program that starts after the
sandbox's ``bash -c`` must be an allowed one, bash itself, or what the kernel must execute
to run those (the ELF loader; ``/bin/sh``, the interpreter of the default list's ``egrep``
and ``fgrep`` scripts): never ``/usr/bin/id``, a copied ELF, ``python3``. This is the
kernel's part (``SandboxSpec.exec_allow``), in both real tiers; before it, ``/usr/bin/id``
started from the first line."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_bash.package import default_commands
from agently_core_bash.programs import Allowlist
from agently_core_bash.sandbox import BashSandbox
from agently_core_isolation.sandbox import Isolation, Limits
from agently_core_isolation.testing import TIERS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _helpers() -> Any:
    """exec_watch.py beside this file (tests are imported by path, not as a package)."""
    name = "agently_bash_tests_exec_watch"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(
            "exec_watch.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


watch_kit = _helpers()


@dataclass
class Unchecked:
    """One sandbox of one tier under strace, and the two allowlists its lines run with."""

    box: BashSandbox
    traced: Any
    allowlists: dict[bool, Allowlist]
    root: Path
    outputs: list[str] = field(default_factory=list)

    def line(self, line: str, *, host: bool) -> None:
        """Run ``line`` in the sandbox, unchecked: whatever starts is allowed (or bash)."""
        allowlist = self.allowlists[host]
        self.traced.log.unlink(missing_ok=True)
        root = str(self.root)
        result = anyio.run(functools.partial(
            self.box.run, line, cwd=root, roots=[root], allowlist=allowlist,
            limits=Limits(wall_seconds=10), network=False, env={}))
        programs = {p.real for p in allowlist.programs} | {os.path.realpath(watch_kit.BASH)}
        allowed = programs | watch_kit.interpreters(programs)
        bad = watch_kit.foreign(watch_kit.execs(self.traced.log), line, allowed,
                                complete=result.killed is None)
        assert not bad, (line, bad, result)
        self.outputs.append(result.stdout + result.stderr)


@pytest.fixture
def unchecked(shared_dir: Callable[[], Path],
              tmp_path: Path) -> Iterator[Callable[[str], Unchecked]]:
    """``unchecked(tier)``: the tier's sandbox (one per test: hypothesis calls the test once
    per example, with the same fixtures)."""
    strace = watch_kit.strace_path()
    made: dict[str, Unchecked] = {}

    def make(tier: str) -> Unchecked:
        if tier not in made:
            root = shared_dir()
            shutil.copy2("/usr/bin/id", root / "evil")
            box = BashSandbox(Isolation(tier), roots=[str(root)])
            box.isolation = watch_kit.Traced(box.isolation, strace, tmp_path / f"{tier}.log")
            allowlists = {False: Allowlist.resolve(default_commands(), roots=[str(root)]),
                          True: Allowlist.resolve(watch_kit.host_commands(), roots=[str(root)])}
            made[tier] = Unchecked(box, box.isolation, allowlists, root)
        return made[tier]

    yield make
    for done in made.values():
        done.box.close()


@pytest.mark.parametrize("tier", TIERS)
def test_known_dangerous_lines_start_nothing_else_unchecked(
        unchecked: Callable[[str], Unchecked], tier: str) -> None:
    sandbox = unchecked(tier)
    for line, host in watch_kit.dangerous_lines(sandbox.root, thorough=False):
        sandbox.line(line, host=host)
    assert not any("uid=" in out for out in sandbox.outputs)


@pytest.mark.parametrize("tier", TIERS)
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_lines_start_nothing_else_unchecked(unchecked: Callable[[str], Unchecked],
                                                   tier: str, data: st.DataObject) -> None:
    sandbox = unchecked(tier)
    host = data.draw(st.booleans(), label="host-extended list")
    sandbox.line(data.draw(watch_kit.line_strategy(sandbox.root, host=host), label="line"),
                 host=host)
