"""Depth, name length, the workspace quota and a full disk: each a clear
``FileAccessRefused``, never an OSError traceback, and nothing else breaks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import agently_core_function.plugin as function_plugin
import agently_core_workspace_local.plugin as local_plugin
import pytest
from agently_core_workspace_local.confined import ConfinedRoot
from agently_core_workspace_local.tree import DIR_FLAGS, remove_tree, usage

from agently_core.testing import make_agent, make_plugin_manager, require_program, require_root


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    yield folder
    remove_tree(folder)  # shutil.rmtree (pytest's cleanup too) recurses: too deep for it


@pytest.fixture
def make(root):
    agents = []

    def make(**options):
        agent = make_agent(make_plugin_manager(function_plugin, local_plugin))
        agent.enable_workspace_file_actions(root=root, write=True, **options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def nest(root: Path, depth: int, name: str = "d", leaf: str | None = None,
         leaf_levels: int = 100) -> None:
    """``depth`` nested directories under ``root``, made through directory descriptors (the
    path is longer than PATH_MAX, as a sandbox making them one ``cd`` at a time gets);
    ``leaf`` is written to a file ``f.txt`` in each of the first ``leaf_levels``."""
    fd = os.open(root, DIR_FLAGS)
    try:
        for level in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            if leaf is not None and level < leaf_levels:
                handle = os.open("f.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(handle, leaf.encode())
                os.close(handle)
    finally:
        os.close(fd)


# -- depth --------------------------------------------------------------------------------
def test_three_thousand_nested_directories(make, root, file_calls):
    """A tree 3,000 directories deep: listing, searching, writing (with the quota walk) and
    the clean-up all work; what lies past max_depth is named, not walked."""
    call, refused = file_calls
    nest(root, 3000, leaf="needle")
    agent = make()
    listed = call(agent, "list_files", recursive=True)
    assert listed.status == "success", listed.error
    result = listed.result
    deepest = "/".join(["d"] * 64)
    assert result["too_deep"] == [deepest] and "max_depth" in result["note"]
    assert len(result["entries"]) == 64 + 63 and not result["truncated"]  # dirs, files
    found = call(agent, "search_files", query="needle", max_results=1000).result
    assert len(found["matches"]) == 63 and found["too_deep"] == [deepest]
    written = call(agent, "write_file", path="top.txt", content="written")
    assert written.status == "success", written.error  # the quota walk went 3,000 deep
    refused(agent, "read_file", "65 components; paths are at most 64 deep",
            path="/".join(["d"] * 64) + "/f.txt")
    refused(agent, "write_file", "at most 64 deep", path="/".join(["x"] * 65), content="x")
    assert call(agent, "read_file", path="/".join(["d"] * 63) + "/f.txt").result[
        "content"] == "needle"
    assert call(agent, "write_file", path="/".join(["n"] * 63) + "/f.txt",
                content="deep").status == "success"
    smaller = make(max_depth=3)
    assert call(smaller, "list_files", recursive=True).result["too_deep"] == ["d/d/d", "n/n/n"]
    refused(smaller, "read_file", "at most 3 deep", path="d/d/d/f.txt")


def test_a_deep_tree_is_removed(tmp_path):
    """remove_tree: 3,000 levels and a link to a directory outside, which it leaves alone."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("keep")
    target = tmp_path / "deep"
    target.mkdir()
    nest(target, 3000, leaf="x")
    (target / "d" / "link").symlink_to(tmp_path / "outside")
    remove_tree(target)
    assert not target.exists()
    assert (tmp_path / "outside" / "keep.txt").read_text() == "keep"


# -- names --------------------------------------------------------------------------------
def test_long_names_and_long_paths(make, root, file_calls):
    """255 bytes is the longest name: it is written (the old temporary name, the target's
    name plus 18 bytes, failed with an OSError) and read; 300 bytes, a path past
    max_path_bytes and a name that cannot be encoded are refused clearly."""
    call, refused = file_calls
    agent = make()
    longest = "n" * 251 + ".txt"
    assert call(agent, "write_file", path=longest, content="long").status == "success"
    assert call(agent, "read_file", path=longest).result["content"] == "long"
    assert call(agent, "write_file", path="é" * 127, content="x").status == "success"
    too_long = "n" * 300
    for action, extra in (("read_file", {}), ("write_file", {"content": "x"}),
                          ("list_files", {}), ("search_files", {"query": "x"})):
        record = refused(agent, action, "component of 300 bytes; a file name is at most 255",
                         path=too_long, **extra)
        assert len(record.error) < 400
    refused(agent, "write_file", "at most 255 bytes", path="é" * 128, content="x")
    refused(agent, "write_file", "max_path_bytes", path="/".join(["p" * 250] * 17),
            content="x")
    refused(agent, "read_file", "cannot be encoded", path="bad\ud800name")
    assert sorted(os.listdir(root)) == sorted([longest, "é" * 127])  # no temporary left


# -- the workspace quota ------------------------------------------------------------------
def test_max_total_bytes(make, root, file_calls):
    call, refused = file_calls
    (root / "theirs").mkdir()
    (root / "theirs" / "big.bin").write_bytes(b"z" * 400)  # what others put there counts
    nest(root / "theirs", 200, leaf="12345", leaf_levels=200)  # 1,000 bytes, 200 deep
    agent = make(max_total_bytes=2000)
    assert call(agent, "write_file", path="a.txt", content="a" * 500).status == "success"
    record = refused(agent, "write_file", "limit of 2000 bytes set by the file actions' "
                     "max_total_bytes option", path="b.txt", content="b" * 101)
    assert "would hold 2001 bytes (it holds 1900)" in record.error
    assert not (root / "b.txt").exists()
    # replacing counts the replaced file out: 1900 - 500 + 600
    assert call(agent, "write_file", path="a.txt", content="a" * 600).status == "success"
    refused(agent, "write_file", "max_total_bytes", path="a.txt", content="a" * 601)
    # a hard-linked file counts once (and is never written)
    os.link(root / "theirs" / "big.bin", root / "theirs" / "again.bin")
    assert call(agent, "write_file", path="c.txt", content="").status == "success"
    unbounded = make(max_total_bytes=None)
    assert call(unbounded, "write_file", path="d.txt", content="d" * 5000).status == "success"
    with pytest.raises(ValueError, match="max_total_bytes"):
        make(max_total_bytes=0)


def test_the_default_quota_is_256_mib(root):
    assert ConfinedRoot(root).max_total_bytes == 256 * 1024 * 1024


def test_usage_walk_bounds(root, file_calls):
    nest(root, 50)
    confined = ConfinedRoot(root, max_total_bytes=10_000, max_usage_entries=20)
    with pytest.raises(Exception, match="more than 20 entries") as caught:
        confined.write("x.txt", "x")
    assert type(caught.value).__name__ == "FileAccessRefused"
    fd = os.open(root, DIR_FLAGS)
    try:
        assert usage(fd, max_entries=1000) == 0
    finally:
        os.close(fd)


def test_a_full_disk_is_a_clear_refusal(tmp_path, file_calls):
    """A real 64 KiB tmpfs as the root: ENOSPC becomes a clear refusal, the partial
    temporary file is gone, the next write that fits works."""
    call, refused = file_calls
    require_root("mount a tmpfs")
    require_program("mount", "util-linux")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(small)],
                   check=True)
    agent = make_agent(make_plugin_manager(function_plugin, local_plugin))
    try:
        agent.enable_workspace_file_actions(root=small, write=True, max_total_bytes=None,
                                            max_write_bytes=1 << 20)
        refused(agent, "write_file", "the disk is full", path="big.txt", content="x" * 200_000)
        assert os.listdir(small) == []
        assert call(agent, "write_file", path="fits.txt", content="ok").status == "success"
        assert call(agent, "read_file", path="fits.txt").result["content"] == "ok"
    finally:
        agent.close()
        subprocess.run(["umount", str(small)], check=True)


def test_the_usage_measurement_is_reused_briefly_and_never_refuses_on_a_stale_one(root):
    confined = ConfinedRoot(root, max_total_bytes=1000, usage_ttl=60)
    (root / "others.bin").write_bytes(b"o" * 600)
    confined.write("mine.txt", "m" * 300)  # measured: 600, then 900 with this write
    (root / "more.bin").write_bytes(b"o" * 50)  # within the ttl: not seen yet
    confined.write("mine.txt", "m" * 350)  # 900 - 300 + 350 = 950 by the cached figure
    (root / "others.bin").unlink()  # the cached figure now says 950; the disk holds 400
    confined.write("big.txt", "b" * 550)  # would not fit the cached figure: measured again
    with pytest.raises(Exception, match=r"would hold 1001 bytes \(it holds 950\)"):
        confined.write("one-more.txt", "x" * 51)
    strict = ConfinedRoot(root, max_total_bytes=1000, usage_ttl=0)
    (root / "late.bin").write_bytes(b"l" * 50)  # measured at once without a ttl
    with pytest.raises(Exception, match="it holds 1000"):
        strict.write("x.txt", "x")


def test_a_huge_directory_is_read_in_part(root):
    """A directory with more names than max_directory_entries (a sandbox can make a
    million) is listed and searched in part, and the result says so."""
    crowded = root / "crowded"
    crowded.mkdir()
    for number in range(120):
        (crowded / f"f{number:03d}.txt").write_text("needle")
    confined = ConfinedRoot(root, max_directory_entries=50, max_entries=10_000)
    listed = confined.list(".", recursive=True)
    assert len(listed["entries"]) == 1 + 50 and listed["too_large"] == ["crowded"]
    assert "first 50 names" in listed["note"]
    found = confined.search("needle", max_results=1000)
    assert len(found["matches"]) == 50 and found["too_large"] == ["crowded"]
