"""Environment-backed dispatch: what a call through a warm, reused execution environment
costs on top of the plain function dispatch.

    python bench/env_dispatch_bench.py [--json] [--repeat N]

``env_dispatch_figures(repeat)`` returns rows shaped like bench/run.py's (``{"name",
"value", "unit", "baseline", "ratio"}``; ``baseline`` measured in the same run):

* ``env_dispatch_overhead_us``: one call of an MCP-shaped action (an agent-scoped
  environment from the in-memory provider, owner filled in per call, a config with a
  command, args and env, an explicit reuse key, a 60 s timeout, a 100 kB output cap, a
  dict result with text content) through ``agent.action.async_execute_action``, minus calling the function
  directly; beside the same for a plain function action (``dispatch_overhead_us`` of
  bench/run.py); ``ratio`` is the first over the second;
* ``env_dispatch_added_us``: the difference of the two (what the environment, the timeout
  and the dict result add per call);
* ``env_lease_pair_us``: one ``async_ensure`` + ``async_release`` of the agent-scoped
  requirement as the dispatcher issues it (a fresh owner-filled copy each call), beside
  the provider's own health check.

The in-memory provider makes no real resource, so the figures time agently-core alone.
Blocks alternate between the measured and the baseline so machine noise hits both alike;
figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

N = 2000


def _row(name: str, value: float, unit: str, baseline: float | None,
         ratio: float | None = None) -> dict[str, Any]:
    if ratio is None and baseline:
        ratio = value / baseline
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": None if ratio is None else round(ratio, 3)}


def _result() -> dict[str, Any]:
    return {"text": "Echo: hi", "content": [{"type": "text", "text": "Echo: hi"}],
            "is_error": False}


async def _figures(repeat: int) -> list[dict[str, Any]]:
    import agently_core
    from agently_core.environments import ExecutionEnvironmentManager
    from agently_core.models import ActionCall, EnvironmentRequirement
    from agently_core.protocols import ProviderHandle
    from agently_core.testing.memory_provider import MemoryProvider

    provider = MemoryProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    agent = agently_core.create_agent(config={}, manager=manager)
    config = {"transport": "stdio", "label": "everything", "command": "/usr/bin/node",
              "args": ["/opt/everything/dist/index.js", "stdio"],
              "env": {"EVERYTHING_TOKEN": "bench-secret-value"}, "cwd": None,
              "start_timeout": 30.0, "ping_interval": 30.0, "ping_timeout": 5.0}
    requirement = EnvironmentRequirement(kind="memory", scope="agent", resource_key="mcp",
                                         config=config, reuse_key="mcp-bench")

    async def plain(message: str) -> dict[str, Any]:
        return _result()

    async def tool(message: str, action_context: Any = None) -> dict[str, Any]:
        assert action_context.execution_environment_resources["mcp"] is not None
        return _result()

    agent.action_func(plain, name="plain")
    agent.action_func(tool, name="tool", timeout=60, policy={"max_output_bytes": 100_000},
                      execution_environments=[requirement])
    execute = agent.action.async_execute_action
    kwargs = {"message": "hi"}
    try:
        for _ in range(300):  # warm-up: caches, the environment's start
            assert (await execute("plain", kwargs)).status == "success"
            record = await execute("tool", kwargs)
            assert record.status == "success", record.error
        assert len(provider.live) == 1

        async def timed(name: str) -> float:
            t = time.perf_counter()
            for _ in range(N):
                await execute(name, kwargs)
            return (time.perf_counter() - t) / N * 1e6

        async def direct() -> float:
            t = time.perf_counter()
            for _ in range(N):
                await plain(message="hi")
            return (time.perf_counter() - t) / N * 1e6

        envs, plains, directs = [], [], []
        for block in range(max(3, repeat)):
            order = ("tool", "plain") if block % 2 else ("plain", "tool")
            for name in order:
                (envs if name == "tool" else plains).append(await timed(name))
            directs.append(await direct())
        base = statistics.median(directs)
        env_us = statistics.median(envs) - base
        plain_us = statistics.median(plains) - base
        added = statistics.median(e - p for e, p in zip(envs, plains, strict=True))

        # the lease pair alone, as the dispatcher takes it for this action
        dispatcher = agent.dispatcher
        call = ActionCall(action="tool", kwargs=kwargs)
        ensure, release = manager.async_ensure, manager.async_release
        resource = provider.live[0]
        checked = ProviderHandle("envh_bench", requirement, resource)
        pairs, checks = [], []
        for _ in range(max(3, repeat)):
            t = time.perf_counter()
            for _ in range(N):
                owned = dispatcher._owned(requirement, call)
                await release(await ensure(owned, events=agent.events))
            pairs.append((time.perf_counter() - t) / N * 1e6)
            t = time.perf_counter()
            for _ in range(N):
                await provider.async_health_check(checked)
            checks.append((time.perf_counter() - t) / N * 1e6)
        assert len(provider.live) == 1 and not provider.double_releases
    finally:
        await agent.aclose()
        await manager.aclose()
    assert not provider.live and not provider.double_releases
    return [
        _row("env_dispatch_overhead_us", env_us, "us", plain_us),
        _row("env_dispatch_added_us", added, "us", None),
        _row("env_lease_pair_us", statistics.median(pairs), "us", statistics.median(checks)),
    ]


def env_dispatch_figures(repeat: int) -> list[dict[str, Any]]:
    """The environment-backed dispatch rows (runs its own event loop)."""
    return asyncio.run(_figures(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON lines only")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    for row in env_dispatch_figures(args.repeat):
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['name']:<28} {row['value']!s:>12} {row['unit']:<8} "
                  f"baseline {row['baseline']!s:>10}  ratio {row['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
