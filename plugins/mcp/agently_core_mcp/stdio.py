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

Lines longer than the reader's limit (``max_result_bytes`` of ``use_mcp``, at most
:data:`MAX_MESSAGE_BYTES`) are dropped as soon as they pass it, so a server cannot exhaust
the host's memory with one endless line. A line that is dropped, or that the SDK's parser
cannot read (a result nested past its recursion limit), is not lost silently: when its
JSON-RPC id can be seen (at the start of the line, as the Python SDK writes it, or at its
end, as the TypeScript SDK does), the request it answers fails at once with an error
(code :data:`UNREADABLE_ANSWER`) instead of waiting for its timeout.

The server runs under a small supervisor (:mod:`agently_core_mcp._supervisor`), a child
subreaper: whatever the server leaves behind, daemons that called ``setsid`` included,
ends with the server, and nothing is left unreaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator
from subprocess import DEVNULL, PIPE
from typing import Any

import anyio

from agently_core.interpreters import helper_python

#: The largest message (one stdout line) a server may send; longer lines are dropped.
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
#: Grace for a server to exit on its own once its stdin is closed, then after SIGTERM.
EXIT_GRACE = 2.0
#: The JSON-RPC error code of an answer the client dropped (too large) or could not parse.
UNREADABLE_ANSWER = -32090
#: How long the supervisor may take to report the server's pid.
SPAWN_BOUND = 10.0
_SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_supervisor.py")
_CLOSED = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)
_EDGE = 256  # bytes kept of each end of a dropped line, to find its id
_ID = rb'(-?[0-9]{1,18}|"(?:[^"\\]|\\.){0,200}")'
_HEAD_ID = re.compile(rb'\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*' + _ID)
_TAIL_ID = re.compile(rb'"id"\s*:\s*' + _ID + rb'\s*\}\s*\Z')


class MessageTooLarge(ValueError):
    """A server sent a line over the reader's limit; it was dropped."""


class StdioReader:
    """The session's read stream: parsed messages from the server's stdout, in order.
    Yields the parse error (an exception) for a malformed line, as the SDK's transport
    does, or an error answer to the request a dropped or unreadable line answered (see
    the module docstring); ends when stdout ends."""

    def __init__(self, stdout: Any, max_bytes: int = MAX_MESSAGE_BYTES,
                 max_tools: int | None = None) -> None:
        self._stdout = stdout
        self._max = max_bytes
        self._max_tools = max_tools
        self._ready: deque[bytes | Any] = deque()  # complete lines, or items to yield
        self._partial: list[bytes] = []  # the pieces of the line being received
        self._partial_size = 0
        self._skipping = False  # inside a line over the limit: drop until its newline
        self._head = b""  # the start of the line being dropped
        self._tail = b""  # the end of it so far
        self._reported = False  # the dropped line's error is queued already
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
                if not isinstance(item, bytes):
                    return item
                if item.strip():
                    return self._checked(_parse(item))
                continue
            try:
                chunk = await self._stdout.receive()
            except _CLOSED:
                self._closed = True
                raise StopAsyncIteration from None
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        """Queue the complete lines of ``chunk``; a line over the limit is dropped once it
        passes the limit, and reported then (its id at its start) or at its end."""
        *complete, tail = chunk.split(b"\n")
        for piece in complete:
            if self._skipping:  # the end of a line being dropped
                self._tail = (self._tail + piece)[-_EDGE:]
                if not self._reported:
                    self._ready.append(self._too_large(_TAIL_ID.search(self._tail)))
                self._skipping = False
            elif self._partial_size + len(piece) > self._max:
                head = (self._partial[0] if self._partial else piece)[:_EDGE]
                found = _HEAD_ID.match(head) or _TAIL_ID.search(piece[-_EDGE:])
                self._ready.append(self._too_large(found))
            elif self._partial:
                self._partial.append(piece)
                line = b"".join(self._partial)
                self._partial, self._partial_size = [], 0  # the pieces go before the parse
                self._ready.append(line)
            else:
                self._ready.append(piece)
            self._partial, self._partial_size = [], 0
        if tail and not self._skipping:
            if self._partial_size + len(tail) > self._max:
                self._head = (self._partial[0] if self._partial else tail)[:_EDGE]
                self._tail = tail[-_EDGE:]
                self._partial, self._partial_size, self._skipping = [], 0, True
                found = _HEAD_ID.match(self._head)
                self._reported = found is not None
                if found is not None:
                    self._ready.append(self._too_large(found))
            else:
                self._partial.append(tail)
                self._partial_size += len(tail)
        elif tail:
            self._tail = (self._tail + tail)[-_EDGE:]

    def _checked(self, item: Any) -> Any:
        """A tool listing with more than ``max_tools`` tools becomes an error answer here,
        before the SDK validates every tool of it."""
        limit = self._max_tools
        message = getattr(item, "message", None)
        result = getattr(message, "result", None)
        if limit is None or not isinstance(result, dict):
            return item
        tools = result.get("tools")
        if not isinstance(tools, list) or len(tools) <= limit:
            return item
        import mcp_types
        from mcp.shared.message import SessionMessage

        return SessionMessage(mcp_types.JSONRPCError(
            jsonrpc="2.0", id=message.id, error=mcp_types.ErrorData(
                code=UNREADABLE_ANSWER, message=f"the MCP server listed {len(tools)} tools in "
                f"one answer, more than {limit} (max_tools)")))

    def _too_large(self, found: re.Match[bytes] | None) -> Any:
        message = (f"the MCP server sent a message over {self._max} bytes (max_result_bytes); "
                   "it was dropped")
        if found is None:
            return MessageTooLarge(message)
        return _error_answer(found, message)


def _error_answer(found: re.Match[bytes], message: str) -> Any:
    """An error answer (from the client itself) to the request whose id ``found`` holds."""
    import mcp_types
    from mcp.shared.message import SessionMessage

    ident = json.loads(found.group(1))
    return SessionMessage(mcp_types.JSONRPCError(
        jsonrpc="2.0", id=ident, error=mcp_types.ErrorData(code=UNREADABLE_ANSWER,
                                                           message=message)))


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
    """One line as the SDK's message. Parsed to Python objects first, then validated: the
    SDK's ``validate_json`` of the message union copies a long string once per member it
    tries (a 120 MB text result cost about 4x its size), this costs it once."""
    import mcp_types
    from mcp.shared.message import SessionMessage
    from pydantic_core import from_json

    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_python(
            from_json(line), by_name=False))
    except ValueError as exc:
        found = _HEAD_ID.match(line[:_EDGE]) or _TAIL_ID.search(line[-_EDGE:])
        if found is None:
            return exc
        errors = getattr(exc, "errors", None)
        reason = errors()[0]["msg"] if callable(errors) and errors() else str(exc)
        return _error_answer(found, f"the MCP server's answer could not be read: {reason}")


class ServerProcess:
    """A started stdio server: ``pid`` is the server's own process (its group's id),
    ``supervisor`` the process this module started (the supervisor, or the server itself
    when it runs uncontained); ``returncode`` is the server's status once the supervisor
    has ended (it exits like the server)."""

    def __init__(self, process: Any, pid: int) -> None:
        self.process = process
        self.pid = pid
        self.supervisor = process.pid
        self.stdin = process.stdin
        self.stdout = process.stdout

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


@contextlib.asynccontextmanager
async def stdio_transport(command: str, args: list[str], *, env: dict[str, str] | None = None,
                          cwd: str | None = None, stderr: int | None = None,
                          max_bytes: int = MAX_MESSAGE_BYTES, max_tools: int | None = None,
                          contain: bool = True
                          ) -> AsyncIterator[tuple[StdioReader, StdioWriter, ServerProcess]]:
    """Start ``command`` in a process group of its own and yield ``(read stream, write
    stream, process)`` for ``mcp.ClientSession``; on exit the server is shut down (stdin
    closed, then SIGTERM, then SIGKILL to its group), even when the caller is cancelled.
    ``env`` is added to the SDK's default environment; ``stderr`` is a file descriptor;
    ``max_bytes`` bounds one message, ``max_tools`` one tool listing. With ``contain``
    (Linux) the server runs under the supervisor, and every process it leaves behind ends
    with it."""
    from mcp.client.stdio import get_default_environment

    contain = contain and sys.platform.startswith("linux")
    status_read, status_write = os.pipe() if contain else (-1, -1)
    argv = ([helper_python(), "-I", "-S", _SUPERVISOR, str(status_write), "--", command, *args]
            if contain else [command, *args])
    try:
        process = await anyio.open_process(
            argv, stdin=PIPE, stdout=PIPE, stderr=stderr if stderr is not None else DEVNULL,
            env=get_default_environment() | (env or {}), cwd=cwd, start_new_session=True,
            pass_fds=(status_write,) if contain else ())
    except BaseException:
        if contain:
            os.close(status_read)
        raise
    finally:
        if contain:
            os.close(status_write)
    server = ServerProcess(process, process.pid)
    writer = StdioWriter(process.stdin)
    try:
        if contain:
            server.pid = await _server_pid(status_read, command)
        yield StdioReader(process.stdout, max_bytes, max_tools), writer, server
    finally:
        if contain:
            os.close(status_read)
        with anyio.CancelScope(shield=True):
            await _shutdown(server, writer)


async def _server_pid(fd: int, command: str) -> int:
    """The server's pid, as the supervisor reports it (or the error that kept it from
    starting: ``FileNotFoundError``, ``PermissionError``...)."""
    data = b""
    with anyio.fail_after(SPAWN_BOUND):
        while not data.endswith(b"\n"):
            await anyio.wait_readable(fd)
            chunk = os.read(fd, 64)
            if not chunk:
                break
            data += chunk
    kind, _, value = data.decode(errors="replace").strip().partition(" ")
    if kind == "P":
        return int(value.split()[0])
    if kind == "E":
        number = int(value)
        raise OSError(number, os.strerror(number), command)
    raise OSError(f"the MCP server supervisor did not start {command!r}")


async def _shutdown(server: ServerProcess, writer: StdioWriter) -> None:
    """The MCP stdio shutdown: close stdin and wait for the exit, draining stdout so a
    server blocked writing can finish; then SIGTERM, then SIGKILL, to the server's
    process group (the supervisor then ends what the server left behind); last, should
    the supervisor itself still run, SIGKILL to it."""
    await writer.aclose()
    async with anyio.create_task_group() as group:
        group.start_soon(_drain, server.stdout)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.pid, sig)
            if await _exited(server.process, EXIT_GRACE):
                break
        else:
            if server.supervisor != server.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.supervisor, signal.SIGKILL)
                await _exited(server.process, EXIT_GRACE)
        group.cancel_scope.cancel()
    with contextlib.suppress(*_CLOSED):
        await server.stdout.aclose()
    # the subprocess transport stays open while a descendant holds a pipe end: close it
    transport = getattr(getattr(server.process, "_process", None), "_transport", None)
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
