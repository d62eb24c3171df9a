"""Races against a real process of another uid (a stand-in for a sandbox sharing the root):
it swaps the file ``write_file`` and ``read_file`` work on for a setuid file of its own, a
symlink out of the root, a FIFO and hard links to a root-only file outside the root, as fast
as it can. Nothing outside the root is ever read or written, and no file in the root is
ever a setuid/setgid file of root's."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from agently_core_workspace_local.confined import ConfinedRoot, FileAccessRefused

SWAPPER = r"""
import os, sys, time
arena, secret, stop = sys.argv[1], sys.argv[2], sys.argv[3]
os.chdir(arena)
links = sorted(name for name in os.listdir(".") if name.startswith("hl"))
deadline = time.monotonic() + 60
i = 0
def quietly(function, *args):
    try:
        function(*args)
    except OSError:
        pass
while not os.path.exists(stop) and time.monotonic() < deadline:
    with open("mine", "w") as handle:
        handle.write("SANDBOX")
    quietly(os.chmod, "mine", 0o6755)
    quietly(os.rename, "mine", "target")
    quietly(os.chmod, "target", 0o6755)   # whatever is there now: only its own works
    quietly(os.symlink, secret, "link")
    quietly(os.rename, "link", "target")
    if links:
        quietly(os.rename, links.pop(), "target")
    quietly(os.mkfifo, "fifo")
    quietly(os.rename, "fifo", "target")
    i += 1
print(i)
"""
SPECIAL = stat.S_ISUID | stat.S_ISGID


def root_set_id_files(folder: Path) -> list[str]:
    """Files below ``folder`` that are root's and setuid or setgid."""
    found = []
    for entry in os.scandir(folder):
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == 0 and info.st_mode & SPECIAL:
            found.append(f"{entry.name} {oct(info.st_mode)}")
    return found


@pytest.mark.parametrize("owner", ["sandbox-directory", "shared-root-directory"])
def test_swapping_the_target_while_writing_and_reading(shared_root, outside_secret,
                                                       sandbox_uid, owner):
    arena = shared_root / "arena"
    arena.mkdir()
    if owner == "sandbox-directory":
        os.chown(arena, sandbox_uid, sandbox_uid)
    else:
        os.chmod(arena, 0o777)  # root's, writable by everyone (no sticky bit)
    for number in range(400):  # the other uid cannot make these itself (protected_hardlinks)
        os.link(outside_secret, arena / f"hl{number:03d}")
    before = outside_secret.stat()
    outside_listing = sorted(os.listdir(outside_secret.parent))
    stop = shared_root / "stop"
    swapper = subprocess.Popen(
        ["setpriv", f"--reuid={sandbox_uid}", f"--regid={sandbox_uid}", "--clear-groups",
         "/usr/bin/python3", "-I", "-S", "-c", SWAPPER, str(arena), str(outside_secret),
         str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    confined = ConfinedRoot(shared_root)
    outcomes = {"written": 0, "write_refused": 0, "read": 0, "read_refused": 0}
    try:
        deadline = time.monotonic() + 10
        iteration = 0
        while iteration < 2000 and time.monotonic() < deadline:
            iteration += 1
            try:
                confined.write("arena/target", f"MODEL {iteration}", create_dirs=False)
                outcomes["written"] += 1
            except FileAccessRefused:
                outcomes["write_refused"] += 1
            for _ in range(3):
                try:
                    content = confined.read("arena/target")["content"]
                except FileAccessRefused:
                    outcomes["read_refused"] += 1
                else:
                    assert "ROOT ONLY" not in content, "read the file outside the root"
                    outcomes["read"] += 1
            if iteration % 100 == 0:
                found = confined.search("ROOT ONLY")
                assert found["matches"] == [], found
            assert root_set_id_files(arena) == []
    finally:
        stop.touch()
        out, err = swapper.communicate(timeout=30)
    assert swapper.returncode == 0, err
    assert int(out) > 100, "the swapper hardly ran"
    after = outside_secret.stat()
    assert outside_secret.read_text() == "ROOT ONLY SECRET\n"
    assert (after.st_mtime_ns, after.st_size, stat.S_IMODE(after.st_mode), after.st_uid) == (
        before.st_mtime_ns, before.st_size, 0o600, 0)
    assert sorted(os.listdir(outside_secret.parent)) == outside_listing
    assert root_set_id_files(arena) == [] and root_set_id_files(shared_root) == []
    assert all(outcomes.values()), outcomes  # every branch of the race really happened
    assert outcomes["written"] + outcomes["write_refused"] >= 300, outcomes


def test_a_hard_link_whose_inside_name_goes_between_open_and_fstat_is_refused(
        shared_root, outside_secret, monkeypatch):
    """The window the swapping test once hit under load: the file is opened through its
    name in the root while another name (outside) still exists; that inside name is
    removed before the link count is read, so the count says 1. The file must still be
    refused: its only name is now outside the root."""
    import agently_core_workspace_local.confined as confined_module

    os.link(outside_secret, shared_root / "target")
    real_fstat = os.fstat

    secret = outside_secret.stat()

    def unlink_first(fd: int) -> os.stat_result:
        found = real_fstat(fd)
        if (found.st_ino == secret.st_ino and found.st_nlink > 1
                and (shared_root / "target").exists()):
            os.unlink(shared_root / "target")  # the swapper renames something over it
            found = real_fstat(fd)
        return found

    monkeypatch.setattr(confined_module.os, "fstat", unlink_first)
    with pytest.raises(FileAccessRefused, match="changed while it was opened"):
        ConfinedRoot(shared_root).read("target")
