"""The managed browser and Browse beside the libraries they are built on.

    python bench/browser_bench.py [--json] [--repeat N]

``browser_figures(repeat)`` returns rows shaped like bench/run.py's (``{"name", "value",
"unit", "baseline", "ratio"}``; ``baseline`` measured in the same run, ours and the
baseline's measurements alternating so that machine noise hits both alike; medians):

* ``browser_action_ms``: ``navigate_page`` then ``snapshot_page`` on a loopback page
  through ``agent.action.async_execute_action`` with a warm managed browser (dispatch, the
  manager's health check, the page loaded through the egress guard's proxy, Playwright's
  AI snapshot, the records with their digests and artifacts), beside Playwright alone doing
  ``page.goto`` then ``page.aria_snapshot(mode="ai")`` in its own Chromium, launched with the
  same flags but without proxy, on the same page;
* ``browse_ms``: ``browse`` of a 30 KB article on a loopback server (the egress guard,
  the guarded httpx transport, extraction to markdown, the record), beside a bare
  ``httpx.AsyncClient.get`` of the same page plus the same extraction
  (``agently_core_web.extract.readable``).

Missing Chromium or Playwright is an error: these figures are never skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

PAGE = ("<!doctype html><title>Bench</title><h1>Bench page</h1><p>Some text.</p>"
        "<form><input name=q aria-label=Query><button>Go</button></form>"
        + "".join(f"<p><a href='/p{n}'>Link {n}</a></p>" for n in range(20)))
PARAGRAPH = ("<p>River otters are semi-aquatic mammals that hunt fish, crayfish and frogs "
             "along rivers, lakes and coasts; their dense fur keeps them warm.</p>")
ARTICLE = ("<!doctype html><html><head><title>River otters</title></head><body>"
           "<nav><a href='/'>Home</a> <a href='/about'>About</a></nav><article>"
           "<h1>River otters</h1>" + PARAGRAPH * 190 + "</article>"
           "<footer>All rights reserved</footer></body></html>")
BLOCK = 5


def _row(name: str, value: float, unit: str, baseline: float | None) -> dict[str, Any]:
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None}


async def _timed(many: list[float], call: Any) -> None:
    for _ in range(BLOCK):
        started = time.perf_counter()
        await call()
        many.append((time.perf_counter() - started) * 1000)


async def _browser_rows(repeat: int, url: str, authority: str) -> list[dict[str, Any]]:
    from agently_core_browser.settings import CHROMIUM_FLAGS, default_executable
    from playwright.async_api import async_playwright

    from agently_core import create_agent

    ours: list[float] = []
    bare: list[float] = []
    agent = create_agent()
    agent.enable("browser", allow=[authority])
    executor = agent.action.async_execute_action

    async def through_actions() -> None:
        navigated = await executor("navigate_page", {"url": url})
        snapshot = await executor("snapshot_page", {})
        if navigated.status != "success" or snapshot.status != "success":
            raise RuntimeError(f"browser_bench: {navigated.error or snapshot.error}")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=default_executable(),
                                                  headless=True, args=list(CHROMIUM_FLAGS))
        page = await (await browser.new_context()).new_page()

        async def playwright_alone() -> None:
            await page.goto(url, wait_until="domcontentloaded")
            if "Bench page" not in await page.aria_snapshot(mode="ai"):
                raise RuntimeError("browser_bench: the bare snapshot missed the page")

        try:
            await through_actions()          # warm: browser launched, context made
            await playwright_alone()
            for _ in range(repeat):
                await _timed(ours, through_actions)
                await _timed(bare, playwright_alone)
        finally:
            await browser.close()
            await agent.aclose()
    return [_row("browser_action_ms", statistics.median(ours), "ms",
                 statistics.median(bare))]


async def _browse_rows(repeat: int, url: str, authority: str) -> list[dict[str, Any]]:
    import httpx
    from agently_core_web.extract import readable

    from agently_core import create_agent
    from agently_core.builtins.actions import Browse

    ours: list[float] = []
    bare: list[float] = []
    agent = create_agent()
    agent.use_actions(Browse(allow=[authority]))

    async def through_browse() -> None:
        record = await agent.action.async_execute_action("browse", {"url": url})
        if record.status != "success" or "semi-aquatic" not in record.result["content"]:
            raise RuntimeError(f"browser_bench: browse failed: {record.error}")

    async with httpx.AsyncClient() as client:
        async def httpx_alone() -> None:
            answer = await client.get(url)
            media_type, _, params = answer.headers["content-type"].partition(";")
            charset = params.split("=", 1)[1].strip() if "=" in params else None
            text = await asyncio.to_thread(readable, answer.content, media_type.strip(),
                                           charset, url=url, fmt="markdown")
            if "semi-aquatic" not in text.content:
                raise RuntimeError("browser_bench: the bare extraction missed the article")

        try:
            await through_browse()
            await httpx_alone()
            for _ in range(repeat):
                await _timed(ours, through_browse)
                await _timed(bare, httpx_alone)
        finally:
            await agent.aclose()
    return [_row("browse_ms", statistics.median(ours), "ms", statistics.median(bare))]


def browser_figures(repeat: int = 10) -> list[dict[str, Any]]:
    """The figures (see the module docstring)."""
    from agently_core_browser.testing import PageServer, require_chromium
    from agently_core_web.testing import Site, page

    require_chromium()
    site = Site({"/article": page(ARTICLE)}).start()
    try:
        with PageServer({"/": PAGE}) as pages:
            rows = asyncio.run(_browser_rows(repeat, pages.url("/"), pages.allow_entry))
        rows += asyncio.run(_browse_rows(repeat, site.url("/article"), site.authority))
    finally:
        site.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=10)
    options = parser.parse_args()
    try:
        rows = browser_figures(options.repeat)
    except Exception as exc:
        print(f"browser_bench: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if options.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        ratio = f"  ({row['ratio']}x of {row['baseline']} {row['unit']})" if row["ratio"] else ""
        print(f"{row['name']:<22} {row['value']:>10} {row['unit']}{ratio}")


if __name__ == "__main__":
    main()
