"""BrowserEnv figures: the sandboxed, guarded env beside the bare Playwright MCP server.

    python bench/browser_env_bench.py [--json] [--repeat N] [--docker]

``browser_env_figures(repeat)`` returns rows shaped like bench/run.py's (``{"name",
"value", "unit", "baseline", "ratio"}``; ``baseline`` measured in the same run):

* ``browser_env_action_ms``: ``browser_navigate`` on a loopback page through
  ``agent.action.async_execute_action`` with a warm BrowserEnv (dispatch, the forwarded
  call through the sandbox and the egress guard's proxy, the page snapshot after it, the
  record), beside the same two MCP calls (``browser_navigate`` then ``browser_snapshot``)
  on a bare session to the same server program started directly on the host, without
  sandbox or proxy (agently-core's MCP client, no dispatch);
* ``browser_env_build_ms``: building a BrowserEnv (the sandbox, the proxy and its relay,
  the server's start, its tool listing and the first snapshot, which launches Chromium),
  beside starting the bare server and taking the first snapshot;
* ``browser_env_cleanup_ms``: its cleanup (every process of it ended, the workspace
  removed), beside closing the bare session;
* with ``--docker``: ``browser_docker_build_ms`` and ``browser_docker_action_ms`` (the
  server in a container; the browser image must exist or is built first, not timed).

Measurements alternate between the env and the bare server, so machine noise hits both
alike; figures are medians. Missing Chromium, Node.js, the npm package or bubblewrap is an
error: these figures are never skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

PAGE = "<!doctype html><title>Bench</title><h1>Bench page</h1><p>Some text.</p><button>Go</button>"


async def _bare(server: str, scratch: str) -> Any:
    from agently_core_mcp.session import McpConnection

    return await McpConnection({
        "transport": "stdio", "command": "/usr/bin/node", "label": "bare-playwright-mcp",
        "args": [server, "--headless", "--isolated", "--no-sandbox", "--executable-path",
                 "/usr/lib/chromium/chromium", "--output-dir", scratch], "cwd": scratch,
        "start_timeout": 60}).start()


def _row(name: str, ours: list[float], base: list[float], unit: str = "ms") -> dict[str, Any]:
    value, baseline = statistics.median(ours), statistics.median(base)
    return {"name": name, "value": round(value, 1), "unit": unit,
            "baseline": round(baseline, 1), "ratio": round(value / baseline, 2)}


async def _figures(repeat: int, docker: bool) -> list[dict[str, Any]]:
    from agently_core_browser.browser_env import BrowserEnv, find_server
    from agently_core_browser.testing import PageServer

    from agently_core import create_agent

    server = find_server()
    if server is None:
        raise SystemExit("@playwright/mcp is not installed (./dev setup)")
    server = os.path.realpath(server)
    page = PageServer({"/": PAGE})
    scratch = tempfile.TemporaryDirectory(prefix="agently-bench-browser-")
    rows: list[dict[str, Any]] = []
    builds: list[float] = []
    bare_builds: list[float] = []
    cleanups: list[float] = []
    bare_closes: list[float] = []
    env = bare = None
    try:
        for _ in range(max(2, repeat // 10)):
            t = time.perf_counter()
            bare = await _bare(server, scratch.name)
            await bare.call_tool("browser_snapshot", {})
            bare_builds.append((time.perf_counter() - t) * 1000)
            env = BrowserEnv(allow=[page.allow_entry])
            t = time.perf_counter()
            await env.async_build()
            builds.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await bare.aclose()
            bare_closes.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await env.async_cleanup()
            cleanups.append((time.perf_counter() - t) * 1000)
        env = BrowserEnv(allow=[page.allow_entry])
        await env.async_build()
        bare = await _bare(server, scratch.name)
        agent = create_agent()
        agent.use_actions(env.get_tools())
        ours: list[float] = []
        base: list[float] = []
        url = page.url("/")
        for _ in range(3):  # warm both
            await agent.action.async_execute_action("browser_navigate", {"url": url})
            await bare.call_tool("browser_navigate", {"url": url})
        for _ in range(repeat):
            t = time.perf_counter()
            record = await agent.action.async_execute_action("browser_navigate", {"url": url})
            ours.append((time.perf_counter() - t) * 1000)
            assert record.status == "success", record.error
            t = time.perf_counter()
            await bare.call_tool("browser_navigate", {"url": url})
            await bare.call_tool("browser_snapshot", {})
            base.append((time.perf_counter() - t) * 1000)
        rows.append(_row("browser_env_action_ms", ours, base))
        rows.append(_row("browser_env_build_ms", builds, bare_builds))
        rows.append(_row("browser_env_cleanup_ms", cleanups, bare_closes))
        await agent.aclose()
        await env.async_cleanup()
        if docker:
            rows += await _docker(page, bare, repeat)
    finally:
        if env is not None:
            await env.async_cleanup()
        if bare is not None:
            await bare.aclose()
        page.close()
        scratch.cleanup()
    return rows


async def _docker(page: Any, bare: Any, repeat: int) -> list[dict[str, Any]]:
    from agently_core_browser.browser_env import find_server
    from agently_core_browser.browser_env_docker import (
        BROWSER_IMAGE,
        BrowserDockerEnv,
        build_browser_image,
        container_engine,
        image_present,
    )

    engine = container_engine()
    if not image_present(engine, BROWSER_IMAGE):
        build_browser_image(engine, os.path.realpath(find_server() or ""))
    env = BrowserDockerEnv(allow=[page.allow_entry])
    t = time.perf_counter()
    await env.async_build()
    build = (time.perf_counter() - t) * 1000
    url = page.url("/")
    ours: list[float] = []
    base: list[float] = []
    try:
        for _ in range(3):
            await env.call("browser_navigate", {"url": url})
        for _ in range(repeat):
            t = time.perf_counter()
            await env.call("browser_navigate", {"url": url})
            ours.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await bare.call_tool("browser_navigate", {"url": url})
            await bare.call_tool("browser_snapshot", {})
            base.append((time.perf_counter() - t) * 1000)
    finally:
        await env.async_cleanup()
    return [{"name": "browser_docker_build_ms", "value": round(build, 1), "unit": "ms",
             "baseline": None, "ratio": None},
            _row("browser_docker_action_ms", ours, base)]


def browser_env_figures(repeat: int = 30, docker: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(_figures(repeat, docker))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--docker", action="store_true")
    args = parser.parse_args()
    for row in browser_env_figures(args.repeat, args.docker):
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['name']:<26} {row['value']!s:>10} {row['unit']:<4} "
                  f"baseline {row['baseline']!s:>10}  ratio {row['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
