"""The guard proxy alone, driven by plain clients: refused targets never get a connection,
allow-listed ones work, rebinding has no window, bad requests get 400 and it keeps serving."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from agently_core_browser.guard_proxy import GuardProxy
from agently_core_browser.testing import CountingListener, PageServer

from agently_core.egress import BROWSER_SCHEMES, EgressGuard


def exchange(proxy: GuardProxy, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` to the proxy and read until it closes the connection."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def get(proxy: GuardProxy, url: str) -> bytes:
    host = url.split("/")[2]
    return exchange(proxy, f"GET {url} HTTP/1.1\r\nHost: {host}\r\n"
                           "Proxy-Connection: keep-alive\r\n\r\n".encode())


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def page() -> Iterator[PageServer]:
    server = PageServer({"/": "<p>allowed page</p>"})
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(page: PageServer) -> Iterator[GuardProxy]:
    guard = EgressGuard.build(allow=[page.allow_entry], schemes=BROWSER_SCHEMES)
    with GuardProxy(guard) as running:
        yield running


def test_an_allow_listed_loopback_port_is_served_in_absolute_form(
        proxy: GuardProxy, page: PageServer) -> None:
    answer = get(proxy, page.url("/"))
    assert status(answer) == 200
    assert b"allowed page" in answer
    assert b"Connection: close" in answer       # one request per proxy connection


def test_an_allow_listed_loopback_port_is_served_through_connect(
        proxy: GuardProxy, page: PageServer) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(f"CONNECT {page.allow_entry} HTTP/1.1\r\nHost: {page.allow_entry}"
                     "\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        while chunk := sock.recv(65536):
            body += chunk
    assert b"allowed page" in body


@pytest.mark.parametrize("how", ["absolute", "connect"])
def test_another_loopback_port_is_refused_and_gets_nothing(
        proxy: GuardProxy, forbidden: PageServer, how: str) -> None:
    before = forbidden.hits
    if how == "absolute":
        answer = get(proxy, forbidden.url("/"))
    else:
        answer = exchange(proxy, f"CONNECT {forbidden.allow_entry} HTTP/1.1\r\n\r\n".encode())
    assert status(answer) == 403
    assert b"loopback" in answer and b"secret" not in answer
    assert b"X-Agently-Egress: refused" in answer
    assert forbidden.hits == before == 0
    target, reason = proxy.refused[-1]
    assert str(forbidden.port) in target and "loopback" in reason


@pytest.mark.parametrize(("target", "reason"), [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://10.0.0.1/", "private"),
    ("http://192.168.1.1:8080/", "private"),
    ("http://[::1]:80/", "::1"),
    ("http://[::ffff:127.0.0.1]:80/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0.0.0.0:80/", "unspecified"),
    ("CONNECT 169.254.169.254:443", "cloud metadata"),
    ("CONNECT 172.16.0.1:443", "private"),
    ("CONNECT [fe80::1]:443", "link-local"),
])
def test_internal_targets_are_refused(proxy: GuardProxy, target: str, reason: str) -> None:
    if target.startswith("CONNECT"):
        answer = exchange(proxy, f"{target} HTTP/1.1\r\n\r\n".encode())
    else:
        answer = get(proxy, target)
    assert status(answer) == 403, answer
    assert reason.encode() in answer
    assert any(reason in why for _, why in proxy.refused)


@pytest.mark.parametrize("url", ["ftp://example.org/", "file:///etc/passwd"])
def test_schemes_other_than_web_ones_are_not_proxied(proxy: GuardProxy, url: str) -> None:
    answer = exchange(proxy, f"GET {url} HTTP/1.1\r\n\r\n".encode())
    assert status(answer) == 400


def test_rebinding_never_connects_to_loopback(forbidden: PageServer) -> None:
    """The fake resolver says public, then loopback, then public... A proxy that looked the
    name up again when connecting would reach the loopback server; this one connects only
    to what vet checked."""
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["93.184.216.34"] if len(calls) % 2 else ["127.0.0.1"]

    guard = EgressGuard.build(schemes=BROWSER_SCHEMES, resolver=rebinding)
    with GuardProxy(guard, connect_timeout=1.0) as proxy:
        answers = [status(get(proxy, f"http://rebind.test:{forbidden.port}/")),
                   status(get(proxy, f"http://rebind.test:{forbidden.port}/")),
                   status(exchange(proxy, f"CONNECT rebind.test:{forbidden.port} HTTP/1.1"
                                          "\r\n\r\n".encode())),
                   status(exchange(proxy, f"CONNECT rebind.test:{forbidden.port} HTTP/1.1"
                                          "\r\n\r\n".encode()))]
        # Public: the connect is tried there (and fails: no network); loopback: refused.
        assert answers[1] == answers[3] == 403
        assert answers[0] in (502, 504) and answers[2] in (502, 504)
        assert len(calls) == 4                       # one lookup per request, never two
        assert all("loopback" in why for _, why in proxy.refused)
    assert forbidden.hits == 0


def test_a_name_with_one_internal_address_is_refused(forbidden: PageServer) -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    guard = EgressGuard.build(schemes=BROWSER_SCHEMES, resolver=mixed)
    with GuardProxy(guard) as proxy:
        assert status(get(proxy, f"http://mixed.test:{forbidden.port}/")) == 403
    assert forbidden.hits == 0


@pytest.mark.parametrize("garbage", [
    b"hello\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",       # a TLS hello
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                            # not a proxy request
    b"GET http://x/ HTTP/9.9\r\n\r\n",
    b"GET http://a b/ HTTP/1.1\r\n\r\n",
    b"CONNECT nohostport HTTP/1.1\r\n\r\n",
    b"CONNECT user@127.0.0.1:80 HTTP/1.1\r\n\r\n",
    b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nbad name: v\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nX: a\nHost: evil\r\n\r\n",            # a bare LF
    b"\r\n\r\n",
])
def test_garbage_gets_400_and_the_proxy_keeps_serving(
        proxy: GuardProxy, page: PageServer, garbage: bytes) -> None:
    assert status(exchange(proxy, garbage)) == 400
    assert status(get(proxy, page.url("/"))) == 200


def test_an_oversized_head_gets_431(page: PageServer) -> None:
    guard = EgressGuard.build(allow=[page.allow_entry])
    with GuardProxy(guard, max_header_bytes=2048) as proxy:
        big = b"GET " + page.url("/").encode() + b" HTTP/1.1\r\nX: " + b"a" * 4096 + b"\r\n\r\n"
        assert status(exchange(proxy, big)) == 431
        assert status(get(proxy, page.url("/"))) == 200


def test_a_slow_head_times_out(page: PageServer) -> None:
    guard = EgressGuard.build(allow=[page.allow_entry])
    with GuardProxy(guard, header_timeout=0.3) as proxy:
        started = time.monotonic()
        assert status(exchange(proxy, b"GET http://x/ HTTP/1.1\r\n")) == 408
        assert time.monotonic() - started < 3


def test_connections_are_bounded(page: PageServer) -> None:
    guard = EgressGuard.build(allow=[page.allow_entry])
    with GuardProxy(guard, max_connections=2, header_timeout=10) as proxy:
        idle = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(2)]
        deadline = time.monotonic() + 5
        while proxy.active_connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert status(get(proxy, page.url("/"))) == 503
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 5
        while proxy.active_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert status(get(proxy, page.url("/"))) == 200


def test_idle_tunnels_are_closed_and_close_ends_live_ones() -> None:
    silent = CountingListener()
    try:
        guard = EgressGuard.build(allow=[f"127.0.0.1:{silent.port}"])
        with GuardProxy(guard, idle_timeout=0.5) as proxy, socket.create_connection(
                ("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(f"CONNECT 127.0.0.1:{silent.port} HTTP/1.1\r\n\r\n".encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert sock.recv(4096) == b""          # the proxy ended the idle tunnel
            assert 0.4 < time.monotonic() - started < 4
        proxy = GuardProxy(guard, idle_timeout=60).start()
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(f"CONNECT 127.0.0.1:{silent.port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        proxy.close()
        proxy.close()                                  # idempotent
        assert sock.recv(4096) == b""
        sock.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    finally:
        silent.close()


def test_the_listener_hears_each_refusal_from_any_thread(forbidden: PageServer) -> None:
    heard: list[tuple[str, str, str]] = []
    guard = EgressGuard.build(schemes=BROWSER_SCHEMES)
    with GuardProxy(guard, on_refused=lambda t, r: heard.append(
            (t, r, threading.current_thread().name))) as proxy:
        assert status(get(proxy, forbidden.url("/x"))) == 403
        assert proxy.refused.wait_for(lambda items: len(items) == 1, timeout=2)
    assert heard and heard[0][0] == forbidden.url("/x") and "loopback" in heard[0][1]


def test_a_real_http_client_goes_through_it(page: PageServer, forbidden: PageServer) -> None:
    guard = EgressGuard.build(allow=[page.allow_entry], schemes=BROWSER_SCHEMES)
    with GuardProxy(guard) as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        assert "allowed page" in client.get(page.url("/")).text
        assert "allowed page" in client.get(page.url("/")).text     # a second connection
        refused = client.get(forbidden.url("/"))
        assert refused.status_code == 403 and "loopback" in refused.text
    assert forbidden.hits == 0


def test_url_before_start_is_an_error() -> None:
    proxy = GuardProxy(EgressGuard.build())
    with pytest.raises(RuntimeError, match="not started"):
        _ = proxy.url
    proxy.close()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.start()
