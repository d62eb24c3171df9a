"""The SQL attack suite: each attempt is contained with a clear record, the database file
is unchanged (bytes, mtime, rows), no file appears next to it, and the next call works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agently_core.models import ActionCall

COUNT = "SELECT count(*) FROM items"


def query(agent, sql: str, **options) -> Any:
    return agent.action.execute_action("query_sqlite", {"query": sql}, **options)


def contained(agent, database: Path, before, record, fragment: str, sq) -> None:
    """The checks every attack must pass."""
    assert record.status in ("failed", "blocked"), (
        f"the attack was not refused: {record.status} {record.result!r}")
    assert record.error and fragment.lower() in record.error.lower(), record.error
    assert record.result is None
    after = query(agent, COUNT)
    assert after.status == "success" and after.result["rows"] == [[50]], after.error
    before.assert_unchanged()
    assert sq.row_count(database) == 50
    assert sq.tables(database) == ["items", "items_name"]


ATTACKS = [
    # plain writes
    ("INSERT INTO items (name) VALUES ('evil')", "read-only mode: INSERT into items"),
    ("UPDATE items SET name = 'evil'", "read-only mode: UPDATE of items.name"),
    ("DELETE FROM items", "read-only mode: DELETE from items"),
    ("DROP TABLE items", "read-only mode: DROP TABLE items"),
    ("DROP INDEX items_name", "DROP INDEX items_name"),
    ("CREATE TABLE evil (x)", "read-only mode: CREATE TABLE evil"),
    ("CREATE INDEX evil ON items (value)", "read-only mode: CREATE INDEX evil"),
    ("CREATE VIEW evil AS SELECT 1", "read-only mode: CREATE VIEW evil"),
    ("CREATE TRIGGER evil AFTER INSERT ON items BEGIN DELETE FROM items; END",
     "read-only mode: CREATE TRIGGER evil"),
    ("ALTER TABLE items RENAME TO evil", "ALTER TABLE"),
    ("ALTER TABLE items ADD COLUMN evil TEXT", "ALTER TABLE"),
    ("REPLACE INTO items (id, name) VALUES (1, 'evil')", "INSERT into items"),
    ("INSERT INTO items (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = 'evil'",
     "INSERT into items"),
    ("INSERT INTO items (name) VALUES ('x') RETURNING id", "INSERT into items"),
    ("UPDATE sqlite_master SET sql = 'evil'", "may not be modified"),
    ("INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 0, 'CREATE TABLE x(y)')",
     "read-only mode: INSERT into sqlite_master"),
    # temporary objects
    ("CREATE TEMP TABLE evil (x)", "read-only mode"),
    ("CREATE TEMP VIEW evil AS SELECT 1", "read-only mode"),
    ("CREATE TEMP TRIGGER evil AFTER INSERT ON items BEGIN SELECT 1; END", "read-only mode"),
    ("CREATE VIRTUAL TABLE evil USING fts5(x)", "read-only mode"),
    # writes wrapped in CTEs
    ("WITH x AS (SELECT 1) INSERT INTO items (name) SELECT 'evil' FROM x", "INSERT into items"),
    ("WITH x AS (SELECT 1) DELETE FROM items", "DELETE from items"),
    ("WITH x AS (SELECT id FROM items) UPDATE items SET name = 'evil' WHERE id IN "
     "(SELECT id FROM x)", "UPDATE of items"),
    ("WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 5) "
     "DELETE FROM items WHERE id IN (SELECT n FROM x)", "DELETE from items"),
    ("EXPLAIN DELETE FROM items", "DELETE from items"),
    # pragmas
    ("PRAGMA query_only = OFF", "PRAGMA query_only"),
    ("PRAGMA query_only", "PRAGMA query_only"),
    ("PRAGMA writable_schema = 1", "PRAGMA writable_schema"),
    ("PRAGMA journal_mode = WAL", "PRAGMA journal_mode"),
    ("PRAGMA journal_mode = OFF", "PRAGMA journal_mode"),
    ("PRAGMA user_version = 7", "PRAGMA user_version"),
    ("PRAGMA hard_heap_limit = 0", "PRAGMA hard_heap_limit"),
    ("PRAGMA soft_heap_limit = 0", "PRAGMA soft_heap_limit"),
    ("PRAGMA temp_store = FILE", "PRAGMA temp_store"),
    ("PRAGMA trusted_schema = ON", "PRAGMA trusted_schema"),
    ("PRAGMA mmap_size = 268435456", "PRAGMA mmap_size"),
    ("PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA wal_checkpoint"),
    ("PRAGMA optimize", "PRAGMA optimize"),
    ("SELECT * FROM pragma_journal_mode", "not allowed"),
    # other files, extensions, maintenance
    ("ATTACH DATABASE '{dir}/evil.db' AS evil", "ATTACH"),
    ("ATTACH DATABASE 'evil.db' AS evil", "ATTACH"),
    ("ATTACH DATABASE 'file:{dir}/evil.db?mode=rwc' AS evil", "ATTACH"),
    ("ATTACH DATABASE ':memory:' AS evil", "ATTACH"),
    ("DETACH DATABASE main", "DETACH"),
    ("VACUUM INTO '{dir}/copy.db'", "ATTACH (or VACUUM)"),
    ("VACUUM", "ATTACH (or VACUUM)"),
    ("ANALYZE", "read-only mode: ANALYZE"),
    ("REINDEX", "read-only mode: REINDEX items_name"),
    ("SELECT load_extension('x')", "function load_extension()"),
    ("SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6')", "load_extension"),
    ("SELECT fts3_tokenizer('simple')", "function fts3_tokenizer()"),
    ("SELECT writefile('{dir}/evil.txt', 'x')", "writefile"),
    ("SELECT readfile('/etc/passwd')", "readfile"),
    # transactions hold locks on the file
    ("BEGIN IMMEDIATE", "transaction control"),
    ("BEGIN EXCLUSIVE", "transaction control"),
    ("SAVEPOINT evil", "SAVEPOINT"),
    ("COMMIT", "transaction control"),
    # several statements in one string
    ("SELECT 1; DROP TABLE items", "one SQL statement"),
    ("SELECT 1; ATTACH DATABASE '{dir}/evil.db' AS evil", "one SQL statement"),
    ("SELECT 1;\nDELETE FROM items;", "one SQL statement"),
    # memory
    ("SELECT length(randomblob(2000000000))", "too big"),
    ("SELECT zeroblob(1000000000)", "too big"),
    ("SELECT replace(hex(zeroblob(10000000)), '0', '00000000')", "too big"),
    # not SQL
    ("SELEC * FROM items", "syntax error"),
    ("SELECT * FROM no_such_table", "no such table"),
]


@pytest.mark.parametrize(("sql", "fragment"), ATTACKS, ids=[a[0][:60] for a in ATTACKS])
def test_attack_is_contained(make_agent, database, sql, fragment, sq, monkeypatch,
                             tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a relative path would land here
    agent = make_agent().enable_sqlite(database=str(database))
    assert query(agent, COUNT).ok
    before = sq.Snapshot(database)
    record = query(agent, sql.format(dir=database.parent))
    contained(agent, database, before, record, fragment, sq)
    assert os.listdir(cwd) == []


def test_at_least_forty_attack_cases() -> None:
    assert len(ATTACKS) >= 40


@pytest.mark.parametrize(("first", "then"), [
    ("PRAGMA query_only = OFF", "INSERT INTO items (name) VALUES ('evil')"),
    ("PRAGMA writable_schema = 1", "UPDATE sqlite_master SET sql = 'evil' WHERE name = 'items'"),
    ("PRAGMA journal_mode = OFF", "DELETE FROM items"),
    ("BEGIN", "DELETE FROM items"),
    ("ATTACH DATABASE '{dir}/evil.db' AS evil", "CREATE TABLE evil.t (x)"),
])
def test_two_step_attacks(make_agent, database, first, then, sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database))
    before = sq.Snapshot(database)
    for sql in (first, then):
        record = query(agent, sql.format(dir=database.parent))
        assert record.status == "failed", (sql, record.result)
    contained(agent, database, before, record, "", sq)


def test_attach_of_an_existing_file_then_write(make_agent, database, tmp_path: Path, sq) -> None:
    other = sq.create_database(tmp_path / "other" / "other.db", rows=3)
    other_before = sq.Snapshot(other)
    agent = make_agent().enable_sqlite(database=str(database))
    before = sq.Snapshot(database)
    attach = query(agent, f"ATTACH DATABASE '{other}' AS other")
    assert attach.status == "failed" and "ATTACH" in attach.error
    write = query(agent, "INSERT INTO other.items (name) VALUES ('evil')")
    assert write.status == "failed"
    read = query(agent, "SELECT count(*) FROM other.items")
    assert read.status == "failed" and "no such table" in read.error
    contained(agent, database, before, write, "", sq)
    other_before.assert_unchanged()


def test_the_connection_survives_every_attack(make_agent, database, sq) -> None:
    """One connection takes the whole suite in a row and is still the same, healthy one."""
    agent = make_agent().enable_sqlite(database=str(database))
    assert query(agent, COUNT).ok
    connection = sq.connection_of(agent)
    before = sq.Snapshot(database)
    for sql, _ in ATTACKS:
        assert query(agent, sql.format(dir=database.parent)).status == "failed", sql
    contained(agent, database, before, query(agent, "DELETE FROM items"), "read-only", sq)
    assert sq.connection_of(agent) is connection and not connection.closed


def test_database_name_cannot_smuggle_uri_options(make_agent, tmp_path: Path, sq) -> None:
    directory = tmp_path / "odd"
    directory.mkdir()
    weird = directory / "x.db?mode=rwc&immutable=1#frag"
    sq.create_database(weird, rows=50)
    before = sq.Snapshot(weird)
    agent = make_agent().enable_sqlite(database=str(weird))
    assert query(agent, COUNT).result["rows"] == [[50]]
    record = query(agent, "DELETE FROM items")
    assert record.status == "failed"
    agent.close()
    before.assert_unchanged()
    assert os.listdir(directory) == [weird.name]


# -- arguments and policy from a model ------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"query": "DELETE FROM items", "read_only": False},
    {"query": "SELECT 1", "database": "/etc/passwd"},
    {"query": "SELECT 1", "config": {"read_only": False}},
    {"query": "SELECT 1", "timeout": 1000},
    {"sql": "SELECT 1"},
])
def test_model_cannot_pass_configuration(make_agent, database, kwargs, sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database))
    before = sq.Snapshot(database)

    async def call() -> Any:
        return await agent.action.async_execute_actions(
            [ActionCall(action="query_sqlite", kwargs=kwargs, source="model")])

    (record,) = anyio.run(call)
    assert record.status == "failed" and record.error_type == "ArgumentsError", record.error
    contained(agent, database, before, record, "invalid arguments", sq)


def test_model_policy_cannot_widen_to_writes(make_agent, database, sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database))
    before = sq.Snapshot(database)
    call = ActionCall(action="query_sqlite", kwargs={"query": "DELETE FROM items"},
                      source="model", policy={"read_only": False, "allow_delete": True})
    (record,) = agent.action.execute_actions([call])
    contained(agent, database, before, record, "read-only mode", sq)


def test_model_cannot_reach_execute_sqlite_unless_the_host_enabled_it(make_agent, database,
                                                                       sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database))
    before = sq.Snapshot(database)
    (record,) = agent.action.execute_actions([ActionCall(
        action="execute_sqlite", kwargs={"query": "DELETE FROM items"}, source="model")])
    contained(agent, database, before, record, "unknown action", sq)


# -- runaway queries --------------------------------------------------------------------------
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.mark.parametrize("where", ["policy", "config"])
def test_runaway_query_really_stops_at_the_timeout(make_agent, database, where, sq) -> None:
    timeout = 0.5
    if where == "policy":  # the dispatcher's timeout cancels the call: the thread stops too
        agent = make_agent().enable_sqlite(database=str(database))
        options = {"timeout": timeout}
    else:  # the progress handler's own deadline
        agent = make_agent().enable_sqlite(database=str(database), timeout=timeout)
        options = {}
    assert query(agent, COUNT).ok
    connection = sq.connection_of(agent)
    before = sq.Snapshot(database)
    started = time.monotonic()
    record = query(agent, RUNAWAY, **options)
    elapsed = time.monotonic() - started
    assert record.status == "failed", record.result
    assert elapsed < timeout + 1, f"the record came {elapsed:.2f}s after the call"
    assert record.error_type in ("TimeoutError", "SQLiteTimeoutError"), record.error
    assert "timed out" in record.error or "timeout" in record.error
    deadline = time.monotonic() + 0.5
    while connection.busy and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not connection.busy, "the statement kept running after its timeout"
    assert sq.children_cpu_over(0.4) < 0.2, "something is still burning CPU"
    started = time.monotonic()
    after = query(agent, COUNT)
    assert after.ok and after.result["rows"] == [[50]]
    assert time.monotonic() - started < 0.5
    before.assert_unchanged()


def test_a_call_waiting_behind_runaways_times_out_on_its_own_deadline(make_agent, database
                                                                       ) -> None:
    """Two runaways hold both workers of the connection; a third call waits, gives up at its
    own (shorter) deadline, and says it waited."""
    agent = make_agent().enable_sqlite(database=str(database), timeout=1.5)

    async def scenario() -> tuple[list[Any], Any, float]:
        results: list[Any] = []

        async def runaway() -> None:
            results.append(await agent.action.async_execute_action(
                "query_sqlite", {"query": RUNAWAY}))

        async with anyio.create_task_group() as group:
            group.start_soon(runaway)
            group.start_soon(runaway)
            await anyio.sleep(0.3)
            started = anyio.current_time()
            waiting = await agent.action.async_execute_action(
                "query_sqlite", {"query": "SELECT 1"}, timeout=0.3)
            waited = anyio.current_time() - started
        return results, waiting, waited

    runaways, waiting, waited = anyio.run(scenario)
    assert waiting.status == "failed" and waited < 1.0, waiting
    assert waiting.error_type in ("TimeoutError", "SQLiteTimeoutError"), waiting.error
    assert "never started" in waiting.error and "wait" in waiting.error, waiting.error
    assert waiting.meta["queued_ms"] >= 250
    assert [r.status for r in runaways] == ["failed", "failed"]
    assert all("1.5s timeout" in r.error for r in runaways), [r.error for r in runaways]
    assert query(agent, "SELECT 1").ok


def test_huge_results_stop_early_at_the_caps(make_agent, database, sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database), max_rows=500,
                                       max_output_bytes=200_000)
    before = sq.Snapshot(database)
    endless = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT x, hex(randomblob(200)) FROM c")
    started = time.monotonic()
    record = query(agent, endless)
    assert time.monotonic() - started < 2
    result = record.result
    assert record.status == "success" and result["truncated"] is True
    assert result["truncated_by"] == "max_output_bytes" and result["row_count"] < 500
    assert len(json.dumps(result).encode()) <= 200_000
    rows = query(agent, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                        "SELECT x FROM c").result
    assert rows["row_count"] == 500 and rows["truncated_by"] == "max_rows"
    before.assert_unchanged()


def test_memory_bomb_is_stopped_by_the_heap_limit(tmp_path: Path, sq) -> None:
    """In a child process, whose children are only the connection's workers: neither the
    host nor a worker grows past the limit."""
    db = sq.create_database(tmp_path / "mem.db", rows=5)
    script = textwrap.dedent(f"""
        import resource, sys, agently_core
        agent = agently_core.create_agent()
        agent.enable_sqlite(database={str(db)!r}, heap_limit_bytes=48 * 1024 * 1024,
                            timeout=60)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        bomb = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION SELECT x + 1 FROM c "
                "WHERE x < 100000000) SELECT count(*) FROM c")
        record = agent.action.execute_action("query_sqlite", {{"query": bomb}})
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024
        after = agent.action.execute_action("query_sqlite", {{"query": "SELECT count(*) FROM items"}})
        agent.close()  # the workers end: their peak shows in RUSAGE_CHILDREN
        worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(record.status, max(grown, worker), after.result["rows"][0][0], record.error,
              sep="|")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    status, grown, count, error = done.stdout.strip().split("|", 3)
    assert status == "failed" and "out of memory" in error, error
    assert int(grown) < 120, f"memory grew {grown} MB"
    assert count == "5"


def test_sqlite_connection_is_never_used_by_two_threads(make_agent, database) -> None:
    """Concurrent slow queries and pings on one connection: no 'recursive use' errors."""
    agent = make_agent().enable_sqlite(database=str(database))
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
            "SELECT count(*) FROM c")
    calls = [ActionCall(action="query_sqlite", kwargs={"query": slow if i % 2 else COUNT})
             for i in range(12)]
    records = agent.action.execute_actions(calls, concurrency=12)
    assert all(r.ok for r in records), [r.error for r in records if not r.ok]
