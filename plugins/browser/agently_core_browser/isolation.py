"""``isolation="bubblewrap"``: Chromium in a bubblewrap sandbox (an opt-in).

Chromium runs with ``--no-sandbox`` (its own sandbox needs privileges the host may not
give), so a page that exploits the renderer would otherwise run as the host's user with
the host's files in view. With this option the managed browser is launched through a small
wrapper that, as root, hands Playwright's profile directory to a dedicated uid, drops to
that uid (``setpriv``) and starts Chromium under ``bwrap``: new user, pid, ipc, uts and
cgroup namespaces; only ``/usr`` and the few files of ``/etc`` Chromium reads (fonts,
its own configuration, certificates), read-only; a private ``/tmp``, ``/dev/shm`` and
home; the profile directory the one writable host path; it dies with its parent.

The network namespace is shared: the browser must reach its egress proxy on the host's
loopback. Web content still goes only through the proxy (Chromium is told so); what this
adds is that a compromised renderer sees no host files and no host processes, and is not
root.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
from pathlib import Path

BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
#: Files of /etc Chromium reads; everything else of /etc stays out of view.
ETC = ("/etc/fonts", "/etc/chromium", "/etc/chromium.d", "/etc/ssl", "/etc/ca-certificates",
       "/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives")
ISOLATIONS = ("none", "bubblewrap")


class IsolationMissing(RuntimeError):
    """bubblewrap (or setpriv, as root) is not installed."""


def _uid() -> int:
    """A dedicated uid (the isolation plugin's allocator when it is installed)."""
    try:
        from agently_core_isolation.sandbox import allocate_uid
    except ImportError:
        return 1_100_000 + random.randrange(50_000)
    return allocate_uid()


def wrapper(directory: str | os.PathLike[str], executable: str) -> tuple[str, int | None]:
    """Write the launcher into ``directory``; returns its path and the uid it drops to
    (``None`` when not running as root)."""
    if not os.access(BWRAP, os.X_OK):
        raise IsolationMissing("isolation='bubblewrap' needs bubblewrap (apt-get install "
                               "bubblewrap)")
    root = os.geteuid() == 0
    if root and not os.access(SETPRIV, os.X_OK):
        raise IsolationMissing("isolation='bubblewrap' as root needs setpriv (util-linux)")
    uid = _uid() if root else None
    binds = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
             "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
             "--symlink", "usr/sbin", "/sbin"]
    for path in ETC:
        binds += ["--ro-bind-try", path, path]
    binds += ["--ro-bind-try", "/var/cache/fontconfig", "/var/cache/fontconfig"]
    real = os.path.realpath(executable)
    if not real.startswith("/usr/"):
        binds += ["--ro-bind", real, real]
    bwrap = [BWRAP, "--die-with-parent", "--unshare-user", "--unshare-pid", "--unshare-ipc",
             "--unshare-uts", "--unshare-cgroup-try", *binds, "--proc", "/proc",
             "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--tmpfs", "/home",
             "--setenv", "HOME", "/home"]
    drop = (f"chown -R {uid}:{uid} \"$profile\"\n"
            f"exec {SETPRIV} --reuid={uid} --regid={uid} --clear-groups "
            if uid is not None else "exec ")
    script = ("#!/bin/sh\n"
              "# agently-core-browser: Chromium under bubblewrap (see isolation.py)\n"
              "set -e\nprofile=\"\"\n"
              "for arg in \"$@\"; do case \"$arg\" in --user-data-dir=*) "
              "profile=\"${arg#--user-data-dir=}\";; esac; done\n"
              "[ -n \"$profile\" ] || { echo 'no --user-data-dir' >&2; exit 2; }\n"
              + drop + " ".join(shlex.quote(part) for part in bwrap)
              + " --bind \"$profile\" \"$profile\" " + shlex.quote(real) + " \"$@\"\n")
    path = Path(directory) / "chromium-isolated"
    path.write_text(script, encoding="utf-8")
    path.chmod(0o700)
    if uid is not None:   # the home directory must be traversable by nobody else
        shutil.chown(path, 0, 0)
    return str(path), uid


__all__ = ["ISOLATIONS", "IsolationMissing", "wrapper"]
