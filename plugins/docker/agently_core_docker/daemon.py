"""Finding or starting a Docker engine for tests and tools.

:func:`engine_answers` asks an engine for a ping. :class:`StartedDaemon` runs ``dockerd`` on
the default socket when that is free and we are root (so images built once stay cached on
the machine), else with its own data root and socket under a temporary directory;
:meth:`StartedDaemon.stop` stops exactly that process. The storage driver is ``overlay2``
where an overlay mount works on the data root's file system (:func:`storage_driver`) and
``vfs`` elsewhere, which copies the whole image for every new container (a ``docker run``
of the default image took 4 to 6 s with vfs and about 0.4 s with overlay2 when timed by
hand here; the benchmarked cold start is in docs/benchmarks.md).
The daemon is detached (``setsid --fork``: its parent is init, not this
process), so tests that check this process leaves no child behind do not see it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .engine import DEFAULT_SOCKET

START_TIMEOUT = 60.0
DEFAULT_ROOT = "/var/lib/docker"


def engine_answers(host: str, timeout: float = 5.0) -> bool:
    """Does a Docker engine answer a ping at ``host`` (``unix:///path`` or ``tcp://...``)?"""
    try:
        import docker

        made = docker.DockerClient(base_url=host, timeout=int(max(timeout, 1)), version="auto")
        try:
            return bool(made.ping())
        finally:
            made.close()
    except Exception:
        return False


class StartedDaemon:
    """A ``dockerd`` this process started (see the module docstring)."""

    def __init__(self, pidfile: Path, host: str, root: Path | None, log: Path) -> None:
        self.pidfile, self.host, self.root, self.log = pidfile, host, root, log
        self.pid: int | None = None

    @classmethod
    def start(cls) -> StartedDaemon:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("dockerd is not installed (apt-get install docker.io; ./dev "
                               "installs it)")
        if os.geteuid() != 0:
            raise RuntimeError("starting dockerd needs root (or start one yourself and set "
                               "DOCKER_HOST)")
        root: Path | None = None
        base = Path(tempfile.mkdtemp(prefix="agently-dockerd-"))
        log = base / "dockerd.log"
        pidfile = base / "docker.pid"
        args = [dockerd, f"--pidfile={pidfile}"]
        if os.path.exists(DEFAULT_SOCKET) or os.path.exists("/var/run/docker.pid"):
            root = base  # the default place is taken: everything of ours under base
            host = f"unix://{base}/docker.sock"
            args.insert(1, f"--storage-driver={storage_driver(base)}")
            args += [f"--data-root={base}/data", f"--exec-root={base}/exec",
                     f"--host={host}", "--bridge=none", "--iptables=false"]
        else:
            host = f"unix://{DEFAULT_SOCKET}"
            Path(DEFAULT_ROOT).mkdir(parents=True, exist_ok=True)
            args.insert(1, f"--storage-driver={storage_driver(Path(DEFAULT_ROOT))}")
        with open(log, "wb") as out:  # setsid --fork returns at once; dockerd's parent is init
            subprocess.run(["setsid", "--fork", *args], stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, check=True)
        started = cls(pidfile, host, root, log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            started.pid = started.pid or _read_pid(pidfile)
            if started.pid is not None and not _alive(started.pid):
                tail = log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"dockerd exited: {tail}")
            if started.pid is not None and engine_answers(host, timeout=2):
                return started
            time.sleep(0.2)
        started.stop()
        raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:g}s (log: {log})")

    def stop(self) -> None:
        """Stop this dockerd (SIGTERM, then SIGKILL) and remove its temporary data root."""
        pid = self.pid or _read_pid(self.pidfile)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
        if self.root is not None:
            subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)


def storage_driver(data_root: Path) -> str:
    """``overlay2`` when an overlay mount works in ``data_root``'s file system, else ``vfs``
    (which copies the whole image for every new container)."""
    probe = Path(tempfile.mkdtemp(prefix=".agently-overlay-", dir=data_root))
    try:
        for part in ("lower", "upper", "work", "merged"):
            (probe / part).mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work",
             str(probe / "merged")], capture_output=True).returncode == 0
        if mounted:
            subprocess.run(["umount", str(probe / "merged")], capture_output=True)
        return "overlay2" if mounted else "vfs"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Is ``pid`` a live dockerd (not a zombie, not a reused pid)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
    return comm == "dockerd" and state != "Z"


__all__ = ["StartedDaemon", "engine_answers", "storage_driver"]
