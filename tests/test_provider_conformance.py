"""The reference ``tempdir`` provider passes the provider conformance suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agently_core.models import EnvironmentRequirement
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
        before = await provider.health_check(requirement, path)
        path.rmdir()
        after = await provider.health_check(requirement, path)
        await provider.release(requirement, path)
        return before, after

    assert anyio.run(main) == (True, False)
