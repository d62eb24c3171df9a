"""The ``mcp`` ExecutionEnvironmentProvider: one live MCP session per requirement (one
server, one scope owner), health-checked before every reuse and closed with its scope."""

from __future__ import annotations

from typing import Any

from agently_core.protocols import ProviderHandle

from .session import McpConnection


class McpSessionProvider:
    """Starts, checks and closes MCP sessions (:class:`~agently_core_mcp.session.McpConnection`).

    Requirement config (written by ``use_mcp``): ``transport`` (``stdio``, ``http``,
    ``sse``), ``command``/``args``/``env``/``cwd`` or ``url``/``headers``, ``label``,
    ``start_timeout``, ``ping_interval``, ``ping_timeout``, ``max_result_bytes`` (the largest
    message the server may send) and ``max_tools`` (the largest tool listing, checked by
    the stdio reader). ``env`` and ``headers`` values are secrets: agently-core masks them
    wherever they would appear. A stdio server runs under a subreaper supervisor: nothing
    it starts outlives the session (:mod:`agently_core_mcp._supervisor`).

    ``async_health_check`` is cheap on the hot path (the session is open, the stdio server's
    process runs); it sends an MCP ping when the session has been idle for
    ``ping_interval`` seconds or a call on it timed out, so a dead or hung server is
    replaced before the next call rather than failing it.
    """

    kind = "mcp"
    name = "mcp"

    async def ensure(self, requirement: Any) -> McpConnection:
        return await McpConnection(dict(requirement.config or {})).start()

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        connection: McpConnection = handle.resource
        return await connection.healthy()

    async def release(self, requirement: Any, connection: McpConnection) -> None:
        await connection.aclose()
