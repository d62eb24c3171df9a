"""File actions beside a sandbox that shares their root, as the host's root: what
``write_file`` leaves is never a setuid/setgid/sticky file nor root's where a sandbox owns
the place, and a hard link to a file outside the root is neither read nor replaced."""

from __future__ import annotations

import base64
import os
import shutil
import stat
from pathlib import Path

import agently_core_function.plugin as function_plugin
import agently_core_workspace_local.plugin as local_plugin
import pytest

from agently_core.testing import make_agent, make_plugin_manager

SPECIAL = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
ID = Path("/usr/bin/id")


@pytest.fixture
def agent(shared_root):
    agent = make_agent(make_plugin_manager(function_plugin, local_plugin))
    agent.enable_workspace_file_actions(root=shared_root, write=True)
    yield agent
    agent.close()


def id_program() -> str:
    """A real ELF program (``id``) as base64: the bytes a model chooses to write."""
    return base64.b64encode(ID.read_bytes()).decode()


def sandbox_file(path: Path, uid: int, mode: int) -> None:
    """What a sandbox can do to a file of its own: copy a program, mark it ``mode``."""
    shutil.copyfile(ID, path)
    os.chown(path, uid, uid)
    os.chmod(path, mode)


def test_the_machine_honours_setuid_root(shared_root, run_as_nobody):
    """The control for the checks below: a root-owned setuid copy of ``id`` run by
    nobody reports euid=0 here, so "no euid=0" below is a real result."""
    probe = shared_root / "control"
    sandbox_file(probe, 0, 0o4755)
    assert "euid=0(root)" in run_as_nobody(probe).stdout


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1755, 0o6777, 0o7777], ids=oct)
def test_a_sandbox_set_id_file_replaced_keeps_no_special_bit_and_stays_the_sandboxs(
        agent, shared_root, sandbox_uid, run_as_nobody, file_calls, mode):
    call, _ = file_calls
    sandbox_file(shared_root / "tool", sandbox_uid, mode)
    record = call(agent, "write_file", path="tool", content=id_program(), encoding="base64")
    assert record.status == "success", record.error
    found = os.stat(shared_root / "tool")
    assert found.st_mode & SPECIAL == 0, oct(found.st_mode)
    assert stat.S_IMODE(found.st_mode) == mode & 0o755  # no group/other write either
    assert (found.st_uid, found.st_gid) == (sandbox_uid, sandbox_uid)
    ran = run_as_nobody(shared_root / "tool")
    assert ran.returncode == 0 and "uid=65534" in ran.stdout, ran
    assert "euid=" not in ran.stdout, ran.stdout  # before the fix: euid=0(root)


def test_files_and_directories_made_in_a_sandbox_directory_are_the_sandboxs(
        agent, shared_root, sandbox_uid, file_calls):
    """A setgid, group-writable directory of the sandbox: what write_file makes there
    (create_dirs included) belongs to the sandbox, and neither the file nor a directory
    inherits setgid or keeps group write."""
    call, _ = file_calls
    box = shared_root / "box"
    box.mkdir()
    os.chown(box, sandbox_uid, sandbox_uid)
    os.chmod(box, 0o2777 | stat.S_ISVTX)
    for path in ("box/new.txt", "box/sub/deeper/file.txt"):
        assert call(agent, "write_file", path=path, content="x").status == "success"
    for path in ("box/new.txt", "box/sub", "box/sub/deeper", "box/sub/deeper/file.txt"):
        found = os.stat(shared_root / path)
        assert (found.st_uid, found.st_gid) == (sandbox_uid, sandbox_uid), path
        assert found.st_mode & (SPECIAL | 0o022) == 0, (path, oct(found.st_mode))
    assert stat.S_IMODE(os.stat(shared_root / "box/sub").st_mode) & 0o700 == 0o700


def test_a_new_file_in_a_root_directory_has_no_special_bit(agent, shared_root, file_calls):
    call, _ = file_calls
    os.chmod(shared_root, 0o2777 | stat.S_ISVTX)
    assert call(agent, "write_file", path="made/here.txt", content="x").status == "success"
    for path in ("made", "made/here.txt"):
        found = os.stat(shared_root / path)
        assert found.st_mode & (SPECIAL | 0o022) == 0, (path, oct(found.st_mode))
        assert found.st_uid == os.geteuid()


def test_a_root_file_replaced_in_a_sandbox_directory_goes_to_the_sandbox(
        agent, shared_root, sandbox_uid, file_calls):
    """The directory's owner can replace anything in it anyway: the model's bytes are
    theirs, not root's."""
    call, _ = file_calls
    box = shared_root / "box"
    box.mkdir()
    (box / "old.txt").write_text("host wrote this")
    os.chmod(box / "old.txt", 0o4755)
    os.chown(box, sandbox_uid, sandbox_uid)
    assert call(agent, "write_file", path="box/old.txt", content="new").status == "success"
    found = os.stat(box / "old.txt")
    assert found.st_uid == sandbox_uid and found.st_mode & SPECIAL == 0


# -- hard links -----------------------------------------------------------------------------
def test_a_hard_link_to_a_root_only_file_is_never_read_or_replaced(
        agent, shared_root, outside_secret, file_calls):
    call, refused = file_calls
    os.link(outside_secret, shared_root / "innocent.txt")
    (shared_root / "sub").mkdir()
    os.link(outside_secret, shared_root / "sub" / "notes.md")
    refused(agent, "read_file", "hard links", path="innocent.txt")
    refused(agent, "read_file", "hard links", path="sub/notes.md", offset=5)
    refused(agent, "write_file", "hard links", path="innocent.txt", content="x")
    searched = call(agent, "search_files", query="SECRET").result
    assert searched["matches"] == []
    assert sorted(searched["skipped"]) == ["innocent.txt (has 3 hard links)",
                                           "sub/notes.md (has 3 hard links)"]
    entries = call(agent, "list_files", recursive=True).result["entries"]
    assert {e["path"]: e.get("hard_links") for e in entries} == {
        "innocent.txt": 3, "sub": None, "sub/notes.md": 3}
    assert outside_secret.read_text() == "ROOT ONLY SECRET\n"
    assert stat.S_IMODE(outside_secret.stat().st_mode) == 0o600
    assert (shared_root / "innocent.txt").samefile(outside_secret)  # not replaced either
    assert call(agent, "write_file", path="ok.txt", content="fine").status == "success"
