"""What a sandbox whose spec lists ``exec_allow`` may execute, map and read: the *closure* of
its allowed programs, resolved on the host once per distinct list (and per program file).

* ``programs``: files the kernel may execute: each allowed program (its real path), its ELF
  interpreter (``PT_INTERP``, the dynamic loader) and, for a script, its ``#!`` interpreter
  (Debian's ``egrep`` is a ``#!/bin/sh`` script: ``/bin/sh`` counts as part of it, and so is
  executable too). A program a script runs by name must be allowed itself.
* ``libraries``: the shared libraries they load (the loader's own ``--list``, run in trace
  mode on host-trusted system programs; nothing of the program runs): readable and mappable
  as code, never executed.
* ``data``: system data they read (locales, time zones, the ``file`` magic, the loader's
  cache): readable only, and mounted ``noexec`` by the sandbox.
* ``links``: every symbolic link on the way to the above (``/usr/bin/sh`` -> ``dash``) and
  the top-level links of a merged ``/usr`` (``/bin`` -> ``usr/bin``), so that a view
  holding only these files resolves the same names as the host. An allowed program is
  best given by the path it is run as (``/usr/bin/sh``, not ``/usr/bin/dash``): that name
  is then in the view too.

Nothing else of the host's system trees is in the view: no other program is readable, so
the loader run by hand (``ld.so /usr/bin/id``) has nothing to map either.
"""

from __future__ import annotations

import functools
import os
import struct
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

#: System data the usual programs read, included where it exists. ``{libdir}`` is the
#: directory of the C library the programs load (its character-set modules live there).
SYSTEM_DATA = (
    "/etc/ld.so.cache", "/etc/localtime", "/usr/share/zoneinfo", "/usr/lib/locale",
    "/usr/share/locale/locale.alias", "{libdir}/gconv", "/usr/share/file", "/usr/lib/file",
    "/usr/share/misc/magic", "/usr/share/misc/magic.mgc", "/etc/magic", "/etc/magic.mime",
)
#: Top-level links of a merged-/usr system (``/bin`` -> ``usr/bin``), kept in every view
#: where the host has them, so that a program's conventional paths (``/bin/sh``) resolve.
TOP_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PT_INTERP = 3
#: How many ``#!`` interpreters may follow each other (the kernel allows a few).
MAX_SCRIPT_DEPTH = 4


class ExecViewError(ValueError):
    """An allowed program whose closure cannot be resolved (missing, a library not found,
    an interpreter that cannot list libraries): the spec is refused, nothing runs."""


@dataclass(frozen=True)
class ExecView:
    """The files a sandbox with an exec allowlist is given (real paths, sorted)."""

    programs: tuple[str, ...]
    libraries: tuple[str, ...]
    data: tuple[str, ...]
    links: tuple[tuple[str, str], ...]

    def executable(self, path: str) -> bool:
        """Whether the sandbox may execute ``path`` (resolved on the host)."""
        return os.path.realpath(path) in self.programs


@dataclass(frozen=True)
class _Closure:
    programs: frozenset[str]
    libraries: frozenset[str]
    links: frozenset[tuple[str, str]]


def resolve_links(path: str, links: dict[str, str], depth: int = 0) -> str:
    """The real path of ``path`` (absolute, normalised), recording every symbolic link met on
    the way in ``links`` (link path -> its target as written)."""
    if depth > 40:
        raise ExecViewError(f"too many levels of symbolic links resolving {path}")
    current = "/"
    for part in [p for p in path.split("/") if p and p != "."]:
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            links[candidate] = target
            joined = target if target.startswith("/") else os.path.join(current, target)
            current = resolve_links(joined, links, depth + 1)
        else:
            current = candidate
    return current


def elf_interpreter(path: str) -> tuple[bool, str | None]:
    """``(is_elf, PT_INTERP)`` of a file: ``(False, None)`` for a file that is not ELF,
    ``(True, None)`` for a static ELF."""
    with open(path, "rb") as handle:
        ident = handle.read(64)
        if len(ident) < 52 or ident[:4] != b"\x7fELF":
            return False, None
        wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
        if wide:
            phoff, = struct.unpack_from(order + "Q", ident, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 54)
        else:
            phoff, = struct.unpack_from(order + "I", ident, 28)
            phentsize, phnum = struct.unpack_from(order + "HH", ident, 42)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
        for index in range(phnum):
            entry = table[index * phentsize:(index + 1) * phentsize]
            if len(entry) < (56 if wide else 32):
                break
            if struct.unpack_from(order + "I", entry, 0)[0] != PT_INTERP:
                continue
            if wide:
                offset, = struct.unpack_from(order + "Q", entry, 8)
                size, = struct.unpack_from(order + "Q", entry, 32)
            else:
                offset, = struct.unpack_from(order + "I", entry, 4)
                size, = struct.unpack_from(order + "I", entry, 16)
            handle.seek(offset)
            return True, handle.read(min(size, 4096)).split(b"\0", 1)[0].decode()
    return True, None


def shebang(path: str) -> str | None:
    """The interpreter a script's ``#!`` line names (its first word), or None."""
    with open(path, "rb") as handle:
        head = handle.read(256)
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode() if words else None


def loader_libraries(loader: str, program: str) -> list[str]:
    """The shared libraries ``program`` loads, as its loader lists them (``--list``: the
    loader maps them and stops; no code of the program runs)."""
    try:
        done = subprocess.run([loader, "--list", program], capture_output=True, text=True,
                              timeout=20, env={"LC_ALL": "C"}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecViewError(f"cannot list the libraries of {program} with {loader}: {exc}") from None
    if done.returncode != 0:
        raise ExecViewError(f"cannot list the libraries of {program} with {loader}: "
                            f"{(done.stderr or done.stdout).strip()[:200]}")
    found = []
    for line in done.stdout.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise ExecViewError(f"{program} needs {line.split()[0]}, which is not installed")
        if "=>" in line:
            path = line.split("=>", 1)[1].strip().rsplit(" (", 1)[0].strip()
        elif line.startswith("/"):
            path = line.rsplit(" (", 1)[0].strip()
        else:  # the vDSO: in the kernel, no file
            continue
        if path:
            found.append(path)
    return found


def _file_key(path: str) -> tuple[str, int, int, int]:
    info = os.stat(path)
    return path, info.st_ino, info.st_size, info.st_mtime_ns


@functools.lru_cache(maxsize=512)
def _closure(key: tuple[str, int, int, int], depth: int = 0) -> _Closure:
    """One program file's closure (cached per file version)."""
    path = key[0]
    links: dict[str, str] = {}
    programs, libraries = {path}, set()
    try:
        is_elf, interpreter = elf_interpreter(path)
        script = None if is_elf else shebang(path)
    except OSError as exc:
        raise ExecViewError(f"cannot read the allowed program {path}: {exc.strerror}") from None
    if interpreter is not None:
        loader = resolve_links(interpreter, links)
        if not os.path.isfile(loader):
            raise ExecViewError(f"{path} names the loader {interpreter}, which is missing")
        programs.add(loader)
        for library in loader_libraries(loader, path):
            real = resolve_links(library, links)
            if real != loader:
                libraries.add(real)
    if script is not None:
        if depth >= MAX_SCRIPT_DEPTH or not script.startswith("/"):
            raise ExecViewError(f"the script {path} names the interpreter {script!r}, which "
                                "cannot be resolved (give an absolute #! path)")
        real = resolve_links(script, links)
        if not os.path.isfile(real):
            raise ExecViewError(f"the script {path} names the interpreter {script}, which is missing")
        inner = _closure(_file_key(real), depth + 1)
        programs |= inner.programs
        libraries |= inner.libraries
        links.update(inner.links)
    return _Closure(frozenset(programs), frozenset(libraries - programs),
                    frozenset(links.items()))


def _within(path: str, trees: Iterable[str]) -> bool:
    return any(path == tree or path.startswith(tree.rstrip("/") + "/") for tree in trees)


@functools.lru_cache(maxsize=64)
def exec_view(allowed: tuple[str, ...]) -> ExecView:
    """The view of ``allowed`` (absolute paths of the programs the sandbox may execute; their
    symlinks are followed). :class:`ExecViewError` when one does not resolve."""
    links: dict[str, str] = {}
    programs: set[str] = set()
    libraries: set[str] = set()
    keys = []
    for entry in allowed:
        if not isinstance(entry, str) or not entry.startswith("/") or "\0" in entry:
            raise ExecViewError(f"exec_allow entries must be absolute paths, got {entry!r}")
        real = resolve_links(os.path.normpath(entry), links)
        if not os.path.isfile(real):
            raise ExecViewError(f"the allowed program {entry} is not a file")
        keys.append(_file_key(real))
    with ThreadPoolExecutor(max_workers=4) as pool:  # each new program costs a loader run
        closures = list(pool.map(_closure, keys))
    for closure in closures:
        programs |= closure.programs
        libraries |= closure.libraries
        links.update(closure.links)
    libraries -= programs
    for top in TOP_LINKS:
        if os.path.islink(top):
            resolve_links(top, links)
    libdir = next((os.path.dirname(p) for p in libraries if os.path.basename(p).startswith("libc.so")),
                  "/usr/lib")
    data = set()
    for item in SYSTEM_DATA:
        path = item.format(libdir=libdir)
        if not os.path.lexists(path):
            continue
        real = resolve_links(path, links)
        if os.path.exists(real) and not _within(real, data):
            data = {d for d in data if not _within(d, [real])} | {real}
    code = programs | libraries
    for tree in data:  # data is mounted noexec: no code may live in it
        inside = sorted(p for p in code if _within(p, [tree]))
        if inside:
            raise ExecViewError(f"the system data tree {tree} holds code the sandbox needs "
                                f"({inside[0]}); it cannot be mounted noexec")
    return ExecView(programs=tuple(sorted(programs)), libraries=tuple(sorted(libraries)),
                    data=tuple(sorted(data)), links=tuple(sorted(links.items())))
