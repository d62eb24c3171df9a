"""Isolated processes with host-enforced limits.

A :class:`SandboxSpec` says what to run, which host directory is the one writable
workspace (``/work`` inside), whether the network is open, which environment variables
the child gets (nothing is inherited), its :class:`Limits` and, optionally, the only
programs it may execute (``exec_allow``). An :class:`Isolation` turns it into a command
line for the strongest tier available:

``bubblewrap``
    New user, pid, ipc, uts, cgroup and network namespaces; a non-root uid inside (as
    root, the sandbox first drops to a dedicated uid); only ``/usr`` (and the
    interpreter's own tree) mounted, read-only, or with ``exec_allow`` only the allowed
    programs and what they load and read (:mod:`.exec_view`); a read-only root; a private
    ``/tmp`` of bounded size; ``/proc`` of its own pid namespace; a new session; it dies
    with its parent, and killing it kills every process inside.
``landlock``
    Where bubblewrap is missing: a dedicated uid (as root), no new privileges, a Landlock
    ruleset (read-only system paths, read-write workspace and private tmp, TCP denied
    when the network is closed; with ``exec_allow`` only the allowed programs executable
    and only their closure readable) and a seccomp filter denying IP sockets.
``trusted_local``
    No isolation beyond the limits (``exec_allow`` included). Only when the host opts in
    explicitly (``allow_trusted_local=True``); never chosen by default.

Every tier runs under the supervisor (:mod:`._supervise`): a subreaper on the host side
that sets the limits (CPU time, address space, data, processes, file size, open files:
rlimits of the sandbox's first process), drops the uid, confines the Landlock tier, and
kills and reaps whatever the sandbox leaves when it ends, at its deadline or when the
host stops it, so no process or zombie of a sandbox outlives it. With ``exec_allow`` it
also mounts every writable tree (and the system data the programs read) ``noexec`` in a
private mount namespace first, so the dynamic loader cannot map a file written there as
code either. The wall-clock limit and the output cap are enforced by the host.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agently_core.interpreters import helper_python

from ._supervise import BOOT, DEADLINE_MARKER, FAILURE

TIERS = ("bubblewrap", "landlock", "trusted_local")
BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
SUPERVISOR = Path(__file__).with_name("_supervise.py")
SUPERVISOR_BOOT = BOOT.format(directory=str(SUPERVISOR.parent))
#: The interpreter the supervisor runs on (standard library only; on every cold start).
SUPERVISOR_PYTHON = helper_python()
#: What bubblewrap shows of the host's configuration when the network is open.
NETWORK_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/ssl", "/etc/ca-certificates")
#: How long the host waits for a supervisor it asked to stop before it kills it outright.
STOP_GRACE_SECONDS = 5.0
__all__ = ["DEADLINE_MARKER", "FAILURE"]  # re-exported: what a sandbox's stderr may carry
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
    #: Size of the private ``/tmp`` bubblewrap mounts when the spec gives no ``tmpdir``
    #: (a tmpfs: host memory, so always bounded; ``None`` means the default).
    tmp_bytes: int | None = 64 << 20

    def rlimit_args(self) -> list[str]:
        """The supervisor's ``--rlimit`` options for these limits."""
        values = []
        if self.cpu_seconds is not None:
            cpu = max(1, int(self.cpu_seconds + 0.999))
            values.append(f"cpu={cpu}:{cpu + 1}")  # SIGXCPU at the soft, SIGKILL at the hard
        for name, value in (("as", self.memory_bytes), ("data", self.data_bytes),
                            ("nproc", self.processes), ("fsize", self.file_bytes),
                            ("nofile", self.open_files)):
            if value is not None:
                values.append(f"{name}={value}")
        return [arg for value in values for arg in ("--rlimit", value)]


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
    #: A host directory (existing, the sandbox uid's) for temporary files: ``/tmp`` with
    #: bubblewrap, ``TMPDIR`` with Landlock. Default: a private tmpfs of
    #: ``limits.tmp_bytes`` (bubblewrap) or ``workdir/.tmp`` (Landlock, and bubblewrap with
    #: ``exec_allow``).
    tmpdir: Path | None = None
    #: The only programs the sandbox may execute (absolute host paths; ``argv[0]`` must be
    #: one), enforced by the kernel in every real tier: their closure (interpreters,
    #: libraries, system data; :mod:`.exec_view`) is all of the system it sees, and every
    #: writable place is mounted ``noexec``. ``None``: no restriction.
    exec_allow: Sequence[str] | None = None
    #: Seconds (from :func:`run`'s start) after which the supervisor kills the whole
    #: sandbox and reports :data:`DEADLINE_MARKER` on stderr (exit code 137); ``None``: no
    #: deadline of its own.
    deadline: float | None = None


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
        """The command line and environment that run ``spec`` in this tier, under the
        supervisor (``spec.deadline`` counts from now). ``ValueError`` for a spec this tier
        cannot hold (nothing runs)."""
        now = time.monotonic()
        env = _base_env(spec)
        view = None
        if spec.exec_allow is not None and self.tier != "trusted_local":
            from .exec_view import exec_view

            view = exec_view(tuple(spec.exec_allow))
            if not spec.argv or not view.executable(spec.argv[0]):
                raise ValueError(f"{spec.argv[0] if spec.argv else 'an empty argv'} is not among "
                                 "the programs the sandbox may execute (exec_allow)")
        # the workdir is /work inside bubblewrap, at its host path in the other tiers
        cwd = spec.cwd
        if cwd == "/work" or cwd.startswith("/work/"):
            cwd = str(spec.workdir) + cwd[len("/work"):]
        if self.tier != "trusted_local" and _is_root():
            uid = allocate_uid() if uid is None else uid
        else:
            uid = None
        tmpdir = str(spec.tmpdir) if spec.tmpdir is not None else ""
        if not tmpdir and (view is not None or self.tier == "landlock"):
            tmpdir = os.path.join(spec.workdir, ".tmp")
        supervisor = [SUPERVISOR_PYTHON, "-I", "-S", "-c", SUPERVISOR_BOOT, "--tier", self.tier,
                      *spec.limits.rlimit_args()]
        if uid is not None:
            supervisor += ["--uid", str(uid)]
        if spec.deadline:  # an instant of CLOCK_MONOTONIC, which the supervisor shares
            supervisor += ["--deadline-at", f"{now + spec.deadline:.6f}"]
        if tmpdir:
            supervisor += ["--tmpdir", tmpdir]
        if view is not None:
            # bubblewrap's view binds the data noexec itself; Landlock reads it in place
            for path in self._noexec_paths(spec, view, tmpdir,
                                           data=self.tier != "bubblewrap"):
                supervisor += ["--noexec", path]
        if self.tier == "trusted_local":
            return [*supervisor, "--cwd", cwd, "--", *spec.argv], {**env, "HOME": str(spec.workdir)}
        if self.tier == "landlock":
            for path in spec.ro_paths:
                if any(path == tree or path.startswith(tree.rstrip("/") + "/")
                       for tree in spec.rw_paths):
                    raise ValueError(f"read-only path {path} lies in a read-write tree; "
                                     "Landlock cannot keep it read-only, so this does not run")
            supervisor += ["--workdir", str(spec.workdir), "--cwd", cwd,
                           "--network", "1" if spec.network else "0"]
            for path in spec.rw_paths:
                supervisor += ["--write", path]
            readable = list(spec.ro_paths)
            if view is not None:
                # a private /proc showing only the sandbox's own processes (needs root)
                supervisor += ["--exec-only", "1", "--proc", "1" if uid is not None else "0"]
                readable += [*view.libraries, *view.data]
                for path in view.programs:
                    supervisor += ["--exec", path]
            for path in readable:
                supervisor += ["--read", path]
            return [*supervisor, "--", *spec.argv], {**env, "HOME": str(spec.workdir)}
        view_args: list[str] = []
        if view is not None:
            staging, view_args = self._stage(spec, view)
            supervisor += staging
        options = self._bwrap(spec, env, view, tmpdir, view_args)
        return [*supervisor, "--bwrap-options", str(len(options)), "--", BWRAP, *options,
                "--", *spec.argv], {}

    @staticmethod
    def _noexec_paths(spec: SandboxSpec, view: Any, tmpdir: str, *, data: bool) -> list[str]:
        """What the supervisor mounts noexec for an exec allowlist: every writable tree and
        every readable one that is not code the sandbox runs (with ``data``, the view's
        system data too)."""
        code = set(view.programs) | set(view.libraries)
        paths = [str(spec.workdir), *spec.rw_paths, *(view.data if data else ())]
        if tmpdir and not tmpdir.startswith(str(spec.workdir).rstrip("/") + "/"):
            paths.append(tmpdir)
        for path in spec.ro_paths:
            real = os.path.realpath(path)
            if real in code:
                continue  # an allowed program outside the system trees: bound as code
            inside = [p for p in code if p.startswith(real.rstrip("/") + "/")]
            if inside:
                raise ValueError(f"read-only path {path} holds {inside[0]}, which the sandbox "
                                 "runs; it cannot be mounted noexec")
            paths.append(path)
        return paths

    @staticmethod
    def _stage(spec: SandboxSpec, view: Any) -> tuple[list[str], list[str]]:
        """An exec allowlist's view for bubblewrap: the supervisor's options that build it
        (:func:`._supervise.stage_view`) and have bubblewrap bind its top directories, and
        bubblewrap's options for the links at the top (``/bin`` -> ``usr/bin``)."""
        code = set(view.programs) | set(view.libraries)
        top_links = {link: target for link, target in view.links if link.count("/") == 1}
        trees = [d for d in view.data if os.path.isdir(d)]
        tops = {path.split("/")[1] for path in (*code, *view.data)} - {n[1:] for n in top_links}
        staging = ["--stage", str(sandbox_root())]  # the supervisor makes its directory
        for path in sorted(code):
            staging += ["--stage-code", path]
        for path in view.data:
            staging += ["--stage-data", path]
        for link, target in view.links:
            if link not in top_links and not any(link.startswith(t + "/") for t in trees):
                if "=" in link:
                    raise ValueError(f"cannot stage the link {link!r} (its name holds '=')")
                staging += ["--stage-link", f"{link}={target}"]
        # what bubblewrap mounts inside the view needs a mount point there
        inner = [*spec.rw_paths, *(p for p in spec.ro_paths if os.path.realpath(p) not in code)]
        if spec.network:
            inner += [p for p in NETWORK_FILES if os.path.exists(p)]
        for path in inner:
            if path.split("/")[1] in tops:
                staging += ["--stage-point", path]
        args = []
        for link, target in sorted(top_links.items()):
            args += ["--symlink", target, link]
        for top in sorted(tops):  # the supervisor has bubblewrap bind each from its view
            staging += ["--stage-top", top]
        return staging, args

    @staticmethod
    def _bwrap(spec: SandboxSpec, env: Mapping[str, str], view: Any, tmpdir: str,
               view_args: list[str]) -> list[str]:
        """bubblewrap's options for ``spec`` (the supervisor hands them over in a file)."""
        args = ["--unshare-all", "--die-with-parent", "--new-session"]
        if view is None:
            args += ["--ro-bind", "/usr", "/usr",
                     "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                     "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin"]
        else:
            # no nested user namespace (it could mount an executable tmpfs)
            args += ["--unshare-user", "--disable-userns", *view_args]
        args += ["--proc", "/proc", "--dev", "/dev"]
        if view is not None:
            args += ["--remount-ro", "/dev"]  # no writable (and executable) /dev/shm
        if tmpdir:
            args += ["--bind", tmpdir, "/tmp"]
        else:
            args += ["--size", str(spec.limits.tmp_bytes or Limits.tmp_bytes), "--tmpfs", "/tmp"]
        args += ["--bind", str(spec.workdir), "/work", "--chdir", spec.cwd,
                 "--hostname", "sandbox", "--clearenv"]
        for path in spec.rw_paths:
            args += ["--bind", path, path]
        code = set(view.programs) | set(view.libraries) if view is not None else set()
        for path in spec.ro_paths:  # after the read-write trees: read-only inside them too
            if os.path.realpath(path) not in code:  # an allowed program is in the view
                args += ["--ro-bind", path, path]
        if spec.network:
            args += ["--share-net"]  # keeps the host's network namespace, nothing else
            for path in NETWORK_FILES:
                if os.path.exists(path):
                    args += ["--ro-bind", path, path]
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--remount-ro", "/"]  # nothing may be created beside the mounts
        return args


# -- probing the tiers ------------------------------------------------------------------
def _probe_bubblewrap() -> tuple[bool, str]:
    import subprocess

    if shutil.which("bwrap") is None:
        return False, "bwrap is not installed"
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
    """Stop a sandbox: ask its supervisor (the host's child) to kill and reap every process
    of it (``SIGTERM``; it then exits as if killed), and, as a backstop, SIGKILL every
    process of the sandbox's dedicated ``uid``. Wait for the supervisor with
    :func:`wait_stopped`."""
    pid = getattr(process, "pid", None)
    if pid is not None and getattr(process, "returncode", None) is None:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    kill_uid(uid)


async def wait_stopped(process: Any, timeout: float = STOP_GRACE_SECONDS) -> None:
    """Wait for a supervisor asked to stop; past ``timeout`` kill it outright (what it left
    then goes to the host's init) and wait for that."""
    import anyio

    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(timeout):
            await process.wait()
        if process.returncode is None:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            await process.wait()


async def run(isolation: Isolation, spec: SandboxSpec, *, stdin: bytes | None = None,
              uid: int | None = None) -> RunResult:
    """Run ``spec`` once to completion, within its limits; never raises for what the child
    does (only for failing to start it). When it returns, nothing of the sandbox is left:
    its supervisor killed and reaped every process of it."""
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream  # noqa: F401 - warm import

    begun = time.monotonic()  # the spec's deadline counts from here
    if uid is None and _is_root():
        uid = allocate_uid()
    if spec.exec_allow is not None and isolation.tier != "trusted_local":
        from .exec_view import exec_view

        # resolved once per list (it runs the loader per new program): off the event loop
        await anyio.to_thread.run_sync(exec_view, tuple(spec.exec_allow))
    if spec.deadline:  # it counts from the start of the run
        spec = dataclasses.replace(spec, deadline=max(0.001, spec.deadline - (time.monotonic() - begun)))
    argv, env = isolation.command(spec, uid=uid)
    # the supervisor kills and reaps everything; the host's own sweep over the uid is only a
    # backstop for a supervisor that is gone (bubblewrap's pid namespace needs none)
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
        if scope.cancelled_caught:
            timed_out = True
            state["killed"] = "wall timeout"
    finally:
        if process.returncode is None:
            kill_tree(process, sweep)
        await wait_stopped(process)
        with anyio.CancelScope(shield=True):
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
    data = text.encode(errors="surrogatepass")
    if len(data) <= limit:
        return text, False
    kept = data[:limit].decode(errors="ignore")
    return kept + OUTPUT_MARKER.format(omitted=len(data) - len(kept.encode())), True
