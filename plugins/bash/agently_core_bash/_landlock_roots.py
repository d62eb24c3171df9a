"""Landlock + seccomp launcher with several read-write trees, for ``run_bash``.

``python -I -S _landlock_roots.py --lib PATH/_landlock_exec.py --workdir DIR --cwd DIR
[--network 0|1] [--uid N] [--ro PATH]... [--rw PATH]... -- argv...``

The same steps as agently-core-isolation's launcher (``_landlock_exec.py``, loaded from
``--lib`` and reused for everything but the rule set): drop to the sandbox's uid (when
started as root), create the private tmp, restrict the file system with Landlock (system
paths and ``--ro`` read-only; the workdir *and every* ``--rw`` tree read-write; nothing
else), deny TCP unless the network is open, install the seccomp filter, change to
``--cwd`` and exec the program. The isolation's launcher takes one read-write tree and
always starts in it; ``run_bash`` binds each workspace root at its own path and starts in
the call's workdir. Any failure aborts before the program runs. Standard library only.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any


def _load(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("_agently_landlock_exec", path)
    if spec is None or spec.loader is None:
        raise OSError(f"cannot load the isolation launcher from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def restrict(ll: Any, libc: Any, writable: list[str], read_only: list[str], network: bool) -> None:
    """``ll.restrict_filesystem_and_tcp`` with several read-write trees."""
    import ctypes

    abi = ll._abi(libc)
    if abi < 1:
        raise OSError("Landlock is not available")
    fs = ll.FS_ALL_ABI1 | (ll.FS_REFER if abi >= 2 else 0) | (ll.FS_TRUNCATE if abi >= 3 else 0) \
        | (ll.FS_IOCTL_DEV if abi >= 5 else 0)
    if not network and abi < 4:
        raise OSError("this kernel's Landlock cannot deny TCP (ABI < 4)")
    net = (ll.NET_BIND_TCP | ll.NET_CONNECT_TCP) if abi >= 4 and not network else 0
    scoped = (ll.SCOPE_ABSTRACT_UNIX | ll.SCOPE_SIGNAL) if abi >= 6 else 0
    attr = ll.RulesetAttr(fs, net, scoped)
    size = ctypes.sizeof(ll.RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = ll._check(libc.syscall(ll.SYS_CREATE, ctypes.byref(attr), size, 0),
                        "landlock ruleset")

    def allow(path: str, rights: int, *, required: bool = False) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            if required:
                raise
            return
        try:
            if not os.path.isdir(path):
                rights &= ll.FILE_RIGHTS
            rule = ll.PathBeneathAttr(rights & fs, fd)
            ll._check(libc.syscall(ll.SYS_ADD_RULE, ruleset, ll.RULE_PATH_BENEATH,
                                   ctypes.byref(rule), 0), f"landlock rule for {path}")
        finally:
            os.close(fd)

    read = ll.FS_EXECUTE | ll.FS_READ_FILE | ll.FS_READ_DIR
    for path in read_only:
        allow(path, read)
    for path in ll.WRITABLE_DEVICES:
        allow(path, ll.FS_READ_FILE | ll.FS_WRITE_FILE | ll.FS_TRUNCATE)
    for path in writable:
        allow(path, fs, required=True)
    ll._check(libc.prctl(ll.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    ll._check(libc.syscall(ll.SYS_RESTRICT, ruleset, 0), "landlock restrict")
    os.close(ruleset)


def main(argv: list[str]) -> None:
    args = iter(argv)
    lib = workdir = cwd = ""
    network, uid = False, None
    read_only: list[str] = []
    writable: list[str] = []
    program: list[str] = []
    for arg in args:
        if arg == "--lib":
            lib = next(args)
        elif arg == "--workdir":
            workdir = next(args)
        elif arg == "--cwd":
            cwd = next(args)
        elif arg == "--network":
            network = next(args) == "1"
        elif arg == "--uid":
            uid = int(next(args))
        elif arg == "--ro":
            read_only.append(next(args))
        elif arg == "--rw":
            writable.append(next(args))
        elif arg == "--":
            program = list(args)
            break
        else:
            raise SystemExit(f"unknown option {arg}")
    if not (lib and workdir and cwd and program):
        raise SystemExit("usage: _landlock_roots.py --lib FILE --workdir DIR --cwd DIR "
                         "[--network 0|1] [--uid N] [--ro P]... [--rw P]... -- argv")
    ll = _load(lib)
    libc = ll._libc()
    seccomp = ll.load_seccomp()  # before the drop: the lookup starts helper processes
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    tmp = os.path.join(workdir, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    restrict(ll, libc, [workdir, *writable], [*ll.READ_ONLY_PATHS, *read_only], network)
    ll.deny_ip_sockets(seccomp, network)
    os.chdir(cwd)
    env = dict(os.environ)
    env["TMPDIR"] = tmp
    import signal

    for number in (signal.SIGPIPE, signal.SIGXFSZ):  # ignored by Python, kept across exec
        signal.signal(number, signal.SIG_DFL)
    os.execve(program[0], program, env)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BaseException as exc:  # fail closed: nothing runs half-restricted
        sys.stderr.write(f"agently-core landlock launcher: {exc}\n")
        os._exit(126)
