"""``max_result_bytes`` over HTTP: a response hook on the SDK's HTTP client that bounds
what one message from an MCP server may hold.

A JSON response body is counted as it arrives and cut off with ``httpx2.StreamError`` once
it passes the limit (the SDK then fails the request it answers with a parse error); a
``text/event-stream`` body is counted per event (the bytes since the last blank line), so a
long-lived stream of small events is never cut. Nothing over the limit is held whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2


class _BoundedStream(httpx2.AsyncByteStream):
    """A response body that raises once one message of it passes ``limit`` bytes."""

    def __init__(self, stream: Any, limit: int, events: bool) -> None:
        self._stream = stream
        self._limit = limit
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        carry = b""  # the end of the previous chunk: a blank line may straddle two
        async for chunk in self._stream:
            if self._events:
                window = carry + chunk
                end = max(window.rfind(b"\n\n"), window.rfind(b"\r\n\r\n"),
                          window.rfind(b"\r\r"))
                size = size + len(chunk) if end < 0 else len(window) - end
                carry = window[-3:]
            else:
                size += len(chunk)
            if size > self._limit:
                raise httpx2.StreamError(f"the MCP server sent a message over {self._limit} "
                                         "bytes (max_result_bytes); it was dropped")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


def response_hook(limit: int) -> Any:
    """An ``httpx2`` response event hook that bounds each message to ``limit`` bytes."""

    async def bound(response: Any) -> None:
        events = response.headers.get("content-type", "").startswith("text/event-stream")
        response.stream = _BoundedStream(response.stream, limit, events)

    return bound


def bounded_client_factory(limit: int) -> Any:
    """An ``httpx_client_factory`` for the SDK's ``sse_client`` whose clients bound each
    message to ``limit`` bytes."""
    from mcp.shared._httpx_utils import create_mcp_http_client

    def factory(headers: dict[str, str] | None = None, timeout: Any = None,
                auth: Any = None) -> Any:
        client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        hooks = dict(client.event_hooks)
        hooks["response"] = [*hooks.get("response", []), response_hook(limit)]
        client.event_hooks = hooks
        return client

    return factory
