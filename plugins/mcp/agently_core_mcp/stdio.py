"""The stdio transport of agently-core's MCP sessions: the SDK's ``ClientSession`` over a
server's stdin and stdout, without relay tasks.

The SDK's ``stdio_client`` moves every message through two pipe tasks and two rendezvous
memory streams. Here the session's writer serialises a message and writes it to the
server's stdin itself, and the session's receive loop reads and parses stdout lines
itself: two task hand-offs fewer per request and per response, which is about a fifth of
a round trip to a fast local server (``bench/mcp_bench.py``). Everything else is the SDK's
contract: newline-delimited JSON-RPC, the SDK's message models and parser, its default
environment (only ``HOME``, ``LOGNAME``, ``PATH``, ``SHELL``, ``TERM`` and ``USER`` are
inherited) and its shutdown order (close stdin, wait for the server to exit while
draining its stdout, then SIGTERM and SIGKILL to its process group).

Lines longer than :data:`MAX_MESSAGE_BYTES` are dropped (the session sees a parse error,
as for any malformed line), so a server cannot exhaust the host's memory with one
endless line.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from collections.abc import AsyncIterator
from subprocess import DEVNULL, PIPE
from typing import Any

import anyio

#: The largest message (one stdout line) a server may send; longer lines are dropped.
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
#: Grace for a server to exit on its own once its stdin is closed, then after SIGTERM.
EXIT_GRACE = 2.0
_CLOSED = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)


class MessageTooLarge(ValueError):
    """A server sent a line over :data:`MAX_MESSAGE_BYTES`; it was dropped."""


class StdioReader:
    """The session's read stream: parsed messages from the server's stdout, in order.
    Yields the parse error (an exception) for a malformed line, as the SDK's transport
    does; ends when stdout ends."""

    def __init__(self, stdout: Any, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._stdout = stdout
        self._max = max_bytes
        self._ready: deque[bytes | Exception] = deque()  # complete lines, or line errors
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._skipping = False  # inside a line over the limit: drop until its newline
        self._closed = False

    async def __aenter__(self) -> StdioReader:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True

    def __aiter__(self) -> StdioReader:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ready:
                item = self._ready.popleft()
                if isinstance(item, Exception):
                    return item
                if item.strip():
                    return _parse(item)
                continue
            try:
                chunk = await self._stdout.receive()
            except _CLOSED:
                self._closed = True
                raise StopAsyncIteration from None
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        """Queue the complete lines of ``chunk``; a line over the limit is dropped (once it
        passes the limit, not when it ends) and reported once."""
        *complete, tail = chunk.split(b"\n")
        for piece in complete:
            if self._skipping:  # the end of a line already reported
                self._skipping = False
            elif self._partial_size + len(piece) > self._max:
                self._ready.append(self._too_large())
            else:
                self._ready.append(b"".join((*self._partial, piece)) if self._partial else piece)
            self._partial, self._partial_size = [], 0
        if tail and not self._skipping:
            if self._partial_size + len(tail) > self._max:
                self._ready.append(self._too_large())
                self._partial, self._partial_size, self._skipping = [], 0, True
            else:
                self._partial.append(tail)
                self._partial_size += len(tail)

    def _too_large(self) -> MessageTooLarge:
        return MessageTooLarge(f"the MCP server sent a message over {self._max} bytes; "
                               "it was dropped")


class StdioWriter:
    """The session's write stream: each message serialised and written to the server's
    stdin by the task that sends it (whole lines: concurrent senders never interleave)."""

    def __init__(self, stdin: Any) -> None:
        self._stdin = stdin
        self._lock = anyio.Lock(fast_acquire=True)
        self._closed = False

    async def __aenter__(self) -> StdioWriter:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def send(self, message: Any) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        data = message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
        async with self._lock:
            try:
                await self._stdin.send(data)
            except anyio.ClosedResourceError:
                raise
            except (anyio.BrokenResourceError, OSError) as exc:
                raise anyio.BrokenResourceError(f"the MCP server's stdin: {exc}") from None

    async def aclose(self) -> None:
        """No more messages; the server sees the end of its stdin."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(*_CLOSED):
                await self._stdin.aclose()


def _parse(line: bytes) -> Any:
    import mcp_types
    from mcp.shared.message import SessionMessage

    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc


@contextlib.asynccontextmanager
async def stdio_transport(command: str, args: list[str], *, env: dict[str, str] | None = None,
                          cwd: str | None = None, stderr: int | None = None
                          ) -> AsyncIterator[tuple[StdioReader, StdioWriter, Any]]:
    """Start ``command`` in a process group of its own and yield ``(read stream, write
    stream, process)`` for ``mcp.ClientSession``; on exit the server is shut down (stdin
    closed, then SIGTERM, then SIGKILL to its group), even when the caller is cancelled.
    ``env`` is added to the SDK's default environment; ``stderr`` is a file descriptor."""
    from mcp.client.stdio import get_default_environment

    process = await anyio.open_process(
        [command, *args], stdin=PIPE, stdout=PIPE,
        stderr=stderr if stderr is not None else DEVNULL,
        env=get_default_environment() | (env or {}), cwd=cwd, start_new_session=True)
    reader, writer = StdioReader(process.stdout), StdioWriter(process.stdin)
    try:
        yield reader, writer, process
    finally:
        with anyio.CancelScope(shield=True):
            await _shutdown(process, writer)


async def _shutdown(process: Any, writer: StdioWriter) -> None:
    """The MCP stdio shutdown: close stdin and wait for the exit, draining stdout so a
    server blocked writing can finish; then SIGTERM, then SIGKILL, to the process group."""
    await writer.aclose()
    async with anyio.create_task_group() as group:
        group.start_soon(_drain, process.stdout)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)
            if await _exited(process, EXIT_GRACE):
                break
        group.cancel_scope.cancel()
    with contextlib.suppress(*_CLOSED):
        await process.stdout.aclose()
    # the subprocess transport stays open while a descendant holds a pipe end: close it
    transport = getattr(getattr(process, "_process", None), "_transport", None)
    close = getattr(transport, "close", None)
    if callable(close):
        with contextlib.suppress(PermissionError, ProcessLookupError):
            close()


async def _drain(stdout: Any) -> None:
    with contextlib.suppress(*_CLOSED):
        while True:
            await stdout.receive()


async def _exited(process: Any, timeout: float) -> bool:
    """Whether the process exits within ``timeout`` (polling ``returncode``: on Python
    3.11 ``wait()`` also waits for the pipes, which a surviving descendant may hold)."""
    with anyio.move_on_after(timeout):
        while process.returncode is None:
            await anyio.sleep(0.01)
    return process.returncode is not None
