"""Search through ddgs's real engines (request by primp, parse by lxml) against loopback.

The engines are pointed at a loopback site with the package's host-only ``endpoints``
option (an engine's search URL replaced, the rest of ddgs untouched); the site serves
recorded result pages in the shape each engine parses (tests/data). One case reaches the
recorded page through ddgs's own ``proxy`` option instead. The machine has no internet, so
a search with no endpoints is the real no-network case.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import pytest
from agently_core_web.blocking import Busy, Overdue, Runner
from agently_core_web.search import MAX_ENGINE_THREADS
from agently_core_web.testing import Site, page

from agently_core.builtins.actions import Search
from agently_core.errors import ConfigError

DATA = Path(__file__).parent / "data"
DDG = (DATA / "duckduckgo_html.html").read_text(encoding="utf-8")
MOJEEK = (DATA / "mojeek_search.html").read_text(encoding="utf-8")
NO_RESULTS = ('<html><body><div id="links" class="results"><div class="no-results">'
              "No results.</div></div></body></html>")
QUERY = "river otter habitat"


def _stall(handler: Any) -> None:
    time.sleep(3)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    server = Site({"/html/": page(DDG), "/search": page(MOJEEK), "/empty/": page(NO_RESULTS),
                   "/stall/": _stall}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def closed_url() -> str:
    """A loopback URL nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/html/"


def search(agent: Any, query: str = QUERY, **kwargs: Any) -> Any:
    return agent.action.execute_action("search", {"query": query, **kwargs})


def test_a_recorded_engine_page_comes_back_compact(make_agent: Any, site: Site) -> None:
    agent = make_agent()
    agent.use_actions(Search(backend="duckduckgo", region="uk-en",
                             endpoints={"duckduckgo": site.url("/html/")}))
    before = len(site.seen)
    record = search(agent)
    assert record.status == "success", record.error
    result = record.result
    assert result["status"] == "success" and result["success"] is True
    assert result["query"] == QUERY
    urls = [r["url"] for r in result["results"]]
    assert "otter-tours.example" not in " ".join(urls)  # the ad, dropped by the engine
    assert sorted(urls) == sorted([
        "https://www.nwf.org/Educational-Resources/Wildlife-Guide/Mammals/River-Otter",
        "https://en.wikipedia.org/wiki/North_American_river_otter",
        "https://www.fws.gov/species/northern-river-otter-lontra-canadensis"])
    first = next(r for r in result["results"] if "nwf.org" in r["url"])
    assert first == {"title": "River Otter | National Wildlife Federation",
                     "url": urls[urls.index(first["url"])],
                     "snippet": "River otters live in and along freshwater and coastal "
                                "habitats: rivers, lakes, marshes and estuaries, with dens "
                                "dug into banks."}
    assert result["backends"] == [{"backend": "duckduckgo", "status": "ok", "results": 3}]
    # the engine's own request reached the stand-in: POST q=...&b=&l=<region>
    [seen] = site.seen[before:]
    assert seen.method == "POST" and seen.path == "/html/"
    assert parse_qs(seen.body.decode(), keep_blank_values=True) == {
        "q": [QUERY], "b": [""], "l": ["uk-en"]}
    assert record.digest["instruction_preview"] == QUERY


def test_two_engines_are_merged(make_agent: Any, site: Site) -> None:
    agent = make_agent()
    agent.use_actions(Search(backend=["duckduckgo", "mojeek"], max_results=10,
                             endpoints={"duckduckgo": site.url("/html/"),
                                        "mojeek": site.url("/search")}))
    record = search(agent)
    assert record.status == "success", record.error
    result = record.result
    assert result["status"] == "success"
    urls = [r["url"] for r in result["results"]]
    assert len(urls) == len(set(urls)) == 4  # the shared Wikipedia result once
    assert "https://www.otter.org/Public/AboutOtters_OtterHabitat.aspx" in urls
    assert {b["backend"]: b["status"] for b in result["backends"]} == {
        "duckduckgo": "ok", "mojeek": "ok"}


def test_one_engine_failing_and_one_answering_is_partial_success(make_agent: Any, site: Site,
                                                                 closed_url: str) -> None:
    agent = make_agent()
    agent.use_actions(Search(backend="mojeek,duckduckgo",
                             endpoints={"duckduckgo": site.url("/html/"),
                                        "mojeek": closed_url}))
    record = search(agent, max_results=2)
    assert record.status == "success", record.error
    result = record.result
    assert result["status"] == "partial_success" and result["success"] is True
    assert len(result["results"]) == 2
    backends = {b["backend"]: b for b in result["backends"]}
    assert backends["duckduckgo"]["status"] == "ok"
    assert backends["mojeek"]["status"] == "failed"
    assert "DDGSException" in backends["mojeek"]["error"]


def test_every_engine_failing_is_a_failed_record(make_agent: Any, closed_url: str) -> None:
    agent = make_agent()
    agent.use_actions(Search(backend="mojeek,duckduckgo",
                             endpoints={"duckduckgo": closed_url, "mojeek": closed_url}))
    record = search(agent)
    assert record.status == "failed" and record.error_type == "SearchFailed"
    assert record.error.startswith(f"search for {QUERY!r} failed: every backend failed (")
    assert "mojeek: DDGSException" in record.error and "duckduckgo: DDGSException" in record.error
    assert [b["status"] for b in record.result["backends"]] == ["failed", "failed"]
    # the agent carries on
    assert search(agent, query="   ").error == "search needs a non-empty query"


def test_no_results_is_an_empty_success(make_agent: Any, site: Site) -> None:
    agent = make_agent()
    agent.use_actions(Search(backend="duckduckgo",
                             endpoints={"duckduckgo": site.url("/empty/")}))
    record = search(agent)
    assert record.status == "success", record.error
    assert record.result["results"] == [] and record.result["status"] == "success"
    assert record.result["backends"] == [{"backend": "duckduckgo", "status": "empty",
                                          "results": 0}]


def test_the_proxy_option_carries_the_engine_request(make_agent: Any, site: Site) -> None:
    """The engine asks for a name that does not resolve; only ddgs's proxy (the loopback
    site, answering absolute-form requests) can answer it."""
    agent = make_agent()
    agent.use_actions(Search(backend="duckduckgo", proxy=site.url("/"),
                             endpoints={"duckduckgo": "http://search.invalid/html/"}))
    before = len(site.seen)
    record = search(agent)
    assert record.status == "success", record.error
    assert len(record.result["results"]) == 3
    [seen] = site.seen[before:]
    assert seen.path == "http://search.invalid/html/" and seen.method == "POST"


def test_a_hanging_engine_ends_at_the_deadline(make_agent: Any, site: Site) -> None:
    agent = make_agent()
    agent.use_actions(Search(backend="duckduckgo", timeout=0.5,
                             endpoints={"duckduckgo": site.url("/stall/")}))
    started = time.monotonic()
    record = search(agent)
    took = time.monotonic() - started
    assert record.status == "failed" and record.error_type == "SearchTimeout", record.error
    assert "duckduckgo: no answer within the 0.5s timeout" in record.error
    assert took < 1.2


def test_no_internet_is_a_clear_failed_record_within_the_timeout(make_agent: Any) -> None:
    """This machine reaches no search engine: every real engine fails, fast or at the
    deadline, and the record says so."""
    agent = make_agent()
    agent.use_actions(Search(timeout=4))
    started = time.monotonic()
    record = search(agent)
    took = time.monotonic() - started
    assert took < 5
    if _online():  # a machine that reaches the engines: a real answer, also in time
        assert record.status == "success", record.error
        return
    assert record.status == "failed" and record.error_type in {"SearchFailed", "SearchTimeout"}
    assert record.error.startswith(f"search for {QUERY!r} failed: every backend failed (")
    assert "duckduckgo: " in record.error


def _online() -> bool:
    try:
        socket.getaddrinfo("html.duckduckgo.com", 443)
    except OSError:
        return False
    return True


def _search_threads() -> int:
    return sum(t.name.startswith("agently-search-") for t in threading.enumerate())


def test_abandoned_calls_never_pile_up_threads(make_agent: Any, site: Site) -> None:
    """Twelve concurrent searches of two hanging engines each, with a 0.3 s deadline: at
    most MAX_ENGINE_THREADS engine threads ever exist, and every call ends on time."""
    agent = make_agent()
    agent.use_actions(Search(backend="duckduckgo,mojeek", timeout=0.3,
                             endpoints={"duckduckgo": site.url("/stall/"),
                                        "mojeek": site.url("/stall/")}))
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _search_threads())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    records = agent.action.execute_actions(
        [{"action": "search", "kwargs": {"query": f"{QUERY} {i}"}} for i in range(12)],
        concurrency=12)
    took = time.monotonic() - started
    stop.set()
    watcher.join()
    assert all(r.status == "failed" for r in records)
    assert {r.error_type for r in records} <= {"SearchTimeout", "SearchFailed"}
    busy = [r for r in records if "still running past their deadlines" in r.error]
    assert busy, "more calls than slots: some must have been refused for want of one"
    assert 0 < peak <= MAX_ENGINE_THREADS
    assert took < 1.5


def test_the_runner_bounds_its_threads() -> None:
    release = threading.Event()

    async def main() -> list[str]:
        runner = Runner(2, "bounded-test")
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await runner.run(release.wait, deadline=time.monotonic() + 0.2)
            except Overdue:
                outcomes.append("overdue")
            except Busy:
                outcomes.append("busy")

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(one)
        assert runner.alive == 2  # the two abandoned calls still hold their slots
        release.set()
        for _ in range(100):
            if runner.alive == 0:
                break
            await anyio.sleep(0.01)
        assert runner.alive == 0
        assert await runner.run(lambda: 42, deadline=time.monotonic() + 1) == 42
        return sorted(outcomes)

    assert anyio.run(main) == ["busy", "busy", "overdue", "overdue"]


def test_the_model_sees_only_query_and_max_results(make_agent: Any, site: Site) -> None:
    agent = make_agent()
    agent.use_actions(Search(backend="duckduckgo", max_results=3,
                             endpoints={"duckduckgo": site.url("/html/")}))
    [info] = [i for i in agent.action.get_action_info() if i["name"] == "search"]
    assert set(info["kwargs"]["properties"]) == {"query", "max_results"}
    assert info["kwargs"]["properties"]["max_results"]["maximum"] == 3
    record = search(agent, max_results=4)
    assert record.status == "failed" and record.error_type == "ArgumentsError"
    record = search(agent, max_results=1)
    assert record.status == "success" and len(record.result["results"]) == 1


@pytest.mark.parametrize(("options", "message"), [
    ({"backend": "altavista"}, "unknown backend 'altavista'; available: auto, "),
    ({"backend": ""}, "backend is empty"),
    ({"safesearch": "strict"}, "safesearch must be one of on, moderate, off"),
    ({"timelimit": "decade"}, "timelimit must be None or one of d, w, m, y"),
    ({"timeout": 0}, "timeout must be a number >= 0.1"),
    ({"max_results": 0}, "max_results must be an integer >= 1"),
    ({"region": "english"}, "region must look like 'us-en'"),
    ({"proxy": "127.0.0.1:3128"}, "proxy must be a URL"),
    ({"endpoints": {"altavista": "http://x/"}}, "endpoints names an unknown backend"),
    ({"endpoints": {"duckduckgo": "ftp://x/"}}, "must be an http"),
])
def test_bad_host_options_fail_at_mount(make_agent: Any, options: dict[str, Any],
                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_agent().use_actions(Search(**options))
