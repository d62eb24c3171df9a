"""Warm ``query_sqlite`` latency on one agent: sequential calls (median, p95) and a batch
of concurrent ones. Run: ``.venv/bin/python plugins/sqlite/benchmarks/warm_latency.py``."""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import anyio

import agently_core
from agently_core.models import ActionCall

QUERIES = {"SELECT 1": "SELECT 1", "100 rows": "SELECT * FROM items LIMIT 100"}


def main(repeat: int = 300) -> None:
    path = Path(tempfile.mkdtemp()) / "bench.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
        conn.executemany("INSERT INTO items (name, value) VALUES (?, ?)",
                         [(f"n{i}", i) for i in range(1000)])
    conn.close()
    agent = agently_core.create_agent().enable_sqlite(database=str(path))

    async def measure() -> None:
        run = agent.action.async_execute_action
        for name, sql in QUERIES.items():
            for _ in range(20):
                await run("query_sqlite", {"query": sql})
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                record = await run("query_sqlite", {"query": sql})
                times.append(time.perf_counter() - started)
                assert record.ok, record.error
            times.sort()
            print(f"{name}: median {statistics.median(times) * 1e3:.3f} ms, "
                  f"p95 {times[int(len(times) * 0.95)] * 1e3:.3f} ms")
        calls = [ActionCall(action="query_sqlite", kwargs={"query": QUERIES["100 rows"]})
                 for _ in range(200)]
        started = time.perf_counter()
        records = await agent.action.async_execute_actions(calls, concurrency=8)
        assert all(r.ok for r in records)
        print(f"200 calls of 100 rows, 8 at a time: {(time.perf_counter() - started) * 1e3:.0f} ms")

    anyio.run(measure)
    started = time.perf_counter()
    agent.close()
    print(f"close: {(time.perf_counter() - started) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
