"""Workspace figures: the local backend with 4 concurrent writer processes.

    python bench/workspace_bench.py [--repeat N]

* ``snapshot_cas_per_s_local``: committed compare-and-set snapshot writes per second, 4
  processes each advancing its own snapshot through the async backend (read the version
  once, then ``write_snapshot(..., expected_state_version=v)`` repeatedly).
* ``event_append_per_s_local``: ``append_event`` calls per second, 4 processes appending
  to one execution (idempotency check + dense sequence in one transaction each).

The baseline of both, measured in the same run on the same disk: raw ``sqlite3`` INSERTs,
one transaction each, from 4 processes into one WAL database with ``synchronous=NORMAL``
(the local backend's setting). ``ratio`` is ours divided by the baseline (higher is
better). Process start-up is excluded: every worker starts its clock at a shared barrier.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _writers import backend_writer, rate, rows

WRITERS = 4
OPS_PER_WRITER = 400
BACKEND = "agently_core_workspace_local.backend:LocalWorkspaceBackend"


def _timed(barrier: Any, results: Any, body: Any) -> None:
    try:
        barrier.wait(60)
        started = time.perf_counter()
        count = body()
        results.put(("ok", count, time.perf_counter() - started))
    except BaseException as exc:
        results.put(("error", repr(exc), 0.0))


def _raw_inserts(path: str, index: int, ops: int, barrier: Any, results: Any) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")

    def body() -> int:
        for i in range(ops):
            conn.execute("INSERT INTO raw (writer, i, payload) VALUES (?, ?, ?)",
                         (index, i, '{"n": 1}'))
        return ops

    _timed(barrier, results, body)
    conn.close()


def _raw_rate(directory: Path, ops: int) -> float:
    db = directory / "raw.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS raw (writer INTEGER, i INTEGER, payload TEXT)")
    conn.close()
    return rate(_raw_inserts, lambda index: (str(db), index, ops), WRITERS)


def _backend_rate(kind: str, directory: Path, ops: int) -> float:
    from agently_core_workspace_local.backend import LocalWorkspaceBackend

    store = directory / f"ws-{kind}"
    LocalWorkspaceBackend(store).close()  # created once, before the writers race
    return rate(backend_writer, lambda index: (kind, BACKEND, (str(store),), {}, index, ops),
                WRITERS)


def workspace_figures(repeat: int) -> list[dict]:
    """The two local-backend figures beside raw SQLite, each the median of ``repeat`` runs."""
    ops = OPS_PER_WRITER
    cas, events, raw = [], [], []
    for _ in range(max(1, repeat)):
        with tempfile.TemporaryDirectory(prefix="agently-ws-bench-") as tmp:
            directory = Path(tmp)
            raw.append(_raw_rate(directory, ops))
            cas.append(_backend_rate("cas", directory, ops))
            events.append(_backend_rate("events", directory, ops))
    return rows("local", cas, events, raw)

if __name__ == "__main__":
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
    for row in workspace_figures(repeat):
        print(json.dumps(row))
