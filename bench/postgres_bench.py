"""Workspace figures: the postgres backend with 4 concurrent writer processes.

    python bench/postgres_bench.py [--repeat N]

* ``snapshot_cas_per_s_postgres``: committed compare-and-set snapshot writes per second, 4
  processes each advancing its own snapshot through the async backend (read the version
  once, then ``write_snapshot(..., expected_state_version=v)`` repeatedly).
* ``event_append_per_s_postgres``: ``append_event`` calls per second, 4 processes appending
  to one execution (idempotency check, head-row lock, dense sequence: one server call each).

The baseline of both, measured in the same run against the same server: raw psycopg
INSERTs, autocommit (one transaction each), from 4 processes into one table. ``ratio`` is
ours divided by the baseline (higher is better). Process start-up is excluded: every
worker starts its clock at a shared barrier.

The server is found or started exactly as the tests do it
(``agently_core_workspace_postgres.testing``: ``AGENTLY_POSTGRES_DSN``, else a throwaway
cluster of the machine's PostgreSQL binaries with ``fsync=off``). Without one, outside CI,
the figures are left out with a note on stderr; under ``CI=true`` that is an error.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from _writers import backend_writer, rate, rows

WRITERS = 4
OPS_PER_WRITER = 1000
BACKEND = "agently_core_workspace_postgres.backend:PostgresWorkspaceBackend"


def _raw_inserts(dsn: str, schema: str, index: int, ops: int, barrier: Any,
                 results: Any) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            query = f'INSERT INTO "{schema}".raw (writer, i, payload) VALUES (%s, %s, %s)'
            conn.execute(query, (index, -1, '{"n": 0}'))  # connected and prepared before
            barrier.wait(60)
            started = time.perf_counter()
            for i in range(ops):
                conn.execute(query, (index, i, '{"n": 1}'))
            results.put(("ok", ops, time.perf_counter() - started))
    except BaseException as exc:
        results.put(("error", repr(exc), 0.0))


def _raw_rate(dsn: str, schema: str, ops: int) -> float:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".raw (id bigint GENERATED ALWAYS AS IDENTITY '
                     "PRIMARY KEY, writer integer, i integer, payload text)")
    return rate(_raw_inserts, lambda index: (dsn, schema, index, ops), WRITERS)


def _backend_rate(kind: str, dsn: str, schema: str, ops: int) -> float:
    from agently_core_workspace_postgres.backend import PostgresWorkspaceBackend

    PostgresWorkspaceBackend(dsn, schema=schema).close()  # created once, before the race
    return rate(backend_writer,
                lambda index: (kind, BACKEND, (dsn,), {"schema": schema}, index, ops), WRITERS)


def postgres_figures(repeat: int) -> list[dict]:
    """The two postgres-backend figures beside raw psycopg INSERTs, each the median of
    ``repeat`` runs; ``[]`` (with a note on stderr) when no server can be had outside CI."""
    try:
        from agently_core_workspace_postgres.testing import (
            ServerUnavailable,
            drop_schema,
            find_or_start_server,
            in_ci,
            unique_schema,
        )
    except ImportError as exc:
        print(f"postgres_bench: agently-core-workspace-postgres is not installed ({exc}); "
              "skipping the postgres figures", file=sys.stderr)
        return []
    try:
        server = find_or_start_server()
    except ServerUnavailable as exc:
        if in_ci():
            raise RuntimeError(f"CI=true and no PostgreSQL server for the benchmark: {exc}"
                               ) from None
        print(f"postgres_bench: no PostgreSQL server, skipping the postgres figures: {exc}",
              file=sys.stderr)
        return []
    ops = OPS_PER_WRITER
    cas, events, raw = [], [], []
    try:
        for _ in range(max(1, repeat)):
            schemas = [unique_schema("bench") for _ in range(3)]
            try:
                raw.append(_raw_rate(server.dsn, schemas[0], ops))
                cas.append(_backend_rate("cas", server.dsn, schemas[1], ops))
                events.append(_backend_rate("events", server.dsn, schemas[2], ops))
            finally:
                for schema in schemas:
                    drop_schema(server.dsn, schema)
    finally:
        server.stop()
    return rows("postgres", cas, events, raw)

if __name__ == "__main__":
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
    for row in postgres_figures(repeat):
        print(json.dumps(row))
