"""Helpers for the tests and the benchmark of agently-core-mcp: where ``./dev setup`` puts
the real MCP servers they talk to, and process checks that read ``/proc`` (Linux).

Peers: the npm package ``@modelcontextprotocol/server-everything`` in ``.cache/npm`` of the
project (stdio, Streamable HTTP and SSE), and the PyPI package ``mcp-server-time`` beside
the running Python.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything"
_EVERYTHING_ENTRY = Path(".cache", "npm", "node_modules", "@modelcontextprotocol",
                         "server-everything", "dist", "index.js")


def everything_path() -> Path:
    """The everything server's entry script (it may not exist: check before use)."""
    here = Path(__file__).resolve()
    for base in (*here.parents, Path.cwd(), *Path.cwd().parents):
        candidate = base / _EVERYTHING_ENTRY
        if candidate.exists():
            return candidate
    return here.parents[3] / _EVERYTHING_ENTRY


def node_path() -> str:
    return shutil.which("node") or "/usr/bin/node"


def time_server_path() -> Path:
    return Path(sys.executable).with_name("mcp-server-time")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HttpPeer:
    """The everything server in one of its HTTP modes, on a free port."""

    def __init__(self, mode: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [node_path(), str(everything_path()), mode], env={**os.environ, "PORT": str(self.port)},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"everything server ({mode}) exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"everything server ({mode}) did not listen: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if not self.log.closed:
            self.log.close()


def state(pid: int) -> str | None:
    """The process's state letter (``Z`` for a zombie), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` is gone for good: not running, not a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(pid) is None:
            return True
        time.sleep(0.02)
    return False


def dead(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` has stopped running (gone or a zombie not yet reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.02)
    return False


def _processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, state)}`` of every process (from /proc)."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(pid)] = (int(fields[1]), fields[0])
    return found


def _marked(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return b"AGENTLY_MCP_SESSION=" in handle.read()
    except OSError:
        return False


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def server_pids() -> list[int]:
    """The running MCP servers that agently-core-mcp started from this process: children
    of its supervisors (or children of this process when a server runs uncontained)."""
    me = os.getpid()
    table = _processes()
    found = []
    for pid, (parent, status) in table.items():
        if parent != me or status in ("Z", "X") or not _marked(pid):
            continue
        if b"_supervisor.py" not in _cmdline(pid):
            found.append(pid)
            continue
        found += [child for child, (above, state) in table.items()
                  if above == pid and state not in ("Z", "X") and _marked(child)]
    return sorted(found)


def supervisor_pids() -> list[int]:
    """The live supervisors of MCP servers started from this process."""
    me = os.getpid()
    return sorted(pid for pid, (parent, status) in _processes().items()
                  if parent == me and status not in ("Z", "X")
                  and b"_supervisor.py" in _cmdline(pid))


def processes_with(marker: str) -> list[int]:
    """Live processes (not zombies) with ``marker`` as a word of their command line."""
    word = marker.encode()
    return sorted(pid for pid, (_, status) in _processes().items()
                  if status not in ("Z", "X") and word in _cmdline(pid).split(b"\0"))


def connection(agent: Any, action: str) -> Any:
    """The live MCP connection behind an action (agent scope)."""
    entry = agent.registry.get(action)
    requirement = entry.spec.execution_environments[0]
    for handle in agent.manager.list(kind="mcp", owner_id=agent.id):
        if handle.requirement_id == f"{requirement.id}@{agent.id}":
            return agent.manager.resource(handle)
    raise LookupError(f"no live MCP session for {action!r}")
