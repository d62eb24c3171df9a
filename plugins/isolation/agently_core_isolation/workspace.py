"""A sandbox's private writable places on the host, bounded in size.

A :class:`Workspace` is a directory under :func:`~.sandbox.sandbox_root` holding the
sandbox's parts (``work``: the workspace, ``tmp``: its temporary files, or whatever the
sandbox names), each owned by the sandbox's uid with mode 0700. When the host runs as root
the directory is a tmpfs of ``quota`` bytes mounted ``noexec,nosuid,nodev`` (mode 0711,
root's, at most one inode per 4 KiB of quota): all parts together hold at most ``quota``
bytes, a write past it fails with ``ENOSPC`` ("No space left on device"), nothing written
there can be executed or mapped as code, and the host memory its pages take is bounded
by the quota. :meth:`Workspace.release` unmounts it (lazily, ``MNT_DETACH``) and removes
it; mounts left by a host process that died are unmounted by the next one that makes a
workspace under the same root (:func:`sweep_stale`). Without root nothing is mounted and
nothing bounds the total (each file stays within ``RLIMIT_FSIZE``); a host that runs as
root but may not mount (a container without ``CAP_SYS_ADMIN``) is the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agently_core.fs import remove_tree

from .sandbox import _is_root, sandbox_root

#: The default bound of a private workspace (its parts together).
DEFAULT_WORKSPACE_BYTES = 256 << 20
#: Below this free space a workspace counts as full (a write that failed leaves a little).
FULL_MARGIN = 64 << 10
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2
_NAME = re.compile(r"^ws-(\d+)-(\d+)-")
#: The directory a supervisor stages an exec allowlist's view in (``_supervise.new_stage``).
_VIEW = re.compile(r"^\.view-(\d+)-(\d+)-")


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the pid, who it is."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unmount(path: str) -> None:
    if _libc().umount2(os.fsencode(path), MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unmounting {path}: {os.strerror(errno)}")


def _mount_points_under(root: str) -> list[str]:
    """Mount points strictly under ``root``, from this process's mount table."""
    found = []
    try:
        with open("/proc/self/mountinfo") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return found
    prefix = root.rstrip("/") + "/"
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point.startswith(prefix):
                found.append(point)
    return found


def sweep_stale(root: Path | None = None) -> list[str]:
    """Unmount and remove the workspaces under ``root`` (default: the sandbox root) whose
    host process is gone, and the view directories of supervisors that are gone; return
    their paths."""
    root = root or sandbox_root()
    me = f"{os.getpid()}-{_start_time(os.getpid())}"
    swept = []
    for point in _mount_points_under(os.path.realpath(root)):
        match = _NAME.match(os.path.basename(point))
        if match is None or os.path.dirname(point) != os.path.realpath(root):
            continue
        owner = f"{match.group(1)}-{match.group(2)}"
        if owner == me or _start_time(int(match.group(1))) == match.group(2):
            continue  # ours, or its process still runs
        with contextlib.suppress(OSError):
            _unmount(point)
            remove_tree(point)
            swept.append(point)
    for entry in os.listdir(root):  # views of supervisors that were killed: empty here
        match = _VIEW.match(entry)
        if match and _start_time(int(match.group(1))) != match.group(2):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, entry))
                swept.append(os.path.join(root, entry))
    return swept


@functools.lru_cache(maxsize=16)
def _swept_once(root: str) -> None:
    sweep_stale(Path(root))


@dataclass
class Workspace:
    """A sandbox's private writable places: ``root`` and its ``parts`` (name -> path)."""

    root: Path
    parts: dict[str, Path]
    #: The bound in bytes, when one holds (a tmpfs was mounted).
    quota: int | None

    def __getitem__(self, name: str) -> Path:
        return self.parts[name]

    def free_bytes(self) -> int | None:
        """Bytes still free when a quota holds, else None."""
        if self.quota is None:
            return None
        try:
            info = os.statvfs(self.root)
        except OSError:
            return None
        return info.f_bavail * info.f_frsize

    def full(self) -> bool:
        """Whether a quota holds and (almost) nothing is left of it."""
        free = self.free_bytes()
        return free is not None and free < FULL_MARGIN

    def release(self) -> None:
        """Unmount (lazily) and remove everything (idempotent)."""
        if self.quota is not None and os.path.ismount(self.root):
            with contextlib.suppress(OSError):
                _unmount(str(self.root))
        with contextlib.suppress(OSError):  # however deep the sandbox nested its directories
            remove_tree(self.root)


def _mount_tmpfs(path: Path, quota: int) -> None:
    inodes = max(1024, quota // 4096)
    options = f"size={quota},nr_inodes={inodes},mode=0711,uid=0,gid=0"
    if _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     options.encode()) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mounting the workspace tmpfs: {os.strerror(errno)}")


@functools.lru_cache(maxsize=1)
def bounds_available() -> bool:
    """Whether this host can bound workspaces: it runs as root and may mount a tmpfs (a
    container without ``CAP_SYS_ADMIN`` may not). Probed once."""
    if not _is_root():
        return False
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=sandbox_root()))
    try:
        _mount_tmpfs(probe, 1 << 20)
    except OSError:
        return False
    else:
        _unmount(str(probe))
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def new_workspace(uid: int | None, quota: int | None = DEFAULT_WORKSPACE_BYTES,
                  parts: Sequence[str] = ("work", "tmp"), *, required: bool = False
                  ) -> Workspace:
    """A fresh workspace with ``parts`` owned by ``uid``, bounded by ``quota`` bytes where
    the host can (:func:`bounds_available`; ``None``: unbounded). ``required``: a bound was
    asked for explicitly, so a host that cannot hold it is an error rather than unbounded."""
    if quota is not None and quota <= 0:
        raise ValueError(f"a workspace quota must be positive, got {quota}")
    if quota is not None and required and not bounds_available():
        raise OSError(f"a workspace bound of {quota} bytes was asked for, but this host "
                      "cannot mount one (it takes root with CAP_SYS_ADMIN)")
    base = sandbox_root()
    _swept_once(str(base))
    root = Path(tempfile.mkdtemp(prefix=f"ws-{os.getpid()}-{_start_time(os.getpid())}-",
                                 dir=base))
    mounted = None
    try:
        os.chmod(root, 0o711)
        if quota is not None and bounds_available():
            _mount_tmpfs(root, quota)
            mounted = quota
        made = {}
        for name in parts:
            path = root / name
            path.mkdir(mode=0o700)
            if uid is not None and _is_root():
                os.chown(path, uid, uid)
            made[name] = path
    except BaseException:
        Workspace(root, {}, mounted).release()
        raise
    return Workspace(root, made, mounted)


#: What a program says when a write fails for want of space.
NO_SPACE = ("No space left on device", "Errno 28", "ENOSPC")


def full_note(workspace: Workspace, texts: Sequence[str | None], option: str, *,
              by_text: bool = True) -> str | None:
    """A line for the model when the workspace's bound stopped a write: a quota holds and
    the workspace is full, or (``by_text``: every writable place is the workspace's) an
    output says a write found no space. ``option`` names what raises the bound."""
    if workspace.quota is None:
        return None
    said = by_text and any(mark in text for text in texts if text for mark in NO_SPACE)
    if not (said or workspace.full()):
        return None
    return (f"[agently-core: the sandbox's files (its workspace and temporary files "
            f"together) may hold at most {workspace.quota >> 20} MiB, and a write found no "
            f"space left; delete files to make room (the host sets the bound with {option})]")
