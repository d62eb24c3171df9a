"""Fixtures for the MCP tests: real peers nobody here wrote, found where ``./dev setup``
installs them, plus process helpers that read ``/proc``.

Peers: the npm package ``@modelcontextprotocol/server-everything`` (``.cache/npm``; stdio,
Streamable HTTP and SSE), and the PyPI package ``mcp-server-time`` (the venv's ``bin``).
A missing peer skips its tests on a developer's machine and fails them loudly in CI
(``CI=true``): a CI run never passes by skipping them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agently_core_mcp.testing import HttpPeer, everything_path, node_path, time_server_path

from agently_core.testing import require as present

EVERYTHING = everything_path()
TIME_SERVER = time_server_path()
NODE = node_path()


def require(path: Path | str, what: str) -> None:
    """Skip (developer) or fail (CI) when a peer is missing."""
    present(Path(path).exists(), f"{what} is not installed at {path}; run ./dev setup")


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def everything() -> list[str]:
    """The everything server over stdio, as a command."""
    require(NODE, "node")
    require(EVERYTHING, "@modelcontextprotocol/server-everything")
    return [NODE, str(EVERYTHING), "stdio"]


@pytest.fixture
def time_server() -> list[str]:
    """mcp-server-time (PyPI) over stdio, as a command."""
    require(TIME_SERVER, "mcp-server-time")
    return [str(TIME_SERVER), "--local-timezone", "UTC"]


@pytest.fixture
def agent(agently_agent_factory: Callable[..., Any]) -> Iterator[Any]:
    """A fresh agent on configuration isolated from the machine; closed at teardown."""
    made = agently_agent_factory()
    yield made
    made.close()


@pytest.fixture
def everything_peer() -> Iterator[Callable[..., HttpPeer]]:
    """``make(mode="streamableHttp", port=None)``: an everything server of this test's own
    over HTTP (stopped at teardown, or earlier with ``peer.close()``)."""
    require(NODE, "node")
    require(EVERYTHING, "@modelcontextprotocol/server-everything")
    made: list[HttpPeer] = []

    def make(mode: str = "streamableHttp", port: int | None = None) -> HttpPeer:
        made.append(HttpPeer(mode, port))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


@pytest.fixture(scope="module")
def everything_http() -> Iterator[str]:
    """The everything server over Streamable HTTP: its URL."""
    require(NODE, "node")
    require(EVERYTHING, "@modelcontextprotocol/server-everything")
    peer = HttpPeer("streamableHttp")
    yield f"http://127.0.0.1:{peer.port}/mcp"
    peer.close()


@pytest.fixture(scope="module")
def everything_sse() -> Iterator[str]:
    """The everything server over the legacy HTTP+SSE transport: its SSE URL."""
    require(NODE, "node")
    require(EVERYTHING, "@modelcontextprotocol/server-everything")
    peer = HttpPeer("sse")
    yield f"http://127.0.0.1:{peer.port}/sse"
    peer.close()


