"""run_bash starts no program outside its allowlist, however a line dresses the request up:
observed, not inferred. Every call runs its sandbox under ``strace -f`` (exec_watch.py);
every program that starts after the sandbox's ``bash -c`` must be an allowed one. The lines
use the exec-capable options of the allowed programs (the default list: find, sort, diff;
a host-extended one: env, timeout, nice, nohup, stdbuf, setsid, flock, xargs, awk, sed)
with variable, ``read``, ``export``, ``set --``, quoting, expansion and glob tricks, aimed
at programs outside the list. In both real tiers."""

from __future__ import annotations

import importlib.util
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
from agently_core_isolation import testing
from agently_core_isolation.sandbox import Limits
from agently_core_isolation.testing import TIERS, dump
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
Exec, Traced, execs, foreign = watch_kit.Exec, watch_kit.Traced, watch_kit.execs, watch_kit.foreign


@dataclass
class Watched:
    """One agent per allowlist (the default, the host-extended) of one tier, each sandbox
    under strace; ``ran`` counts the lines that reached a sandbox."""

    agents: dict[bool, Any]
    traced: dict[bool, Traced]
    allowed: dict[bool, set[str]]
    root: Path
    ran: list[str] = field(default_factory=list)

    def line(self, line: str, *, host: bool) -> None:
        """Run ``line`` through run_bash; it is refused with nothing run, or whatever it
        starts is allowed."""
        traced = self.traced[host]
        traced.log.unlink(missing_ok=True)
        record = self.agents[host].action.execute_action("run_bash", {"cmd": line})
        if record.error_type == "CommandRefused":
            assert record.result is None and not traced.log.exists(), dump(record)
            return
        assert traced.log.exists(), (line, dump(record))
        self.ran.append(line)
        complete = record.status == "success" and not record.result["timed_out"]
        bad = foreign(execs(traced.log), line, self.allowed[host], complete=complete)
        assert not bad, (line, bad, dump(record))


@pytest.fixture
def watched(bash_agent: Callable[..., Any], shared_dir: Callable[[], Path],
            tmp_path: Path) -> Iterator[Callable[[str], Watched]]:
    """``watched(tier)``: the tier's Watched (made once per test: hypothesis calls the test
    once per example, with the same fixtures)."""
    strace = watch_kit.strace_path()
    made: dict[str, Watched] = {}

    def make(tier: str) -> Watched:
        if tier in made:
            return made[tier]
        root = shared_dir()
        shutil.copy2("/usr/bin/id", root / "evil")  # an ELF outside the list, in the workspace
        agents, traced, allowed = {}, {}, {}
        for host, commands in ((False, default_commands()), (True, watch_kit.host_commands())):
            agent = bash_agent(tier=tier, root=str(root), commands=commands, timeout=10)
            testing.next_call_works(agent, "run_bash", {"cmd": "echo 42"})
            box = testing.only_resource(agent, "bash")
            traced[host] = box.isolation = Traced(box.isolation, strace,
                                                  tmp_path / f"{tier}-{host}.log")
            agents[host] = agent
            allowed[host] = {p.real for p in Allowlist.resolve(commands).programs}
        made[tier] = Watched(agents, traced, allowed, root)
        return made[tier]

    yield make


@pytest.mark.parametrize("tier", TIERS)
def test_known_dangerous_lines_start_no_foreign_program(watched: Callable[[str], Watched],
                                                        tier: str) -> None:
    watch = watched(tier)
    for line, host in watch_kit.dangerous_lines(watch.root):
        watch.line(line, host=host)
    # the harmless ones among them ran (and were watched): the test sees real runs
    assert len(watch.ran) >= 10, watch.ran


@pytest.mark.parametrize("tier", TIERS)
@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_lines_start_no_foreign_program(watched: Callable[[str], Watched], tier: str,
                                               data: st.DataObject) -> None:
    watch = watched(tier)
    host = data.draw(st.booleans(), label="host-extended list")
    watch.line(data.draw(watch_kit.line_strategy(watch.root, host=host), label="line"), host=host)


@pytest.mark.parametrize("tier", TIERS)
def test_the_watch_sees_what_a_sandbox_starts(watched: Callable[[str], Watched],
                                              tier: str) -> None:
    """The observer is not blind: a line that is never checked (straight to the sandbox)
    tries to start /usr/bin/id, and the log shows that attempt, and the allowed ls."""
    watch = watched(tier)
    box = testing.only_resource(watch.agents[False], "bash")
    allowlist = Allowlist.resolve(default_commands())
    line = "ls >/dev/null; /usr/bin/id"
    watch.traced[False].log.unlink(missing_ok=True)
    anyio.run(_run_in, box, line, allowlist, str(watch.root))
    records: list[Exec] = execs(watch.traced[False].log)
    paths = [(r.path, r.result) for r in records]
    assert any(path == "/usr/bin/id" for path, _ in paths), paths  # tried, whatever came of it
    assert any(r.result == 0 and r.path.endswith("/ls") for r in records), paths
    started_id = any(r.path == "/usr/bin/id" and r.result == 0 for r in records)
    assert bool(foreign(records, line, watch.allowed[False], complete=True)) == started_id


async def _run_in(box: Any, line: str, allowlist: Allowlist, root: str) -> Any:
    return await box.run(line, cwd=root, roots=[root], allowlist=allowlist,
                         limits=Limits(wall_seconds=10), network=False, env={})
