"""Loopback servers for tests and benchmarks of the browser and its egress guard.

:class:`PageServer` serves pages from a route table on ``127.0.0.1`` (an ephemeral port)
and counts every TCP connection it accepts and every request it reads, so an attack test
can assert that a forbidden server received *nothing*. Standard library only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: ``route(handler) -> None`` writes a whole answer itself.
Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Page:
    """A fixed answer: body, content type, status and extra headers."""

    body: bytes | str
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class PageServer:
    """A threaded HTTP server on loopback that counts what reaches it.

    ``routes`` maps a path (without the query) to a :class:`Page`, a ``str`` (HTML) or a
    callable writing the answer; other paths get 404. ``connections`` counts accepted TCP
    connections, ``requests`` lists the request paths read (``"WS /path"`` for a WebSocket
    handshake, which is answered with ``101`` and an echo of the first frame)."""

    def __init__(self, routes: dict[str, Page | str | Handler] | None = None) -> None:
        self.routes: dict[str, Page | str | Handler] = dict(routes or {})
        self.requests: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        outer = self

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self) -> tuple[socket.socket, Any]:
                conn, addr = super().get_request()
                with outer._lock:
                    outer.connections += 1
                return conn, addr

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer._serve(self)

            do_POST = do_GET
            do_HEAD = do_GET

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"page-server-{self.port}")
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow_entry(self) -> str:
        """The egress allow-list entry for exactly this server."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    @property
    def hits(self) -> int:
        """Connections accepted plus requests read (0: nothing reached this server)."""
        with self._lock:
            return self.connections + len(self.requests)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        if handler.headers.get("Upgrade", "").lower() == "websocket":
            with self._lock:
                self.requests.append(f"WS {path}")
            _websocket_echo(handler)
            return
        with self._lock:
            self.requests.append(path)
        route = self.routes.get(path)
        if callable(route):
            route(handler)
            return
        page = Page(route) if isinstance(route, str) else route
        if page is None:
            page = Page("not found", "text/plain", 404)
        body = page.body.encode() if isinstance(page.body, str) else page.body
        handler.send_response(page.status)
        handler.send_header("Content-Type", page.content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        for name, value in page.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> PageServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _websocket_echo(handler: BaseHTTPRequestHandler) -> None:
    key = handler.headers.get("Sec-WebSocket-Key", "")
    accept = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    handler.send_response(101)
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept)
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True


class CountingListener:
    """A bare TCP listener on loopback that accepts, counts and holds connections (it never
    answers): the forbidden end of an egress test, or a silent upstream."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._held.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.received += data

    @property
    def hits(self) -> int:
        with self._lock:
            return self.connections

    def close(self) -> None:
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)   # wakes the accepting thread
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            for conn in self._held:
                conn.close()


def require_chromium() -> str:
    """The Chromium to drive, with Playwright installed; else skip the test (fail it
    under ``CI``)."""
    import importlib.util
    import os

    from agently_core.testing.requirements import require

    from .settings import default_executable

    path = default_executable()
    require(os.access(path, os.X_OK), f"Chromium is not installed at {path} "
                                      "(apt-get install chromium; ./dev installs it)")
    require(importlib.util.find_spec("playwright") is not None,
            "playwright is not installed (uv sync installs it)")
    return path


def snapshot_ref(state: str, role: str, name: str) -> str:
    """The ``ref`` of the element ``role "name"`` in an AI snapshot (BrowserEnv's state);
    AssertionError showing the state when it has none."""
    import re

    found = re.search(rf'- {role} "{re.escape(name)}"[^\n]*\[ref=(\w+)\]', state)
    assert found, f"no {role} {name!r} in the state:\n{state}"
    return found.group(1)


async def events_until(browser: Any, key: str, predicate: Callable[[list[dict[str, str]]], bool],
                       timeout: float = 5.0, seen: list[dict[str, str]] | None = None
                       ) -> list[dict[str, str]]:
    """Collect what session ``key`` of ``browser`` reports (refusals, closed pop-ups...),
    after the events ``seen`` already, until ``predicate(events)`` holds or ``timeout``
    passes; returns them all."""
    events: list[dict[str, str]] = list(seen or [])
    deadline = time.monotonic() + timeout
    while True:
        _, more = await browser.act(key, "state")
        events.extend(more)
        if predicate(events) or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.05)


__all__ = ["CountingListener", "Page", "PageServer", "events_until", "require_chromium",
           "snapshot_ref"]
