"""A forward HTTP proxy that lets a request leave only where the egress guard says.

Chromium is pointed at it (``--proxy-server=http://127.0.0.1:PORT`` with
``--proxy-bypass-list=<-loopback>``, so loopback goes through it too), and then every
request a page makes passes here: navigations and their redirects, subresources,
fetch/XHR, WebSockets. Two request forms arrive:

* ``CONNECT host:port`` (https, wss and, from Chromium, ws): the target is vetted, a tunnel
  is opened to one of the vetted addresses and bytes are copied both ways;
* absolute form ``GET http://host:port/path`` (http, and ws upgrades from other clients):
  the target is vetted, the request is rewritten to origin form and sent to one of the
  vetted addresses; the answer is copied back and the connection closed afterwards (one
  request per proxy connection, so a reused connection can never carry a request for one
  host to another).

The proxy connects **only** to an address :meth:`EgressGuard.vet` returned: there is no
second DNS lookup, so a name that rebinds to loopback between check and use has no window.
A refused target gets ``403`` with the reason, and ``(target, reason)`` is recorded in
:attr:`GuardProxy.refused`. Bad requests get ``400``; the proxy keeps serving. It is
bounded: concurrent connections, request-head size, and timeouts for the head, the connect
and idle tunnels.

The proxy runs its own event loop in a daemon thread, so any caller (sync or async, in any
loop) can use it::

    with GuardProxy(EgressGuard.build(allow=["127.0.0.1:8123"])) as proxy:
        launch_browser(proxy=proxy.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agently_core.egress import EgressGuard, EgressRefused
from agently_core_browser.threaded_loop import start_loop_thread

#: Headers that belong to the hop between client and proxy, never forwarded.
_HOP_HEADERS = frozenset({"proxy-connection", "proxy-authorization", "proxy-authenticate",
                          "keep-alive", "connection", "te", "trailer"})
_REASONS = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class RefusalLog:
    """A thread-safe list of ``(target, reason)`` pairs; optionally calls a listener (from
    the proxy's thread) for each new refusal."""

    def __init__(self, listener: Callable[[str, str], None] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.listener = listener

    def append(self, item: tuple[str, str]) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()
        if self.listener is not None:
            with contextlib.suppress(Exception):
                self.listener(*item)

    def snapshot(self) -> list[tuple[str, str]]:
        """A copy of the refusals so far."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def wait_for(self, predicate: Callable[[list[tuple[str, str]]], bool],
                 timeout: float = 5.0) -> bool:
        """Block until ``predicate(refusals)`` holds (``True``) or ``timeout`` passes."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self._items)), timeout)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, index: int) -> tuple[str, str]:
        with self._lock:
            return self._items[index]

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"RefusalLog({self.snapshot()!r})"


class _HttpError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class GuardProxy:
    """A forward proxy on ``127.0.0.1`` (an ephemeral port) enforcing ``guard``; see the
    module's docstring. ``on_refused(target, reason)`` is called from the proxy's thread for
    each refusal."""

    def __init__(self, guard: EgressGuard, *, host: str = "127.0.0.1",
                 max_connections: int = 256, max_header_bytes: int = 32 * 1024,
                 header_timeout: float = 10.0, connect_timeout: float = 10.0,
                 idle_timeout: float = 60.0,
                 on_refused: Callable[[str, str], None] | None = None) -> None:
        self.guard = guard
        self.host = host
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.refused = RefusalLog(on_refused)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._state_lock = threading.Lock()
        self._closed = False
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``--proxy-server`` or an HTTP client's proxy."""
        if not self._started:
            raise RuntimeError("the guard proxy is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def active_connections(self) -> int:
        """Client connections being served now."""
        return len(self._tasks)

    def start(self) -> GuardProxy:
        """Listen (in a daemon thread with its own loop); returns ``self``."""
        with self._state_lock:
            if self._closed:
                raise RuntimeError("the guard proxy is closed")
            if self._started:
                return self
            self._loop, self._thread = start_loop_thread(self._listen, "agently-guard-proxy")
            self._started = True
            return self

    def close(self) -> None:
        """Stop listening and close every live connection and tunnel (idempotent)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if thread is threading.current_thread():   # from a listener inside the proxy
            assert loop is not None
            loop.create_task(self._shutdown()).add_done_callback(lambda _: loop.stop())
            return
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    def __enter__(self) -> GuardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, 0, limit=self.max_header_bytes, backlog=128)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # -- one client connection ----------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= self.max_connections or self._closed:
            await self._answer(reader, writer, 503,
                               "the egress proxy is at its connection limit")
            return
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            upstream = await self._serve(reader, writer)
        except _HttpError as exc:
            await self._answer(reader, writer, exc.status, exc.reason)
        except (asyncio.CancelledError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            for w in (upstream, writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()          # flushes what is buffered; shutdown aborts instead

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      status: int, reason: str) -> None:
        """Send an error answer, end our side, and swallow what the client still sends for
        a moment (closing with unread input would reset the connection and lose the
        answer)."""
        with contextlib.suppress(Exception):
            writer.write(_response(status, reason))
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(1.0):
                while await reader.read(65536):
                    pass
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> asyncio.StreamWriter | None:
        head = await self._read_head(reader)
        method, target = head.method, head.target
        if method == "CONNECT":
            host, port = _authority(target, None)
            if not ({"https", "wss"} & self.guard.schemes):
                raise self._refuse(target, "CONNECT (https/wss) is not an allowed scheme")
            up_reader, up_writer = await self._open(target, host, port)
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await self._pipe_both(reader, writer, up_reader, up_writer)
            return up_writer
        if not target.lower().startswith(("http://", "https://", "ws://", "wss://")):
            raise _HttpError(400, "this is a forward proxy: send CONNECT host:port or an "
                                  "absolute-form request (GET http://host/path)")
        try:
            parsed = self.guard.target(target)
        except EgressRefused as exc:
            raise self._refuse(target, str(exc)) from None
        if parsed.scheme in ("https", "wss"):
            raise _HttpError(400, f"{parsed.scheme}: URLs go through CONNECT, not in the "
                                  "clear through the proxy")
        up_reader, up_writer = await self._open(target, parsed.host, parsed.port)
        upgrade = "upgrade" in head.get("connection").lower() and bool(head.get("upgrade"))
        up_writer.write(_origin_request(head, upgrade=upgrade))
        await up_writer.drain()
        if upgrade:
            await self._pipe_both(reader, writer, up_reader, up_writer)
            return up_writer
        # Response head: mark it "close" so the client never sends a second request here.
        try:
            answer = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"),
                                            self.idle_timeout)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError):
            raise _HttpError(502, "the upstream answered with a bad response head") from None
        except TimeoutError:
            raise _HttpError(504, "the upstream did not answer in time") from None
        writer.write(_close_response_head(answer))
        await writer.drain()
        await self._pipe_both(reader, writer, up_reader, up_writer)
        return up_writer

    async def _read_head(self, reader: asyncio.StreamReader) -> _Head:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.header_timeout)
        except TimeoutError:
            raise _HttpError(408, "no complete request head in time") from None
        except (asyncio.LimitOverrunError, ValueError):
            raise _HttpError(431, f"the request head exceeds {self.max_header_bytes} "
                                  "bytes") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise ConnectionResetError("client left") from None
            raise _HttpError(400, "the request head ended early") from None
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise _HttpError(400, "undecodable request head") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if (len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper()
                or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1]
                or any(ord(c) < 33 or ord(c) > 126 for c in parts[1])):
            raise _HttpError(400, "not an HTTP/1.x request line")
        head = _Head(parts[0], parts[1], parts[2])
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if (not sep or not name or any(ord(c) < 33 or ord(c) > 126 for c in name)
                    or "\r" in value or "\n" in value or "\0" in value):
                raise _HttpError(400, "a malformed header line")
            head.lines.append((name, value))
        return head

    def _refuse(self, target: str, reason: str) -> _HttpError:
        self.refused.append((target, reason))
        return _HttpError(403, reason)

    async def _open(self, target: str, host: str, port: int
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Vet ``host:port`` and connect to one of the addresses vet returned."""
        try:
            addresses = await asyncio.wait_for(self.guard.vet(host, port), self.connect_timeout)
        except EgressRefused as exc:
            raise self._refuse(target, str(exc)) from None
        except TimeoutError:
            raise self._refuse(target, f"resolving {host!r} took too long") from None
        last: Exception | None = None
        for address in addresses:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port, limit=self.max_header_bytes),
                    self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                last = exc
                continue
            self._writers.add(up_writer)
            return up_reader, up_writer
        raise _HttpError(502, f"cannot connect to {host} port {port}: {last}")

    async def _pipe_both(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter,
                         u_reader: asyncio.StreamReader, u_writer: asyncio.StreamWriter) -> None:
        """Copy both ways until either side ends or nothing moves for ``idle_timeout``."""
        last = [asyncio.get_running_loop().time()]

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while True:
                    chunk = await src.read(65536)
                    if not chunk:
                        break
                    last[0] = asyncio.get_running_loop().time()
                    dst.write(chunk)
                    await dst.drain()
            with contextlib.suppress(Exception):
                if dst.can_write_eof():
                    dst.write_eof()

        up = asyncio.ensure_future(copy(c_reader, u_writer))
        down = asyncio.ensure_future(copy(u_reader, c_writer))
        try:
            pending = {up, down}
            while down in pending:
                _, pending = await asyncio.wait(pending, timeout=min(1.0, self.idle_timeout))
                now = asyncio.get_running_loop().time()
                if now - last[0] > self.idle_timeout:
                    break
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` of a CONNECT request."""
    if "@" in text or "/" in text:
        raise _HttpError(400, f"a CONNECT target must be host:port, not {text[:80]!r}")
    try:
        parts = urlsplit(f"//{text}")
        port = parts.port
    except ValueError as exc:
        raise _HttpError(400, f"a bad CONNECT target {text[:80]!r}: {exc}") from None
    host = parts.hostname or ""
    port = port if port is not None else default_port
    if not host or port is None:
        raise _HttpError(400, f"a CONNECT target must be host:port, not {text[:80]!r}")
    return host, port


@dataclass
class _Head:
    """A parsed request head: request line and header lines in their order."""

    method: str
    target: str
    version: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str:
        wanted = name.lower()
        return next((v.strip() for n, v in reversed(self.lines) if n.lower() == wanted), "")


def _origin_request(head: _Head, *, upgrade: bool) -> bytes:
    parts = urlsplit(head.target)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    authority = parts.netloc.rsplit("@", 1)[-1]
    lines = [f"{head.method} {path} {head.version}", f"Host: {authority}"]
    for name, value in head.lines:
        lowered = name.lower()
        if lowered == "host" or lowered in _HOP_HEADERS or (upgrade and lowered == "upgrade"):
            continue
        lines.append(f"{name}:{value}")
    if upgrade:
        lines += [f"Upgrade: {head.get('upgrade')}", "Connection: Upgrade"]
    else:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _close_response_head(head: bytes) -> bytes:
    """The upstream's response head, marked ``Connection: close`` (a ``101 Switching
    Protocols`` passes unchanged)."""
    if head.split(b" ", 2)[1:2] == [b"101"]:
        return head
    lines = head.decode("latin-1").split("\r\n")
    kept = [lines[0]] + [line for line in lines[1:] if line and line.split(":", 1)[0]
                         .strip().lower() not in ("connection", "keep-alive",
                                                  "proxy-connection")]
    kept += ["Connection: close", "Proxy-Connection: close"]
    return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1")


def _response(status: int, reason: str) -> bytes:
    """A complete ``Connection: close`` answer with ``reason`` as its text body; a refusal
    carries ``X-Agently-Egress: refused``."""
    title = _REASONS.get(status, "Error")
    body = f"{status} {title}: {reason}\n".encode()
    marker = "X-Agently-Egress: refused\r\n" if status == 403 else ""
    return (f"HTTP/1.1 {status} {title}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{marker}\r\n"
            ).encode() + body


__all__ = ["GuardProxy", "RefusalLog"]
