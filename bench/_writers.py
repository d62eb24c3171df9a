"""What the workspace benchmarks share: writer processes racing from one barrier, a
workspace backend's writer, and the figure rows.

A writer is a module-level function ``target(*args, barrier, results)`` run in a spawned
process; it waits at ``barrier``, does its operations, and puts ``("ok", count, seconds)``
(or ``("error", detail, 0.0)``) on ``results``. Process start-up is outside the clock.
"""

from __future__ import annotations

import importlib
import multiprocessing
import statistics
import time
from typing import Any


def rate(target: Any, args_for: Any, writers: int) -> float:
    """Operations per second of ``writers`` processes started together (``args_for(index)``
    gives each its arguments before the barrier and the result queue)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(writers), context.Queue()
    workers = [context.Process(target=target, args=(*args_for(index), barrier, results))
               for index in range(writers)]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=300) for _ in workers]
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
    failed = [detail for status, detail, _ in outcomes if status != "ok"]
    if failed:
        raise RuntimeError(f"a benchmark writer failed: {failed[0]}")
    return sum(count for _, count, _ in outcomes) / max(elapsed for _, _, elapsed in outcomes)


def backend_writer(kind: str, backend: str, args: tuple[Any, ...], options: dict[str, Any],
                   index: int, ops: int, barrier: Any, results: Any) -> None:
    """A writer on a workspace backend (``"module:Class"``, built with ``args`` and
    ``options``): ``kind`` ``"cas"`` advances its own snapshot by compare-and-set,
    ``"events"`` appends to one shared execution. The backend is connected and warm before
    the clock starts."""
    import anyio

    module, _, name = backend.partition(":")
    factory = getattr(importlib.import_module(module), name)

    async def main() -> None:
        store = factory(*args, **options)
        key = f"writer-{index}"
        version = await store.write_snapshot(key, {"n": 0})
        await store.append_event("warm-up", f"w{index}", {"n": 0})

        async def cas() -> int:
            nonlocal version
            for i in range(ops):
                version = await store.write_snapshot(key, {"n": i}, expected_state_version=version)
            return ops

        async def events() -> int:
            for i in range(ops):
                await store.append_event("bench", f"w{index}-{i}", {"n": i})
            return ops

        try:
            barrier.wait(60)
            started = time.perf_counter()
            count = await (cas if kind == "cas" else events)()
            results.put(("ok", count, time.perf_counter() - started))
        finally:
            await store.aclose()

    try:
        anyio.run(main)
    except BaseException as exc:
        results.put(("error", repr(exc), 0.0))


def rows(suffix: str, cas: list[float], events: list[float], raw: list[float]) -> list[dict]:
    """The two figures of one backend (medians), beside the raw-insert baseline."""
    base = statistics.median(raw)
    return [
        {"name": name, "value": round(statistics.median(rates)), "unit": unit,
         "baseline": round(base), "ratio": round(statistics.median(rates) / base, 3)}
        for name, rates, unit in ((f"snapshot_cas_per_s_{suffix}", cas, "writes/s"),
                                  (f"event_append_per_s_{suffix}", events, "appends/s"))
    ]
