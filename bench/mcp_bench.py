"""MCP figures: agently-core's MCP client beside the bare MCP SDK, same server, same run.

    python bench/mcp_bench.py [--json] [--repeat N]

``mcp_figures(repeat)`` returns rows shaped like bench/run.py's (``{"name", "value",
"unit", "baseline", "ratio"}``; ``baseline`` measured in the same run):

* ``mcp_call_ms``: one ``tools/call`` round trip through agently-core's dispatch
  (``agent.action.async_execute_action``: validation, policy, the managed session, result
  mapping, the record), beside ``mcp_sdk_call_ms``: ``ClientSession.call_tool`` on a bare
  SDK session to the same server; ``mcp_call_ratio`` is the median over rotating blocks
  of the first over the second;
* ``mcp_transport_call_ms``: ``ClientSession.call_tool`` on the SDK session inside
  agently-core's managed session (the SDK over agently-core's stdio transport, no
  dispatch), with its ratio to the bare SDK call; ``mcp_dispatch_overhead_us``: what the
  dispatch adds to that call (the median of the per-block differences);
* ``mcp_session_start_ms``: starting a session through the environment manager (spawn,
  ``initialize``, the process lookup), beside ``mcp_sdk_session_start_ms``:
  ``stdio_client`` + ``ClientSession`` + ``initialize``;
* ``mcp_concurrent_calls_per_s``: 100 calls, 10 at a time, through
  ``async_execute_actions``, beside the SDK session doing the same under a semaphore.

The server is the everything server over stdio (``./dev setup`` installs it; Node.js,
sub-millisecond calls), else (or with ``--server time``) ``mcp-server-time`` (Python).
Measurements alternate between agently-core and the SDK, block by block, so machine noise
hits both alike; figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

SERVERS = ("everything", "time")


def _server(name: str | None) -> tuple[list[str], str, dict[str, Any]]:
    """The command of a fast local MCP server, a cheap tool and its arguments: the
    everything server (Node.js) unless ``name`` is ``"time"`` (mcp-server-time, Python) or
    the everything server is not installed."""
    from agently_core_mcp.testing import everything_path, node_path, time_server_path

    everything = everything_path()
    if name in (None, "everything") and everything.exists():
        return [node_path(), str(everything), "stdio"], "echo", {"message": "hi"}
    time_server = time_server_path()
    if name in (None, "time") and time_server.exists():
        return [str(time_server), "--local-timezone", "UTC"], "get_current_time", {"timezone": "UTC"}
    raise RuntimeError(f"no MCP server {name or ''} to measure: run ./dev setup")


@contextlib.asynccontextmanager
async def _sdk_session(command: list[str]) -> Any:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=command[0], args=command[1:])
    with open(os.devnull, "w") as errlog:  # the server's log lines, like agently-core's capture
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session


def _row(name: str, value: float, unit: str, baseline: float | None,
         ratio: float | None = None) -> dict[str, Any]:
    if ratio is None and baseline:
        ratio = value / baseline
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": None if ratio is None else round(ratio, 3)}


async def mcp_figures(repeat: int, *, server: str | None = None) -> list[dict[str, Any]]:
    """The MCP rows for bench/run.py (runs on the caller's event loop); ``server``:
    ``"everything"`` (the default) or ``"time"``."""
    import agently_core_mcp
    from agently_core_mcp.testing import connection

    import agently_core

    command, tool, arguments = _server(server)
    blocks = max(6, 2 * repeat)
    per_block = 100

    agent = agently_core.create_agent(config={})
    try:
        await agently_core_mcp.async_use_mcp(agent, command, tools=[tool])
        execute = agent.action.async_execute_action
        async with _sdk_session(command) as sdk:
            for _ in range(per_block):  # warm-up: imports, caches, JIT of the server
                record = await execute(tool, arguments)
                assert record.status == "success", record.error
                await sdk.call_tool(tool, arguments)
            # the ClientSession inside agently-core's session: the SDK over our transport
            direct = connection(agent, tool)._active.client
            variants = {
                "ours": lambda: execute(tool, arguments),
                "bare": lambda: sdk.call_tool(tool, arguments),
                "direct": lambda: direct.call_tool(tool, arguments),
            }
            times: dict[str, list[float]] = {name: [] for name in variants}
            for block in range(blocks):  # rotate which goes first
                names = list(variants)
                names = names[block % 3:] + names[:block % 3]
                for name in names:
                    run = variants[name]
                    t = time.perf_counter()
                    for _ in range(per_block):
                        await run()
                    times[name].append((time.perf_counter() - t) / per_block * 1000)
            ours, bare, direct_ms = times["ours"], times["bare"], times["direct"]
            call_ms, sdk_call_ms = statistics.median(ours), statistics.median(bare)
            # the ratio of each block pair, so drift of the machine's speed cancels out
            call_ratio = statistics.median(a / b for a, b in zip(ours, bare, strict=True))
            transport_ratio = statistics.median(
                a / b for a, b in zip(direct_ms, bare, strict=True))
            dispatch_us = statistics.median(
                (a - b) * 1000 for a, b in zip(ours, direct_ms, strict=True))

            calls = [{"action": tool, "kwargs": arguments} for _ in range(100)]
            rates, sdk_rates = [], []
            for _ in range(blocks):
                t = time.perf_counter()
                records = await agent.action.async_execute_actions(calls, concurrency=10)
                rates.append(len(records) / (time.perf_counter() - t))
                assert all(r.status == "success" for r in records)
                limit = asyncio.Semaphore(10)

                async def one(limit: asyncio.Semaphore = limit) -> None:
                    async with limit:
                        await sdk.call_tool(tool, arguments)

                t = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(100)))
                sdk_rates.append(100 / (time.perf_counter() - t))
            rate, sdk_rate = statistics.median(rates), statistics.median(sdk_rates)

        starts, sdk_starts = await _session_starts(agent, command, blocks)
    finally:
        await agent.aclose()
    start_ms, sdk_start_ms = statistics.median(starts), statistics.median(sdk_starts)
    return [
        _row("mcp_call_ms", call_ms, "ms", sdk_call_ms),
        _row("mcp_sdk_call_ms", sdk_call_ms, "ms", None),
        _row("mcp_call_ratio", call_ratio, "x", 1.0),
        _row("mcp_transport_call_ms", statistics.median(direct_ms), "ms", sdk_call_ms,
             transport_ratio),
        _row("mcp_dispatch_overhead_us", dispatch_us, "us", None),
        _row("mcp_session_start_ms", start_ms, "ms", sdk_start_ms),
        _row("mcp_sdk_session_start_ms", sdk_start_ms, "ms", None),
        _row("mcp_concurrent_calls_per_s", rate, "calls/s", sdk_rate),
    ]


async def _session_starts(agent: Any, command: list[str], blocks: int) -> tuple[list[float],
                                                                                  list[float]]:
    """Start-to-ready times of a session: through agently-core's environment manager, and
    with the bare SDK; closing is not timed."""
    from agently_core_mcp.servers import parse_servers

    from agently_core.models import EnvironmentRequirement

    config = parse_servers(command)[0].config()
    manager = agent.manager
    ours, bare = [], []
    for index in range(blocks + 1):
        requirement = EnvironmentRequirement(kind="mcp", scope="action_call",
                                             owner_id=f"bench-{index}", resource_key="mcp",
                                             config=config)
        t = time.perf_counter()
        handle = await manager.async_ensure(requirement)
        elapsed = (time.perf_counter() - t) * 1000
        await manager.async_release(handle)
        stack = contextlib.AsyncExitStack()
        t = time.perf_counter()
        await stack.enter_async_context(_sdk_session(command))
        sdk_elapsed = (time.perf_counter() - t) * 1000
        await stack.aclose()
        if index:  # the first pair warms both up
            ours.append(elapsed)
            bare.append(sdk_elapsed)
    return ours, bare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON lines only")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--server", choices=SERVERS, default=None,
                        help="the server measured (default: everything, else time)")
    args = parser.parse_args()
    for row in asyncio.run(mcp_figures(args.repeat, server=args.server)):
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['name']:<28} {row['value']!s:>12} {row['unit']:<8} "
                  f"baseline {row['baseline']!s:>10}  ratio {row['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
