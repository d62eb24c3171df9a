"""Ray: ``run_python`` served by the ``ray`` provider and ``run_many``, each beside bare Ray
doing the same work, on a local two-node cluster started here (a head and one worker node
as separate processes, ``ray.cluster_utils.Cluster``, one CPU each, no dashboard).

    python bench/ray_bench.py [--json] [--repeat N] [--loops N] [--block N]

``ray_figures(repeat, loops)`` returns rows shaped like bench/run.py's (``{"name", "value",
"unit", "baseline", "ratio"}``; baselines measured in the same run, ours and the
baseline's measurements alternating call by call (``--block N``: in blocks of N calls)
so that machine noise hits both alike; medians):

* ``ray_run_python_warm_ms``: ``run_python`` of ``x = 1 + 1`` through
  ``agent.action.async_execute_action`` on an agent configured with ``[providers] python
  = "ray"`` (default settings) whose actor (on the worker node) is warm: dispatch, the
  health check (the actor's pending watch, read without a round trip), the forwarded
  call, the record; beside a bare Ray actor method call on the same node that runs the
  same code in-process;
* ``run_python_warm_ms_local``: the same call with the native ``python`` provider on
  this host (no Ray), for the forwarding's cost;
* ``ray_forward_overhead_ms``: ``ray_run_python_warm_ms`` minus the local call, beside
  the bare actor call (target: at most 1.2 of it);
* ``ray_run_python_warm_ms_ping`` and ``ray_forward_overhead_ms_ping``: the same with
  ``[ray] ping_fresh_seconds = 0`` (a real ping of the actor and of the worker in it
  before every reuse: two round trips per warm call);
* ``ray_run_python_cold_ms``: a new agent's first call (an actor placed and started, the
  worker started in it, the call); ``ray_release_ms``: closing that agent (the worker
  released in its actor, the actor killed);
* ``ray_worker_actor_rss_mb``: the resident memory of one warm worker's actor process,
  and ``ray_worker_sandbox_rss_mb`` of the sandbox's processes under it (shared pages
  counted in each, as bench/run.py's ``sandbox_rss_mb``);
* ``ray_run_many_per_s``: ``run_many`` over ``loops`` trivial loops (a scripted planner,
  one function action, a response), beside plain Ray tasks running the same function
  (``ray.get([task.remote(...) ...])``), target at least 0.8 of their rate;
* ``ray_run_many_saved_per_s``: the same ``run_many`` with ``workspace=`` a PostgreSQL
  workspace (a throwaway server started here, or ``AGENTLY_POSTGRES_DSN``'s): every loop
  saved after its round and at its end, its lease claimed, extended and let go; beside
  ``run_many`` without a workspace in the same rounds (what saving every round costs).

Ray missing, or a cluster that does not start, is an error: these figures never skip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

CODE = "x = 1 + 1"
#: Warm calls of each kind per ``--repeat``.
WARM_SAMPLES = 20
MiB = 1 << 20


def _say(text: str) -> None:
    print(f"ray_bench: {text}", file=sys.stderr, flush=True)


def _row(name: str, value: float, unit: str, baseline: float | None) -> dict[str, Any]:
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _agent(provider: str, tmp: Path, fresh: float | None = None) -> Any:
    from agently_core import Config, PluginManager, create_agent

    settings: dict[str, Any] = {}
    if provider == "ray":
        settings = {"providers": {"python": "ray"},
                    "ray": {"placement": {"python": {"resources": {"sandbox": 0.01}}}}}
        if fresh is not None:
            settings["ray"]["ping_fresh_seconds"] = fresh
    config = Config.load(env={}, cwd=tmp, overrides=settings or None)
    agent = create_agent(plugins=PluginManager(config).load())
    agent.enable_python()
    return agent


class Bare:
    """The baseline actor: runs the code in its own process."""

    def __init__(self) -> None:
        self.space: dict[str, Any] = {}

    async def run(self, code: str) -> bool:
        exec(code, self.space)
        return True


async def _call(agent: Any) -> float:
    began = time.perf_counter()
    record = await agent.action.async_execute_action("run_python", {"python_code": CODE})
    elapsed = time.perf_counter() - began
    if record.status != "success":
        raise RuntimeError(f"ray_bench: run_python failed: {record.error}")
    return elapsed


async def _bare(actor: Any) -> float:
    began = time.perf_counter()
    await actor.run.remote(CODE)
    return time.perf_counter() - began


async def warm_figures(repeat: int, tmp: Path, block: int = 1) -> list[dict[str, Any]]:
    import ray

    ours = _agent("ray", tmp)
    pinging = _agent("ray", tmp, fresh=0.0)
    local = _agent("python", tmp)
    bare = ray.remote(Bare).options(num_cpus=0, resources={"sandbox": 0.01}).remote()
    try:
        for _ in range(5):  # warm all four
            await _call(ours)
            await _call(pinging)
            await _call(local)
            await _bare(bare)
        times: dict[str, list[float]] = {"ray": [], "ping": [], "local": [], "bare": []}
        for _ in range(repeat * WARM_SAMPLES // block):
            for _ in range(block):
                times["ray"].append(await _call(ours))
            for _ in range(block):
                times["ping"].append(await _call(pinging))
            for _ in range(block):
                times["local"].append(await _call(local))
            for _ in range(block):
                times["bare"].append(await _bare(bare))
        worker = next(iter(ours.manager.list(kind="python")))
        hosted = ours.manager.resource(worker)
        actor_pid = int(hosted.info["pid"])
        actor_rss = _rss_mb(actor_pid)
        sandbox_rss = sum(_rss_mb(p) for p in _descendants(actor_pid)
                          if Path(f"/proc/{p}").exists())
    finally:
        ray.kill(bare)
        await ours.aclose()
        await pinging.aclose()
        await local.aclose()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    cold, release = [], []
    for _ in range(max(2, repeat // 2)):
        agent = _agent("ray", tmp)
        cold.append(await _call(agent) * 1000)
        began = time.perf_counter()
        await agent.aclose()
        release.append((time.perf_counter() - began) * 1000)
    return [
        _row("ray_run_python_warm_ms", med["ray"], "ms", med["bare"]),
        _row("run_python_warm_ms_local", med["local"], "ms", None),
        _row("ray_forward_overhead_ms", med["ray"] - med["local"], "ms", med["bare"]),
        _row("ray_run_python_warm_ms_ping", med["ping"], "ms", med["bare"]),
        _row("ray_forward_overhead_ms_ping", med["ping"] - med["local"], "ms", med["bare"]),
        _row("ray_run_python_cold_ms", statistics.median(cold), "ms", None),
        _row("ray_release_ms", statistics.median(release), "ms", None),
        _row("ray_worker_actor_rss_mb", actor_rss, "MiB", None),
        _row("ray_worker_sandbox_rss_mb", sandbox_rss, "MiB", None),
    ]


def trivial_agent() -> Any:
    """On a worker: an agent whose scripted loop makes one function call, then answers."""
    from agently_core import Config, PluginManager, create_agent

    agent = create_agent(plugins=PluginManager(Config()).load())

    def double(x: int) -> int:
        """Double x."""
        return 2 * x

    agent.action_func(double)
    agent.use_actions([double])
    agent.set_planner(lambda context, request: [{"action": "double", "kwargs": {"x": 21}}]
                      if context["round_index"] == 0 else "done")
    return agent


def plain_loop(request: Any) -> dict[str, Any]:
    """The plain tasks' work: the same loop as run_many's, its result as data."""
    agent = trivial_agent()
    try:
        return agent.run(request).model_dump(mode="json")
    finally:
        agent.close()


def many_figures(repeat: int, loops: int) -> list[dict[str, Any]]:
    import ray
    from agently_core_ray import run_many

    plain = ray.remote(plain_loop)
    requests = [{"n": n} for n in range(loops)]
    ray.get([plain.remote(r) for r in requests[:8]])  # warm the worker processes
    run_many(trivial_agent, requests[:8], progress=False)
    ours, base = [], []
    for _ in range(max(3, repeat)):  # round by round: the rate of either swings 2x
        began = time.perf_counter()
        results = run_many(trivial_agent, requests, max_concurrent=16, progress=False)
        ours.append(loops / (time.perf_counter() - began))
        if any(r.stop_reason != "response" for r in results):
            raise RuntimeError("ray_bench: a run_many loop failed: "
                               f"{next(r.error for r in results if r.error)}")
        began = time.perf_counter()
        ray.get([plain.remote(r) for r in requests])
        base.append(loops / (time.perf_counter() - began))
    rows = [_row("ray_run_many_per_s", statistics.median(ours), "loops/s",
                 statistics.median(base))]
    return rows + saved_figures(repeat, requests)


def saved_figures(repeat: int, requests: list[Any]) -> list[dict[str, Any]]:
    """``ray_run_many_saved_per_s`` (see the module docstring)."""
    from agently_core_ray import run_many
    from agently_core_workspace_postgres.testing import (
        drop_schema,
        find_or_start_server,
        unique_schema,
    )

    from agently_core import Workspace

    server = find_or_start_server()
    schema = unique_schema("bench")
    dsn = server.dsn

    def workspace() -> Any:
        return Workspace("postgres", dsn=dsn, schema=schema)

    loops = len(requests)
    saved, plain = [], []
    try:
        run_many(trivial_agent, requests[:8], workspace=workspace, progress=False)  # warm
        for _ in range(max(3, repeat)):
            began = time.perf_counter()
            results = run_many(trivial_agent, requests, max_concurrent=16, progress=False,
                               workspace=workspace)
            saved.append(loops / (time.perf_counter() - began))
            if any(r.stop_reason != "response" for r in results):
                raise RuntimeError("ray_bench: a saved run_many loop failed: "
                                   f"{next(r.error for r in results if r.error)}")
            began = time.perf_counter()
            run_many(trivial_agent, requests, max_concurrent=16, progress=False)
            plain.append(loops / (time.perf_counter() - began))
    finally:
        drop_schema(dsn, schema)
        server.stop()
    return [_row("ray_run_many_saved_per_s", statistics.median(saved), "loops/s",
                 statistics.median(plain))]


def ray_figures(repeat: int = 10, loops: int = 200, block: int = 1) -> list[dict[str, Any]]:
    """Every figure (see the module docstring), on a cluster started and stopped here."""
    import tempfile

    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        raise RuntimeError("ray_bench: ray is not installed (uv sync installs it with "
                           "agently-core-ray)") from None
    if __name__ != "__main__":  # imported: the workers cannot import this file by name
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, resources={"sandbox": 1})
        cluster.wait_for_nodes()
        _say("cluster up; warm calls")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "agently.toml").write_text("", encoding="utf-8")
            rows = asyncio.run(warm_figures(repeat, Path(tmp), block))
        _say("run_many")
        rows += many_figures(repeat, loops)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--loops", type=int, default=200)
    parser.add_argument("--block", type=int, default=1,
                        help="warm calls of one kind in a row (default 1: call by call)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        rows = ray_figures(args.repeat, args.loops, max(1, args.block))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            extra = f"  (baseline {row['baseline']}, ratio {row['ratio']})" \
                if row["baseline"] is not None else ""
            print(f"{row['name']:32} {row['value']:>10} {row['unit']}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
