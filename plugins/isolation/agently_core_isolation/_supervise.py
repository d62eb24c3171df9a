"""The supervisor of one sandbox: ``python -I -S _supervise.py [options] -- argv...`` (the
host starts it as ``python -I -S -c BOOT [options] -- argv...``, where :data:`BOOT` imports
it, so that its compiled form is used instead of compiling the script at every start).

It runs on the host side of every sandboxed process tree (a one-shot run or a warm worker),
as the host's user, and:

1. becomes a *child subreaper* (whatever the sandbox orphans is handed to it, never to the
   host's PID 1) and ends itself when the host goes (``PR_SET_PDEATHSIG``);
2. with ``--noexec`` paths, ``--proc`` or ``--stage``, moves into a private mount namespace
   (as root: ``unshare(CLONE_NEWNS)``; otherwise with a user namespace that maps only the
   host's own uid) where each ``--noexec`` path is bound onto itself ``noexec,nosuid,nodev``
   (recursively), so nothing written there or read from there can be executed or mapped as
   code; with ``--proc``, ``/proc`` is a fresh procfs that shows only the sandbox uid's
   processes; with ``--stage``, the view of an exec allowlist is built there for bubblewrap
   (:func:`stage_view`);
3. forks the sandbox: the child leaves the supervisor's process group, gets its resource
   limits (``--rlimit``), drops to ``--uid`` (as root: no groups, no capabilities, an empty
   bounding set, no new privileges), and, in the ``landlock`` tier, confines itself with
   Landlock and seccomp (:mod:`_landlock_exec`) before it ``exec``\\ s the program;
4. waits; when the sandbox's first process exits, the ``--deadline-at`` instant passes
   (``CLOCK_MONOTONIC``, shared with the host), or the host
   asks it to stop (``SIGTERM``), it kills what is left (every process of ``--uid``, or
   without one the child's process group and the orphans handed to it) and reaps every
   descendant before it exits with the sandbox's status (a signal death is passed on as
   the same signal; the deadline writes :data:`DEADLINE_MARKER` to stderr and exits 137).

Any failure before the program runs aborts with exit code 126 and a line starting with
``agently-core sandbox:``: nothing runs half-restricted. Standard library only.
"""

from __future__ import annotations

import _signal as signal  # the C module: ``signal`` would import enum, slow at start-up
import ctypes
import os
import resource
import sys
import time

PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 1, 38, 24
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MNT_DETACH = 2
SYS_MOUNT_SETATTR = 442
DEADLINE_MARKER = "agently-core: the wall-clock limit was reached; every process was killed"
#: ``python -c`` code that runs the supervisor from its directory (``-I`` leaves it out).
BOOT = ("import sys; sys.path.insert(0, {directory!r}); import _supervise; "
        "_supervise.entry()")
FAILURE = "agently-core sandbox:"
#: What the supervisor waits for: a child's end, the host's stop request, the deadline.
WATCHED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGALRM)
RLIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "data": resource.RLIMIT_DATA,
           "nproc": resource.RLIMIT_NPROC, "fsize": resource.RLIMIT_FSIZE,
           "nofile": resource.RLIMIT_NOFILE}


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(f"{what}: {os.strerror(ctypes.get_errno())}")


# -- the options ---------------------------------------------------------------------------
class Options:
    """The parsed command line."""

    def __init__(self, argv: list[str]) -> None:
        self.tier = "bubblewrap"
        self.uid: int | None = None
        self.deadline_at = 0.0
        self.rlimits: list[tuple[int, int, int]] = []
        self.noexec: list[str] = []
        self.proc = False
        self.cwd = ""
        #: How many of the program's arguments (after its name) are bubblewrap's options.
        self.bwrap_options = 0
        # the staged view (bubblewrap with an exec allowlist)
        self.stage = ""
        self.stage_code: list[str] = []
        self.stage_data: list[str] = []
        self.stage_links: list[tuple[str, str]] = []
        self.stage_points: list[str] = []
        self.stage_tops: list[str] = []
        # the landlock tier's confinement
        self.workdir = self.tmpdir = ""
        self.network = False
        self.exec_only = False
        self.read: list[str] = []
        self.execute: list[str] = []
        self.write: list[str] = []
        self.program: list[str] = []
        args = iter(argv)
        for arg in args:
            if arg == "--":
                self.program = list(args)
                break
            value = next(args, None)
            if value is None:
                raise OSError(f"option {arg} needs a value")
            if arg == "--tier":
                self.tier = value
            elif arg == "--uid":
                self.uid = int(value)
            elif arg == "--deadline-at":  # an instant of CLOCK_MONOTONIC
                self.deadline_at = float(value)
            elif arg == "--rlimit":
                name, _, limit = value.partition("=")
                soft, _, hard = limit.partition(":")
                self.rlimits.append((RLIMITS[name], int(soft), int(hard or soft)))
            elif arg == "--noexec":
                self.noexec.append(value)
            elif arg == "--proc":
                self.proc = value == "1"
            elif arg == "--cwd":
                self.cwd = value
            elif arg == "--bwrap-options":
                self.bwrap_options = int(value)
            elif arg == "--stage":
                self.stage = value
            elif arg == "--stage-code":
                self.stage_code.append(value)
            elif arg == "--stage-data":
                self.stage_data.append(value)
            elif arg == "--stage-link":  # LINK=TARGET (a link path never holds "=")
                link, _, target = value.partition("=")
                self.stage_links.append((link, target))
            elif arg == "--stage-point":
                self.stage_points.append(value)
            elif arg == "--stage-top":
                self.stage_tops.append(value)
            elif arg == "--workdir":
                self.workdir = value
            elif arg == "--tmpdir":
                self.tmpdir = value
            elif arg == "--network":
                self.network = value == "1"
            elif arg == "--exec-only":
                self.exec_only = value == "1"
            elif arg == "--read":
                self.read.append(value)
            elif arg == "--exec":
                self.execute.append(value)
            elif arg == "--write":
                self.write.append(value)
            else:
                raise OSError(f"unknown option {arg}")
        if not self.program or self.tier not in ("bubblewrap", "landlock", "trusted_local"):
            raise OSError("usage: _supervise.py [--tier T] [--uid N] [--deadline-at T] "
                          "[--rlimit NAME=SOFT[:HARD]]... [--noexec PATH]... [--proc 0|1] "
                          "[--cwd DIR] [--stage DIR --stage-code P --stage-data P "
                          "--stage-link L=T --stage-point P --stage-top NAME] [landlock: --workdir DIR "
                          "--tmpdir DIR --network 0|1 --exec-only 0|1 --read P --exec P "
                          "--write P] -- argv")
        if self.tier == "landlock" and not self.workdir:
            raise OSError("the landlock tier needs --workdir")


# -- the private mount namespace -----------------------------------------------------------
def private_mounts(libc: ctypes.CDLL, noexec: list[str], proc: bool) -> None:
    """Move into a private mount namespace where every ``noexec`` path is bound onto itself
    ``noexec,nosuid,nodev`` (its submounts too) and, with ``proc``, ``/proc`` shows only the
    processes of the caller's uid."""
    if os.geteuid() == 0:
        _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:  # a user namespace mapping only our own ids, owning the new mount namespace
        uid, gid = os.geteuid(), os.getegid()
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS),
               "unshare(CLONE_NEWUSER|CLONE_NEWNS) (unprivileged user namespaces are needed "
               "to mount the workspace noexec without root)")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    attr = MountAttr(MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
    libc.syscall.restype = ctypes.c_long
    for path in noexec:
        raw = os.fsencode(path)
        _check(libc.mount(raw, raw, None, MS_BIND | MS_REC, None), f"binding {path}")
        _check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, raw, AT_RECURSIVE, ctypes.byref(attr),
                            ctypes.sizeof(attr)), f"mounting {path} noexec")
    if proc:
        _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          b"hidepid=invisible,subset=pid"), "mounting a private /proc")


def new_stage(parent: str) -> str:
    """A new, empty directory in ``parent`` for the view, named after this process (so
    that one left by a supervisor that was killed can be told from a live one's)."""
    with open("/proc/self/stat") as handle:
        started = handle.read().rsplit(")", 1)[1].split()[19]
    for _ in range(100):
        path = os.path.join(parent, f".view-{os.getpid()}-{started}-{os.urandom(4).hex()}")
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            continue
        return path
    raise OSError(f"cannot make a directory for the view in {parent}")


def drop_stage(libc: ctypes.CDLL, stage: str) -> None:
    """Unmount (in the private namespace) and remove the view's directory."""
    libc.umount2(os.fsencode(stage), MNT_DETACH)
    try:
        os.rmdir(stage)
    except OSError:
        pass


def stage_view(libc: ctypes.CDLL, options: Options) -> None:
    """Build the view an exec allowlist gives bubblewrap, in the private mount namespace:
    a tmpfs at ``options.stage`` (a new directory in ``--stage``, which the supervisor
    removes when it is done: :func:`new_stage`) holding, at their own paths, the code
    files (bound as they are), the data files and trees (bound ``noexec``), the symbolic
    links on the way, and empty mount points for what bubblewrap binds inside it; then all
    of it read-only. bubblewrap binds its few top directories: one bind per file of its
    own would cost it a scan of the whole mount table each, which grows with every bind."""
    stage = options.stage
    _check(libc.mount(b"tmpfs", os.fsencode(stage), b"tmpfs", MS_NOSUID | MS_NODEV,
                      b"mode=0755,size=1m"), f"mounting the view at {stage}")
    made = {stage}

    def folder(path: str) -> None:
        if path not in made:
            folder(os.path.dirname(path))
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass
            made.add(path)

    def place(path: str) -> bytes:
        target = stage + path
        folder(os.path.dirname(target))
        if os.path.isdir(path):
            folder(target)
        elif not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        return os.fsencode(target)

    for link, target in options.stage_links:
        folder(os.path.dirname(stage + link))
        os.symlink(target, stage + link)
    noexec = MountAttr(MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
    for path, data in [*((p, False) for p in options.stage_code),
                       *((p, True) for p in options.stage_data)]:
        raw = os.fsencode(path)
        dest = place(path)
        _check(libc.mount(raw, dest, None, MS_BIND | MS_REC, None), f"binding {path} into the view")
        if data:
            _check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, dest, AT_RECURSIVE,
                                ctypes.byref(noexec), ctypes.sizeof(noexec)),
                   f"mounting {path} noexec in the view")
    for path in options.stage_points:
        place(path)
    frozen = MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
    _check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(stage), AT_RECURSIVE,
                        ctypes.byref(frozen), ctypes.sizeof(frozen)), "making the view read-only")


# -- the sandbox's first process -------------------------------------------------------------
def drop_privileges(libc: ctypes.CDLL, uid: int) -> None:
    """Become ``uid`` (as root): no groups, an empty capability bounding set, no capability
    left, no new privileges."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last = int(handle.read())
    except OSError:
        last = 63
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, self
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    _check(libc.syscall(126, header, data), "capset")  # SYS_capset
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def start_program(options: Options, libc: ctypes.CDLL) -> None:
    """In the forked child: limits, identity, confinement, then ``exec``. Never returns."""
    os.setpgid(0, 0)
    # Python ignores these at start-up, and an ignored signal stays ignored across exec
    for number in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # the supervisor's blocked signals
    env = dict(os.environ)
    if options.tier == "landlock":
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, here)  # -I leaves the script's own directory out
        import _landlock_exec as landlock  # only the landlock tier needs it

        seccomp = landlock.load_seccomp()  # before the uid drop (see there)
        if options.uid is not None:
            drop_privileges(libc, options.uid)
        tmpdir = options.tmpdir or os.path.join(options.workdir, ".tmp")
        os.makedirs(tmpdir, exist_ok=True)
        landlock.confine(libc, seccomp, workdir=options.workdir, tmpdir=tmpdir,
                         write=options.write, read=options.read, execute=options.execute,
                         exec_only=options.exec_only, network=options.network,
                         proc=options.proc)
        env["TMPDIR"] = tmpdir
    else:
        if options.uid is not None:
            drop_privileges(libc, options.uid)
        if options.tmpdir:
            os.makedirs(options.tmpdir, exist_ok=True)
    if options.cwd:
        os.chdir(options.cwd)
    for number, soft, hard in options.rlimits:
        resource.setrlimit(number, (soft, hard))
    program = options.program
    if options.bwrap_options:
        view = [arg for top in options.stage_tops
                for arg in ("--ro-bind", f"{options.stage}/{top}", f"/{top}")]
        program = bwrap_through_fd(program, options.bwrap_options, view)
    # the program dies with the supervisor (set last: a change of identity clears it)
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    os.execvpe(program[0], program, env)


def bwrap_through_fd(program: list[str], count: int, first: list[str]) -> list[str]:
    """bubblewrap's first ``count`` options, after the ``first`` ones (the view's binds),
    moved into a file it reads (``--args FD``) and closes: its command line, which the
    sandbox sees as ``/proc/1/cmdline``, shows neither the view nor the environment."""
    fd = os.memfd_create("bwrap-args", 0)
    data = b"".join(os.fsencode(arg) + b"\0" for arg in [*first, *program[1:1 + count]])
    while data:
        data = data[os.write(fd, data):]
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    return [program[0], "--args", str(fd), *program[1 + count:]]


# -- cleaning up ---------------------------------------------------------------------------
def _orphans() -> list[int]:
    """Live processes whose parent is this supervisor."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] not in ("Z", "X"):
                found.append(int(entry))
    return found


def _reaped_all() -> bool:
    """Reap every child that has exited; True when no child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def kill_all_as(uid: int) -> None:
    """SIGKILL every process of ``uid`` at once: a helper that becomes ``uid`` calls
    ``kill(-1)`` (which spares only itself), instead of a search through /proc."""
    helper = os.fork()
    if helper == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(helper, 0)


def finish(uid: int | None, group: int) -> None:
    """Kill what is left of the sandbox and reap every descendant (bounded in time). Every
    descendant that outlives its parent becomes this subreaper's child, so once no child
    is left, nothing of the sandbox is."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if _reaped_all():  # no child: no descendant is left, dead or alive
        return
    if uid is not None:
        kill_all_as(uid)
    end = time.monotonic() + 5.0
    rounds = 0
    while not _reaped_all() and time.monotonic() < end:
        signal.sigtimedwait([signal.SIGCHLD], 0.005)  # a child's end, or a short pause
        rounds += 1
        if uid is not None:  # a fork that raced the kill, or a process still on its way
            kill_all_as(uid)
        elif rounds % 4 == 0:  # something left the process group: find it by its parent
            for pid in _orphans():
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _exit_like(status: int) -> None:
    """Exit with the sandbox's status: its exit code, or death by the same signal."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            signal.signal(number, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
            os.kill(os.getpid(), number)
        except (OSError, ValueError):
            pass
        os._exit(128 + number)
    os._exit(os.waitstatus_to_exitcode(status))


def wait_for(child: int, deadline_at: float) -> tuple[int | None, str | None]:
    """Wait for the sandbox's first process, reaping whatever else ends meanwhile: its status,
    or ``None`` and why the wait stopped (``"deadline"`` at the ``deadline_at`` instant, or
    ``"stop"``: the host asked)."""
    if deadline_at > 0:
        signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline_at - time.monotonic()))
    try:
        while True:
            while True:
                try:
                    pid, code = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return None, "stop"  # cannot happen: the child is reaped only here
                if pid == 0:
                    break
                if pid == child:
                    return code, None
            signo = signal.sigwaitinfo(WATCHED).si_signo
            if signo == signal.SIGTERM:
                return None, "stop"
            if signo == signal.SIGALRM:
                return None, "deadline"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv: list[str]) -> None:
    options = Options(argv)
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getppid()
    # from here on, a stop request or the deadline waits until the supervisor looks: it can
    # never end the supervisor before the sandbox it started is killed and reaped
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    _check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # the host went before we could notice
        os._exit(1)
    if options.noexec or options.proc or options.stage:
        private_mounts(libc, options.noexec, options.proc)
    if options.stage:
        options.stage = new_stage(options.stage)
        try:
            stage_view(libc, options)
        except BaseException:
            drop_stage(libc, options.stage)
            raise
    child = os.fork()
    if child == 0:
        try:
            start_program(options, libc)
        except BaseException as exc:  # fail closed: nothing runs half-restricted
            try:
                os.write(2, f"{FAILURE} {exc}\n".encode(errors="replace"))
            finally:
                os._exit(126)
    # the supervisor keeps only its stderr: the host sees the end of the sandbox's pipes and
    # sockets when the sandbox ends, not when the supervisor does
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    status, stopped = wait_for(child, options.deadline_at)
    finish(options.uid, child)
    if options.stage:
        drop_stage(libc, options.stage)
    if stopped == "deadline":
        os.write(2, f"\n{DEADLINE_MARKER}\n".encode())
        os._exit(137)
    if status is None:  # the host stopped it: killed, like its sandbox
        os.kill(os.getpid(), signal.SIGKILL)
    _exit_like(status)


def entry() -> None:
    """The command line's entry point; never returns."""
    try:
        main(sys.argv[1:])
    except BaseException as exc:
        try:
            os.write(2, f"{FAILURE} {exc}\n".encode(errors="replace"))
        finally:
            os._exit(126)
    os._exit(126)


if __name__ == "__main__":
    entry()
