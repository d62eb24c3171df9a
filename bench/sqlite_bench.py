"""SQLite: what ``query_sqlite`` costs beside the same query on a plain connection.

    python bench/sqlite_bench.py [--json] [--repeat N]

``sqlite_figures(repeat)`` returns rows shaped like bench/run.py's (``{"name", "value",
"unit", "baseline", "ratio"}``; ``baseline`` measured in the same run, blocks alternating
so that machine noise hits both alike; figures are medians):

* ``query_sqlite_warm_ms``: ``SELECT 1`` through ``agent.action.async_execute_action``
  (dispatch, the connection's lease, the statement in a warm worker process behind the
  connection's queue, the record), beside ``sqlite3`` in this process on a ``mode=ro``
  connection (what the plugin did before its statements moved into killable workers);
* ``query_sqlite_rows_ms``: the same for 100 rows of three columns;
* ``query_sqlite_concurrent_ms``: 200 calls of 100 rows, 8 at a time
  (``async_execute_actions``), beside the same 200 queries run one after another on the
  plain connection;
* ``query_sqlite_close_ms``: ``agent.aclose()`` of an agent with a warm connection (its
  workers stopped), beside closing the plain connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BLOCK = 50
QUERIES = {"query_sqlite_warm_ms": "SELECT 1",
           "query_sqlite_rows_ms": "SELECT * FROM items LIMIT 100"}


def _row(name: str, value: float, unit: str, baseline: float | None) -> dict[str, Any]:
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None}


def _database() -> Path:
    path = Path(tempfile.mkdtemp(prefix="agently-bench-")) / "bench.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, value REAL)")
        conn.executemany("INSERT INTO items (name, value) VALUES (?, ?)",
                         [(f"n{i}", float(i)) for i in range(1000)])
    conn.close()
    return path


async def sqlite_figures(repeat: int = 10) -> list[dict[str, Any]]:
    import agently_core
    from agently_core.models import ActionCall

    path = _database()
    plain = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    agent = agently_core.create_agent(config={"providers": {}})
    agent.enable_sqlite(database=str(path))
    run = agent.action.async_execute_action
    rows = []
    for name, sql in QUERIES.items():
        for _ in range(20):  # warm: workers started, statement caches filled
            assert (await run("query_sqlite", {"query": sql})).status == "success"
        ours, base = [], []
        for _ in range(repeat):
            for _ in range(BLOCK):
                started = time.perf_counter()
                record = await run("query_sqlite", {"query": sql})
                ours.append(time.perf_counter() - started)
                assert record.status == "success", record.error
            for _ in range(BLOCK):
                started = time.perf_counter()
                plain.execute(sql).fetchall()
                base.append(time.perf_counter() - started)
        rows.append(_row(name, statistics.median(ours) * 1e3, "ms",
                         statistics.median(base) * 1e3))
    sql = QUERIES["query_sqlite_rows_ms"]
    ours, base = [], []
    for _ in range(max(1, repeat // 2)):
        calls = [ActionCall(action="query_sqlite", kwargs={"query": sql}) for _ in range(200)]
        started = time.perf_counter()
        records = await agent.action.async_execute_actions(calls, concurrency=8)
        ours.append(time.perf_counter() - started)
        assert all(r.status == "success" for r in records)
        started = time.perf_counter()
        for _ in range(200):
            plain.execute(sql).fetchall()
        base.append(time.perf_counter() - started)
    rows.append(_row("query_sqlite_concurrent_ms", statistics.median(ours) * 1e3, "ms",
                     statistics.median(base) * 1e3))
    started = time.perf_counter()
    await agent.aclose()
    closed = time.perf_counter() - started
    started = time.perf_counter()
    plain.close()
    rows.append(_row("query_sqlite_close_ms", closed * 1e3, "ms",
                     (time.perf_counter() - started) * 1e3))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    for row in asyncio.run(sqlite_figures(args.repeat)):
        print(json.dumps(row) if args.json else
              f"{row['name']:<28} {row['value']!s:>10} {row['unit']:<4} "
              f"baseline {row['baseline']!s:>8}  ratio {row['ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
