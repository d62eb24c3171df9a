"""Live MCP sessions: the resource the ``mcp`` environment provider hands out.

The session task model
----------------------

The SDK's client is a stack of async context managers (transport, then ``ClientSession``)
whose task groups and cancel scopes belong to the task that entered them. A resource the
environment manager keeps across calls cannot live in the frame of one call, so each
session gets a **dedicated owner task** (:meth:`_Session._own`) on the event loop that
started it, its *home loop*. The owner task enters the context managers, completes the
MCP ``initialize`` handshake, reports ready, then waits for a close request; leaving the
``async with`` blocks in that same task is what shuts the transport down (the SDK closes
the server's stdin, then terminates the process group). Calls are ordinary requests on
the shared ``ClientSession``, sent from whichever task makes them: JSON-RPC requests are
matched to responses by id, so many calls run concurrently on one session.

A call made on the home loop talks to the session directly. A call from another event
loop is forwarded to the home loop with ``run_coroutine_threadsafe`` (its cancellation
forwarded too). :meth:`McpConnection._session` decides where a session should live:

* agently-core's synchronous API runs everything on one shared loop thread, which user
  code never blocks: a session living there is forwarded to from any loop;
* a session only used so far to list tools at mount (``agent.use_mcp`` is synchronous and
  lists on the shared loop) moves to the loop of the first call, so async code calls it
  without a thread hop;
* a call from the shared loop to a session living on a user's loop moves it to the shared
  loop instead of forwarding (the user's loop may be blocked waiting for this very call:
  the synchronous API called from a coroutine).

Moving a session starts a new one before the old one is closed; a call that finds its
session dead (the server exited) starts a fresh one before sending anything, so no call is
ever sent twice. Releasing never waits on a loop that cannot run: a session whose home loop
is another loop is asked to close, and its server process group is terminated directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import secrets
import select
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from agently_core import _sync

from .servers import resolve_command

#: Set in a stdio server's environment (to a value unique to the session), so its
#: processes can be told apart from any others (``testing.server_pids``, operators).
MARKER_VARIABLE = "AGENTLY_MCP_SESSION"
#: How much of a stdio server's stderr is kept for error messages.
STDERR_TAIL = 4000
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_PING_INTERVAL = 30.0
DEFAULT_PING_TIMEOUT = 5.0
DEFAULT_MAX_TOOLS = 1000
#: The largest message a server may send (a tool result, a tool listing), by default.
DEFAULT_MAX_RESULT_BYTES = 32 * 1024 * 1024
#: Pages of a ``tools/list`` answer read at most (a server paging forever is an error).
MAX_PAGES = 1000
#: The longest a release waits for a session's own shutdown before killing its server.
CLOSE_BOUND = 8.0


class McpStartError(Exception):
    """An MCP server could not be started or connected to (the message says why)."""


class McpSessionLost(Exception):
    """The session's server went away (exited, or its connection broke)."""


class McpListError(McpStartError):
    """The server's tool listing failed, timed out or went over a limit (the message
    names the server, the step and the limit)."""


def _shared_loop() -> asyncio.AbstractEventLoop | None:
    """The loop of agently-core's synchronous API (None until it is first used)."""
    return getattr(_sync, "_loop", None)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _Session:
    """One connection to one server, owned by a task on its home loop."""

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.label = config.get("label") or "server"
        self.loop = loop
        self.client: Any = None
        self.init: Any = None
        self.pid: int | None = None
        self.error: BaseException | None = None
        self.broken = False  # the connection failed under a call
        self.used = False  # has served a tool call (not just the tool listing)
        self.suspect = False  # a call timed out: ping before the next reuse
        self.last_ok = time.monotonic()
        self.started_at = time.monotonic()
        self._pidfd: int | None = None
        self._stderr = bytearray()
        self._stderr_fd: int | None = None
        self._marker = secrets.token_hex(12)
        self._closing = asyncio.Event()
        self._ready: asyncio.Future[Any] = loop.create_future()
        self._ready.add_done_callback(_retrieve)
        #: Set (thread-safely) once the owner task has shut everything down.
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.task: asyncio.Task[None] | None = None

    # -- the owner task ----------------------------------------------------------------
    def spawn(self) -> None:
        self.task = self.loop.create_task(self._own(), name=f"agently-mcp-session:{self.label}")

    async def _own(self) -> None:
        from mcp_types import Implementation

        timeout = float(self.config.get("start_timeout") or DEFAULT_START_TIMEOUT)
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await self._transport(stack, timeout)
                client = await stack.enter_async_context(_client_class()(
                    read, write, client_info=Implementation(name="agently-core",
                                                            version=_version())))
                with anyio.fail_after(timeout):
                    self.init = await client.initialize()
                self.client = client
                self.last_ok = time.monotonic()
                if not self._ready.done():
                    self._ready.set_result(self)
                await self._closing.wait()
        except BaseException as exc:  # the owner task never raises: it reports
            self.error = exc
            if isinstance(exc, asyncio.CancelledError):
                # A native task.cancel() (asyncio.run cancelling every task as it ends)
                # cuts through anyio's shielded shutdown: make sure the server is gone.
                self.kill(signal.SIGKILL)
            if not self._ready.done():
                self._ready.set_exception(self._start_error(exc))
            if not isinstance(exc, Exception) and not isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.broken = True
            if not self.done.done():  # first: from now on nothing signals the old pid
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    self.done.set_result(None)
            self._close_pidfd()

    async def _transport(self, stack: contextlib.AsyncExitStack, timeout: float) -> Any:
        transport = self.config.get("transport")
        if transport == "stdio":
            return await self._stdio(stack)
        from .http_limits import bounded_client_factory, response_hook

        headers = dict(self.config.get("headers") or {})
        url = self.config["url"]
        limit = int(self.config.get("max_result_bytes") or DEFAULT_MAX_RESULT_BYTES)
        if transport == "sse":
            from mcp.client.sse import sse_client

            return await stack.enter_async_context(sse_client(
                url, headers=headers, timeout=min(timeout, 30.0), sse_read_timeout=3600.0,
                httpx_client_factory=bounded_client_factory(limit)))
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = await stack.enter_async_context(httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(min(timeout, 30.0), read=3600.0),
            event_hooks={"response": [response_hook(limit)]}))
        return await stack.enter_async_context(streamable_http_client(
            url, http_client=http, max_sse_event_size=limit))

    async def _stdio(self, stack: contextlib.AsyncExitStack) -> Any:
        from .stdio import stdio_transport

        env = {str(k): str(v) for k, v in (self.config.get("env") or {}).items()}
        env[MARKER_VARIABLE] = self._marker
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._stderr_fd = read_fd
        stack.callback(self._stop_stderr)  # runs after the transport has stopped the server
        self.loop.add_reader(read_fd, self._read_stderr)
        try:
            read, write, process = await stack.enter_async_context(stdio_transport(
                resolve_command(self.config["command"]), [str(a) for a in self.config.get("args") or ()],
                env=env, cwd=self.config.get("cwd") or None, stderr=write_fd,
                max_bytes=int(self.config.get("max_result_bytes") or DEFAULT_MAX_RESULT_BYTES),
                max_tools=self.config.get("max_tools")))
        finally:
            os.close(write_fd)  # the server holds its own copy
        self.pid = process.pid
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):
            self._pidfd = None
        return read, write

    def _read_stderr(self) -> None:
        fd = self._stderr_fd
        if fd is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stop_stderr()
            return
        self._stderr += data
        if len(self._stderr) > 2 * STDERR_TAIL:
            del self._stderr[:-STDERR_TAIL]

    def _stop_stderr(self) -> None:
        fd, self._stderr_fd = self._stderr_fd, None
        if fd is None:
            return
        with contextlib.suppress(Exception):
            self.loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            while data := os.read(fd, 65536):  # what is left in the pipe
                self._stderr += data
        with contextlib.suppress(OSError):
            os.close(fd)
        del self._stderr[:-STDERR_TAIL]

    def stderr_tail(self, limit: int = 1500) -> str:
        text = bytes(self._stderr[-limit:]).decode(errors="replace").strip()
        return text

    def _start_error(self, exc: BaseException) -> Exception:
        leaf = _leaf(exc)
        config = self.config
        what = f"MCP server {self.label!r}"
        if isinstance(leaf, FileNotFoundError) and config.get("transport") == "stdio":
            message = f"cannot start {what}: command {config.get('command')!r} not found"
        elif isinstance(leaf, PermissionError) and config.get("transport") == "stdio":
            message = f"cannot start {what}: {config.get('command')!r} is not executable"
        elif isinstance(leaf, TimeoutError):
            message = (f"{what} did not complete the MCP handshake: no answer to initialize "
                       f"within {float(config.get('start_timeout') or DEFAULT_START_TIMEOUT):g}s "
                       "(start_timeout)")
        elif isinstance(leaf, asyncio.CancelledError):
            message = f"starting {what} was cancelled"
        elif config.get("transport") == "stdio" and _is_closed(leaf):
            message = f"{what} exited before completing the MCP handshake"
        elif config.get("transport") != "stdio":
            message = (f"cannot connect to {what} at {config.get('url')}: "
                       f"{type(leaf).__name__}: {leaf}")
        else:
            message = f"cannot start {what}: {type(leaf).__name__}: {leaf}"
        tail = self.stderr_tail()
        if tail:
            message += f"; its stderr ends with: {tail}"
        return McpStartError(message)

    # -- life --------------------------------------------------------------------------
    async def ready(self) -> _Session:
        return await asyncio.shield(self._ready)

    def exited(self) -> bool:
        """Has the server process exited (stdio; False when it cannot be told)?"""
        fd = self._pidfd
        if fd is None:
            return False
        try:
            return bool(select.select([fd], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    @property
    def alive(self) -> bool:
        # the owner task sets ``broken`` before ``done``: no need to ask ``done`` (whose
        # ``done()`` takes a lock) on this hot path
        return not self.broken and not self.exited()

    def request_close(self) -> None:
        """Ask the owner task to shut the session down (from any thread)."""
        loop = self.loop
        if loop.is_closed():
            self.kill(signal.SIGKILL)  # nothing will run the shutdown: stop the server now
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._closing.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._closing.set)

    def kill(self, sig: int) -> None:
        """Signal the server's process group (it runs in a session of its own), unless the
        server is known to have exited: its pid may belong to another process by then."""
        if self.pid is None or self.done.done() or self.exited():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(self.pid, sig)

    async def aclose(self, *, force: bool = False) -> None:
        """Shut down, never waiting on a loop that may not run: the home loop when it is
        the caller's or the shared one, otherwise the server process is terminated."""
        if force:
            self.kill(signal.SIGKILL)
        self.request_close()
        if self.done.done():
            return
        current = asyncio.get_running_loop()
        if self.loop is current or (self.loop is _shared_loop() and self.loop.is_running()):
            with anyio.move_on_after(CLOSE_BOUND):
                await asyncio.shield(asyncio.wrap_future(self.done))
            if not self.done.done():
                self.kill(signal.SIGKILL)
            return
        # another loop, which may be blocked (the sync API called from a coroutine on it)
        self.kill(signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while self.pid is not None and not self.exited() and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        self.kill(signal.SIGKILL)

    def _close_pidfd(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- requests (on the home loop) ---------------------------------------------------
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        self.used = True
        try:
            result = await self.client.call_tool(name, arguments)
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                self.suspect = True  # timed out or abandoned: check the server before reuse
            elif _is_closed(exc):
                self.broken = True
            raise
        self.last_ok = time.monotonic()
        return result

    async def list_tools(self, timeout: float | None = None,
                         max_tools: int | None = None) -> list[Any]:
        """Every page of ``tools/list``, all of them within ``timeout`` seconds; more than
        ``max_tools`` tools, a cursor seen twice or more than :data:`MAX_PAGES` pages is
        an :class:`McpListError`."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import PaginatedRequestParams

        what = f"MCP server {self.label!r}"
        tools: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        try:
            with anyio.fail_after(timeout):
                for _ in range(MAX_PAGES):
                    page = await self.client.list_tools(
                        params=PaginatedRequestParams(cursor=cursor) if cursor else None)
                    tools.extend(page.tools)
                    if max_tools is not None and len(tools) > max_tools:
                        raise McpListError(
                            f"{what} lists more than {max_tools} tools (max_tools); pass "
                            "use_mcp(..., max_tools=N) to allow more, or tools=[...]")
                    cursor = page.next_cursor
                    if not cursor:
                        break
                    if cursor in seen:
                        raise McpListError(f"{what} answered tools/list with a cursor it "
                                           "had given before: its pages never end")
                    seen.add(cursor)
                else:
                    raise McpListError(f"{what} answered tools/list with more than "
                                       f"{MAX_PAGES} pages")
        except TimeoutError:
            raise McpListError(f"{what} did not answer tools/list within {timeout:g}s "
                               "(start_timeout)") from None
        except MCPError as exc:
            from .stdio import UNREADABLE_ANSWER

            code = "" if exc.code == UNREADABLE_ANSWER else f" (error {exc.code})"
            raise McpListError(f"{what} failed tools/list: {exc.message}{code}") from None
        self.last_ok = time.monotonic()
        return tools

    async def ping(self, timeout: float) -> bool:
        try:
            with anyio.fail_after(timeout):
                await self.client.send_ping()
        except Exception:
            return False
        self.last_ok = time.monotonic()
        self.suspect = False
        return True


class McpConnection:
    """The managed resource for one MCP server: its live session (see the module's
    docstring for where sessions live), plus what the server told about itself."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = dict(config)
        self.label = self.config.get("label") or "server"
        self._active: _Session | None = None
        self._retired: list[_Session] = []
        self._pending: dict[asyncio.AbstractEventLoop, asyncio.Future[_Session]] = {}
        self.closed = False
        self.unhealthy = False
        #: How many sessions this connection has started (1 unless it restarted or moved).
        self.sessions_started = 0

    # -- information -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The stdio server's process id (None for HTTP/SSE or when it is unknown)."""
        return self._active.pid if self._active is not None else None

    @property
    def server_info(self) -> Any:
        session = self._active
        return session.init.server_info if session is not None and session.init else None

    @property
    def instructions(self) -> str | None:
        session = self._active
        return session.init.instructions if session is not None and session.init else None

    def stderr_tail(self) -> str:
        return self._active.stderr_tail() if self._active is not None else ""

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> McpConnection:
        """Start the first session, on the running loop."""
        self._active = await self._new_session()
        return self

    async def _new_session(self) -> _Session:
        session = _Session(self.config, asyncio.get_running_loop())
        session.spawn()
        self.sessions_started += 1
        bound = float(self.config.get("start_timeout") or DEFAULT_START_TIMEOUT) + 10.0
        try:
            with anyio.fail_after(bound):
                return await session.ready()
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await session.aclose(force=True)
            if isinstance(exc, TimeoutError) and not session._ready.done():
                raise McpStartError(f"MCP server {self.label!r} did not start within "
                                    f"{bound:g}s") from None
            raise

    async def healthy(self) -> bool:
        """Cheap unless due: the session is open and its server process runs; an MCP ping
        when the session has been idle longer than ``ping_interval`` or a call on it timed
        out."""
        session = self._active
        if self.closed or session is None or not session.alive:
            self.unhealthy = True
            return False
        current = asyncio.get_running_loop()
        home = session.loop
        if home is not current and (home.is_closed() or not home.is_running()):
            self.unhealthy = True
            return False
        interval = float(self.config.get("ping_interval") or DEFAULT_PING_INTERVAL)
        due = session.suspect or time.monotonic() - session.last_ok > interval
        if due and (home is current or home is _shared_loop()):
            timeout = float(self.config.get("ping_timeout") or DEFAULT_PING_TIMEOUT)
            if not await self._on(session, session.ping, timeout):
                self.unhealthy = True
                return False
        return True

    async def aclose(self) -> None:
        """Close every session of this connection (the server processes are gone after)."""
        self.closed = True
        sessions = [s for s in (self._active, *self._retired) if s is not None]
        self._active = None
        self._retired = []
        for session in sessions:
            await session.aclose(force=self.unhealthy)

    # -- requests ----------------------------------------------------------------------
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        session = await self._session()
        return await self._on(session, session.call_tool, name, arguments)

    async def list_tools(self, timeout: float | None = None,
                         max_tools: int | None = None) -> list[Any]:
        """The server's tools (see :meth:`_Session.list_tools`)."""
        session = self._active
        if session is None or not session.alive:
            session = await self._replace()
        return await self._on(session, session.list_tools, timeout, max_tools)

    async def ping(self, timeout: float = DEFAULT_PING_TIMEOUT) -> bool:
        session = self._active
        if session is None or not session.alive:
            return False
        return await self._on(session, session.ping, timeout)

    async def _session(self) -> _Session:
        """The session a call from the running loop should use (see the module docstring)."""
        if self.closed:
            raise McpSessionLost(f"the session with MCP server {self.label!r} was released")
        session = self._active
        current = asyncio.get_running_loop()
        if session is not None and session.alive:
            home = session.loop
            if home is current:
                return session
            shared = _shared_loop()
            if not home.is_closed() and home.is_running():
                if home is shared and (session.used or current is shared):
                    return session  # forwarded to the shared loop, which never blocks
                if home is not shared and current is not shared:
                    return session  # between two user loops: forwarded
        return await self._replace()

    async def _replace(self) -> _Session:
        """Start a session on the running loop and retire the current one."""
        current = asyncio.get_running_loop()
        pending = self._pending.get(current)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Session] = current.create_future()
        future.add_done_callback(_retrieve)
        self._pending[current] = future
        try:
            session = await self._new_session()
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
            else:
                future.cancel()
            raise
        finally:
            self._pending.pop(current, None)
        if self.closed:  # released while it started
            await session.aclose()
            future.cancel()
            raise McpSessionLost(f"the session with MCP server {self.label!r} was released")
        old, self._active = self._active, session
        if old is not None:
            self._retired = [s for s in self._retired if not s.done.done()]
            self._retired.append(old)
            old.request_close()
        future.set_result(session)
        return session

    @staticmethod
    async def _on(session: _Session, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await fn(*args)`` on the session's home loop (directly when that is this one)."""
        if session.loop is asyncio.get_running_loop():
            return await fn(*args)
        coro = fn(*args)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, session.loop)
        except RuntimeError:  # the home loop closed meanwhile
            coro.close()
            session.broken = True
            raise McpSessionLost(f"the event loop of the session with MCP server "
                                 f"{session.label!r} has closed") from None
        return await asyncio.wrap_future(future)


# -- helpers -----------------------------------------------------------------------------
@functools.cache
def _client_class() -> type:
    """The SDK's ``ClientSession`` without its own check of structured results against
    the tool's output schema: that check runs the server's schema, ``pattern`` regexes
    included, in this process, and lists the tools again on a new session's first call.
    The executor checks structured results itself, without the server's regexes
    (:mod:`agently_core_mcp.schemas`)."""
    from mcp import ClientSession

    class AgentlyClientSession(ClientSession):
        async def validate_tool_result(self, name: str, result: Any) -> None:
            return None

    return AgentlyClientSession


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (its waiters, if any, get it anyway)."""
    if not future.cancelled():
        future.exception()


def _is_closed(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    leaf = _leaf(exc)
    if isinstance(leaf, MCPError):
        return leaf.code == CONNECTION_CLOSED
    return isinstance(leaf, (anyio.ClosedResourceError, anyio.BrokenResourceError,
                             anyio.EndOfStream, ConnectionError))


@functools.cache
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("agently-core-mcp")
    except Exception:
        return "0"
