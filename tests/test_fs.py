"""agently_core.fs.remove_tree: any depth, read-only directories, links left alone."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from agently_core.fs import remove_tree


def nest(top, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as handle:
            handle.write("x")
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)


def test_a_tree_deeper_than_rmtree_can_go_is_removed(tmp_path) -> None:
    top = tmp_path / "deep"
    top.mkdir()
    nest(top, 3000)
    if sys.version_info < (3, 13):  # why this exists: rmtree recurses before 3.13
        with pytest.raises(RecursionError):
            shutil.rmtree(top, ignore_errors=True)
    remove_tree(top)
    assert not top.exists()


def test_read_only_directories_and_links(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("kept")
    top = tmp_path / "tree"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "file").write_text("x")
    (top / "a" / "link").symlink_to(outside)
    os.chmod(top / "a" / "b", 0o500)
    os.chmod(top / "a", 0o500)
    remove_tree(top)
    assert not top.exists()
    assert (outside / "keep").read_text() == "kept"  # a link is removed, never followed
    remove_tree(top)  # gone already: nothing to do
    single = tmp_path / "file"
    single.write_text("x")
    remove_tree(single)
    assert not single.exists()
