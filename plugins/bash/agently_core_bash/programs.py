"""The command allowlist: programs resolved on the host, matched by what really runs.

An allowlist entry is a program name (``"ls"``, looked up on the sandbox's standard PATH
``/usr/local/bin:/usr/bin:/bin``) or an absolute path (``"/usr/bin/ls"``). Each resolves,
at mount time, to a :class:`Program`: the ``name`` it is invoked by (the entry's
basename), the ``path`` where it was found and its ``real`` path (every symlink
followed). A program's identity is ``(real, name)``: the same binary under another name is
another program, because multi-call binaries (busybox, and programs such as ``bash``
invoked as ``sh``) behave by the name they are started with.

Inside the sandbox PATH is a read-only directory holding one symlink per allowed name
(:func:`make_bin_dir`), so a name the model writes runs exactly the allowed program with
that name, and a program that looks another up by name (``awk``'s ``system()``,
``xargs``) finds nothing else. A command word containing a slash must be absolute,
normalised and lie in a system directory (or be an entry's own path) and resolve to an
allowed identity: ``/usr/bin/ls`` is ``ls``; ``./ls``, ``/tmp/ls`` or ``../../usr/bin/rm``
never are, whatever they point to (the workspace is writable, so a check there could not
hold until the command runs).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .parse import RESERVED, Refused

SANDBOX_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
#: Where a program named by its path must live: read-only in every tier, never a root.
SYSTEM_DIRS = frozenset({"/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin",
                         "/sbin"})
#: Trees the sandbox sees read-only in every tier (a program outside them is bound).
SYSTEM_TREES = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/")
#: Bash builtins the model may always use (their arguments are checked, see check.py).
SAFE_BUILTINS = frozenset({":", "true", "false", "cd", "pwd", "echo", "printf", "test", "[",
                           "exit", "export", "unset", "read", "shift", "wait", "set", "break",
                           "continue", "umask"})
#: Bash builtins that run code, change how commands are found, or assign variables they
#: name at run time: never allowed, whatever the allowlist says.
REFUSED_BUILTINS = frozenset({".", "source", "eval", "exec", "command", "builtin", "enable",
                              "alias", "unalias", "trap", "declare", "typeset", "local",
                              "readonly", "let", "hash", "shopt", "mapfile", "readarray",
                              "getopts", "fc", "history", "bind", "complete", "compgen",
                              "compopt", "return", "caller", "coproc"})
#: The rest of Bash's builtins (harmless, but not granted by default): allowed when the
#: allowlist names a program of the same name (``kill`` allows the builtin ``kill``).
OTHER_BUILTINS = frozenset({"bg", "fg", "jobs", "disown", "dirs", "pushd", "popd", "help",
                            "kill", "logout", "suspend", "times", "type", "ulimit"})
BUILTINS = SAFE_BUILTINS | REFUSED_BUILTINS | OTHER_BUILTINS


@dataclass(frozen=True)
class Program:
    """An allowed program: invoked as ``name``, found at ``path``, really ``real``."""

    name: str
    path: str
    real: str

    @property
    def identity(self) -> tuple[str, str]:
        return (self.real, self.name)


def find_on_path(name: str, path: Sequence[str] = SANDBOX_PATH) -> str | None:
    """Where ``name`` is found on ``path`` (the host's file system), or None."""
    for folder in path:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _within(path: str, roots: Iterable[str]) -> str | None:
    for root in roots:
        root = root.rstrip("/") or "/"
        if path == root or path.startswith(root + "/"):
            return root
    return None


def resolve_entry(entry: str | os.PathLike[str], *, roots: Iterable[str] = ()) -> Program | None:
    """The program an allowlist entry names; None for a safe builtin (always allowed).
    Raises ValueError with a clear message for anything that does not resolve."""
    text = os.fspath(entry)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ValueError(f"invalid command allowlist entry {entry!r}")
    roots = list(roots)
    if "/" in text:
        if not os.path.isabs(text):
            raise ValueError(f"command allowlist entry {text!r}: give a program name or an "
                             "absolute path")
        path = os.path.normpath(text)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ValueError(f"command allowlist entry {text!r} is not an executable file")
        name = os.path.basename(path)
    else:
        if text in RESERVED:
            raise ValueError(f"command allowlist entry {text!r} is a Bash keyword, not a program")
        if text in SAFE_BUILTINS:
            return None
        if text in REFUSED_BUILTINS:
            raise ValueError(f"command allowlist entry {text!r} is a Bash builtin that can "
                             "run or redirect other code; it is never allowed")
        found = find_on_path(text)
        if found is None:
            raise ValueError(f"command allowlist entry {text!r} was not found on "
                             f"{':'.join(SANDBOX_PATH)} (give an absolute path for a program "
                             "elsewhere)")
        path, name = found, text
    real = os.path.realpath(path)
    for candidate in {path, real}:
        root = _within(candidate, roots)
        if root is not None:
            raise ValueError(f"command allowlist entry {text!r} ({candidate}) lies in the "
                             f"writable root {root}: the sandbox could replace it")
    return Program(name, path, real)


class Allowlist:
    """The programs a command line may run."""

    def __init__(self, programs: Iterable[Program]) -> None:
        unique: dict[tuple[str, str], Program] = {}
        for program in programs:
            unique.setdefault(program.identity, program)
        self.programs: tuple[Program, ...] = tuple(unique.values())
        self._identities = frozenset(unique)
        self._paths = frozenset(p.path for p in self.programs)
        by_name: dict[str, Program] = {}
        for program in self.programs:
            # one symlink per name in the sandbox's PATH: the one the standard PATH finds
            current = by_name.get(program.name)
            if current is None or find_on_path(program.name) == program.path:
                by_name[program.name] = program
        self.by_name = by_name

    @classmethod
    def resolve(cls, entries: Iterable[str | os.PathLike[str]], *,
                roots: Iterable[str] = ()) -> Allowlist:
        """Resolve host-given entries (mount time); ValueError for one that does not."""
        roots = list(roots)
        programs = [resolve_entry(e, roots=roots) for e in entries]
        return cls(p for p in programs if p is not None)

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def from_policy(entries: tuple[str, ...], roots: tuple[str, ...] = ()) -> Allowlist:
        """The allowlist a call's policy carries (cached per distinct list)."""
        return Allowlist.resolve(entries, roots=roots)

    def policy_entries(self) -> list[str]:
        """The resolved list kept in policy: each program's absolute path (its basename is
        the name it is allowed under)."""
        return [p.path for p in self.programs]

    def names(self) -> list[str]:
        return sorted(self.by_name)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __len__(self) -> int:
        return len(self.programs)

    def match(self, word: str, *, path: Sequence[str] | None = None) -> Program:
        """The allowed program that ``word`` (a command word, quotes removed) runs, or
        :class:`Refused`. ``path``: the PATH the word is looked up on when it is not the
        sandbox's own (``env -i`` falls back to the C library's default)."""
        if "/" not in word:
            program = self.by_name.get(word)
            if program is None:
                raise Refused(f"{word!r} is not an allowed command ({self.allowed_text()})")
            if path is not None:
                found = find_on_path(word, path)
                if found is None or (os.path.realpath(found), word) != program.identity:
                    raise Refused(f"{word!r} would be looked up on {':'.join(path)}, where it "
                                  "is not the allowed program")
            return program
        if not os.path.isabs(word):
            raise Refused(f"{word!r} is a relative path: it would run a file from the "
                          "workspace; run allowed programs by name")
        if os.path.normpath(word) != word or "//" in word:
            raise Refused(f"{word!r} is not a normalised absolute path")
        if os.path.dirname(word) not in SYSTEM_DIRS and word not in self._paths:
            raise Refused(f"{word!r} is not where an allowed program lives; run allowed "
                          "programs by name")
        identity = (os.path.realpath(word), os.path.basename(word))
        if identity not in self._identities:
            raise Refused(f"{word!r} is not an allowed program ({self.allowed_text()})")
        return next(p for p in self.programs if p.identity == identity)

    def allowed_text(self) -> str:
        names = self.names()
        return "allowed: " + (", ".join(names) if names else "none") + \
            ", and the builtins " + ", ".join(sorted(SAFE_BUILTINS))

    def extra_read_only(self) -> list[str]:
        """Programs outside the system trees, which the sandbox must see read-only."""
        return sorted({p.real for p in self.programs if not p.real.startswith(SYSTEM_TREES)})


def make_bin_dir(allowlist: Allowlist, folder: Path) -> Path:
    """Fill ``folder`` (new, host-owned) with one symlink per allowed name and make it
    read-only for everybody else: the sandbox's whole PATH."""
    folder.mkdir(mode=0o755, parents=False, exist_ok=False)
    for name, program in sorted(allowlist.by_name.items()):
        os.symlink(program.real, folder / name)
    os.chmod(folder, 0o555)
    return folder
