"""Browse against loopback HTTP servers, through the agent's real dispatch path.

The site is allow-listed as exactly its own address and port (127.0.0.1:P); a tripwire
listener on 127.0.0.2 (same loopback interface, not allow-listed) must never see a
connection, whatever the pages redirect to or the names resolve to.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from typing import Any

import pytest
from agently_core_web.testing import Site, Tripwire, page, redirect, send

from agently_core.builtins.actions import Browse

ARTICLE = """<!doctype html>
<html><head><title>River otters - Field notes</title><meta charset="utf-8"></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/contact">Contact</a></nav>
<article>
<h1>River otters</h1>
<p>River otters are <b>semi-aquatic</b> mammals that hunt fish, frogs and crayfish along
rivers and lakes. Their dense fur keeps them warm in cold water.</p>
<h2>Where they live</h2>
<p>They dig dens in river banks and often reuse burrows that beavers left behind.
See <a href="/habitat">the habitat notes</a> for the survey data.</p>
<ul><li>North American river otter</li><li>Eurasian otter</li></ul>
<table><tr><th>Site</th><th>Count</th></tr><tr><td>North bank</td><td>12</td></tr></table>
</article>
<footer>Copyright 2026 Field Notes. All rights reserved.</footer>
</body></html>"""


def _huge(handler: Any) -> None:
    """An endless body (Content-Length claims 1 GB) that stops when the client leaves."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(1 << 30))
    handler.end_headers()
    chunk = b"all work and no play makes jack a dull boy\n" * 1500
    for _ in range(20_000):
        handler.wfile.write(chunk)


def _drip(handler: Any) -> None:
    """Headers at once, then one byte every 200 ms."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for _ in range(1000):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.2)


def _stall(handler: Any) -> None:
    time.sleep(5)


@pytest.fixture(scope="module")
def site(tripwire: Tripwire) -> Iterator[Site]:
    bomb = gzip.compress(b"\0" * (16 << 20), compresslevel=9)  # 16 KiB on the wire
    routes = {
        "/article": page(ARTICLE),
        "/redirect": redirect("/hop2", 301),
        "/hop2": redirect("/article", 307),
        "/loop": redirect("/loop"),
        "/to-tripwire": redirect(tripwire.url("/secret")),
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/iam/"),
        "/to-private": redirect("http://10.0.0.5/admin"),
        "/to-decimal": redirect(f"http://2130706434:{tripwire.port}/"),
        "/to-mapped": redirect(f"http://[::ffff:127.0.0.2]:{tripwire.port}/"),
        "/to-rebind": redirect(f"http://rebind.test:{tripwire.port}/"),
        "/to-file": redirect("file:///etc/passwd"),
        "/huge": _huge,
        "/bomb": page(bomb, "text/plain", headers={"Content-Encoding": "gzip"}),
        "/drip": _drip,
        "/stall": _stall,
        "/json": page('{"otters": 12, "site": "north bank"}', "application/json"),
        "/plain": page("just some text\nover two lines", "text/plain; charset=utf-8"),
        "/latin1": page("<html><body><article><h1>Caf\xe9</h1><p>Un caf\xe9 tr\xe8s "
                        "cr\xe8me, servi pr\xe8s de la rivi\xe8re avec les loutres du "
                        "matin.</p></article></body></html>".encode("latin-1"),
                        "text/html; charset=iso-8859-1"),
        "/untyped": page(ARTICLE, None),
        "/png": page(b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "image/png"),
        "/missing": lambda h: send(h, 404, b"<h1>Not Found</h1>", "text/html"),
    }
    server = Site(routes, host="127.0.0.1", port=tripwire.port).start()
    yield server
    server.stop()


class Rebinder:
    """A fake resolver: ``rebind.test`` is 127.0.0.1 (the allowed site) on its first
    lookup and 127.0.0.2 (the tripwire) ever after; other names do not resolve."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host != "rebind.test":
            raise OSError(f"no such name {host!r}")
        return ["127.0.0.1"] if len(self.calls) == 1 else ["127.0.0.2"]


@pytest.fixture(scope="module")
def agent(make_agent: Any, site: Site) -> Any:
    agent = make_agent()
    agent.use_actions(Browse(allow=[site.authority], timeout=3, max_bytes=300_000))
    return agent


def browse(agent: Any, url: str, **kwargs: Any) -> Any:
    return agent.action.execute_action("browse", {"url": url, **kwargs})


def test_an_article_comes_back_as_markdown_with_title_and_digest(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/article"))
    assert record.status == "success", record.error
    result = record.result
    assert result["title"] == "River otters"
    assert result["final_url"] == site.url("/article") and result["status_code"] == 200
    content = result["content"]
    assert content.startswith("# River otters")
    assert "**semi-aquatic**" in content and "## Where they live" in content
    assert f"[the habitat notes]({site.url('/habitat')})" in content
    assert "- Eurasian otter" in content and "North bank" in content
    assert "Contact" not in content and "All rights reserved" not in content  # boilerplate
    assert result["format"] == "markdown" and result["truncated"] is False
    # instruction-heavy: a digest for later rounds, the full page as an artifact
    digest = record.digest
    assert digest["instruction_preview"] == site.url("/article")
    assert "River otters" in digest["result_preview"]
    kept = {ref["kind"]: ref for ref in record.artifact_refs}
    full = agent.action.read_action_artifact(kept["result"]["artifact_id"],
                                             action_call_id=record.call_id)
    assert full["content"]["content"] == content


def test_text_format_on_request(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/article"), format="text")
    assert record.status == "success", record.error
    assert record.result["format"] == "text"
    text = record.result["content"]
    assert "semi-aquatic" in text and "**" not in text and "](" not in text


def test_redirects_are_followed_hop_by_hop(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/redirect"))
    assert record.status == "success", record.error
    assert record.result["final_url"] == site.url("/article")
    assert record.result["redirects"] == [site.url("/hop2"), site.url("/article")]


def test_a_redirect_loop_stops_at_the_hop_limit(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/loop"))
    assert record.status == "failed" and record.error_type == "BrowseError"
    assert "too many redirects: more than 5" in record.error


@pytest.mark.parametrize(("path", "why"), [
    ("/to-tripwire", "127.0.0.2 port"),
    ("/to-decimal", "127.0.0.2 port"),
    ("/to-mapped", "a loopback address (inside ::ffff:7f00:2)"),
    ("/to-metadata", "a cloud metadata address"),
    ("/to-private", "a private address"),
    ("/to-file", "file: URLs may not be fetched"),
])
def test_redirects_into_forbidden_places_are_refused(agent: Any, site: Site,
                                                     tripwire: Tripwire, path: str,
                                                     why: str) -> None:
    before = len(site.seen)
    record = browse(agent, site.url(path))
    assert record.status == "failed" and record.error_type == "EgressRefused", record.error
    assert why in record.error
    assert site.paths()[before:] == [path]  # the redirecting page only
    assert tripwire.connections == 0


def test_direct_forbidden_urls_are_refused_and_reach_nothing(agent: Any,
                                                             tripwire: Tripwire) -> None:
    for url in (tripwire.url("/"), f"http://127.1.2.3:{tripwire.port}/",
                f"http://[::1]:{tripwire.port}/", f"http://0x7f000002:{tripwire.port}/"):
        record = browse(agent, url)
        assert record.status == "failed" and record.error_type == "EgressRefused", url
    assert tripwire.connections == 0


def test_a_rebinding_name_is_resolved_once_per_connection(make_agent: Any, site: Site,
                                                          tripwire: Tripwire) -> None:
    """The first lookup says 127.0.0.1 (allowed), every later one 127.0.0.2: the fetch
    connects to the address it checked, so the tripwire never sees a connection."""
    resolver = Rebinder()
    agent = make_agent()
    agent.use_actions(Browse(allow=[site.authority], resolver=resolver, timeout=3))
    before = len(site.seen)
    record = browse(agent, f"http://rebind.test:{site.port}/article")
    assert record.status == "success", record.error
    assert record.result["title"] == "River otters"
    assert resolver.calls == ["rebind.test"]
    assert site.seen[before].headers["Host"] == f"rebind.test:{site.port}"
    # the next lookup answers the tripwire's address: refused before any connection
    record = browse(agent, f"http://rebind.test:{site.port}/article")
    assert record.status == "failed" and record.error_type == "EgressRefused"
    assert "rebind.test resolves to 127.0.0.2" in record.error
    # and a redirect to the rebinding name is vetted like a first URL
    record = browse(agent, site.url("/to-rebind"))
    assert record.status == "failed" and record.error_type == "EgressRefused"
    assert tripwire.connections == 0


def test_a_huge_body_is_cut_at_max_bytes(agent: Any, site: Site) -> None:
    started = time.monotonic()
    record = browse(agent, site.url("/huge"))
    assert record.status == "success", record.error
    assert record.result["truncated"] is True
    assert 290_000 < len(record.result["content"]) <= 300_000
    assert time.monotonic() - started < 3


def test_a_compression_bomb_costs_at_most_the_cap(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/bomb"))
    assert record.status == "success", record.error
    assert record.result["truncated"] is True
    assert len(record.result["content"]) == 300_000


def test_a_slow_server_times_out(make_agent: Any, site: Site) -> None:
    agent = make_agent()
    agent.use_actions(Browse(allow=[site.authority], timeout=0.6))
    for path in ("/drip", "/stall"):
        started = time.monotonic()
        record = browse(agent, site.url(path))
        took = time.monotonic() - started
        assert record.status == "failed" and record.error_type == "FetchTimeout", record.error
        assert "did not finish within 0.6s" in record.error or "timed out" in record.error
        assert took < 1.5


@pytest.mark.parametrize(("path", "expected"), [
    ("/json", '{"otters": 12, "site": "north bank"}'),
    ("/plain", "just some text\nover two lines"),
])
def test_text_types_come_back_as_they_are(agent: Any, site: Site, path: str,
                                          expected: str) -> None:
    record = browse(agent, site.url(path))
    assert record.status == "success", record.error
    assert record.result["content"] == expected and record.result["format"] == "text"


def test_a_declared_charset_is_honoured(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/latin1"))
    assert record.status == "success", record.error
    assert "Un café très crème" in record.result["content"]


def test_an_untyped_html_body_is_read_as_html(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/untyped"))
    assert record.status == "success", record.error
    assert record.result["content"].startswith("# River otters")


def test_binary_and_error_pages_are_clear_failures(agent: Any, site: Site) -> None:
    record = browse(agent, site.url("/png"))
    assert record.status == "failed" and record.error_type == "UnsupportedContent"
    assert "image/png (208 bytes): browse reads HTML and text pages only" in record.error
    record = browse(agent, site.url("/missing"))
    assert record.status == "failed" and record.error_type == "BrowseError"
    assert record.error == f"{site.url('/missing')} answered HTTP 404 Not Found"
    assert record.result["status_code"] == 404


@pytest.mark.parametrize(("url", "error_type", "why"), [
    ("ftp://example.com/file", "EgressRefused", "ftp: URLs may not be fetched"),
    ("file:///etc/passwd", "EgressRefused", "file: URLs may not be fetched"),
    ("javascript:alert(1)", "EgressRefused", "javascript: URLs may not be fetched"),
    ("not a url", "EgressRefused", "no scheme"),
    ("http://", "EgressRefused", "the URL names no host"),
    ("http://user:secret@example.com/", "EgressRefused", "credentials in a URL"),
    ("http://example.com:99999/", "EgressRefused", "Port out of range"),
    ("http://no-such-host.invalid/", "EgressRefused", "cannot resolve"),
    ("", "ArgumentsError", ""),
])
def test_bad_urls_are_clear_failed_records(agent: Any, url: str, error_type: str,
                                           why: str) -> None:
    record = browse(agent, url)
    assert record.status == "failed" and record.error_type == error_type, record.error
    assert why in record.error


def test_bad_arguments_fail_and_the_agent_carries_on(agent: Any, site: Site) -> None:
    record = agent.action.execute_action("browse", {"url": site.url("/article"),
                                                   "format": "pdf"})
    assert record.status == "failed" and record.error_type == "ArgumentsError"
    record = agent.action.execute_action("browse", {"url": site.url("/article"),
                                                   "timeout": 999})
    assert record.status == "failed" and record.error_type == "ArgumentsError"
    records = agent.action.execute_actions([
        {"action": "browse", "kwargs": {"url": site.url("/stall")},
         "policy": {"timeout_seconds": 0.5}},
        {"action": "browse", "kwargs": {"url": "file:///etc/shadow"}},
        {"action": "browse", "kwargs": {"url": site.url("/article")}},
        {"action": "browse", "kwargs": {"url": site.url("/to-metadata")}},
    ], concurrency=4)
    assert [r.status for r in records] == ["failed", "failed", "success", "failed"]
    assert records[2].result["title"] == "River otters"


def test_the_model_sees_only_url_and_format(agent: Any, site: Site) -> None:
    [info] = [i for i in agent.action.get_action_info() if i["name"] == "browse"]
    assert set(info["kwargs"]["properties"]) == {"url", "format"}
    assert info["kwargs"]["required"] == ["url"]
    assert site.authority in info["description"]


@pytest.mark.parametrize(("options", "message"), [
    ({"allow": ["not a host!"]}, "neither an address, a network nor a host name"),
    ({"format": "html"}, "format must be one of markdown, text"),
    ({"timeout": 0}, "timeout must be a number >= 0.1"),
    ({"max_bytes": 10}, "max_bytes must be an integer >= 1024"),
    ({"max_redirects": -1}, "max_redirects must be an integer >= 0"),
    ({"user_agent": "a\nb"}, "user_agent must be a one-line string"),
    ({"use_browser": "yes"}, "use_browser must be True or False"),
])
def test_bad_host_options_fail_at_mount(make_agent: Any, options: dict[str, Any],
                                        message: str) -> None:
    from agently_core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_agent().use_actions(Browse(**options))
