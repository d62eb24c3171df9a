"""The host side of ``run_bash``: one isolated ``bash -c`` per call, in a per-scope sandbox.

A :class:`BashSandbox` (what the ``bash`` provider ensures per scope) holds a dedicated
uid (when the host runs as root), a private directory (``home``: ``$HOME``, and the
private tmp of the Landlock tier), the workspace roots, and the read-only PATH
directories (one per distinct allowlist, :func:`~.programs.make_bin_dir`). Each call runs
``/usr/bin/bash --noprofile --norc -c CMD`` through
:func:`agently_core_isolation.sandbox.run` with :class:`RootsIsolation`, which runs it under
the reaper; the roots are the spec's ``rw_paths`` (read-write at their own host paths, in
every tier) and the call's workdir, among them, its ``cwd``. Calls of one sandbox run one
at a time (the Landlock tier sweeps the uid's processes after each).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from agently_core_isolation import sandbox as isolation_sandbox
from agently_core_isolation.sandbox import (
    Isolation,
    Limits,
    RunResult,
    SandboxSpec,
    allocate_uid,
    kill_uid,
    new_workdir,
    sandbox_root,
)

from .programs import Allowlist, make_bin_dir

BASH = "/usr/bin/bash" if os.path.exists("/usr/bin/bash") else "/bin/bash"
REAPER = Path(__file__).with_name("_reaper.py")
#: Host trees a root may not be (or lie in): the system, and the kernel's.
SYSTEM_ROOTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
                "/proc", "/sys", "/dev", "/boot", "/run")


@dataclass(frozen=True)
class RootsSpec(SandboxSpec):
    """A :class:`SandboxSpec` with the moment the reaper ends the call."""

    #: When the reaper kills the call (seconds; a little before ``limits.wall_seconds``).
    deadline: float | None = None


class RootsIsolation(Isolation):
    """:class:`Isolation` whose calls run under the reaper (:mod:`._reaper`): it owns the
    call's process tree and kills and reaps whatever the call leaves behind, in every
    tier. Roots are the spec's ``rw_paths``, bound read-write at their own paths by the
    isolation itself."""

    def command(self, spec: SandboxSpec, *, uid: int | None = None
                ) -> tuple[list[str], dict[str, str]]:
        argv, env = super().command(spec, uid=uid)
        # the reaper goes right after prlimit: it owns (and reaps) the whole call
        split = argv.index("--") + 1
        deadline = getattr(spec, "deadline", None) or spec.limits.wall_seconds + 1.0
        sweep = str(uid) if uid is not None and os.geteuid() == 0 else "-"
        reaper = [sys.executable, "-I", "-S", str(REAPER), sweep, f"{deadline:.3f}", "--"]
        return [*argv[:split], *reaper, *argv[split:]], env


def check_root(path: str | os.PathLike[str]) -> str:
    """A host directory given as a root, resolved (realpath); ValueError if it is missing,
    not a directory, or a system tree."""
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"invalid root {path!r}")
    real = os.path.realpath(text)
    if not os.path.isdir(real):
        raise ValueError(f"root {text!r} is not an existing directory")
    if real == "/" or any(real == s or real.startswith(s + "/") for s in SYSTEM_ROOTS):
        raise ValueError(f"root {text!r} ({real}) is a system directory; give a project or "
                         "data directory")
    sandboxes = os.path.realpath(sandbox_root())
    if sandboxes == real or sandboxes.startswith(real.rstrip("/") + "/"):
        raise ValueError(f"root {text!r} ({real}) contains the sandboxes' own directory "
                         f"{sandboxes} (AGENTLY_SANDBOX_ROOT); give a directory inside it")
    return real


def under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _reachable(path: str, uid: int) -> str | None:
    """Why ``uid`` (a sandbox uid: no group, owner of nothing on the host) cannot read
    ``path``, or None."""
    current = Path(path)
    for folder in [*reversed(current.parents), current]:
        info = os.stat(folder)
        if info.st_uid == uid:
            continue
        need = stat.S_IXOTH | (stat.S_IROTH if folder == current else 0)
        if info.st_mode & need != need:
            return (f"{folder} is not {'readable and searchable' if folder == current else 'searchable'} "
                    f"by others (mode {stat.S_IMODE(info.st_mode):o})")
    return None


class BashSandbox:
    """One scope's sandbox: its uid, private home, roots and PATH directories."""

    def __init__(self, isolation: Isolation, *, roots: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.isolation = isolation
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.uid = allocate_uid() if os.geteuid() == 0 else None
        self.closed = False
        self.lock = anyio.Lock()
        self.calls = 0
        self.base = new_workdir(self.uid)  # 0700, the sandbox uid's
        self.home = self._private("home")
        self.private_workspace = not roots
        try:
            if roots:
                self.roots = [check_root(r) for r in roots]
                if self.uid is not None:
                    for root in self.roots:
                        problem = _reachable(root, self.uid)
                        if problem:
                            raise ValueError(
                                f"root {root} is out of reach of the sandbox's dedicated uid: "
                                f"{problem}; make it (and its parents) readable and searchable "
                                "by others, and writable for the sandbox to write there")
            else:
                self.roots = [str(self._private("workspace"))]
            self.bin_parent = Path(tempfile.mkdtemp(prefix="bin-", dir=sandbox_root()))
            os.chmod(self.bin_parent, 0o711)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        self._bins: dict[tuple[tuple[str, str], ...], Path] = {}

    def _private(self, name: str) -> Path:
        path = self.base / name
        path.mkdir(mode=0o700)
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        return path

    def bin_dir(self, allowlist: Allowlist) -> Path:
        """The read-only PATH directory for ``allowlist`` (made once per distinct list)."""
        key = tuple(sorted((n, p.real) for n, p in allowlist.by_name.items()))
        folder = self._bins.get(key)
        if folder is None:
            folder = make_bin_dir(allowlist, self.bin_parent / f"path{len(self._bins)}")
            self._bins[key] = folder
        return folder

    def healthy(self) -> bool:
        return (not self.closed and self.home.is_dir()
                and all(os.path.isdir(root) for root in self.roots))

    async def run(self, command: str, *, cwd: str, roots: Sequence[str], allowlist: Allowlist,
                  limits: Limits, network: bool, env: Mapping[str, str],
                  deadline: float | None = None) -> RunResult:
        if self.closed:
            raise RuntimeError("the Bash sandbox was released")
        path = self.bin_dir(allowlist)
        spec = RootsSpec([BASH, "--noprofile", "--norc", "-c", command], self.home,
                         network=network, env={**env, "PATH": str(path)}, limits=limits,
                         ro_paths=(str(path), *allowlist.extra_read_only()), cwd=cwd,
                         rw_paths=tuple(roots), deadline=deadline)
        async with self.lock:
            self.calls += 1
            return await isolation_sandbox.run(self.isolation, spec, uid=self.uid)

    def close(self) -> None:
        """Kill whatever still runs as the sandbox's uid and remove its private
        directories (idempotent). Roots the host gave are left as they are."""
        self.closed = True
        kill_uid(self.uid)
        shutil.rmtree(self.base, ignore_errors=True)
        if getattr(self, "bin_parent", None) is not None:
            for folder in self._bins.values():
                with contextlib.suppress(OSError):
                    os.chmod(folder, 0o755)  # so that a host that is not root can remove it
            shutil.rmtree(self.bin_parent, ignore_errors=True)
