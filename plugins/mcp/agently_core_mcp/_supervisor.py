"""The supervisor of one stdio MCP server: ``python -I -S _supervisor.py FD -- argv...``.

It makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), starts ``argv`` (the
server) in a process group of its own with the environment it was given, writes
``P <pid>`` (or ``E <errno>`` when the program cannot be started) to file descriptor
``FD`` and closes it. The server's stdin, stdout and stderr are the supervisor's own: no
byte passes through it.

Every process the server leaves behind is handed to this supervisor when its parent exits,
also one that called ``setsid`` or forked twice to become a daemon. When the server exits
the supervisor kills every descendant it has left (SIGKILL), reaps them all and exits with
the server's status (the same signal when the server was killed by one). SIGTERM, SIGINT
and SIGHUP sent to the supervisor go to the server's process group. If the host that
started it goes away, the supervisor asks the server to stop (SIGTERM), then kills it.

Standard library only; Linux (elsewhere it just runs the server). Not a sandbox: a server
that wants to escape can (it runs as the user); this is about servers that leave daemons
behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
#: How long the supervisor keeps killing and reaping what is left before it gives up.
CLEANUP_BOUND = 5.0
#: Grace between SIGTERM and SIGKILL when the host has gone away.
ORPHAN_GRACE = 2.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_WAITED = {signal.SIGCHLD, *_FORWARDED}


def _environment() -> dict[str, str]:
    """The environment the supervisor was started with, before the interpreter's own
    changes (Python coerces a C locale by setting LC_CTYPE): the server gets it as given."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return dict(os.environ)
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), ()):
            found.append(child)
            queue.append(child)
    return found


def _reap() -> dict[int, int]:
    """Reap every child that has exited: ``{pid: status}``."""
    reaped = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped[pid] = status


def _finish(group: int) -> None:
    """Kill and reap everything left below this process (bounded in time)."""
    me = os.getpid()
    with _suppressed():
        os.killpg(group, signal.SIGKILL)
    end = time.monotonic() + CLEANUP_BOUND
    while True:
        left = _descendants(me)
        for pid in left:
            with _suppressed():
                os.kill(pid, signal.SIGKILL)
        _reap()
        if not left or time.monotonic() > end:
            break
        time.sleep(0.002)
    _reap()


class _suppressed:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, traceback: object) -> bool:
        return isinstance(value, (ProcessLookupError, PermissionError))


def _exit_like(status: int) -> None:
    """Exit with the server's wait status: its exit code, or its fatal signal."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {number})
            if number not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        except (OSError, ValueError):
            pass
        os._exit(128 + number)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: _supervisor.py FD -- argv...")
    status_fd, program = int(argv[0]), argv[2:]
    os.set_inheritable(status_fd, False)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        contained = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        contained = False
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    try:
        server = os.posix_spawnp(
            program[0], program, _environment(), setpgroup=0, setsigmask=(),
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *_WAITED))
    except OSError as exc:
        os.write(status_fd, f"E {exc.errno}\n".encode())
        os._exit(127)
    os.write(status_fd, f"P {server}{'' if contained else ' uncontained'}\n".encode())
    os.close(status_fd)
    # the server's stdin and stdout are its own: holding them here would delay its EOFs
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    host = os.getppid()
    status: int | None = None
    orphaned_at: float | None = None
    while status is None:
        info = signal.sigtimedwait(_WAITED, 1.0)
        if info is not None and info.si_signo != signal.SIGCHLD:
            with _suppressed():
                os.killpg(server, info.si_signo)
        status = _reap().get(server)
        if status is None and os.getppid() != host:  # the host is gone
            if orphaned_at is None:
                orphaned_at = time.monotonic()
                with _suppressed():
                    os.killpg(server, signal.SIGTERM)
            elif time.monotonic() - orphaned_at > ORPHAN_GRACE:
                with _suppressed():
                    os.killpg(server, signal.SIGKILL)
    _finish(server)
    _exit_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
