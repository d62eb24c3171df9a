"""Owner and mode of what a file action creates, where a sandbox may share the directory.

The host may run as root beside sandboxes (dedicated uids) that write the same tree, so a
file the host writes must never become a privilege: it never carries setuid, setgid or
sticky bits (whatever the file it replaces had, whatever a setgid directory passes on),
never gains group or other write, and is never given to root where another user owns the
directory or the file it replaces. Both are set on the new file's descriptor, so no rename
or chmod by someone else in between can redirect them.
"""

from __future__ import annotations

import errno
import os
import stat

#: Mode bits a written file or a made directory never carries.
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
#: The permission bits they may keep: no group or other write.
KEPT_BITS = 0o755


def owner_for(directory: os.stat_result, replaced: os.stat_result | None
              ) -> tuple[int, int] | None:
    """``(uid, gid)`` for a file made in ``directory`` (replacing ``replaced``), or ``None``
    to keep the process's own. Only root gives files away: to the directory's owner when
    that is not root (a sandbox's directory: whatever it holds is the sandbox's to
    change anyway), else to the replaced file's owner."""
    if os.geteuid() != 0:
        return None
    if directory.st_uid != 0:
        return directory.st_uid, directory.st_gid
    if replaced is not None:
        return replaced.st_uid, replaced.st_gid
    return None


def new_file_mode(replaced: os.stat_result | None) -> int:
    """The mode a temporary file is created with (the umask applies to a new file)."""
    return 0o644 if replaced is None else 0o600


def settle_file(fd: int, replaced: os.stat_result | None, owner: tuple[int, int] | None
                ) -> None:
    """Give the new file ``fd`` its owner, then its mode: the replaced file's permission
    bits (a new file's own) without special bits or group/other write. Raises
    ``PermissionError`` when the result is not that."""
    if owner is not None:
        os.fchown(fd, *owner)  # first: after it, only our fchmod decides the mode bits
    base = replaced if replaced is not None else os.fstat(fd)
    os.fchmod(fd, stat.S_IMODE(base.st_mode) & KEPT_BITS)
    final = os.fstat(fd)
    if final.st_mode & SPECIAL_BITS or (owner is not None and final.st_uid != owner[0]):
        raise PermissionError(errno.EPERM, "the new file's owner or mode could not be set")


def settle_directory(parent: int, fd: int) -> None:
    """Give a directory just made (``fd``, in ``parent``) the owner a file there would get
    and its permission bits without setgid (a setgid parent passes it on), sticky or
    group/other write. A directory someone swapped in meanwhile (not ours, or not empty)
    is left as it is."""
    found = os.fstat(fd)
    if found.st_uid != os.geteuid() or os.listdir(fd):
        return
    owner = owner_for(os.fstat(parent), None)
    if owner is not None:
        os.fchown(fd, *owner)
    os.fchmod(fd, stat.S_IMODE(found.st_mode) & KEPT_BITS)
