"""The host-side reaper of one ``run_bash`` call: ``python -I -S _reaper.py UID DEADLINE --
argv...`` (UID ``-`` when the host is not root).

It becomes a child subreaper, starts ``argv`` (the sandbox: ``setpriv ... bwrap ...`` or the
Landlock launcher) in its own process group and waits for it. When the sandbox's first
process exits, or ``DEADLINE`` seconds pass, it kills whatever is left of the call (every
process of the sandbox's dedicated uid, or, without one, its process group and the orphans
handed to it) and reaps every descendant before it exits with the sandbox's status.

Why: processes orphaned by a call (a background job, bubblewrap's own helper) are handed
to the nearest subreaper. Without one they go to the host's PID 1, and where PID 1 reaps
lazily (some container and micro-VM inits do) their zombies keep counting against the
sandbox uid's process limit for a while: a scope's next call could not fork. With this
reaper nothing of a call outlives it, dead or alive. On the deadline it writes
:data:`DEADLINE_MARKER` to stderr and exits 137. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
DEADLINE_MARKER = "agently-core: the wall-clock limit was reached; every process was killed"


class _Deadline(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Deadline


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _orphans() -> list[int]:
    """Live processes whose parent is this reaper."""
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


def _finish(uid: int | None, group: int) -> None:
    """Kill what is left of the call and reap every descendant (bounded in time)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    end = time.monotonic() + 5.0
    while True:
        for pid in _pids_of(uid) if uid is not None else _orphans():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if _reaped_all() or time.monotonic() > end:
            return
        time.sleep(0.002)


def _reaped_all() -> bool:
    """Reap every child that has exited; True when no child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit("usage: _reaper.py UID|- DEADLINE -- argv...")
    uid = None if argv[0] == "-" else int(argv[0])
    deadline = float(argv[1])
    program = argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    child = os.fork()
    if child == 0:
        try:
            os.setpgid(0, 0)
            # Python ignores these at start-up, and an ignored signal stays ignored across
            # exec: give the sandbox the defaults (a broken pipe or the file-size limit stops
            # a program, as in any shell)
            for number in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(number, signal.SIG_DFL)
            os.execvp(program[0], program)
        finally:
            os._exit(127)
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline))
    status, expired = None, False
    try:
        while status is None:
            pid, code = os.waitpid(-1, 0)
            if pid == child:
                status = code
    except _Deadline:
        expired = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    _finish(uid, child)
    if expired or status is None:
        sys.stderr.write(f"\n{DEADLINE_MARKER}\n")
        sys.stderr.flush()
        return 137
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except BaseException as exc:
        sys.stderr.write(f"agently-core reaper: {exc}\n")
        code = 126
    os._exit(code)
