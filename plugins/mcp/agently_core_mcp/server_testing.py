"""Helpers for the tests of ``agently-core serve-mcp``: the real command as a subprocess,
the official SDK client and raw HTTP requests against it, and ``/proc`` readings
(Linux)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "agently_core.cli", "serve-mcp"]
#: A token the tests give through ``AGENTLY_MCP_TOKEN``.
TOKEN = "test-token-0123456789-abcdefghijklmnop"
MODERN = "2026-07-28"
LEGACY = "2025-06-18"
ACCEPT = "application/json, text/event-stream"


def workdir(tmp: Path, policy: str = "") -> Path:
    """A directory whose agently.toml is the served agent's whole configuration."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "agently.toml").write_text(policy, encoding="utf-8")
    return tmp


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any AGENTLY_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    env.update(extra)
    return env


class HttpServe:
    """``serve-mcp --transport http --port 0`` and what it announces: ``url``, ``port``,
    ``token`` (``TOKEN`` given through the environment, or the generated one it printed;
    ``None`` with ``--no-auth``) and every stderr ``lines``."""

    def __init__(self, cwd: Path, *packages: str, args: Sequence[str] = (),
                 token: str | None = TOKEN) -> None:
        env = clean_env() if token is None else clean_env(AGENTLY_MCP_TOKEN=token)
        self.process = subprocess.Popen(
            [*CLI, "--transport", "http", "--port", "0", "--enable", ",".join(packages), *args],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.token = token
        self._queue: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []

        def pump() -> None:
            for line in self.process.stderr:  # type: ignore[union-attr]
                self._queue.put(line)

        self.pump = threading.Thread(target=pump, daemon=True)
        self.pump.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.lines.append(line)
            generated = re.search(r"Authorization: Bearer ([A-Za-z0-9_-]{43})'", line)
            if generated:
                self.token = generated.group(1)
            found = re.search(r"on (http://\S+:(\d+)/mcp)", line)
            if found:
                self.url, self.port = found.group(1), int(found.group(2))
                return
        self.stop()
        raise RuntimeError(f"serve-mcp did not start: {''.join(self.lines)}")

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of this server's token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stderr(self) -> str:
        """Everything written to stderr so far."""
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.pump.join(timeout=10)
        self.stderr()
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


def refused(cwd: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``serve-mcp ARGS`` expecting it to stop by itself (a refused command line)."""
    return subprocess.run([*CLI, *args], cwd=cwd, env=env or clean_env(AGENTLY_MCP_TOKEN=TOKEN),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


@contextlib.asynccontextmanager
async def sdk_session(url: str, headers: dict[str, str] | None = None, *,
                      elicit: Any = None, terminate_on_close: bool = True
                      ) -> AsyncIterator[Any]:
    """An initialized SDK ``ClientSession`` (handshake era, so the server keeps a
    session for it) sending ``headers`` with every request."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers=headers or {}) as http, streamable_http_client(
            url, http_client=http, terminate_on_close=terminate_on_close) as (read, write), \
            ClientSession(read, write, elicitation_callback=elicit) as session:
        await session.initialize()
        yield session


def modern_body(tool: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    """A 2026-07-28 ``tools/call``: one self-contained POST, no session."""
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": meta}}


def modern_headers(tool: str, **extra: str) -> dict[str, str]:
    return {"Accept": ACCEPT, "Content-Type": "application/json",
            "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool,
            **extra}


def initialize_body() -> dict[str, Any]:
    """A handshake-era ``initialize`` (it opens a session)."""
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}}


def descendants(root: int) -> list[int]:
    """Every live process below ``root``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


def rss_mb(pid: int) -> float:
    """The resident memory of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
