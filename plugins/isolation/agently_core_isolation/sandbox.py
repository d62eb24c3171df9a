"""Isolated processes with host-enforced limits.

A :class:`SandboxSpec` says what to run, which host directory is the one writable
workspace (``/work`` inside), whether the network is open, which environment variables
the child gets (nothing is inherited) and its :class:`Limits`. An :class:`Isolation`
turns it into a command line for the strongest tier available:

``bubblewrap``
    New user, pid, ipc, uts, cgroup and network namespaces; a non-root uid inside (as
    root, the sandbox first drops to a dedicated uid with ``setpriv``); only ``/usr``
    (and the interpreter's own tree) mounted, read-only; private ``/tmp``; ``/proc`` of
    its own pid namespace; a new session; it dies with its parent, and killing it kills
    every process inside.
``landlock``
    Where bubblewrap is missing: a dedicated uid (as root), no new privileges, a Landlock
    ruleset (read-only system paths, read-write workspace and private tmp, TCP denied
    when the network is closed) and a seccomp filter denying IP sockets, set up by a
    small launcher before ``exec``.
``trusted_local``
    No isolation beyond the limits. Only when the host opts in explicitly
    (``allow_trusted_local=True``); never chosen by default.

Limits (CPU time, address space, processes, file size, open files) are rlimits set by
``prlimit`` around the whole chain; the wall-clock limit and the output cap are enforced
by the host, which kills the whole process tree.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIERS = ("bubblewrap", "landlock", "trusted_local")
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"
#: Dedicated uids for sandboxes when the host runs as root, one per sandbox, so that
#: process-count limits and signals never reach another sandbox or the host.
UID_BASE = 1_200_000
UID_SPAN = 50_000
OUTPUT_MARKER = "\n[... output truncated: {omitted} bytes omitted ...]\n"


class IsolationUnavailable(RuntimeError):
    """No isolation tier works here and the host did not opt in to ``trusted_local``."""


@dataclass(frozen=True)
class Limits:
    """Limits the host enforces on one sandboxed process tree. ``None`` means no limit
    for that resource (the wall clock always has one)."""

    wall_seconds: float = 30.0
    cpu_seconds: float | None = None
    #: ``RLIMIT_AS``: the address space.
    memory_bytes: int | None = None
    #: ``RLIMIT_DATA``: private writable memory. For runtimes that reserve far more address
    #: space than they use (V8), where ``memory_bytes`` would stop them from starting.
    data_bytes: int | None = None
    processes: int | None = 64
    file_bytes: int | None = 64 * 1024 * 1024
    open_files: int | None = 256
    output_bytes: int = 1_000_000
    #: Output kept beyond ``output_bytes`` for the artifact; past it the process is killed.
    artifact_bytes: int = 8_000_000

    def prlimit_args(self) -> list[str]:
        args = []
        if self.cpu_seconds is not None:
            cpu = max(1, int(self.cpu_seconds + 0.999))
            args.append(f"--cpu={cpu}:{cpu + 1}")  # SIGXCPU at the soft, SIGKILL at the hard
        if self.memory_bytes is not None:
            args.append(f"--as={self.memory_bytes}")
        if self.data_bytes is not None:
            args.append(f"--data={self.data_bytes}")
        if self.processes is not None:
            args.append(f"--nproc={self.processes}")
        if self.file_bytes is not None:
            args.append(f"--fsize={self.file_bytes}")
        if self.open_files is not None:
            args.append(f"--nofile={self.open_files}")
        return args


@dataclass(frozen=True)
class SandboxSpec:
    """What to run and how it may behave."""

    argv: Sequence[str]
    workdir: Path
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    #: Extra host paths made visible read-only at the same place (an interpreter's tree).
    #: One inside a ``rw_paths`` tree stays read-only with bubblewrap; Landlock cannot take
    #: rights away beneath a tree it allows, so that tier refuses such a spec.
    ro_paths: Sequence[str] = ()
    #: Where the program starts: ``/work`` (the workdir, wherever the tier puts it) or a
    #: directory under it, or a directory in one of ``rw_paths``.
    cwd: str = "/work"
    #: Host directories (existing, resolved) usable read-write at their own paths, besides
    #: the workdir: a project the program works on.
    rw_paths: Sequence[str] = ()


def _base_env(spec: SandboxSpec) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "LANG": "C.UTF-8",
           "TMPDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    env.update(spec.env)
    return env


@functools.lru_cache(maxsize=1)
def _is_root() -> bool:
    return os.geteuid() == 0


_recent_uids: set[int] = set()


def allocate_uid() -> int:
    """A dedicated uid for one sandbox (used when running as root): random in the sandbox
    range, never one a live process (of any host process's sandboxes) is running as, nor
    one this process handed out recently."""
    import random

    busy = _live_uids()
    for _ in range(1000):
        uid = UID_BASE + random.randrange(UID_SPAN)
        if uid not in busy and uid not in _recent_uids:
            if len(_recent_uids) > UID_SPAN // 2:
                _recent_uids.clear()
            _recent_uids.add(uid)
            return uid
    raise RuntimeError("no free sandbox uid")


def _live_uids() -> set[int]:
    uids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uids.add(os.stat(f"/proc/{entry}").st_uid)
            except OSError:
                pass
    return uids


def _pids_of(uid: int) -> list[int]:
    """Live (not zombie) processes running as ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/stat") as handle:
                    state = handle.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):  # a zombie is dead already, only unreaped
                pids.append(int(entry))
    return pids


def kill_uid(uid: int | None) -> None:
    """SIGKILL every process running as a dedicated sandbox uid (catches children that left
    the process group or outlived their parent). Repeats until none is left, so a fork bomb
    racing the kill loses."""
    if uid is None or not _is_root() or not UID_BASE <= uid < UID_BASE + UID_SPAN:
        return
    for _ in range(50):
        pids = _pids_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.002)


def sandbox_root() -> Path:
    """Where workspaces live by default: a directory sandbox uids may traverse (0711) but
    not list, under the host's temporary directory."""
    import tempfile

    root = Path(os.environ.get("AGENTLY_SANDBOX_ROOT") or
                Path(tempfile.gettempdir()) / f"agently-sandboxes-{os.geteuid()}")
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(root, 0o711)
    return root


def new_workdir(uid: int | None = None) -> Path:
    """A fresh, private workspace under :func:`sandbox_root`, owned by ``uid``."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ws-", dir=sandbox_root()))
    prepare_workdir(path, uid)
    return path


def prepare_workdir(path: Path, uid: int | None) -> None:
    """Create the workspace (mode 0700) and hand it to the sandbox's uid. Every directory
    above it must be traversable by that uid (see :func:`sandbox_root`)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if uid is not None and _is_root():
        os.chown(path, uid, uid)


class Isolation:
    """Chooses a tier and builds sandboxed command lines.

    ``tier`` forces one (``"bubblewrap"``, ``"landlock"``, ``"trusted_local"``); by default
    the strongest that works is used. ``trusted_local`` is never used unless
    ``allow_trusted_local=True``.
    """

    def __init__(self, tier: str | None = None, *, allow_trusted_local: bool = False) -> None:
        if tier is not None and tier not in TIERS:
            raise ValueError(f"unknown isolation tier {tier!r}; tiers: {', '.join(TIERS)}")
        if tier == "trusted_local" and not allow_trusted_local:
            raise IsolationUnavailable(
                "the trusted_local tier runs code without isolation; pass "
                "allow_trusted_local=True to opt in explicitly")
        self.allow_trusted_local = allow_trusted_local
        self.tier = tier or self._best()

    def _best(self) -> str:
        status = tier_status()
        for tier in ("bubblewrap", "landlock"):
            if status[tier]["ok"]:
                return tier
        if self.allow_trusted_local:
            return "trusted_local"
        problems = "; ".join(f"{t}: {status[t]['detail']}" for t in ("bubblewrap", "landlock"))
        raise IsolationUnavailable(
            "no isolation tier works on this machine, so nothing will run "
            f"({problems}). Fix: install bubblewrap (apt-get install bubblewrap) and allow "
            "unprivileged user namespaces, or run on a kernel with Landlock; or opt in to "
            "running code without isolation with allow_trusted_local=True")

    def command(self, spec: SandboxSpec, *, uid: int | None = None) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run ``spec`` in this tier."""
        env = _base_env(spec)
        # absolute: the child is started with its own environment, whose PATH is the
        # sandbox's (a program allowlist may leave prlimit out)
        limits = [PRLIMIT, *spec.limits.prlimit_args(), "--"]
        # the workdir is /work inside bubblewrap, at its host path in the other tiers
        cwd = spec.cwd
        if cwd == "/work" or cwd.startswith("/work/"):
            cwd = str(spec.workdir) + cwd[len("/work"):]
        if self.tier == "trusted_local":
            start = [] if cwd == str(spec.workdir) else ["/usr/bin/env", "-C", cwd, "--"]
            return [*limits, *start, *spec.argv], {**env, "HOME": str(spec.workdir)}
        if self.tier == "landlock":
            for path in spec.ro_paths:
                if any(path == tree or path.startswith(tree.rstrip("/") + "/")
                       for tree in spec.rw_paths):
                    raise ValueError(f"read-only path {path} lies in a read-write tree; "
                                     "Landlock cannot keep it read-only, so this does not run")
            launcher = [sys.executable, "-I", "-S", str(Path(__file__).with_name("_landlock_exec.py")),
                        "--workdir", str(spec.workdir), "--cwd", cwd,
                        "--network", "1" if spec.network else "0",
                        *(["--uid", str(uid)] if uid is not None and _is_root() else []),
                        *itertools.chain.from_iterable(("--ro", p) for p in spec.ro_paths),
                        *itertools.chain.from_iterable(("--rw", p) for p in spec.rw_paths), "--"]
            return [*limits, *launcher, *spec.argv], {**env, "HOME": str(spec.workdir)}
        return [*limits, *self._drop(uid), *self._bwrap(spec, env)], {}

    @staticmethod
    def _drop(uid: int | None) -> list[str]:
        if not _is_root():
            return []
        uid = allocate_uid() if uid is None else uid
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]

    @staticmethod
    def _bwrap(spec: SandboxSpec, env: Mapping[str, str]) -> list[str]:
        args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
                "--ro-bind", "/usr", "/usr",
                "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                "--bind", str(spec.workdir), "/work", "--chdir", spec.cwd,
                "--hostname", "sandbox", "--clearenv"]
        for path in spec.rw_paths:
            args += ["--bind", path, path]
        for path in spec.ro_paths:  # after the read-write trees: read-only inside them too
            args += ["--ro-bind", path, path]
        if spec.network:
            args += ["--share-net"]  # keeps the host's network namespace, nothing else
            for path in ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates"):
                if os.path.exists(path):
                    args += ["--ro-bind", path, path]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return [*args, "--", *spec.argv]


# -- probing the tiers ------------------------------------------------------------------
def _probe_bubblewrap() -> tuple[bool, str]:
    import subprocess

    if shutil.which("bwrap") is None:
        return False, "bwrap is not installed"
    if shutil.which("prlimit") is None:
        return False, "prlimit (util-linux) is not installed"
    isolation = Isolation.__new__(Isolation)
    isolation.tier = "bubblewrap"
    isolation.allow_trusted_local = False
    probe = None
    try:
        uid = allocate_uid() if _is_root() else None
        probe = new_workdir(uid)
        argv, env = isolation.command(SandboxSpec(["/bin/sh", "-c", "id -u"], probe), uid=uid)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20)
    except Exception as exc:
        return False, f"probe failed: {exc}"
    finally:
        if probe is not None:
            shutil.rmtree(probe, ignore_errors=True)
    if done.returncode != 0:
        return False, f"bwrap does not start here: {done.stderr.strip()[:200]}"
    if done.stdout.strip() == "0":
        return False, "bwrap ran the sandbox as uid 0"
    return True, f"bubblewrap works (sandbox uid {done.stdout.strip()})"


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when Landlock is unavailable)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        version = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(..., VERSION)
    except Exception:
        return 0
    return max(0, int(version))


def _probe_landlock() -> tuple[bool, str]:
    abi = landlock_abi()
    if abi < 4:
        return False, f"Landlock ABI {abi} (needs 4 or newer for network rules)"
    from . import _landlock_exec

    if not _landlock_exec.seccomp_available():
        return False, "libseccomp is not available"
    return True, f"Landlock ABI {abi} with seccomp"


@functools.lru_cache(maxsize=1)
def tier_status() -> dict[str, dict[str, Any]]:
    """Which tiers work on this machine (probed once per process)."""
    bubble_ok, bubble_detail = _probe_bubblewrap()
    land_ok, land_detail = _probe_landlock()
    return {
        "bubblewrap": {"ok": bubble_ok, "detail": bubble_detail},
        "landlock": {"ok": land_ok, "detail": land_detail},
        "trusted_local": {"ok": True, "detail": "no isolation; only with an explicit opt-in"},
    }


# -- running ------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a one-shot sandboxed run produced."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    output_truncated: bool = False
    killed: str | None = None
    full_stdout: str = ""
    full_stderr: str = ""


def kill_tree(process: Any, uid: int | None = None) -> None:
    """SIGKILL the sandbox's first process; bubblewrap's pid namespace takes every process
    inside with it. For the other tiers the process group goes, and every process of the
    sandbox's dedicated ``uid`` (those that left the group or outlived their parent)."""
    pid = getattr(process, "pid", None)
    if pid is not None and getattr(process, "returncode", None) is None:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    kill_uid(uid)


async def run(isolation: Isolation, spec: SandboxSpec, *, stdin: bytes | None = None,
              uid: int | None = None) -> RunResult:
    """Run ``spec`` once to completion, within its limits; never raises for what the child
    does (only for failing to start it)."""
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream  # noqa: F401 - warm import

    if uid is None and _is_root():
        uid = allocate_uid()
    argv, env = isolation.command(spec, uid=uid)
    # bubblewrap's pid namespace already takes every process with its first one; the other
    # tiers need the sweep over the sandbox's uid
    sweep = None if isolation.tier == "bubblewrap" else uid
    limits = spec.limits
    started = time.monotonic()
    import subprocess

    process = await anyio.open_process(argv, env=env, start_new_session=True,  # never the
                                       stdin=subprocess.DEVNULL if stdin is None  # host's stdin
                                       else subprocess.PIPE)
    out, err = bytearray(), bytearray()
    state = {"truncated": False, "killed": None}

    async def pump(stream: Any, sink: bytearray) -> None:
        if stream is None:
            return
        async for chunk in stream:
            room = limits.artifact_bytes - len(out) - len(err)
            if room <= 0:
                state["killed"] = "output limit"
                kill_tree(process, sweep)
                return
            sink += chunk[:room]

    timed_out = False
    try:
        with anyio.move_on_after(limits.wall_seconds) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(pump, process.stdout, out)
                group.start_soon(pump, process.stderr, err)
                if stdin is not None and process.stdin is not None:
                    await process.stdin.send(stdin)
                    await process.stdin.aclose()
                await process.wait()
                kill_uid(sweep)  # nothing of the sandbox outlives its first process
        if scope.cancelled_caught:
            timed_out = True
            state["killed"] = "wall timeout"
    finally:
        kill_tree(process, sweep)
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
    full_out = out.decode(errors="replace")
    full_err = err.decode(errors="replace")
    stdout, t1 = cap_text(full_out, limits.output_bytes)
    stderr, t2 = cap_text(full_err, limits.output_bytes)
    return RunResult(
        exit_code=process.returncode, stdout=stdout, stderr=stderr,
        duration_s=time.monotonic() - started, timed_out=timed_out,
        output_truncated=t1 or t2 or state["killed"] == "output limit", killed=state["killed"],
        full_stdout=full_out, full_stderr=full_err,
    )


def cap_text(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` UTF-8 bytes with a marker saying how much was omitted, and
    whether it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    kept = data[:limit].decode(errors="ignore")
    return kept + OUTPUT_MARKER.format(omitted=len(data) - len(kept.encode())), True
