"""Finding or starting a Docker engine for tests and tools.

:func:`engine_answers` asks an engine for a ping. :class:`StartedDaemon` runs ``dockerd
--storage-driver=vfs`` (overlay is not available everywhere) on the default socket when that
is free and we are root (so images built once stay cached on the machine), else with its own
data root and socket under a temporary directory; :meth:`StartedDaemon.stop` stops exactly
that process.
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

    def __init__(self, process: subprocess.Popen[bytes], host: str, root: Path | None,
                 log: Path) -> None:
        self.process, self.host, self.root, self.log = process, host, root, log

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
        args = [dockerd, "--storage-driver=vfs"]
        if os.path.exists(DEFAULT_SOCKET) or os.path.exists("/var/run/docker.pid"):
            root = base  # the default place is taken: everything of ours under base
            host = f"unix://{base}/docker.sock"
            args += [f"--data-root={base}/data", f"--exec-root={base}/exec",
                     f"--pidfile={base}/docker.pid", f"--host={host}", "--bridge=none",
                     "--iptables=false"]
        else:
            host = f"unix://{DEFAULT_SOCKET}"
        with open(log, "wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        started = cls(process, host, root, log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"dockerd exited with {process.returncode}: {tail}")
            if engine_answers(host, timeout=2):
                return started
            time.sleep(0.2)
        started.stop()
        raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:g}s (log: {log})")

    def stop(self) -> None:
        """Stop this dockerd (SIGTERM, then SIGKILL) and remove its temporary data root."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.root is not None:
            subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)


__all__ = ["StartedDaemon", "engine_answers"]
