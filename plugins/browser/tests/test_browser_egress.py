"""Hostile pages against the managed browser's egress guard.

Pages are served from a loopback server that is the ONLY allow-listed address
(``127.0.0.1:<its port>``). Forbidden servers on other loopback ports count every
connection; each attack asserts that they received nothing and that the refusal was
reported. One browser serves the whole module; every test gets its own session (context).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from agently_core_browser.provider import ManagedBrowser
from agently_core_browser.testing import (
    CountingListener,
    Page,
    PageServer,
    events_until,
    require_chromium,
)

from agently_core.egress import EgressRefused

_resolutions: dict[str, int] = {}


async def hostile_resolver(host: str, port: int) -> list[str]:
    """``rebind.test``: public on the first lookup, loopback after (DNS rebinding);
    ``metadata.test``: the metadata address; ``localhost``: loopback."""
    count = _resolutions[host] = _resolutions.get(host, 0) + 1
    if host == "rebind.test":
        return ["93.184.216.34"] if count == 1 else ["127.0.0.1"]
    if host == "metadata.test":
        return ["169.254.169.254"]
    if host == "localhost":
        return ["127.0.0.1"]
    raise OSError("Name or service not known")


@pytest.fixture(scope="module")
def silent() -> Iterator[CountingListener]:
    listener = CountingListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def site(forbidden: PageServer, silent: CountingListener,
         udp: socket.socket) -> Iterator[PageServer]:
    f, w, u = forbidden.port, silent.port, udp.getsockname()[1]
    server = PageServer()
    own = server.port
    redirect = lambda to: Page("", status=302, headers={"Location": to})  # noqa: E731
    server.routes.update({
        "/": "<h1>home</h1>",
        "/hop": redirect("/hop2"),
        "/hop2": redirect("http://10.0.0.1/internal"),
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-loopback": redirect(f"http://127.0.0.1:{f}/secret"),
        "/to-localhost": redirect(f"http://localhost:{f}/secret"),
        "/meta-refresh": f'<meta http-equiv="refresh" content="0;url=http://127.0.0.1:{f}/meta">'
                         "<p>refreshing</p>",
        "/iframes": f'<iframe src="http://127.0.0.1:{f}/frame"></iframe>'
                    f'<iframe src="http://localhost:{f}/frame2"></iframe>'
                    f'<iframe src="http://metadata.test/latest/"></iframe>',
        "/websockets": "<script>"
                       f"const bad = new WebSocket('ws://127.0.0.1:{w}/');"
                       f"const bad2 = new WebSocket('ws://127.0.0.1:{f}/');"
                       f"const good = new WebSocket('ws://127.0.0.1:{own}/ok');"
                       "good.onopen = () => { document.title = 'ws-open'; };"
                       "</script>",
        "/fetches": "<script>"
                    "const tries = ["
                    "fetch('http://169.254.169.254/latest/meta-data/'),"
                    "fetch('http://metadata.test/latest/meta-data/'),"
                    f"fetch('http://127.0.0.1:{f}/fetch', {{mode: 'no-cors'}}),"
                    f"fetch('http://2130706433:{f}/decimal', {{mode: 'no-cors'}}),"
                    f"fetch('http://localhost:{f}/named', {{mode: 'no-cors'}}),"
                    "];"
                    "const x = new XMLHttpRequest();"
                    f"x.open('GET', 'http://127.0.0.1:{f}/xhr'); x.send();"
                    f"navigator.sendBeacon('http://127.0.0.1:{f}/beacon', 'data');"
                    f"new EventSource('http://127.0.0.1:{f}/sse');"
                    "Promise.allSettled(tries).then(r => {"
                    "  document.title = r.map(p => p.status).join(','); });"
                    "</script>"
                    "<img src='http://10.1.2.3/pixel.png'>"
                    f"<script src='http://127.0.0.1:{f}/script.js'></script>"
                    f"<link rel=prefetch href='http://127.0.0.1:{f}/prefetch'>"
                    f"<link rel=stylesheet href='http://127.0.0.1:{f}/style.css'>",
        "/popups": "<script>"
                   "window.open('/');"
                   f"window.open('http://127.0.0.1:{f}/popup');"
                   "</script><a href='/' target='_blank'>new tab</a>",
        "/download": Page(b"MZ" + b"\0" * 64, "application/octet-stream",
                          headers={"Content-Disposition": 'attachment; filename="x.exe"'}),
        "/download-link": "<a href='/download' download>get</a>"
                          "<script>document.querySelector('a').click()</script>",
        "/to-file": "<script>location.href = 'file:///etc/passwd';</script>",
        "/to-data": "<script>location.href = 'data:text/html,<h1>data</h1>';</script>",
        "/data-frame": "<iframe src=\"data:text/html,<h1>framed</h1>\"></iframe>",
        "/to-view-source": "<script>location.href = 'view-source:http://127.0.0.1:"
                           f"{own}/';</script>",
        "/webrtc": "<script>"
                   "const pc = new RTCPeerConnection({iceServers: ["
                   f"{{urls: 'stun:127.0.0.1:{u}'}}, {{urls: 'stun:169.254.169.254:3478'}}]}});"
                   "pc.createDataChannel('x');"
                   "pc.onicecandidate = e => { if (e.candidate) document.title += 'c'; };"
                   "pc.onicegatheringstatechange = () => {"
                   "  if (pc.iceGatheringState === 'complete') document.title += 'done'; };"
                   "pc.createOffer().then(o => pc.setLocalDescription(o));"
                   f"try {{ new WebTransport('https://127.0.0.1:{u}/wt').ready.catch(() => 0); }}"
                   "catch (e) {}"
                   "</script>",
        "/form": f"<form method=post action='http://127.0.0.1:{f}/post'>"
                 "<input name=a value=b></form><script>document.forms[0].submit()</script>",
    })
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser(site: PageServer) -> Iterator[ManagedBrowser]:
    require_chromium()
    managed = asyncio.run(ManagedBrowser.launch({"allow": [site.allow_entry],
                                                 "resolver": hostile_resolver,
                                                 "navigation_timeout": 10.0}))
    yield managed
    asyncio.run(managed.close())


@pytest.fixture
def key(request: pytest.FixtureRequest, browser: ManagedBrowser) -> Iterator[str]:
    """A fresh session (its own context and proxy) for each test."""
    name = request.node.name
    yield name
    asyncio.run(browser.close_session(name))


def untouched(*servers: Any) -> None:
    for server in servers:
        assert server.hits == 0, f"a forbidden server was reached: {getattr(server, 'requests', '')}"


def refused(events: list[dict[str, str]], *fragments: str) -> bool:
    """Did some reported refusal name every fragment?"""
    return any(all(f in (e["target"] + " " + e["reason"]) for f in fragments)
               for e in events)


# -- redirects ------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "reason"), [
    ("/hop", "a private address"),
    ("/to-metadata", "a cloud metadata address"),
    ("/to-loopback", "a loopback address"),
    ("/to-localhost", "localhost resolves to 127.0.0.1"),
])
def test_redirect_chains_into_internal_addresses_are_refused(
        browser: ManagedBrowser, site: PageServer, forbidden: PageServer, key: str,
        path: str, reason: str) -> None:
    async def attack() -> list[dict[str, str]]:
        with pytest.raises(EgressRefused, match=reason):
            await browser.act(key, "navigate", site.url(path))
        return await events_until(browser, key, lambda ev: refused(ev, reason))

    events = asyncio.run(attack())
    assert refused(events, reason)
    untouched(forbidden)


def test_a_rebinding_name_is_refused_at_the_proxy(
        browser: ManagedBrowser, forbidden: PageServer, key: str) -> None:
    """The navigate action's own check sees a public address; the proxy looks again, gets
    loopback, refuses, and connects to nothing: no lookup happens after its check."""
    _resolutions.pop("rebind.test", None)

    async def attack() -> list[dict[str, str]]:
        with pytest.raises(EgressRefused, match=r"rebind\.test resolves to 127\.0\.0\.1"):
            await browser.act(key, "navigate", f"http://rebind.test:{forbidden.port}/")
        return await events_until(browser, key, lambda ev: refused(ev, "rebind.test"))

    events = asyncio.run(attack())
    assert refused(events, "rebind.test", "loopback")
    assert _resolutions["rebind.test"] >= 2     # the action's check, then the proxy's own
    untouched(forbidden)


# -- the page's own requests ------------------------------------------------------------------
def test_meta_refresh_to_another_loopback_port(
        browser: ManagedBrowser, site: PageServer, forbidden: PageServer, key: str) -> None:
    async def attack() -> list[dict[str, str]]:
        _, seen = await browser.act(key, "navigate", site.url("/meta-refresh"))
        return await events_until(browser, key, seen=seen,
                                  predicate=lambda ev: refused(ev, f":{forbidden.port}/meta"))

    assert refused(asyncio.run(attack()), f"127.0.0.1:{forbidden.port}/meta", "loopback")
    untouched(forbidden)


def test_iframes_to_other_loopback_ports_and_metadata(
        browser: ManagedBrowser, site: PageServer, forbidden: PageServer, key: str) -> None:
    def done(ev: list[dict[str, str]]) -> bool:
        return (refused(ev, "/frame", "loopback") and refused(ev, "/frame2")
                and refused(ev, "metadata.test", "cloud metadata"))

    async def attack() -> list[dict[str, str]]:
        _, seen = await browser.act(key, "navigate", site.url("/iframes"))
        return await events_until(browser, key, seen=seen, predicate=done)

    assert done(asyncio.run(attack()))
    untouched(forbidden)


def test_websockets_to_forbidden_ports_while_the_page_own_works(
        browser: ManagedBrowser, site: PageServer, forbidden: PageServer,
        silent: CountingListener, key: str) -> None:
    async def attack() -> tuple[list[dict[str, str]], str]:
        _, seen = await browser.act(key, "navigate", site.url("/websockets"))
        events = await events_until(
            browser, key, seen=seen,
            predicate=lambda ev: refused(ev, f"127.0.0.1:{silent.port}")
            and refused(ev, f"127.0.0.1:{forbidden.port}"))
        for _ in range(100):
            state, _ = await browser.act(key, "state")
            if state["title"] == "ws-open":
                break
            await asyncio.sleep(0.05)
        return events, state["title"]

    events, title = asyncio.run(attack())
    assert refused(events, f"127.0.0.1:{silent.port}", "loopback")
    assert title == "ws-open", "a WebSocket to the allow-listed page itself should open"
    assert "WS /ok" in site.requests
    untouched(forbidden, silent)


def test_fetch_xhr_beacons_and_subresources_to_metadata_and_loopback(
        browser: ManagedBrowser, site: PageServer, forbidden: PageServer, key: str) -> None:
    wanted = ["169.254.169.254", "metadata.test", "/fetch", "/decimal", "/named", "/xhr",
              "10.1.2.3", "/beacon", "/sse", "/script.js", "/style.css"]

    async def attack() -> tuple[list[dict[str, str]], str]:
        _, seen = await browser.act(key, "navigate", site.url("/fetches"))
        events = await events_until(browser, key, seen=seen, predicate=
                                    lambda ev: all(refused(ev, w) for w in wanted))
        state, _ = await browser.act(key, "state")
        return events, state["title"]

    events, title = asyncio.run(attack())
    missing = [w for w in wanted if not refused(events, w)]
    assert not missing, f"not reported as refused: {missing}; events: {events}"
    assert "fulfilled" not in title.split(",")[:2]     # the metadata fetches failed
    untouched(forbidden)


def test_a_form_posting_to_another_loopback_port(
        browser: ManagedBrowser, site: PageServer, forbidden: PageServer, key: str) -> None:
    async def attack() -> list[dict[str, str]]:
        _, seen = await browser.act(key, "navigate", site.url("/form"))
        return await events_until(browser, key, seen=seen,
                                  predicate=lambda ev: refused(ev, "/post"))

    assert refused(asyncio.run(attack()), "/post", "loopback")
    untouched(forbidden)


def test_webrtc_cannot_send_udp_past_the_proxy(
        browser: ManagedBrowser, site: PageServer, udp: socket.socket, key: str) -> None:
    """STUN over UDP would skip the HTTP proxy; Chromium is told to keep WebRTC to it.
    WebTransport (QUIC over UDP) to the same port gets nowhere either."""
    async def attack() -> str:
        await browser.act(key, "navigate", site.url("/webrtc"))
        title = ""
        for _ in range(60):
            title = (await browser.act(key, "state"))[0]["title"]
            if "done" in title:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        return title

    title = asyncio.run(attack())
    assert "c" not in title.replace("done", ""), "WebRTC gathered candidates"
    with pytest.raises(BlockingIOError):
        udp.recvfrom(2048)                    # no STUN packet arrived


# -- pop-ups, downloads, local schemes --------------------------------------------------------
def test_popups_are_closed_and_reported(
        browser: ManagedBrowser, site: PageServer, forbidden: PageServer, key: str) -> None:
    async def attack() -> tuple[list[dict[str, str]], int]:
        _, seen = await browser.act(key, "navigate", site.url("/popups"))
        events = await events_until(
            browser, key, seen=seen,
            predicate=lambda ev: sum(e["type"] == "popup_closed" for e in ev) >= 2)
        await asyncio.sleep(0.2)
        session = browser.sessions[key]
        pages = len(session.context.pages)
        return events, pages

    events, pages = asyncio.run(attack())
    assert sum(e["type"] == "popup_closed" for e in events) >= 2
    assert pages == 1, "only the session's own page stays open"
    untouched(forbidden)


def test_downloads_are_refused_and_reported(
        browser: ManagedBrowser, site: PageServer, key: str) -> None:
    async def attack() -> list[dict[str, str]]:
        try:
            await browser.act(key, "navigate", site.url("/download"))
        except Exception as exc:          # Chromium: "Download is starting"
            assert "Download" in str(exc) or "download" in str(exc)
        _, seen = await browser.act(key, "navigate", site.url("/download-link"))
        return await events_until(
            browser, key, seen=seen,
            predicate=lambda ev: sum(e["type"] == "download_refused" for e in ev) >= 2)

    events = asyncio.run(attack())
    downloads = [e for e in events if e["type"] == "download_refused"]
    assert len(downloads) >= 2 and all(e["target"].endswith("/download") for e in downloads)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "chrome://settings", "view-source:http://127.0.0.1/",
    "data:text/html,<h1>x</h1>", "javascript:alert(1)", "about:config", "ftp://x/",
    "http://user:pw@127.0.0.1/",
])
def test_the_navigate_action_refuses_other_schemes(
        browser: ManagedBrowser, key: str, url: str) -> None:
    async def attack() -> str:
        with pytest.raises(EgressRefused):
            await browser.act(key, "navigate", url)
        state, _ = await browser.act(key, "state")
        return state["url"]

    assert asyncio.run(attack()) == "about:blank"


@pytest.mark.parametrize(("path", "scheme"), [("/to-file", "file:"), ("/to-data", "data:"),
                                              ("/to-view-source", "view-source:"),
                                              ("/data-frame", "data:")])
def test_a_page_cannot_take_a_frame_to_a_local_scheme(
        browser: ManagedBrowser, site: PageServer, key: str, path: str, scheme: str) -> None:
    async def attack() -> tuple[list[dict[str, str]], str, str]:
        _, seen = await browser.act(key, "navigate", site.url(path))
        events = await events_until(browser, key, seen=seen, predicate=lambda ev: any(
            e["type"] == "navigation_refused" for e in ev), timeout=3)
        state, _ = await browser.act(key, "state")
        text, _ = await browser.act(key, "html")
        return events, state["url"], text

    events, url, html = asyncio.run(attack())
    assert url.startswith(("http:", "about:")), url
    assert "root:x:0:0" not in html
    assert any(e["type"] == "navigation_refused" for e in events), events
