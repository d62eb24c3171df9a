"""File access confined to one directory, robust against symlink swaps.

Paths are relative to the root; ``..``, absolute paths and NUL bytes are refused before
anything is opened. The root is opened, then each directory component with
``openat(dir_fd, part, O_NOFOLLOW | O_DIRECTORY)`` and the last one with ``O_NOFOLLOW``:
every step is taken relative to a directory the previous step already holds open, so no
component is ever resolved by name from the root again. A symlink anywhere, even one
swapped in between a check and the use, makes the open fail (``ELOOP``/``ENOTDIR``)
instead of leaving the root. Directories on another file system (mount points) are refused
too. Only regular files are read: the type is checked with ``lstat`` before opening (so a
device is never opened) and again with ``fstat`` on the open descriptor (opened with
``O_NONBLOCK``, so a FIFO swapped in cannot hang the reader). Writes go to a new
temporary file in the target directory and are renamed over the target: a write never
follows a link or writes through a hard link into another file.
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agently_core.errors import ActionError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(
    os, "O_NOCTTY", 0)
_SNIFF_BYTES = 8192


class FileAccessRefused(ActionError):
    """A file action was refused: the path leaves the root, is a link or a special file,
    is too large, or the workspace is read-only. The message says which and why."""


class ConfinedRoot:
    """Read, list, search and write files under ``root`` and nowhere else.

    ``max_read_bytes`` caps one read (larger files are returned in parts, with
    ``truncated`` and ``next_offset``); ``max_write_bytes`` caps one write;
    ``max_entries`` caps a listing; ``max_search_file_bytes`` skips larger files when
    searching, and ``max_search_bytes`` caps what one search reads in total.
    """

    def __init__(self, root: str | os.PathLike[str], *, read_only: bool = False,
                 max_read_bytes: int = 256 * 1024, max_write_bytes: int = 1024 * 1024,
                 max_entries: int = 1000, max_search_file_bytes: int = 1024 * 1024,
                 max_search_bytes: int = 64 * 1024 * 1024) -> None:
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

    # -- resolution ----------------------------------------------------------------------
    @staticmethod
    def parts(path: Any, action: str) -> list[str]:
        """The components of a relative path, or :class:`FileAccessRefused`."""
        if not isinstance(path, str):
            raise FileAccessRefused(f"{action}: the path must be a string, got {path!r}")
        if "\x00" in path:
            raise FileAccessRefused(f"{action}: the path {path!r} contains a NUL byte")
        if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
            raise FileAccessRefused(f"{action}: {path!r} is absolute; paths are relative to "
                                    "the workspace root")
        parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
        if ".." in parts:
            raise FileAccessRefused(f"{action}: {path!r} contains '..'; paths may not leave "
                                    "the workspace root")
        return parts

    def _open_root(self) -> int:
        fd = os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        found = os.fstat(fd)
        if (found.st_dev, found.st_ino) != self._identity:
            os.close(fd)
            raise FileAccessRefused(f"the workspace root {self.root} was replaced; refusing "
                                    "to use it")
        return fd

    def _step(self, parent: int, part: str, shown: str, action: str) -> int:
        """Open directory ``part`` inside ``parent`` without following links."""
        try:
            fd = os.open(part, _DIR_FLAGS, dir_fd=parent)
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
        """An fd of the directory ``parts`` under the root (made when ``create``)."""
        fd = self._open_root()
        try:
            for depth, part in enumerate(parts):
                shown = "/".join(parts[:depth + 1])
                if create:
                    try:
                        os.mkdir(part, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                nxt = self._step(fd, part, shown, action)
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
            return FileAccessRefused(f"{action}: {shown!r} does not exist")
        if stat.S_ISLNK(found.st_mode):
            return FileAccessRefused(f"{action}: {shown!r} is a symbolic link; links are not "
                                     "followed in the workspace")
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
        return fd

    # -- actions -------------------------------------------------------------------------
    def read(self, path: str, offset: int = 0, max_bytes: int | None = None) -> dict[str, Any]:
        parts = self.parts(path, "read_file")
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

    def list(self, path: str = ".", recursive: bool = False) -> dict[str, Any]:
        parts = self.parts(path, "list_files")
        entries: list[dict[str, Any]] = []
        with self.directory(parts, "list_files") as fd:
            truncated = self._walk(fd, parts, recursive, entries)
        return {"path": "/".join(parts) or ".", "entries": entries, "truncated": truncated}

    def _walk(self, fd: int, parts: list[str], recursive: bool,
              entries: list[dict[str, Any]], depth: int = 0) -> bool:
        with os.scandir(fd) as scan:
            items = sorted(scan, key=lambda entry: entry.name)
        for entry in items:
            if len(entries) >= self.max_entries:
                return True
            found = entry.stat(follow_symlinks=False)
            rel = "/".join([*parts, entry.name])
            row: dict[str, Any] = {"path": rel, "type": _kind(found.st_mode, short=True)}
            if stat.S_ISREG(found.st_mode):
                row["size"] = found.st_size
            entries.append(row)
            if recursive and stat.S_ISDIR(found.st_mode) and depth < 32:
                try:
                    child = self._step(fd, entry.name, rel, "list_files")
                except FileAccessRefused:
                    continue  # swapped for a link or a mount point meanwhile: not descended
                try:
                    if self._walk(child, [*parts, entry.name], True, entries, depth + 1):
                        return True
                finally:
                    os.close(child)
        return False

    def search(self, query: str, path: str = ".", glob: str = "*", max_results: int = 50,
               case_sensitive: bool = False) -> dict[str, Any]:
        if not isinstance(query, str) or not query:
            raise FileAccessRefused("search_files: the query must be a non-empty string")
        parts = self.parts(path, "search_files")
        needle = query if case_sensitive else query.casefold()
        matches: list[dict[str, Any]] = []
        budget = [self.max_search_bytes]
        skipped: list[str] = []
        with self.directory(parts, "search_files") as fd:
            truncated = self._search(fd, parts, needle, glob, max(1, int(max_results)),
                                     case_sensitive, matches, budget, skipped, 0)
        return {"query": query, "matches": matches, "truncated": truncated,
                "skipped": skipped[:20]}

    def _search(self, fd: int, parts: list[str], needle: str, glob: str, limit: int,
                case_sensitive: bool, matches: list[dict[str, Any]], budget: list[int],
                skipped: list[str], depth: int) -> bool:
        with os.scandir(fd) as scan:
            items = sorted(scan, key=lambda entry: entry.name)
        for entry in items:
            rel = "/".join([*parts, entry.name])
            found = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(found.st_mode) and depth < 32:
                try:
                    child = self._step(fd, entry.name, rel, "search_files")
                except FileAccessRefused:
                    continue
                try:
                    if self._search(child, [*parts, entry.name], needle, glob, limit,
                                    case_sensitive, matches, budget, skipped, depth + 1):
                        return True
                finally:
                    os.close(child)
                continue
            if not stat.S_ISREG(found.st_mode) or not fnmatch.fnmatch(entry.name, glob):
                continue
            if found.st_size > self.max_search_file_bytes:
                skipped.append(f"{rel} (larger than {self.max_search_file_bytes} bytes)")
                continue
            if found.st_size > budget[0]:
                return True
            try:
                handle = self.open_regular(fd, entry.name, rel, "search_files")
            except FileAccessRefused:
                continue
            try:
                data = os.pread(handle, self.max_search_file_bytes, 0)
            finally:
                os.close(handle)
            budget[0] -= len(data)
            if b"\x00" in data[:_SNIFF_BYTES]:
                continue  # binary
            for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                if needle in (line if case_sensitive else line.casefold()):
                    matches.append({"path": rel, "line": number, "text": line.strip()[:300]})
                    if len(matches) >= limit:
                        return True
        return False

    def write(self, path: str, content: str, encoding: str = "utf-8",
              create_dirs: bool = True) -> dict[str, Any]:
        if self.read_only:
            raise FileAccessRefused(f"write_file: the workspace is read-only; {path!r} was "
                                    "not written")
        parts = self.parts(path, "write_file")
        if not parts:
            raise FileAccessRefused("write_file: the path names the workspace root")
        if not isinstance(content, str):
            raise FileAccessRefused("write_file: content must be a string")
        if encoding == "utf-8":
            data = content.encode("utf-8")
        elif encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except ValueError:
                raise FileAccessRefused("write_file: content is not valid base64") from None
        else:
            raise FileAccessRefused(f"write_file: encoding must be 'utf-8' or 'base64', got "
                                    f"{encoding!r}")
        if len(data) > self.max_write_bytes:
            raise FileAccessRefused(f"write_file: {len(data)} bytes is more than the "
                                    f"{self.max_write_bytes} allowed in one write")
        shown, name = "/".join(parts), parts[-1]
        with self.directory(parts[:-1], "write_file", create=create_dirs) as parent:
            created, mode = self._target(parent, name, shown)
            temporary = f".{name}.{secrets.token_hex(6)}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=parent)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
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
        return {"path": shown, "bytes": len(data), "created": created}

    def _target(self, parent: int, name: str, shown: str) -> tuple[bool, int]:
        """Whether the write creates ``name``, and the mode the new file gets."""
        try:
            found = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return True, 0o666
        if not stat.S_ISREG(found.st_mode):
            raise FileAccessRefused(f"write_file: {shown!r} is {_kind(found.st_mode)}; only "
                                    "regular files are replaced")
        return False, stat.S_IMODE(found.st_mode)


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
