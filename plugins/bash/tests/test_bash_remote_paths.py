"""The executor's path checks for a sandbox whose paths are another machine's
(``BashSandbox.paths_here = False``, agently-core-ray): by their text only, ``..``
included. What the text cannot see (a symlink on that machine) passes here and is the
sandbox's own check where its files are (tested on a cluster in contrib/ray)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from agently_core_bash.executor import call_roots, resolve_workdir

from agently_core.errors import ActionError

ROOT = "/nowhere-here/box/work"  # the other machine's path: nothing of it exists here


@pytest.mark.parametrize("workdir", ["..", "a/../../b", "../work-evil", "/etc",
                                     "a/./../../../etc"])
def test_dotdot_and_absolute_escapes_are_refused_by_their_text(workdir: str) -> None:
    with pytest.raises(ActionError, match="outside the roots"):
        resolve_workdir(workdir, [ROOT], here=False)


@pytest.mark.parametrize(("workdir", "expected"), [
    (None, ROOT), ("", ROOT), ("sub", f"{ROOT}/sub"), ("sub/../other/.", f"{ROOT}/other"),
    (f"{ROOT}/deep/er", f"{ROOT}/deep/er")])
def test_paths_inside_are_kept_normalised_without_touching_this_machine(
        workdir: str | None, expected: str) -> None:
    assert resolve_workdir(workdir, [ROOT], here=False) == expected


def test_a_symlink_passes_the_text_check_and_is_refused_here(tmp_path: Path) -> None:
    """The text cannot tell a link from a folder: that is why the sandbox's node
    resolves the path again; on this machine (``here``) it is refused at once."""
    (tmp_path / "escape").symlink_to("/etc")
    root = str(tmp_path)
    assert resolve_workdir("escape", [root], here=False) == f"{root}/escape"
    with pytest.raises(ActionError, match="outside the roots"):
        resolve_workdir("escape", [root])


def test_call_roots_of_a_remote_sandbox_are_checked_by_text() -> None:
    box = SimpleNamespace(roots=[ROOT], paths_here=False)
    assert call_roots(box, [f"{ROOT}/a/../b"]) == [f"{ROOT}/b"]  # need not exist here
    for wanted in (f"{ROOT}/..", f"{ROOT}-evil", "/"):
        with pytest.raises(ActionError, match="not within this sandbox's roots"):
            call_roots(box, [wanted])
    with pytest.raises(ActionError, match="allows no workspace root"):
        call_roots(box, [])
