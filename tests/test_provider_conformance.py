"""The reference ``tempdir`` provider passes the provider conformance suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agently_core.models import EnvironmentRequirement
from agently_core.protocols import ProviderHandle
from agently_core.testing import ProviderConformance, TempdirProvider
from agently_core.testing.tempdir_provider import DEFAULT_PREFIX, TempdirError


class TestTempdirProviderConformance(ProviderConformance):
    kind = "tempdir"

    def base(self) -> Path:
        base = self.tmp_path / "base"
        base.mkdir(exist_ok=True)
        return base

    def make_provider(self) -> TempdirProvider:
        return TempdirProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        if scenario == "bad_config":
            return {"config": {"base": str(self.tmp_path / "missing")}}
        return {"config": {"base": str(self.base()), "prefix": "conformance-"}}

    def live_resources(self) -> set[Path]:
        return set(self.base().glob("conformance-*"))


def _requirement(**config: Any) -> EnvironmentRequirement:
    return EnvironmentRequirement(kind="tempdir", config=config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"base": "/definitely/not/here"}, "not an existing directory"),
        ({"prefix": "../escape"}, "prefix"),
        ({"prefix": ""}, "prefix"),
        ({"colour": "blue"}, "unknown tempdir config key"),
        ({"base": 42}, "must be a directory path"),
    ],
)
def test_bad_configs_are_refused_with_a_clear_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(TempdirError, match=message):
        anyio.run(TempdirProvider().ensure, _requirement(**config))


def test_base_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(TempdirError, match="not an existing directory"):
        anyio.run(TempdirProvider().ensure, _requirement(base=str(target)))


def test_directory_is_private_and_release_removes_its_contents(tmp_path: Path) -> None:
    provider = TempdirProvider()
    requirement = _requirement(base=str(tmp_path))

    async def main() -> Path:
        path = await provider.ensure(requirement)
        assert path.parent == tmp_path and path.name.startswith(DEFAULT_PREFIX)
        assert path.stat().st_mode & 0o777 == 0o700
        nested = path / "a" / "b"
        nested.mkdir(parents=True)
        (nested / "file.txt").write_text("data")
        (path / "a").chmod(0o500)  # a read-only directory inside must not block release
        await provider.release(requirement, path)
        await provider.release(requirement, path)  # a second release is a no-op
        return path

    path = anyio.run(main)
    assert not path.exists()


def test_release_refuses_paths_it_did_not_create(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    with pytest.raises(TempdirError, match="not created by this tempdir provider"):
        anyio.run(TempdirProvider().release, _requirement(), keep)
    assert keep.exists()


def test_health_check_is_false_for_a_directory_removed_behind_its_back(tmp_path: Path) -> None:
    provider = TempdirProvider()
    requirement = _requirement(base=str(tmp_path))

    async def main() -> tuple[bool, bool]:
        path = await provider.ensure(requirement)
        handle = ProviderHandle("envh_tempdir", requirement, path)
        before = await provider.async_health_check(handle)
        path.rmdir()
        after = await provider.async_health_check(handle)
        await provider.release(requirement, path)
        return before, after

    assert anyio.run(main) == (True, False)


# -- the suite's manager cases catch what they are for -------------------------------------
class LeaksWhenCancelledWhileStarting(TempdirProvider):
    """Makes its directory, then does more start-up work; a cancellation in between leaves
    the directory behind (the bug the cancellation case is for)."""

    async def ensure(self, requirement: Any) -> Path:
        path = await super().ensure(requirement)
        await anyio.sleep(0.2)  # e.g. waiting for a child process to say it is ready
        return path


class NeverHealthy(TempdirProvider):
    async def async_health_check(self, handle: ProviderHandle) -> bool:
        return False


def _suite_case(provider_class: type, case: str, tmp_path: Path, **attributes: Any) -> None:
    suite_class = type("Case", (TestTempdirProviderConformance,),
                       {"make_provider": lambda self: provider_class(), **attributes})
    suite = suite_class()
    suite.tmp_path = tmp_path
    getattr(suite, case)()


def test_the_cancellation_case_catches_a_start_that_leaks_when_cancelled(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"never released|left behind"):
        _suite_case(LeaksWhenCancelledWhileStarting,
                    "test_manager_ensure_cancelled_while_starting_leaks_nothing", tmp_path,
                    start_cancel_delays=(0.05,))
    _suite_case(TempdirProvider, "test_manager_ensure_cancelled_while_starting_leaks_nothing",
                tmp_path)  # the same case passes for the real provider


def test_the_reuse_case_catches_a_health_check_that_never_passes(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="two ensures of one key started 2"):
        _suite_case(NeverHealthy,
                    "test_manager_reuses_one_resource_per_key_and_counts_references", tmp_path)


def test_the_release_case_catches_a_double_provider_release(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"released .* more than once"):
        _suite_case(TempdirProvider, "test_manager_release_twice_releases_the_resource_once",
                    tmp_path, resource_identity=lambda self, resource: "same")
