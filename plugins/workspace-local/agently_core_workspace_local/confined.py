"""File access confined to one directory, robust against symlink swaps and against a
sandbox that shares the directory.

Paths are relative to the root; ``..``, absolute paths, NUL bytes, paths deeper than
``max_depth`` components, components longer than 255 bytes and paths longer than
``max_path_bytes`` are refused before anything is opened. The root is opened, then each
directory component with ``openat(dir_fd, part, O_NOFOLLOW | O_DIRECTORY)`` and the last
one with ``O_NOFOLLOW``: every step is taken relative to a directory the previous step
already holds open, so no component is ever resolved by name from the root again. A
symlink anywhere, even one swapped in between a check and the use, makes the open fail
(``ELOOP``/``ENOTDIR``) instead of leaving the root. Directories on another file system
(mount points) are refused too. Only regular files with one name are read: the type is
checked with ``lstat`` before opening (so a device is never opened) and again, with the
link count, with ``fstat`` on the open descriptor (opened with ``O_NONBLOCK``, so a FIFO
swapped in cannot hang the reader); a file with other hard links may be a file outside the
root, so it is refused.

Writes go to a new temporary file in the target directory (``O_EXCL | O_NOFOLLOW``),
whose owner and mode are set on its descriptor (see :mod:`.ownership`: never setuid,
setgid or sticky, never owned by root where another user owns the directory or the file
replaced), and which is renamed over the target: a write never follows a link, never writes
through a hard link into another file, never keeps a mode bit a sandbox set.
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

from .errors import FileAccessRefused
from .ownership import new_file_mode, owner_for, settle_directory, settle_file
from .path_policy import PathPolicy
from .tree import DIR_FLAGS, TreeTooLarge, usage

__all__ = ["DEFAULT_MAX_TOTAL_BYTES", "ConfinedRoot", "FileAccessRefused"]

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(
    os, "O_NOCTTY", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SNIFF_BYTES = 8192
#: The longest name of one path component, in bytes (Linux's NAME_MAX).
NAME_MAX = 255
#: What the whole workspace may hold after a ``write_file`` unless the host says otherwise.
DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024
_FULL_DISK = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class ConfinedRoot:
    """Read, list, search and write files under ``root`` and nowhere else.

    ``max_read_bytes`` caps one read (larger files are returned in parts, with
    ``truncated`` and ``next_offset``); ``max_write_bytes`` caps one write;
    ``max_entries`` caps a listing; ``max_search_file_bytes`` skips larger files when
    searching, and ``max_search_bytes`` caps what one search reads in total;
    ``max_depth`` (components) and ``max_path_bytes`` bound a path, and walks stop at
    ``max_depth`` and read at most ``max_directory_entries`` names of one directory;
    ``max_total_bytes`` bounds what the whole root may hold after a write (``None``: no
    bound), measured by a walk of at most ``max_usage_entries`` entries (a measurement
    younger than ``usage_ttl`` seconds is reused, plus this object's own writes since; a
    write it would refuse is checked again against a fresh one).
    Every action takes the call's :class:`~agently_core.models.Policy` (``policy=``) and
    enforces its ``path_allow``, ``path_deny``, ``read_only``, ``allow_create``,
    ``allow_update`` and ``max_workspace_bytes``.
    """

    def __init__(self, root: str | os.PathLike[str], *, read_only: bool = False,
                 max_read_bytes: int = 256 * 1024, max_write_bytes: int = 1024 * 1024,
                 max_entries: int = 1000, max_search_file_bytes: int = 1024 * 1024,
                 max_search_bytes: int = 64 * 1024 * 1024, max_depth: int = 64,
                 max_path_bytes: int = 4096,
                 max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES,
                 max_usage_entries: int = 200_000, usage_ttl: float = 1.0,
                 max_directory_entries: int = 100_000) -> None:
        self.root = Path(os.path.realpath(root))  # the host's root may sit behind a link
        if not self.root.is_dir():
            raise FileNotFoundError(f"the file root {self.root} is not a directory")
        identity = self.root.stat()
        self._identity = (identity.st_dev, identity.st_ino)
        self.read_only = bool(read_only)
        self.max_read_bytes = int(max_read_bytes)
        self.max_write_bytes = int(max_write_bytes)
        self.max_entries = int(max_entries)
        self.max_search_file_bytes = int(max_search_file_bytes)
        self.max_search_bytes = int(max_search_bytes)
        self.max_depth = _positive(max_depth, "max_depth")
        self.max_path_bytes = _positive(max_path_bytes, "max_path_bytes")
        self.max_total_bytes = (None if max_total_bytes is None
                                else _positive(max_total_bytes, "max_total_bytes"))
        self.max_usage_entries = _positive(max_usage_entries, "max_usage_entries")
        self.usage_ttl = float(usage_ttl)
        self.max_directory_entries = _positive(max_directory_entries, "max_directory_entries")
        self._usage: tuple[float, int] | None = None  # (when measured, bytes) for the quota
        self._write_lock = threading.Lock()  # quota check and write, one write at a time

    # -- resolution ----------------------------------------------------------------------
    def parts(self, path: Any, action: str) -> list[str]:
        """The components of a relative path, or :class:`FileAccessRefused`."""
        if not isinstance(path, str):
            raise FileAccessRefused(f"{action}: the path must be a string, got {path!r}")
        if "\x00" in path:
            raise FileAccessRefused(f"{action}: the path {_short(path)!r} contains a NUL byte")
        if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
            raise FileAccessRefused(f"{action}: {_short(path)!r} is absolute; paths are "
                                    "relative to the workspace root")
        parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
        if ".." in parts:
            raise FileAccessRefused(f"{action}: {_short(path)!r} contains '..'; paths may not "
                                    "leave the workspace root")
        if len(parts) > self.max_depth:
            raise FileAccessRefused(f"{action}: {_short(path)!r} has {len(parts)} components; "
                                    f"paths are at most {self.max_depth} deep (max_depth)")
        try:
            sizes = [len(os.fsencode(part)) for part in parts]
        except UnicodeEncodeError:
            raise FileAccessRefused(f"{action}: {_short(path)!r} is not a valid file name "
                                    "(it cannot be encoded)") from None
        longest = max(sizes, default=0)
        if longest > NAME_MAX:
            raise FileAccessRefused(f"{action}: {_short(path)!r} has a component of {longest} "
                                    f"bytes; a file name is at most {NAME_MAX} bytes")
        if sum(sizes) + len(sizes) - 1 > self.max_path_bytes:
            raise FileAccessRefused(f"{action}: {_short(path)!r} is {sum(sizes) + len(sizes) - 1}"
                                    f" bytes long; paths are at most {self.max_path_bytes} "
                                    "bytes (max_path_bytes)")
        return parts

    def _open_root(self) -> int:
        fd = os.open(self.root, DIR_FLAGS & ~os.O_NOFOLLOW)
        found = os.fstat(fd)
        if (found.st_dev, found.st_ino) != self._identity:
            os.close(fd)
            raise FileAccessRefused(f"the workspace root {self.root} was replaced; refusing "
                                    "to use it")
        return fd

    def _step(self, parent: int, part: str, shown: str, action: str) -> int:
        """Open directory ``part`` inside ``parent`` without following links."""
        try:
            fd = os.open(part, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise self._explain(exc, parent, part, shown, action, "a directory") from None
        if os.fstat(fd).st_dev != self._identity[0]:
            os.close(fd)
            raise FileAccessRefused(f"{action}: {shown!r} is on another file system (a mount "
                                    "point); it is outside the workspace")
        return fd

    @contextmanager
    def directory(self, parts: list[str], action: str, *, create: bool = False
                  ) -> Iterator[int]:
        """An fd of the directory ``parts`` under the root (made when ``create``; a
        directory made here gets the owner and mode :func:`.ownership.settle_directory`
        gives it)."""
        fd = self._open_root()
        try:
            for depth, part in enumerate(parts):
                shown = "/".join(parts[:depth + 1])
                made = False
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        raise _os_refusal(exc, action, shown, "could not create the "
                                          "directory") from None
                nxt = self._step(fd, part, shown, action)
                if made:
                    try:
                        settle_directory(fd, nxt)
                    except OSError as exc:
                        os.close(nxt)
                        raise _os_refusal(exc, action, shown, "could not be given its "
                                          "owner and mode") from None
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            os.close(fd)

    def _explain(self, exc: OSError, parent: int, part: str, shown: str, action: str,
                 wanted: str) -> Exception:
        try:
            found = os.stat(part, dir_fd=parent, follow_symlinks=False)
        except OSError:
            found = None
        if found is None or exc.errno == errno.ENOENT:
            missing = FileAccessRefused(f"{action}: {shown!r} does not exist")
            missing.missing = True  # type: ignore[attr-defined]
            return missing
        if stat.S_ISLNK(found.st_mode):
            return FileAccessRefused(f"{action}: {shown!r} is a symbolic link; links are not "
                                     "followed in the workspace")
        if stat.S_ISREG(found.st_mode) and wanted == "a regular file":
            return _os_refusal(exc, action, shown, "could not be opened")
        return FileAccessRefused(f"{action}: {shown!r} is {_kind(found.st_mode)}, not "
                                 f"{wanted}")

    @contextmanager
    def regular_file(self, parts: list[str], action: str) -> Iterator[tuple[int, os.stat_result]]:
        """An fd (and its stat) of the regular file ``parts``; anything else is refused."""
        if not parts:
            raise FileAccessRefused(f"{action}: the workspace root is a directory, not a file")
        shown = "/".join(parts)
        with self.directory(parts[:-1], action) as parent:
            fd = self.open_regular(parent, parts[-1], shown, action)
            try:
                yield fd, os.fstat(fd)
            finally:
                os.close(fd)

    def open_regular(self, parent: int, name: str, shown: str, action: str) -> int:
        """An fd of the regular file ``name`` in ``parent`` that has no other hard link."""
        try:
            before = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            raise self._explain(exc, parent, name, shown, action, "a file") from None
        if not stat.S_ISREG(before.st_mode):  # devices and FIFOs are never even opened
            raise self._explain(OSError(errno.EINVAL, "not a file"), parent, name, shown,
                                action, "a regular file")
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise self._explain(exc, parent, name, shown, action, "a regular file") from None
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (
                before.st_dev, before.st_ino):
            os.close(fd)
            raise FileAccessRefused(f"{action}: {shown!r} changed while it was opened "
                                    "(replaced by something else); refused")
        if after.st_nlink > 1:
            os.close(fd)
            raise FileAccessRefused(_linked(action, shown, after.st_nlink))
        # One link now, but is it this name? A hard link's other names may vanish between
        # the open and the fstat, leaving its name outside the root the only one: the name
        # here must still be this file (nobody but root can link it back in afterwards).
        try:
            again = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except OSError:
            again = None
        if again is None or (again.st_dev, again.st_ino) != (after.st_dev, after.st_ino):
            os.close(fd)
            raise FileAccessRefused(f"{action}: {shown!r} changed while it was opened "
                                    "(replaced by something else); refused")
        return fd

    # -- walking -------------------------------------------------------------------------
    def _tree(self, fd: int, parts: list[str], descend: Callable[[list[str]], bool],
              notes: dict[str, list[str]]) -> Iterator[tuple[int, list[str], os.stat_result]]:
        """Every entry below the directory ``fd`` (at ``parts``), sorted, depth first:
        ``(fd of its directory, its path parts, its lstat)``. It goes into a directory when
        ``descend(its parts)`` says so, unless that directory is ``max_depth`` deep (then
        it is added to ``notes["too_deep"]``); a directory with more names than
        ``max_directory_entries`` is read in part (``notes["too_large"]``). No recursion;
        at most ``max_depth`` fds open."""
        frames: list[tuple[int, list[str], Iterator[tuple[str, os.stat_result]]]] = [
            (fd, parts, iter(self._entries(fd, parts, notes)))]
        try:
            while frames:
                dir_fd, base, items = frames[-1]
                item = next(items, None)
                if item is None:
                    frames.pop()
                    if dir_fd != fd:
                        os.close(dir_fd)
                    continue
                name, found = item
                rel = [*base, name]
                yield dir_fd, rel, found
                if not stat.S_ISDIR(found.st_mode) or not descend(rel):
                    continue
                if len(rel) >= self.max_depth:
                    notes["too_deep"].append("/".join(rel))
                    continue
                try:
                    child = self._step(dir_fd, name, "/".join(rel), "walk")
                except FileAccessRefused:
                    continue  # swapped for a link or a mount point meanwhile: not descended
                try:
                    frames.append((child, rel, iter(self._entries(child, rel, notes))))
                except OSError:
                    os.close(child)
        finally:
            for dir_fd, _, _ in frames:
                if dir_fd != fd:
                    os.close(dir_fd)

    # -- actions -------------------------------------------------------------------------
    def read(self, path: str, offset: int = 0, max_bytes: int | None = None, *,
             policy: Any = None) -> dict[str, Any]:
        parts = self.parts(path, "read_file")
        rules = PathPolicy.of(policy)
        if rules is not None:
            rules.check(parts, "read_file")
        if not isinstance(offset, int) or offset < 0:
            raise FileAccessRefused(f"read_file: offset must be an int >= 0, got {offset!r}")
        cap = self.max_read_bytes if max_bytes is None else max(0, min(int(max_bytes),
                                                                       self.max_read_bytes))
        with self.regular_file(parts, "read_file") as (fd, found):
            data = os.pread(fd, cap + 1, offset) if cap else b""
        truncated = len(data) > cap if cap else found.st_size > offset
        data = data[:cap]
        result: dict[str, Any] = {"path": "/".join(parts), "size": found.st_size,
                                  "offset": offset, "bytes": len(data), "truncated": truncated}
        text = _text(data, cut=truncated)
        if text is None:
            result.update(binary=True, encoding="base64",
                          content=base64.b64encode(data).decode("ascii"))
        else:
            result.update(binary=False, encoding="utf-8", content=text[0])
            result["bytes"] = text[1]
        if truncated:
            result["next_offset"] = offset + result["bytes"]
        return result

    def list(self, path: str = ".", recursive: bool = False, *,
             policy: Any = None) -> dict[str, Any]:
        parts = self.parts(path, "list_files")
        rules = PathPolicy.of(policy)
        if rules is not None and not rules.may_hold(parts):
            raise FileAccessRefused(f"list_files: {'/'.join(parts) or '.'!r} "
                                    f"{rules.refusal(parts)}")
        entries: list[dict[str, Any]] = []
        hidden, truncated = 0, False
        notes: dict[str, list[str]] = {"too_deep": [], "too_large": []}

        def descend(rel: list[str]) -> bool:
            return recursive and (rules is None or rules.may_hold(rel))

        with self.directory(parts, "list_files") as fd, closing(
                self._tree(fd, parts, descend, notes)) as walk:
            for _, rel, found in walk:
                if rules is not None and rules.refusal(rel) is not None and not (
                        stat.S_ISDIR(found.st_mode) and rules.may_hold(rel)):
                    hidden += 1
                    continue
                if len(entries) >= self.max_entries:
                    truncated = True
                    break
                row: dict[str, Any] = {"path": "/".join(rel),
                                       "type": _kind(found.st_mode, short=True)}
                if stat.S_ISREG(found.st_mode):
                    row["size"] = found.st_size
                    if found.st_nlink > 1:
                        row["hard_links"] = found.st_nlink  # read_file refuses it
                entries.append(row)
        result = {"path": "/".join(parts) or ".", "entries": entries, "truncated": truncated}
        return self._notes(result, hidden, notes)

    def _notes(self, result: dict[str, Any], hidden: int, notes: dict[str, list[str]]
               ) -> dict[str, Any]:
        if hidden:
            result["hidden_by_policy"] = hidden
        said = []
        if notes["too_deep"]:
            result["too_deep"] = notes["too_deep"][:20]
            said.append(f"directories {self.max_depth} levels deep (max_depth) were not "
                        "entered; see too_deep")
        if notes["too_large"]:
            result["too_large"] = notes["too_large"][:20]
            said.append(f"only the first {self.max_directory_entries} names of the "
                        "directories in too_large were read")
        if said:
            result["note"] = "; ".join(said)
        return result

    def search(self, query: str, path: str = ".", glob: str = "*", max_results: int = 50,
               case_sensitive: bool = False, *, policy: Any = None) -> dict[str, Any]:
        if not isinstance(query, str) or not query:
            raise FileAccessRefused("search_files: the query must be a non-empty string")
        if not isinstance(glob, str):
            raise FileAccessRefused(f"search_files: glob must be a string, got {glob!r}")
        parts = self.parts(path, "search_files")
        rules = PathPolicy.of(policy)
        if rules is not None and not rules.may_hold(parts):
            raise FileAccessRefused(f"search_files: {'/'.join(parts) or '.'!r} "
                                    f"{rules.refusal(parts)}")
        needle = query if case_sensitive else query.casefold()
        limit = max(1, int(max_results))
        matches: list[dict[str, Any]] = []
        budget, skipped = self.max_search_bytes, []
        hidden, truncated = 0, False
        notes: dict[str, list[str]] = {"too_deep": [], "too_large": []}

        def descend(rel: list[str]) -> bool:
            return rules is None or rules.may_hold(rel)

        with self.directory(parts, "search_files") as fd, closing(
                self._tree(fd, parts, descend, notes)) as walk:
            for dir_fd, rel, found in walk:
                if not stat.S_ISREG(found.st_mode) or not fnmatch.fnmatch(rel[-1], glob):
                    continue
                shown = "/".join(rel)
                if rules is not None and rules.refusal(rel) is not None:
                    hidden += 1
                    continue
                if found.st_nlink > 1:
                    skipped.append(f"{shown} (has {found.st_nlink} hard links)")
                    continue
                if found.st_size > self.max_search_file_bytes:
                    skipped.append(f"{shown} (larger than {self.max_search_file_bytes} bytes)")
                    continue
                if found.st_size > budget:
                    truncated = True
                    break
                try:
                    handle = self.open_regular(dir_fd, rel[-1], shown, "search_files")
                except FileAccessRefused:
                    continue
                try:
                    data = os.pread(handle, self.max_search_file_bytes, 0)
                finally:
                    os.close(handle)
                budget -= len(data)
                if b"\x00" in data[:_SNIFF_BYTES]:
                    continue  # binary
                for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                    if needle in (line if case_sensitive else line.casefold()):
                        matches.append({"path": shown, "line": number,
                                        "text": line.strip()[:300]})
                        if len(matches) >= limit:
                            truncated = True
                            break
                if truncated:
                    break
        result = {"query": query, "matches": matches, "truncated": truncated,
                  "skipped": skipped[:20]}
        return self._notes(result, hidden, notes)

    def write(self, path: str, content: str, encoding: str = "utf-8",
              create_dirs: bool = True, *, policy: Any = None) -> dict[str, Any]:
        if self.read_only or getattr(policy, "read_only", None):
            where = "workspace" if self.read_only else "call's policy"
            raise FileAccessRefused(f"write_file: the {where} is read-only; {_short(path)!r} "
                                    "was not written")
        parts = self.parts(path, "write_file")
        if not parts:
            raise FileAccessRefused("write_file: the path names the workspace root")
        rules = PathPolicy.of(policy)
        if rules is not None:
            rules.check(parts, "write_file")
        data = _decode(content, encoding)
        if len(data) > self.max_write_bytes:
            raise FileAccessRefused(f"write_file: {len(data)} bytes is more than the "
                                    f"{self.max_write_bytes} allowed in one write")
        may_create = getattr(policy, "allow_create", None) is not False
        shown, name = "/".join(parts), parts[-1]
        with self._write_lock, ExitStack() as stack:
            try:
                parent = stack.enter_context(self.directory(
                    parts[:-1], "write_file", create=create_dirs and may_create))
            except FileAccessRefused as exc:
                if create_dirs and not may_create and getattr(exc, "missing", False):
                    raise FileAccessRefused(f"write_file: {exc} and the call's policy does "
                                            "not allow creating (allow_create)") from None
                raise
            existing = self._target(parent, name, shown)
            if existing is None and not may_create:
                raise FileAccessRefused(f"write_file: {shown!r} does not exist and the call's "
                                        "policy does not allow creating files (allow_create)")
            if existing is not None and getattr(policy, "allow_update", None) is False:
                raise FileAccessRefused(f"write_file: {shown!r} exists and the call's policy "
                                        "does not allow changing files (allow_update)")
            self._check_quota(shown, len(data), existing, policy)
            try:
                self._replace(parent, name, data, existing)
            except OSError as exc:
                raise _os_refusal(exc, "write_file", shown, "was not written") from None
            if self._usage is not None:
                when, used = self._usage
                self._usage = when, used + len(data) - (existing.st_size if existing else 0)
        return {"path": shown, "bytes": len(data), "created": existing is None}

    def _target(self, parent: int, name: str, shown: str) -> os.stat_result | None:
        """The file the write replaces (``None``: it creates one); refused unless it is a
        regular file with no other hard link."""
        try:
            found = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(found.st_mode):
            raise FileAccessRefused(f"write_file: {shown!r} is {_kind(found.st_mode)}; only "
                                    "regular files are replaced")
        if found.st_nlink > 1:
            raise FileAccessRefused(_linked("write_file", shown, found.st_nlink))
        return found

    def _check_quota(self, shown: str, size: int, existing: os.stat_result | None,
                     policy: Any) -> None:
        limits = [(self.max_total_bytes, "the file actions' max_total_bytes option"),
                  (getattr(policy, "max_workspace_bytes", None),
                   "the call's policy max_workspace_bytes")]
        limits = [(value, name) for value, name in limits if value is not None]
        if not limits:
            return
        limit, source = min(limits, key=lambda pair: pair[0])
        delta = size - (existing.st_size if existing is not None else 0)
        used = self._used(shown, fresh=False)
        if used + delta > limit:
            used = self._used(shown, fresh=True)  # refuse on a fresh measurement only
        after = used + delta
        if after > limit:
            raise FileAccessRefused(
                f"write_file: {shown!r} was not written: the workspace would hold {after} "
                f"bytes (it holds {used}), more than its limit of {limit} bytes set by "
                f"{source}")

    def _used(self, shown: str, *, fresh: bool) -> int:
        """The bytes the root holds (see ``usage_ttl``)."""
        now = time.monotonic()
        if not fresh and self._usage is not None and now - self._usage[0] < self.usage_ttl:
            return self._usage[1]
        self._usage = None
        fd = self._open_root()
        try:
            used = usage(fd, max_entries=self.max_usage_entries)
        except TreeTooLarge as exc:
            raise FileAccessRefused(f"write_file: {shown!r} was not written: the workspace's "
                                    f"size cannot be checked against its limit ({exc}; "
                                    "max_usage_entries)") from None
        finally:
            os.close(fd)
        self._usage = now, used
        return used

    def _entries(self, fd: int, parts: list[str], notes: dict[str, list[str]]
                 ) -> list[tuple[str, os.stat_result]]:
        """The names in directory ``fd`` with their lstat, sorted (one removed meanwhile is
        left out), at most ``max_directory_entries`` of them."""
        items = []
        with os.scandir(fd) as scan:
            for entry in scan:
                if len(items) >= self.max_directory_entries:
                    notes["too_large"].append("/".join(parts) or ".")
                    break
                try:
                    items.append((entry.name, entry.stat(follow_symlinks=False)))
                except OSError:
                    continue
        items.sort(key=lambda item: item[0])
        return items

    @staticmethod
    def _replace(parent: int, name: str, data: bytes, existing: os.stat_result | None
                 ) -> None:
        """Write ``data`` to a new file in ``parent`` and rename it over ``name``."""
        owner = owner_for(os.fstat(parent), existing)
        for _attempt in range(8):
            temporary = f".agently-{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(temporary, _WRITE_FLAGS, new_file_mode(existing), dir_fd=parent)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name")
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                settle_file(fd, existing, owner)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=parent)
            except OSError:
                pass
            raise


def _decode(content: Any, encoding: Any) -> bytes:
    if not isinstance(content, str):
        raise FileAccessRefused("write_file: content must be a string")
    if encoding == "utf-8":
        try:
            return content.encode("utf-8")
        except UnicodeEncodeError:
            raise FileAccessRefused("write_file: content is not valid text (lone "
                                    "surrogates); send binary content as base64") from None
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except ValueError:
            raise FileAccessRefused("write_file: content is not valid base64") from None
    raise FileAccessRefused(f"write_file: encoding must be 'utf-8' or 'base64', got "
                            f"{encoding!r}")


def _os_refusal(exc: OSError, action: str, shown: str, what: str) -> FileAccessRefused:
    if exc.errno in _FULL_DISK:
        return FileAccessRefused(f"{action}: {shown!r} {what}: the disk is full (no space "
                                 f"left on the device or its quota: {exc.strerror})")
    if exc.errno == errno.EROFS:
        return FileAccessRefused(f"{action}: {shown!r} {what}: the file system is read-only")
    return FileAccessRefused(f"{action}: {shown!r} {what}: {exc.strerror or exc}")


def _linked(action: str, shown: str, links: int) -> str:
    return (f"{action}: {shown!r} has {links} hard links; a file with another name may be a "
            "file outside the workspace, so it is neither read nor replaced")


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _short(path: str, limit: int = 120) -> str:
    return path if len(path) <= limit else f"{path[:limit]}...({len(path)} characters)"


def _kind(mode: int, short: bool = False) -> str:
    kinds = ((stat.S_ISREG, "file", "a regular file"), (stat.S_ISDIR, "directory", "a directory"),
             (stat.S_ISLNK, "symlink", "a symbolic link"), (stat.S_ISFIFO, "fifo", "a FIFO"),
             (stat.S_ISCHR, "device", "a character device"),
             (stat.S_ISBLK, "device", "a block device"), (stat.S_ISSOCK, "socket", "a socket"))
    for test, brief, long in kinds:
        if test(mode):
            return brief if short else long
    return "other" if short else "a special file"


def _text(data: bytes, *, cut: bool) -> tuple[str, int] | None:
    """``(text, bytes used)`` when ``data`` is UTF-8 text, else ``None`` (binary). A read
    cut in the middle of a character drops that partial character (it comes next time)."""
    if b"\x00" in data[:_SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8"), len(data)
    except UnicodeDecodeError as exc:
        if cut and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data[:exc.start].decode("utf-8"), exc.start
        return None
