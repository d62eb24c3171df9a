"""Whole-tree walks that any depth cannot break: the bytes a tree holds (for the write
quota) and removing a tree. Neither follows a symbolic link, neither recurses in Python,
and each keeps only a few directories open however deep the tree is."""

from __future__ import annotations

import errno
import os
import stat

from agently_core.fs import DIR_FLAGS, remove_tree

__all__ = ["DIR_FLAGS", "TreeTooLarge", "remove_tree", "usage"]


class TreeTooLarge(Exception):
    """The tree has more entries (or needs more open directories) than a walk may use."""


def usage(directory: int, *, max_entries: int) -> int:
    """The bytes the regular files below the open ``directory`` hold (their sizes; a file
    with several names counted once), on its file system only (mount points are skipped).

    Raises :class:`TreeTooLarge` past ``max_entries`` entries. A directory keeps its
    descriptor open only while subdirectories of it are still to visit, so a chain of
    thousands of nested directories needs two descriptors."""
    device = os.fstat(directory).st_dev
    seen: set[tuple[int, int]] = set()
    total, entries = 0, 0
    frames: list[tuple[int, list[str]]] = []
    fd = os.dup(directory)
    try:
        while True:
            size, subdirectories, entries = _scan(fd, entries, max_entries, seen)
            total += size
            frames.append((fd, subdirectories))
            fd = -1
            while frames and fd < 0:
                parent, pending = frames[-1]
                if not pending:
                    os.close(frames.pop()[0])
                    continue
                name = pending.pop()
                if pending:
                    fd = _open_child(parent, name, device)
                    continue
                frames.pop()  # its last subdirectory: the parent is no longer needed
                try:
                    fd = _open_child(parent, name, device)
                finally:
                    os.close(parent)
            if fd < 0:
                return total
    finally:
        if fd >= 0:
            os.close(fd)
        for parent, _ in frames:
            os.close(parent)


def _open_child(parent: int, name: str, device: int) -> int:
    """``name`` in ``parent`` opened as a directory on ``device``, or -1 (gone, replaced by
    a link or a file, or a mount point)."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise TreeTooLarge("the tree needs more open directories than the process "
                               "may open") from None
        return -1
    if os.fstat(fd).st_dev != device:
        os.close(fd)
        return -1
    return fd


def _scan(fd: int, entries: int, max_entries: int, seen: set[tuple[int, int]]
          ) -> tuple[int, list[str], int]:
    size, subdirectories = 0, []
    with os.scandir(fd) as scan:
        for entry in scan:
            entries += 1
            if entries > max_entries:
                raise TreeTooLarge(f"the tree holds more than {max_entries} entries")
            try:
                found = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISDIR(found.st_mode):
                subdirectories.append(entry.name)
            elif stat.S_ISREG(found.st_mode):
                if found.st_nlink > 1:
                    if (found.st_dev, found.st_ino) in seen:
                        continue
                    seen.add((found.st_dev, found.st_ino))
                size += found.st_size
    return size, subdirectories, entries


