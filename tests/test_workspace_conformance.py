"""The in-memory reference workspace backend passes the workspace backend suite."""

from __future__ import annotations

import math
import re

import anyio
import pytest

from agently_core.testing import MemoryWorkspaceBackend, WorkspaceBackendConformance
from agently_core.workspace import (
    ARTIFACTS,
    CHECKPOINTS,
    DURABLE,
    EVENT_SEQUENCES,
    FILES,
    LEASES,
    LINKS,
    MULTI_PROCESS,
    RANGE_READS,
    READ_ONLY_MODE,
    REQUIRED_CAPABILITIES,
    RETENTION,
    SEARCH,
    VersionConflict,
    WorkspaceClosedError,
    WorkspaceError,
)


class TestMemoryWorkspaceConformance(WorkspaceBackendConformance):
    def make_backend(self) -> MemoryWorkspaceBackend:
        return MemoryWorkspaceBackend()

    def make_read_only_backend(self) -> MemoryWorkspaceBackend:
        return MemoryWorkspaceBackend(read_only=True)


class TestAsyncFactoryConformance(WorkspaceBackendConformance):
    """``make_backend`` may be async."""

    concurrent_writers = 32

    async def make_backend(self) -> MemoryWorkspaceBackend:
        await anyio.sleep(0)
        return MemoryWorkspaceBackend()


def test_capabilities_are_honest() -> None:
    """Everything but what memory cannot promise: durability and several processes."""
    backend = MemoryWorkspaceBackend()
    assert backend.capabilities() >= REQUIRED_CAPABILITIES
    assert {SEARCH, LINKS, CHECKPOINTS, LEASES, ARTIFACTS, RANGE_READS, RETENTION,
            EVENT_SEQUENCES, READ_ONLY_MODE} <= backend.capabilities()
    assert not backend.capabilities() & {DURABLE, MULTI_PROCESS, FILES}


def test_closed_backend_refuses_work() -> None:
    async def main() -> None:
        backend = MemoryWorkspaceBackend()
        await backend.aclose()
        with pytest.raises(WorkspaceClosedError):
            await backend.put_record("c", "k", {})
        with pytest.raises(WorkspaceClosedError):
            await backend.read_events("x")

    anyio.run(main)


@pytest.mark.parametrize("value", [{"f": math.nan}, {"o": object()}, ["not", "a", "dict"]])
def test_values_that_are_not_json_objects_are_refused(value: object) -> None:
    async def main() -> None:
        backend = MemoryWorkspaceBackend()
        with pytest.raises(WorkspaceError, match="JSON"):
            await backend.put_record("c", "k", value)  # type: ignore[arg-type]
        assert await backend.get_record("c", "k") is None

    anyio.run(main)


def test_version_conflict_names_the_versions_and_pickles() -> None:
    import pickle

    conflict = VersionConflict("state", 2, 5)
    assert (conflict.key, conflict.expected, conflict.actual) == ("state", 2, 5)
    assert "'state'" in str(conflict) and "5" in str(conflict) and "2" in str(conflict)
    again = pickle.loads(pickle.dumps(conflict))
    assert (again.key, again.expected, again.actual) == ("state", 2, 5)
    assert isinstance(conflict, WorkspaceError)


def test_workspace_module_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, agently_core.workspace, agently_core.testing.distributions; "
            "heavy = [m for m in ('pydantic', 'pytest', 'anyio') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_testing_package_loads_suites_lazily() -> None:
    import subprocess
    import sys

    code = ("import sys, agently_core.testing as t; "
            "before = [m for m in ('pydantic', 'pytest') if m in sys.modules]; "
            "t.ExecutorConformance; t.MemoryWorkspaceBackend; "
            "print(before, 'agently_core.testing.executor_suite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[] True"


def test_a_third_party_project_runs_the_suites_in_a_few_lines(tmp_path) -> None:
    """Outside this repository, with only the installed pytest11 plugin: subclass, run."""
    import subprocess
    import sys

    (tmp_path / "test_third_party.py").write_text(
        "from agently_core.testing import (MemoryWorkspaceBackend, ProviderConformance,\n"
        "                                  TempdirProvider, WorkspaceBackendConformance)\n"
        "\n"
        "class TestBackend(WorkspaceBackendConformance):\n"
        "    def make_backend(self): return MemoryWorkspaceBackend()\n"
        "\n"
        "class TestProvider(ProviderConformance):\n"
        "    kind = 'tempdir'\n"
        "    def make_provider(self): return TempdirProvider()\n"
        "    def make_requirement(self, scenario):\n"
        "        if scenario == 'bad_config': return {'config': {'prefix': '../x'}}\n"
        "        return {'config': {'base': str(self.tmp_path)}}\n"
        "\n"
        "def test_fixtures_are_there(agently_plugin_manager, fake_distributions):\n"
        "    assert agently_plugin_manager().registrations('action_executor') == {}\n",
        encoding="utf-8",
    )
    def pytest(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args,
             "test_third_party.py"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )

    collected = pytest("--collect-only")
    count = int(re.search(r"(\d+) tests? collected", collected.stdout).group(1))
    assert count > 30, collected.stdout  # both suites' tests, and the plain test
    done = pytest("-rs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{count - 2} passed, 2 skipped" in done.stdout, done.stdout
