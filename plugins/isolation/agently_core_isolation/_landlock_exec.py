"""Landlock + seccomp confinement of a sandbox's first process, applied by the supervisor
(:mod:`_supervise`) in the forked child right before ``exec``: it restricts the file system
with Landlock (by default system paths readable and executable; the workspace, its
temporary directory and every ``write`` tree read-write; nothing else; with an exec
allowlist, only the listed files executable and only the given files and trees readable),
denies TCP with Landlock network rules unless the network is open, installs a seccomp
filter that refuses IP, packet and netlink sockets and io_uring (Landlock does not cover
UDP or DNS) and scopes signals and abstract sockets to the sandbox where the kernel
supports it. Any failure raises: the supervisor then aborts, nothing runs
half-restricted. Standard library only; imported by the host only for
:func:`seccomp_available`.
"""

from __future__ import annotations

import ctypes
import os

SYS_CREATE, SYS_ADD_RULE, SYS_RESTRICT = 444, 445, 446
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
PR_SET_NO_NEW_PRIVS = 38

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_ALL_ABI1 = (1 << 13) - 1
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX, SCOPE_SIGNAL = 1 << 0, 1 << 1

#: What a sandbox without an exec allowlist reads and executes. /proc is left out: it would
#: show every host process's command line.
READ_ONLY_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache",
                   "/etc/localtime")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
WRITABLE_DEVICES = ("/dev/null",)
SECCOMP_SONAME = "libseccomp.so.2"


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _check(result: int, what: str) -> int:
    if result < 0:
        raise OSError(ctypes.get_errno(), f"{what} failed: {os.strerror(ctypes.get_errno())}")
    return result


def seccomp_available() -> bool:
    try:
        load_seccomp()
    except OSError:
        return False
    return True


def _abi(libc: ctypes.CDLL) -> int:
    return max(0, libc.syscall(SYS_CREATE, None, 0, 1))


def restrict_filesystem_and_tcp(libc: ctypes.CDLL, writable: list[str], read_only: list[str],
                                network: bool, *, executable: list[str] | None = None,
                                readable: list[str] | tuple[str, ...] = ()) -> None:
    """Landlock: every ``writable`` tree (each must exist) fully usable, the devices, nothing
    else; TCP denied unless ``network``. Without ``executable``: the ``read_only`` trees
    readable and executable, and the writable trees executable too. With it (an exec
    allowlist): only the ``executable`` files may be executed (they are readable too),
    ``readable`` files and trees are only read, and nothing writable is executable."""
    abi = _abi(libc)
    if abi < 1:
        raise OSError("Landlock is not available")
    fs = FS_ALL_ABI1 | (FS_REFER if abi >= 2 else 0) | (FS_TRUNCATE if abi >= 3 else 0) \
        | (FS_IOCTL_DEV if abi >= 5 else 0)
    net = (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 and not network else 0
    if not network and abi < 4:
        raise OSError("this kernel's Landlock cannot deny TCP (ABI < 4)")
    scoped = (SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL) if abi >= 6 else 0
    attr = RulesetAttr(fs, net, scoped)
    size = ctypes.sizeof(RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _check(libc.syscall(SYS_CREATE, ctypes.byref(attr), size, 0), "landlock ruleset")

    def allow(path: str, rights: int, *, required: bool = False) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            if required:
                raise
            return
        try:
            if not os.path.isdir(path):
                rights &= FILE_RIGHTS
            rule = PathBeneathAttr(rights & fs, fd)
            _check(libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                   f"landlock rule for {path}")
        finally:
            os.close(fd)

    read = FS_READ_FILE | FS_READ_DIR
    if executable is None:
        for path in read_only:
            allow(path, read | FS_EXECUTE)
        writable_rights = fs
    else:
        for path in [*read_only, *readable]:
            allow(path, read)
        for path in executable:
            allow(path, FS_READ_FILE | FS_EXECUTE, required=True)
        writable_rights = fs & ~FS_EXECUTE
    for path in DEVICES:
        allow(path, FS_READ_FILE | (FS_WRITE_FILE | FS_TRUNCATE if path in WRITABLE_DEVICES else 0))
    for path in writable:
        allow(path, writable_rights, required=True)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.syscall(SYS_RESTRICT, ruleset, 0), "landlock restrict")
    os.close(ruleset)


def load_seccomp() -> ctypes.CDLL:
    """libseccomp, loaded while the child still runs as the host's user (a search by name
    starts helper processes, which a sandbox's process limit could refuse after the drop)."""
    try:
        return ctypes.CDLL(SECCOMP_SONAME, use_errno=True)
    except OSError:
        pass
    from ctypes.util import find_library  # slow (it imports subprocess): only as a fallback

    name = find_library("seccomp")
    if name is None:
        raise OSError("libseccomp is not available")
    return ctypes.CDLL(name, use_errno=True)


def deny_ip_sockets(lib: ctypes.CDLL, network: bool) -> None:
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(ScmpArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    allow, refuse = 0x7FFF0000, 0x00050000 | 13  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(EACCES)
    ctx = lib.seccomp_init(allow)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        # AF_PACKET, AF_NETLINK and AF_UNIX (Landlock does not govern connecting to a host's
        # Unix sockets) never; socketpair() stays available
        families = [17, 16, 1]
        if not network:
            families += [2, 10]  # AF_INET, AF_INET6: UDP and DNS too
        for family in families:
            cmp = ScmpArgCmp(0, 4, family, 0)  # arg0 == family (SCMP_CMP_EQ)
            _check(lib.seccomp_rule_add_array(ctx, refuse, 41, 1, ctypes.byref(cmp)), "seccomp rule")
        for syscall in (425, 426, 427):  # io_uring_setup/enter/register bypass the rules
            _check(lib.seccomp_rule_add_array(ctx, refuse, syscall, 0, None), "seccomp rule")
        _check(lib.seccomp_load(ctx), "seccomp_load")
    finally:
        lib.seccomp_release(ctx)


def confine(libc: ctypes.CDLL, seccomp: ctypes.CDLL, *, workdir: str, tmpdir: str,
            write: list[str], read: list[str], execute: list[str], exec_only: bool,
            network: bool, proc: bool) -> None:
    """Confine the calling process (already running as the sandbox's uid): Landlock over
    the workspace, ``tmpdir`` and the ``write`` trees (read-write), the ``read`` paths, and,
    with ``exec_only``, only the ``execute`` files executable (and, with ``proc``, the
    private ``/proc`` readable); then the seccomp filter."""
    readable = ["/proc"] if proc else []
    if exec_only:
        restrict_filesystem_and_tcp(libc, [workdir, tmpdir, *write], list(read), network,
                                    executable=list(execute), readable=readable)
    else:
        restrict_filesystem_and_tcp(libc, [workdir, tmpdir, *write],
                                    [*READ_ONLY_PATHS, *read, *execute, *readable], network)
    deny_ip_sockets(seccomp, network)
