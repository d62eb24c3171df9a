"""agently-core-mcp: MCP servers' tools as actions, and actions served over MCP.

* ``agent.use_mcp(server, **options)`` mounts every tool of an MCP server (stdio command,
  Streamable HTTP or SSE URL, or an ``{"mcpServers": {...}}`` config) as an action whose
  session is a managed execution environment (:mod:`agently_core_mcp.package`);
  ``await async_use_mcp(agent, server, **options)`` does the same from async code.
* ``agently-core serve-mcp`` serves an agent's actions as MCP tools
  (:func:`agently_core_mcp.server.serve`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["async_use_mcp", "serve"]


def __getattr__(name: str) -> Any:  # lazy: the plugin entry point imports this package
    if name == "async_use_mcp":
        from .package import async_mount

        return async_mount
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(f"module 'agently_core_mcp' has no attribute {name!r}")
