"""File-system helpers the core and the plugins share.

:func:`remove_tree` removes a directory tree however deep it is: ``shutil.rmtree``
recurses in Python and raises ``RecursionError`` (which ``ignore_errors`` does not catch)
past about a thousand levels, a depth a sandbox reaches in one command.
"""

from __future__ import annotations

import errno
import os
import stat
from itertools import count

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` and everything below it, however deep (``shutil.rmtree`` recurses
    and fails past about a thousand levels). A link is removed, never followed. Each
    subdirectory of a directory being emptied is first moved up to ``path`` itself, so only
    two directories are ever open."""
    path = os.fspath(path)
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(found.st_mode):
        os.unlink(path)
        return
    top = os.open(path, DIR_FLAGS)
    try:
        os.fchmod(top, stat.S_IRWXU)  # a read-only directory can still be emptied
    except OSError:
        pass
    names = count()
    try:
        stuck: OSError | None = None
        while True:
            with os.scandir(top) as scan:
                batch = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
            if not batch:
                break
            progress = False
            for name, is_directory in batch:
                try:
                    if is_directory:
                        _empty_into(top, name, names)
                        os.rmdir(name, dir_fd=top)
                    else:
                        os.unlink(name, dir_fd=top)
                    progress = True
                except FileNotFoundError:
                    progress = True
                except OSError as exc:  # not empty yet (hoisted children come next pass)
                    stuck = exc
            if not progress:
                raise stuck or OSError(errno.ENOTEMPTY, "cannot empty", path)
    finally:
        os.close(top)
    os.rmdir(path)


def _empty_into(top: int, name: str, names: count) -> None:
    """Remove the files of ``top/name`` and move its subdirectories up into ``top``."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=top)
    except OSError:
        return
    try:
        os.fchmod(fd, stat.S_IRWXU)  # a read-only directory can still be emptied
    except OSError:
        pass
    try:
        with os.scandir(fd) as scan:
            batch = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        for child, is_directory in batch:
            if not is_directory:
                try:
                    os.unlink(child, dir_fd=fd)
                except FileNotFoundError:
                    pass
                continue
            for _attempt in range(100):
                try:
                    os.rename(child, f".removing-{next(names)}", src_dir_fd=fd,
                              dst_dir_fd=top)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                        break  # left in place: the caller's rmdir reports it
    finally:
        os.close(fd)
