"""The host side of ``run_bash``: one isolated ``bash -c`` per call, in a per-scope sandbox.

A :class:`BashSandbox` (what the ``bash`` provider ensures per scope) holds a dedicated
uid (when the host runs as root), a private :class:`~agently_core_isolation.workspace.
Workspace` (``home``: ``$HOME`` and ``/work``; ``tmp``: ``/tmp`` or ``TMPDIR``; and, without
host roots, ``workspace``: the private root), bounded in size when the host runs as root,
the workspace roots, and the read-only PATH directories (one per distinct allowlist,
:func:`~.programs.make_bin_dir`). Each call runs ``/usr/bin/bash --noprofile --norc -c CMD``
through :func:`agently_core_isolation.sandbox.run`, under the isolation's supervisor (which
kills and reaps whatever the call leaves), with ``exec_allow`` set to bash and the
allowlist's programs: the kernel refuses to execute anything else, whatever the line
analyser let through. The roots are the spec's ``rw_paths`` (read-write at their own host
paths, in every tier) and the call's workdir, among them, its ``cwd``. Calls of one sandbox
run one at a time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agently_core_isolation import sandbox as isolation_sandbox
from agently_core_isolation.sandbox import (
    Isolation,
    Limits,
    RunResult,
    SandboxSpec,
    allocate_uid,
    kill_uid,
    sandbox_root,
)
from agently_core_isolation.workspace import DEFAULT_WORKSPACE_BYTES, new_workspace

from agently_core.queueing import Turnstile

from .programs import Allowlist, make_bin_dir

BASH = "/usr/bin/bash" if os.path.exists("/usr/bin/bash") else "/bin/bash"
#: Calls that may wait for a busy sandbox; one more is refused at once (ResourceBusy).
MAX_WAITING = 32
#: Host trees a root may not be (or lie in): the system, and the kernel's.
SYSTEM_ROOTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
                "/proc", "/sys", "/dev", "/boot", "/run")


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
    """One scope's sandbox: its uid, private workspace (home, tmp, and the private root
    without host roots; ``workspace_bytes`` in all where the host is root), roots and
    PATH directories."""

    #: Whether the sandbox's paths (its roots, a call's workdir) are this machine's. A
    #: sandbox hosted on another node (agently-core-ray) says False: the executor then
    #: checks them by their text, and the sandbox resolves them again on its node.
    paths_here = True

    def __init__(self, isolation: Isolation, *, roots: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None,
                 workspace_bytes: int | None = DEFAULT_WORKSPACE_BYTES) -> None:
        self.isolation = isolation
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.uid = allocate_uid() if os.geteuid() == 0 else None
        self.closed = False
        #: One call at a time (the Landlock tier sweeps the uid after each); the calls
        #: waiting behind it are bounded and their wait shows in their records.
        self.turnstile = Turnstile("the Bash sandbox of its scope",
                                   max_waiting=MAX_WAITING)
        self.calls = 0
        self.private_workspace = not roots
        self.workspace = new_workspace(
            self.uid, workspace_bytes or DEFAULT_WORKSPACE_BYTES,
            ("home", "tmp", "workspace") if self.private_workspace else ("home", "tmp"),
            required=workspace_bytes is not None)
        self.base = self.workspace.root
        self.home = self.workspace["home"]
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
                self.roots = [str(self.workspace["workspace"])]
            self.bin_parent = Path(tempfile.mkdtemp(prefix="bin-", dir=sandbox_root()))
            os.chmod(self.bin_parent, 0o711)
        except BaseException:
            self.workspace.release()
            raise
        self._bins: dict[tuple[tuple[str, str], ...], Path] = {}

    @property
    def workspace_bytes(self) -> int | None:
        """The bound of the private workspace (home, tmp and the private root together),
        where one holds; host roots are never bounded."""
        return self.workspace.quota

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

    def spec(self, command: str, *, cwd: str, roots: Sequence[str], allowlist: Allowlist,
             limits: Limits, network: bool, env: Mapping[str, str],
             deadline: float | None = None) -> SandboxSpec:
        """The sandbox spec of one line: ``bash -c`` in the home, the roots read-write, PATH
        the allowlist's directory, and the kernel allowed to execute only bash and the
        allowlist's programs."""
        path = self.bin_dir(allowlist)
        return SandboxSpec([BASH, "--noprofile", "--norc", "-c", command], self.home,
                           network=network, env={**env, "PATH": str(path)}, limits=limits,
                           ro_paths=(str(path), *allowlist.extra_read_only()), cwd=cwd,
                           rw_paths=tuple(roots), tmpdir=self.workspace["tmp"],
                           exec_allow=(BASH, *sorted({p.path for p in allowlist.programs})),
                           deadline=deadline)

    async def run(self, command: str, *, cwd: str, roots: Sequence[str], allowlist: Allowlist,
                  limits: Limits, network: bool, env: Mapping[str, str],
                  deadline: float | None = None, context: Any = None) -> RunResult:
        """Run one line; ``deadline`` (seconds from now, waiting for an earlier call of this
        sandbox included) is when the supervisor kills it; ``context`` (the call's
        ActionContext) records a wait."""
        if self.closed:
            raise RuntimeError("the Bash sandbox was released")
        ends = time.monotonic() + (deadline or limits.wall_seconds + 1.0)
        async with self.turnstile.turn(context):
            spec = self.spec(command, cwd=cwd, roots=roots, allowlist=allowlist, limits=limits,
                             network=network, env=env,
                             deadline=max(0.001, ends - time.monotonic()))
            self.calls += 1
            return await isolation_sandbox.run(self.isolation, spec, uid=self.uid)

    def close(self) -> None:
        """Kill whatever still runs as the sandbox's uid and remove its private
        directories (idempotent). Roots the host gave are left as they are."""
        self.closed = True
        kill_uid(self.uid)
        self.workspace.release()
        if getattr(self, "bin_parent", None) is not None:
            for folder in self._bins.values():
                with contextlib.suppress(OSError):
                    os.chmod(folder, 0o755)  # so that a host that is not root can remove it
            shutil.rmtree(self.bin_parent, ignore_errors=True)
