"""agently-core benchmarks. Each figure is measured beside its baseline in the same run.

    python bench/run.py [--json] [--repeat N]

Prints one JSON line per figure: {"name", "value", "unit", "baseline", "ratio"}, where
``baseline`` is the reference measured in the same run and ``ratio`` is our total divided
by the baseline's. Fresh-process figures run with bytecode caching enabled (as installed
software runs) after a warm-up that writes the caches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
ENV = {k: v for k, v in os.environ.items()
       if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("AGENTLY_")}

COLD_CALL = """
import agently_core
agent = agently_core.create_agent()
@agent.action_func
def add(a: int, b: int) -> int:
    return a + b
record = agent.action.execute_action("add", {"a": 1, "b": 2})
assert record.status == "success", record
"""
FLOOR = "import pydantic, pluggy, anyio\nfrom pydantic import BaseModel\n"
# The dependency floor of one cold call: the least any library that validates with pydantic
# and runs a sync function through anyio must do for one call. It imports the three, builds
# and validates one plain model (no constraints, so annotated_types stays out), runs one
# coroutine and one worker thread. Building the first model also runs pydantic's plugin
# loader, which imports importlib.metadata and scans the installed distributions.
INTRINSIC = """
import anyio, anyio.to_thread, pluggy
from pydantic import BaseModel
class Kwargs(BaseModel):
    a: int
    b: int
async def call():
    kwargs = Kwargs.model_validate({"a": 1, "b": 2})
    return await anyio.to_thread.run_sync(lambda: kwargs.a + kwargs.b)
assert anyio.run(call) == 3
"""
DISCOVER = """
import time, importlib.metadata, pluggy
from agently_core.plugins import PluginManager
from agently_core.config import Config
t = time.perf_counter()
pm = PluginManager(Config.load()).load()
elapsed = time.perf_counter() - t
assert {"runtime", "function"} <= set(pm.plugins), pm.plugins
print(elapsed * 1000)
"""
DISCOVER_BASELINE = """
import time, importlib.metadata
t = time.perf_counter()
eps = list(importlib.metadata.entry_points(group="agently_core"))
elapsed = time.perf_counter() - t
print(elapsed * 1000)
"""


def _run(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([PY, "-c", code], check=True, env=ENV, cwd=Path(__file__).parent)
    return (time.perf_counter() - start) * 1000


def _printed(code: str) -> float:
    out = subprocess.run([PY, "-c", code], check=True, env=ENV, capture_output=True, text=True,
                         cwd=Path(__file__).parent)
    return float(out.stdout.strip().splitlines()[-1])


def _paired(ours: str, base: str, repeat: int, measure=_run) -> tuple[float, float]:
    """Interleave the two so machine noise hits both alike; medians."""
    measure(ours), measure(base)  # warm-up: writes bytecode caches
    a, b = [], []
    for _ in range(repeat):
        a.append(measure(ours))
        b.append(measure(base))
    return statistics.median(a), statistics.median(b)


def _interleaved(codes: tuple[str, ...], repeat: int) -> list[float]:
    """Medians of fresh-process runs of each program, taken in turn so noise hits all alike."""
    for code in codes:
        _run(code)  # warm-up: writes bytecode caches
    times: list[list[float]] = [[] for _ in codes]
    for _ in range(repeat):
        for column, code in zip(times, codes, strict=True):
            column.append(_run(code))
    return [statistics.median(column) for column in times]


def figure(name: str, value: float, unit: str, baseline: float, total: float | None = None):
    total = value + baseline if total is None else total
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": round(baseline, 3), "ratio": round(total / baseline, 3) if baseline else None}


async def _dispatch(repeat: int) -> tuple[dict, dict]:
    import agently_core

    agent = agently_core.create_agent()

    @agent.action_func
    async def inc(x: int) -> int:
        return x + 1

    execute = agent.action.async_execute_action
    n = 5000
    for i in range(500):
        await execute("inc", {"x": i})
    facade, direct = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        for i in range(n):
            await execute("inc", {"x": i})
        facade.append((time.perf_counter() - t) / n * 1e6)
        t = time.perf_counter()
        for i in range(n):
            await inc(x=i)
        direct.append((time.perf_counter() - t) / n * 1e6)
    f, d = statistics.median(facade), statistics.median(direct)
    overhead = figure("dispatch_overhead_us", f - d, "us", d)

    calls = [{"action": "inc", "kwargs": {"x": i}} for i in range(10_000)]
    rates, base_rates = [], []
    for _ in range(max(3, repeat // 2)):
        t = time.perf_counter()
        records = await agent.action.async_execute_actions(calls, concurrency=100)
        rates.append(len(records) / (time.perf_counter() - t))
        assert all(r.status == "success" for r in records)
        async def raw(i: int, sem: asyncio.Semaphore) -> int:
            async with sem:
                return await inc(x=i)

        t = time.perf_counter()
        sem = asyncio.Semaphore(100)
        await asyncio.gather(*(raw(i, sem) for i in range(10_000)))
        base_rates.append(10_000 / (time.perf_counter() - t))
    rate, base = statistics.median(rates), statistics.median(base_rates)
    throughput = {"name": "dispatch_throughput_per_s", "value": round(rate), "unit": "calls/s",
                  "baseline": round(base), "ratio": round(rate / base, 3)}
    return overhead, throughput


async def _environments(repeat: int) -> tuple[dict, dict]:
    import anyio

    from agently_core.environments import ExecutionEnvironmentManager
    from agently_core.testing.memory_provider import MemoryProvider

    provider = MemoryProvider()
    async with ExecutionEnvironmentManager(providers={"memory": provider}) as manager:
        requirement = manager.declare({"kind": "memory", "scope": "session", "owner_id": "bench"})
        ensure, release = manager.async_ensure, manager.async_release
        await release(await ensure(requirement.id))  # start it; the session pin keeps it
        n = 5000
        ours, base = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(n):
                await release(await ensure(requirement.id))
            ours.append((time.perf_counter() - t) / n * 1e6)
            t = time.perf_counter()
            for _ in range(n):  # baseline: the provider alone, a fresh resource each time
                await provider.release(requirement, await provider.ensure(requirement))
            base.append((time.perf_counter() - t) / n * 1e6)
        assert len(provider.live) == 1 and not provider.double_releases
        reuse = figure("ensure_reuse_us", statistics.median(ours), "us", statistics.median(base),
                       statistics.median(ours))

        keys = [manager.declare({"kind": "memory", "scope": "session", "owner_id": "bench",
                                 "resource_key": f"k{i}"}).id for i in range(100)]
        rates = []
        for _ in range(max(3, repeat // 2)):
            async def worker(key: str) -> None:
                for _ in range(100):
                    await release(await ensure(key))

            t = time.perf_counter()
            async with anyio.create_task_group() as group:
                for i in range(100):
                    group.start_soon(worker, keys[i])
            rates.append(10_000 / (time.perf_counter() - t))
        pairs = {"name": "ensure_pairs_per_s", "value": round(statistics.median(rates)),
                 "unit": "pairs/s", "baseline": round(1e6 / statistics.median(base)),
                 "ratio": round(statistics.median(rates) * statistics.median(base) / 1e6, 3)}
    assert not provider.live and not provider.double_releases
    return reuse, pairs


def _tree_rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as handle:
                pages = int(handle.read().split()[1])
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total / (1 << 20)


def _raw_python_ms() -> float:
    """The baseline every sandbox figure sits beside: a bare subprocess.run of python -c."""
    times = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-c", "1"], check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def _python_sandbox(repeat: int) -> list[dict]:
    import anyio

    import agently_core

    raw = _raw_python_ms()
    agent = agently_core.create_agent(config={})
    agent.enable_python()
    execute = agent.action.async_execute_action
    assert (await execute("run_python", {"python_code": "1"})).status == "success"
    warm = []
    for _ in range(200):
        t = time.perf_counter()
        await execute("run_python", {"python_code": "1"})
        warm.append((time.perf_counter() - t) * 1000)
    worker = next(iter(agent.manager.list(kind="python")))
    rss = _tree_rss_mb(agent.manager.resource(worker).process.pid)

    cold_agent = agently_core.create_agent(config={})
    cold_agent.enable_python(scope="action_call")  # a fresh sandbox for every call
    cold = []
    for _ in range(max(5, repeat)):
        t = time.perf_counter()
        record = await cold_agent.action.async_execute_action("run_python", {"python_code": "1"})
        cold.append((time.perf_counter() - t) * 1000)
        assert record.status == "success", record.error
    calls = [{"action": "run_python", "kwargs": {"python_code": "import time; time.sleep(0.5)"}}
             for _ in range(8)]
    t = time.perf_counter()
    records = await cold_agent.action.async_execute_actions(calls, concurrency=8)
    concurrent = time.perf_counter() - t
    assert all(r.status == "success" for r in records), [r.error for r in records]
    await agent.aclose()
    await cold_agent.aclose()
    await anyio.sleep(0)
    warm_ms, cold_ms = statistics.median(warm), statistics.median(cold)
    return [
        {"name": "run_python_warm_ms", "value": round(warm_ms, 3), "unit": "ms",
         "baseline": round(raw, 3), "ratio": round(warm_ms / raw, 3)},
        {"name": "run_python_cold_ms", "value": round(cold_ms, 3), "unit": "ms",
         "baseline": round(raw, 3), "ratio": round(cold_ms / raw, 3)},
        {"name": "concurrent_sleep_wall_s", "value": round(concurrent, 3), "unit": "s",
         "baseline": 0.5, "ratio": round(concurrent / 0.5, 3)},
        {"name": "sandbox_rss_mb", "value": round(rss, 2), "unit": "MB",
         "baseline": None, "ratio": None},
    ]


def _raw_node_ms() -> float:
    """The baseline of the Node.js figures: a bare subprocess.run of node -e 0, in a clean
    environment like the sandbox's (a NODE_EXTRA_CA_CERTS in the host's alone can add 50 ms
    to every start)."""
    times = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run(["node", "-e", "0"], check=True, env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def _nodejs_sandbox(repeat: int) -> list[dict]:
    import anyio

    import agently_core

    raw = _raw_node_ms()
    agent = agently_core.create_agent(config={})
    agent.enable_nodejs()
    execute = agent.action.async_execute_action
    assert (await execute("run_nodejs", {"js_code": "1"})).status == "success"
    warm = []
    for _ in range(200):
        t = time.perf_counter()
        await execute("run_nodejs", {"js_code": "1"})
        warm.append((time.perf_counter() - t) * 1000)
    worker = next(iter(agent.manager.list(kind="node")))
    rss = _tree_rss_mb(agent.manager.resource(worker).process.pid)
    # eight calls awaiting a 0.5 s timer, all in the one warm worker at once
    calls = [{"action": "run_nodejs", "kwargs": {"js_code": "await new Promise((r) => "
                                                 "setTimeout(r, 500))\nreturn 1"}}
             for _ in range(8)]
    t = time.perf_counter()
    records = await agent.action.async_execute_actions(calls, concurrency=8)
    concurrent = time.perf_counter() - t
    assert all(r.status == "success" for r in records), [r.error for r in records]

    cold_agent = agently_core.create_agent(config={})
    cold_agent.enable_nodejs(scope="action_call")  # a fresh sandbox for every call
    cold = []
    for _ in range(max(5, repeat)):
        t = time.perf_counter()
        record = await cold_agent.action.async_execute_action("run_nodejs", {"js_code": "1"})
        cold.append((time.perf_counter() - t) * 1000)
        assert record.status == "success", record.error
    await agent.aclose()
    await cold_agent.aclose()
    await anyio.sleep(0)
    warm_ms, cold_ms = statistics.median(warm), statistics.median(cold)
    return [
        {"name": "run_nodejs_warm_ms", "value": round(warm_ms, 3), "unit": "ms",
         "baseline": round(raw, 3), "ratio": round(warm_ms / raw, 3)},
        {"name": "run_nodejs_cold_ms", "value": round(cold_ms, 3), "unit": "ms",
         "baseline": round(raw, 3), "ratio": round(cold_ms / raw, 3)},
        {"name": "nodejs_one_worker_concurrent_wall_s", "value": round(concurrent, 3),
         "unit": "s", "baseline": 0.5, "ratio": round(concurrent / 0.5, 3)},
        {"name": "nodejs_sandbox_rss_mb", "value": round(rss, 2), "unit": "MB",
         "baseline": None, "ratio": None},
    ]


def _sections(repeat: int) -> list[dict]:
    """The figures that live in their own bench modules (MCP, SQLite, model planners,
    workspaces, Docker, the browser and Browse)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from browser_bench import browser_figures
    from docker_bench import docker_figures
    from env_dispatch_bench import env_dispatch_figures
    from mcp_bench import mcp_figures
    from planner_bench import planner_figures
    from sqlite_bench import sqlite_figures
    from workspace_bench import workspace_figures

    rows = list(env_dispatch_figures(repeat))
    rows.extend(asyncio.run(mcp_figures(repeat)))
    rows.extend(asyncio.run(sqlite_figures(repeat)))
    rows.extend(asyncio.run(planner_figures(repeat)))
    rows.extend(workspace_figures(repeat))
    rows.extend(asyncio.run(docker_figures(repeat)))  # no engine answering is an error
    rows.extend(browser_figures(repeat))  # no Chromium is an error
    try:
        from postgres_bench import postgres_figures
    except ImportError:  # the PostgreSQL backend's bench is not here
        return rows
    rows.extend(postgres_figures(repeat))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON lines only")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    rows = []
    ours, base = _paired("import agently_core", "pass", args.repeat)
    rows.append(figure("import_ms", ours - base, "ms", base, ours))
    ours, intrinsic, imports = _interleaved((COLD_CALL, INTRINSIC, FLOOR), args.repeat)
    rows.append(figure("cold_call_ms", ours - intrinsic, "ms", intrinsic, ours))
    rows.append(figure("cold_call_over_imports_ms", ours - imports, "ms", imports, ours))
    rows.append(figure("cold_call_intrinsic_ms", intrinsic - imports, "ms", imports, intrinsic))
    ours, base = _paired(DISCOVER, DISCOVER_BASELINE, args.repeat, measure=_printed)
    rows.append(figure("discover_ms", ours, "ms", base, ours))
    rows.extend(asyncio.run(_dispatch(args.repeat)))
    rows.extend(asyncio.run(_environments(args.repeat)))
    rows.extend(asyncio.run(_python_sandbox(args.repeat)))
    rows.extend(asyncio.run(_nodejs_sandbox(args.repeat)))
    rows.extend(_sections(args.repeat))
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['name']:<28} {row['value']!s:>12} {row['unit']:<8} "
                  f"baseline {row['baseline']!s:>10}  ratio {row['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
