"""``Browse(use_browser=True)``: render the page in agently-core-browser's managed Chromium.

The action then requires an execution environment of kind ``browser`` (one Chromium per
scope owner, started and released by the environment manager) built with the same
allow-list and resolver as the HTTP path; every request the page makes goes through that
browser's egress guard. The page is opened in its own browser session (``browse:<the
call's session>``), so browsing never moves the page the ``browser`` package's actions are
working on. The rendered HTML (cut at ``max_bytes``) goes through the same extraction.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import anyio

from agently_core.egress import EgressGuard
from agently_core.errors import ActionError, ConfigError
from agently_core.models import EnvironmentRequirement

from .fetch import BrowseError, Fetched, FetchTimeout

DISTRIBUTION = "agently-core-browser"
RESOURCE_KEY = "browser"


def requirement(guard: EgressGuard, scope: str, settings: dict[str, Any]
                ) -> EnvironmentRequirement:
    """The managed browser this package's ``browse`` needs; :class:`ConfigError` when
    agently-core-browser is not installed."""
    if importlib.util.find_spec("agently_core_browser") is None:
        raise ConfigError(f"Browse(use_browser=True) renders pages in the managed browser of "
                          f"{DISTRIBUTION}, which is not installed (pip install "
                          f"{DISTRIBUTION}); without use_browser, Browse fetches over HTTP")
    from agently_core_browser.provider import requirement as browser_requirement

    options: dict[str, Any] = {"navigation_timeout": settings["timeout"]}
    if guard.resolver is not None:
        options["resolver"] = guard.resolver
    try:
        return browser_requirement(allow=[str(entry) for entry in guard.allow], scope=scope,
                                   resource_key=RESOURCE_KEY, **options)
    except ValueError as exc:
        raise ConfigError(f"Browse(use_browser=True): {exc}") from None


async def render(url: str, guard: EgressGuard, context: Any,
                 settings: dict[str, Any]) -> Fetched:
    """Open ``url`` in the managed browser and return its rendered HTML."""
    from agently_core_browser.executor import session_key

    browser = context.execution_environment_resources.get(RESOURCE_KEY)
    if browser is None:
        raise BrowseError("browse(use_browser=True) got no managed browser from its "
                          "execution environment")
    guard.target(url)  # a refused scheme or URL fails here, as over HTTP
    key = f"browse:{session_key(context)}"
    timeout = settings["timeout"]
    try:
        with anyio.fail_after(timeout):
            state, _ = await browser.act(key, "navigate", url)
            html, _ = await browser.act(key, "html")
    except TimeoutError:
        raise FetchTimeout(f"rendering {url} did not finish within {timeout:g}s") from None
    except ActionError:
        raise
    except Exception as exc:  # Playwright's errors: the message without its call log
        text = str(exc).strip().split("\nCall log:", 1)[0].strip()
        first = text.splitlines()[0][:300] if text else type(exc).__name__
        raise BrowseError(f"rendering {url} failed: {first}") from None
    body = html.encode("utf-8", errors="replace")
    max_bytes = settings["max_bytes"]
    status = state.get("status") or 200
    final_url = state.get("url") or url
    return Fetched(url=url, final_url=final_url, status_code=int(status),
                   reason="", content_type="text/html", charset="utf-8",
                   body=body[:max_bytes], truncated=len(body) > max_bytes)


__all__ = ["render", "requirement"]
