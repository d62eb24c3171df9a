"""Browse(use_browser=True): the page rendered by agently-core-browser's managed Chromium
(real Chromium through Playwright), against loopback pages; and the clear error when
agently-core-browser is missing."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from agently_core_web.testing import Site, Tripwire, page, redirect

from agently_core.builtins.actions import Browse
from agently_core.errors import ConfigError
from agently_core.testing import require

SCRIPTED = """<!doctype html><html><head><title>Otter counts</title></head><body>
<article id="main"><h1>Otter counts</h1><p>Loading...</p></article>
<script>
document.querySelector('#main p').textContent =
  'The survey counted twelve river otters along the north bank this spring, '
  + 'two more than last year, most of them near the old beaver dams.';
</script></body></html>"""


@pytest.fixture(scope="module")
def site(tripwire: Tripwire) -> Iterator[Site]:
    server = Site({"/scripted": page(SCRIPTED),
                   "/to-tripwire": redirect(tripwire.url("/secret"))},
                  port=tripwire.port).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def agent(make_agent: Any, site: Site) -> Any:
    require(shutil.which("chromium") is not None,
            "Debian's Chromium is not installed (apt-get install chromium; ./dev installs it)")
    agent = make_agent()
    agent.use_actions(Browse(allow=[site.authority], use_browser=True, timeout=20))
    return agent


def test_a_scripted_page_is_read_as_rendered(agent: Any, make_agent: Any, site: Site) -> None:
    record = agent.action.execute_action("browse", {"url": site.url("/scripted")})
    assert record.status == "success", record.error
    assert "twelve river otters" in record.result["content"]
    assert "Loading" not in record.result["content"]
    assert record.result["final_url"] == site.url("/scripted")
    # over HTTP the script does not run: the same page says "Loading..."
    plain = make_agent()
    plain.use_actions(Browse(allow=[site.authority]))
    record = plain.action.execute_action("browse", {"url": site.url("/scripted")})
    assert record.status == "success" and "twelve" not in record.result["content"]


def test_the_browser_refuses_what_the_guard_refuses(agent: Any, site: Site,
                                                    tripwire: Tripwire) -> None:
    record = agent.action.execute_action("browse", {"url": site.url("/to-tripwire")})
    assert record.status == "failed" and record.error_type == "EgressRefused"
    assert "was refused on the way: refused 127.0.0.2 port" in record.error
    record = agent.action.execute_action("browse", {"url": "file:///etc/passwd"})
    assert record.status == "failed" and record.error_type == "EgressRefused"
    assert tripwire.connections == 0
    record = agent.action.execute_action("browse", {"url": site.url("/scripted")})
    assert record.status == "success", record.error


def test_use_browser_without_agently_core_browser_is_a_clear_error(
        make_agent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "agently_core_browser", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"Browse\(use_browser=True\) renders pages in the "
                                          r"managed browser of agently-core-browser, which "
                                          r"is not installed \(pip install "):
        make_agent().use_actions(Browse(use_browser=True))
