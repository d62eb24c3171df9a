"""Loopback stand-ins for the web, for tests and benchmarks (standard library only).

:class:`Site` is a threaded HTTP server on a loopback address whose routes are plain
functions, recording every request it receives. :class:`Tripwire` is a TCP listener that
only counts the connections it accepts (and answers nothing useful): the address a test
says must never be reached.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: ``route(handler) -> None``: writes the whole response through ``handler``.
Route = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Site:
    """An HTTP/1.1 server on ``host`` (port 0: any free port) serving ``routes`` by path
    (query string ignored; ``"*"`` answers any other path); HTTPS with ``tls``."""

    routes: dict[str, Route] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    #: Serve HTTPS with this server-side context.
    tls: ssl.SSLContext | None = None

    def start(self) -> Site:
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                site.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                path = self.path.split("?", 1)[0]
                if path.startswith(("http://", "https://")):  # a proxy's absolute form
                    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
                    path = path.split("?", 1)[0]
                route = site.routes.get(path) or site.routes.get("*")
                if route is None:
                    send(self, 404, b"not here", "text/plain")
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True,
                         name=f"site-{self.port}").start()
        return self

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes,
         content_type: str | None, headers: dict[str, str] | None = None) -> None:
    """A complete response with a Content-Length."""
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def redirect(location: str, status: int = 302) -> Route:
    """A route that redirects to ``location``."""
    return lambda h: send(h, status, b"", "text/plain", {"Location": location})


def page(body: bytes | str, content_type: str | None = "text/html; charset=utf-8",
         status: int = 200, headers: dict[str, str] | None = None) -> Route:
    """A route that answers ``body``."""
    data = body.encode() if isinstance(body, str) else body
    return lambda h: send(h, status, data, content_type, headers)


class Tripwire:
    """A TCP listener on ``host:port`` that counts every connection it accepts."""

    def __init__(self, host: str = "127.0.0.2", port: int = 0) -> None:
        self.sock = socket.create_server((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True, name=f"tripwire-{self.port}").start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def stop(self) -> None:
        self._stop = True
        self.sock.close()


__all__ = ["Seen", "Site", "Tripwire", "page", "redirect", "send"]
