"""The ``browser`` provider: the provider contract, health checks that replace a dead
browser, one browser per scope owner with a context per session, nothing left running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agently_core_browser import runtime
from agently_core_browser.provider import (
    BrowserProvider,
    ManagedBrowser,
    browser_processes,
    live_browser_ids,
)
from agently_core_browser.settings import BrowserConfigError, settings
from agently_core_browser.testing import PageServer, require_chromium

from agently_core.models import EnvironmentRequirement
from agently_core.protocols import ExecutionEnvironmentProvider, ProviderHandle
from agently_core.testing import ProviderConformance


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


@pytest.fixture(scope="module")
def site() -> Iterator[PageServer]:
    def set_cookie(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Set-Cookie", "who=first; Path=/")
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    server = PageServer({"/": "<h1>home</h1>", "/set": set_cookie})
    yield server
    server.close()


class TestBrowserProviderConformance(ProviderConformance):
    kind = "browser"
    concurrent_ensures = 2

    @pytest.fixture(autouse=True)
    def _settled(self) -> None:
        """Each case starts with no managed browser alive: a manager the previous case
        closed may still be releasing its browser in the background. One that is still
        there after 10 s was leaked, and fails the case."""
        deadline = time.monotonic() + 10
        while live_browser_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live_browser_ids() == set(), "a previous case left a browser running"

    def make_provider(self) -> BrowserProvider:
        return BrowserProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        if scenario == "bad_config":
            return {"config": {"executable": "/no/such/chromium"}}
        return {"config": {}}

    def live_resources(self) -> set[str]:
        return live_browser_ids()     # browsers with a live process (renderers come and go)


def test_the_provider_meets_the_protocol() -> None:
    assert isinstance(BrowserProvider(), ExecutionEnvironmentProvider)


@pytest.mark.parametrize(("config", "message"), [
    ({"allow": ["not a host/"]}, "allow"),
    ({"allow": ["127.0.0.1:99999"]}, "bad port"),
    ({"headless": "yes"}, "headless"),
    ({"viewport": [10, 10]}, "viewport"),
    ({"navigation_timeout": 0}, "navigation_timeout"),
    ({"max_sessions": 1.5}, "max_sessions"),
    ({"allow_everything": True}, "unknown browser config"),
    ({"resolver": "dns"}, "resolver"),
    ("x", "must be a mapping"),
])
def test_bad_configs_are_refused_before_anything_starts(config: Any, message: str) -> None:
    with pytest.raises(BrowserConfigError, match=message):
        settings(config)


def test_a_dead_browser_fails_its_health_check_and_is_replaced(site: PageServer) -> None:
    async def scenario() -> None:
        provider = BrowserProvider()
        requirement = EnvironmentRequirement(kind="browser",
                                             config={"allow": [site.allow_entry]})
        browser = await provider.ensure(requirement)
        handle = ProviderHandle("h1", requirement, browser)
        assert await provider.async_health_check(handle) is True
        await browser.act("s", "navigate", site.url("/"))
        for pid in browser_processes(browser.id):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while await provider.async_health_check(handle) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await provider.async_health_check(handle) is False
        await provider.release(requirement, browser)
        assert browser_processes(browser.id) == []

    asyncio.run(scenario())


def test_one_browser_per_scope_owner_one_context_per_session(
        agently_agent_factory: Any, site: PageServer) -> None:
    agent = agently_agent_factory()
    agent.enable("browser", allow=[site.allow_entry])
    execute = agent.action.execute_action
    agent.session_id = "alice"
    assert execute("navigate_page", {"url": site.url("/set")}).ok
    agent.session_id = "bob"
    assert execute("navigate_page", {"url": site.url("/")}).ok
    handles = agent.manager.list(kind="browser")
    assert len(handles) == 1                       # one Chromium for the agent
    [browser] = [r for r in _resources(agent) if isinstance(r, ManagedBrowser)]
    assert set(browser.sessions) == {"alice", "bob"}

    async def cookies(key: str) -> list[str]:
        session = browser.sessions[key]
        return [c["name"] for c in await runtime.run_here(session.context.cookies)]

    assert asyncio.run(cookies("alice")) == ["who"]
    assert asyncio.run(cookies("bob")) == []       # contexts keep their own cookies
    pids = browser_processes(browser.id)
    assert pids
    agent.close()
    assert browser_processes(browser.id) == [], "a Chromium process survived the release"
    assert browser.sessions == {}


def test_a_killed_browser_is_replaced_on_the_next_call(
        agently_agent_factory: Any, site: PageServer) -> None:
    agent = agently_agent_factory()
    agent.enable("browser", allow=[site.allow_entry])
    assert agent.action.execute_action("navigate_page", {"url": site.url("/")}).ok
    [first] = [r for r in _resources(agent) if isinstance(r, ManagedBrowser)]
    for pid in browser_processes(first.id):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    record = agent.action.execute_action("navigate_page", {"url": site.url("/")})
    assert record.ok, record.error
    [second] = [r for r in _resources(agent) if isinstance(r, ManagedBrowser)]
    assert second is not first and second.id != first.id
    assert browser_processes(first.id) == []
    agent.close()
    assert browser_processes(second.id) == []


def test_a_missing_chromium_is_a_clear_failed_record(agently_agent_factory: Any) -> None:
    agent = agently_agent_factory()
    agent.enable("browser", executable="/no/such/chromium")
    record = agent.action.execute_action("navigate_page", {"url": "http://example.org/"})
    assert record.status == "failed"
    assert "no Chromium at '/no/such/chromium'" in (record.error or "")


def _resources(agent: Any) -> list[Any]:
    """The live resources the agent's manager holds (test-only peek)."""
    slots = getattr(agent.manager, "_slots", {})
    return [getattr(slot, "resource", None) for slot in slots.values()]


def test_isolation_bubblewrap_runs_chromium_unprivileged_in_its_own_namespaces(
        site: PageServer) -> None:
    from agently_core.testing.requirements import require

    require(os.access("/usr/bin/bwrap", os.X_OK),
            "bubblewrap is not installed (apt-get install bubblewrap)")

    async def scenario() -> tuple[str, list[int], list[str], list[int], ManagedBrowser]:
        browser = await ManagedBrowser.launch({"allow": [site.allow_entry],
                                               "isolation": "bubblewrap"})
        try:
            await browser.act("s", "navigate", site.url("/"))
            text, _ = await browser.act("s", "read")
            pids = browser_processes(browser.id)
            namespaces = [os.readlink(f"/proc/{pid}/ns/mnt") for pid in pids]
            uids = [int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
                    for pid in pids]
        finally:
            await browser.close()
        return text, pids, namespaces, uids, browser

    text, pids, namespaces, uids, browser = asyncio.run(scenario())
    assert text == "home"
    assert len(pids) >= 3
    ours = os.readlink("/proc/self/ns/mnt")
    assert sum(ns != ours for ns in namespaces) >= len(pids) - 1   # all but bwrap itself
    if os.geteuid() == 0:
        assert browser.uid is not None and set(uids) == {browser.uid}, uids
    assert browser_processes(browser.id) == []


def test_an_unknown_isolation_is_refused() -> None:
    with pytest.raises(BrowserConfigError, match="isolation"):
        settings({"isolation": "docker"})


def test_past_max_sessions_the_least_recently_used_idle_session_is_closed(
        site: PageServer) -> None:
    async def scenario() -> tuple[set[str], set[str]]:
        browser = await ManagedBrowser.launch({"allow": [site.allow_entry], "max_sessions": 2})
        try:
            await browser.act("a", "navigate", site.url("/"))
            await browser.act("b", "navigate", site.url("/"))
            await browser.act("a", "state")                 # b is now the oldest
            await browser.act("c", "navigate", site.url("/"))
            return set(browser.sessions), {k for k, s in browser.sessions.items()
                                           if not s.closed}
        finally:
            await browser.close()

    keys, open_keys = asyncio.run(scenario())
    assert keys == open_keys == {"a", "c"}


def test_loading_the_plugin_and_its_modules_imports_no_playwright() -> None:
    """Discovery and mounting stay light: Playwright loads with the first browser only."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from agently_core import PluginManager, Config\n"
            "PluginManager(Config.load(env={})).load()\n"
            "import agently_core_browser.plugin, agently_core_browser.package\n"
            "import agently_core_browser.executor, agently_core_browser.provider\n"
            "import agently_core_browser.guard_proxy\n"
            "assert 'playwright' not in sys.modules, 'playwright was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_crashed_page_gets_a_fresh_session_on_the_next_call(site: PageServer) -> None:
    async def scenario() -> tuple[bool, dict[str, Any]]:
        browser = await ManagedBrowser.launch({"allow": [site.allow_entry]})
        try:
            await browser.act("s", "navigate", site.url("/"))
            session = browser.sessions["s"]
            with contextlib.suppress(Exception):      # the renderer dies under the call
                await runtime.run_here(lambda: session.page.goto("chrome://crash"))
            for _ in range(100):                        # Chromium reports it shortly after
                if session.crashed:
                    break
                await asyncio.sleep(0.05)
            crashed = session.crashed
            state, _ = await browser.act("s", "navigate", site.url("/"))
            assert browser.sessions["s"] is not session and session.closed
            return crashed, state
        finally:
            await browser.close()

    crashed, state = asyncio.run(scenario())
    assert crashed
    assert state["url"] == site.url("/") and state["status"] == 200
