"""One sandbox owner per MCP session of ``serve-mcp``.

Every MCP session gets an owner id of its own, under which the dispatcher keeps the
session- and agent-scoped environments its calls use (a warm Python worker, its files, an
MCP client session...): ``agently_core.execution.current_session`` is set to it around
each call. Client B therefore never sees client A's variables or files. The owner's
environments are released when the session ends:

* Streamable HTTP, handshake era: one owner per ``Mcp-Session-Id``, released when the SDK
  closes the session's connection (``DELETE``, idle expiry, server stop);
* Streamable HTTP, 2026-07-28 era (no sessions in the protocol): each request is its own
  session, released when the request is answered;
* stdio: the one client of the process has one owner, released when the server stops.

Owner ids are random and unrelated to the ``Mcp-Session-Id`` (they appear in events).
"""

from __future__ import annotations

import uuid
from typing import Any

_STATE_KEY = "agently_core.owner"


class SessionOwners:
    """The owners of the live sessions of one served agent."""

    def __init__(self, agent: Any, *, single: bool = False) -> None:
        #: ``single``: one owner for the whole server (stdio: one client per process).
        self.agent = agent
        self.single = single
        self.live: set[str] = set()
        self._single_owner: str | None = None
        self.closed = False

    def owner_for(self, ctx: Any) -> str:
        """The owner of the session ``ctx`` (an MCP request context) belongs to; a new one,
        with its release registered on the session's end, on the session's first call."""
        from agently_core.errors import AgentlyError

        if self.closed:
            raise AgentlyError("serve-mcp is stopping; no new calls are run")
        if self.single:
            if self._single_owner is None:
                self._single_owner = self._new()
            return self._single_owner
        connection = _connection(ctx)
        owner = connection.state.get(_STATE_KEY)
        if owner is None:
            owner = connection.state[_STATE_KEY] = self._new()
            connection.exit_stack.push_async_callback(self.release, owner)
        return str(owner)

    def _new(self) -> str:
        owner = f"mcp_session_{uuid.uuid4().hex}"
        self.live.add(owner)
        return owner

    async def release(self, owner: str) -> int:
        """Release every session- and agent-scoped environment of ``owner``; returns how
        many there were."""
        import anyio

        self.live.discard(owner)
        pinned = getattr(self.agent.dispatcher, "owners", None)  # what agent.close() releases
        if isinstance(pinned, set):
            pinned.difference_update({("agent", owner), ("session", owner)})
        manager = self.agent.manager
        if getattr(manager, "closed", False):
            return 0
        count = 0
        with anyio.CancelScope(shield=True):
            for scope in ("session", "agent"):
                count += await manager.async_release_scope(scope, owner,
                                                           events=self.agent.events)
        return count

    async def aclose(self) -> None:
        """Refuse new calls and release the owners still live (the server stops)."""
        self.closed = True
        for owner in list(self.live):
            await self.release(owner)


def _connection(ctx: Any) -> Any:
    """The SDK ``Connection`` behind a request context: its ``state`` and ``exit_stack``
    are the per-connection hooks the SDK documents, reached through the request's
    ``ServerSession`` (the SDK has no public accessor for it yet). Without it a call
    fails rather than run under a shared owner."""
    from agently_core.errors import AgentlyError

    connection = getattr(getattr(ctx, "session", None), "_connection", None)
    if connection is None or not isinstance(getattr(connection, "state", None), dict) \
            or not hasattr(getattr(connection, "exit_stack", None), "push_async_callback"):
        raise AgentlyError("serve-mcp cannot tell this call's MCP session apart (the mcp "
                           "SDK's Connection is not reachable); the call was not run")
    return connection
