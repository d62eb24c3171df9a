"""Deadlines that hold for any statement, a visible and bounded queue, immediate close.

SQLite's progress handler (and ``sqlite3_interrupt``) only act between virtual-machine
steps, and one step (an ``instr()`` or a ``replace()`` over megabytes, a ``printf`` with a
huge precision, a ``LIKE`` with many wildcards) can run for minutes. Statements therefore
run in worker processes that the host kills at the deadline; these tests hold every such
step to its deadline plus half a second, and check that the connection, the next call and
``close()`` do not notice.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agently_core.models import ActionCall

#: How late after its deadline a record may come back.
MARGIN = 0.5
H4 = "(SELECT replace(hex(zeroblob(2097152)), '0', 'a') AS h)"  # 4 MiB of 'a'
#: Statements whose single steps run for seconds to minutes if nothing kills them, and two
#: (a big sort, JSON over a big document) that are interruptible but heavy.
SLOW_STEPS = {
    "instr over 4 MiB": f"SELECT instr(h, substr(h, 1, 1048576) || 'b') FROM {H4}",
    "recursive CTE building 4 MiB, then instr":
        "WITH RECURSIVE s(x) AS (SELECT 'a' UNION ALL SELECT x || x FROM s "
        "WHERE length(x) < 4194304) SELECT instr(x, substr(x, 1, 1048576) || 'b') FROM s "
        "WHERE length(x) >= 4194304",
    "replace over zeroblob":
        "SELECT length(replace(hex(zeroblob(2097152)), hex(zeroblob(524288)) || '1', ''))",
    "printf with a huge precision": "SELECT length(printf('%.*c', 2000000000, 'x'))",
    "LIKE with many wildcards":
        f"SELECT h LIKE '%' || replace(hex(zeroblob(200)), '0', 'a_') || 'b' FROM {H4}",
    "ORDER BY of randomblob":
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "
        "SELECT hex(r) FROM (SELECT randomblob(16) || zeroblob(64) AS r FROM c) ORDER BY r "
        "LIMIT 1",
    "JSON over a big document, endlessly":
        "WITH d(j) AS (SELECT json_group_array(x) FROM (WITH RECURSIVE c(x) AS (SELECT 1 "
        "UNION ALL SELECT x + 1 FROM c WHERE x < 300000) SELECT x FROM c)), "
        "r(n, v) AS (SELECT 0, 0 UNION ALL SELECT n + 1, json_extract(j, '$[299999]') "
        "FROM r, d) SELECT max(n) FROM r",
}
INSTR = SLOW_STEPS["instr over 4 MiB"]
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
COUNT = "SELECT count(*) FROM items"


def query(agent, sql: str, **options) -> Any:
    return agent.action.execute_action("query_sqlite", {"query": sql}, **options)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    value = fn(*args, **kwargs)
    return value, time.monotonic() - started


def assert_quiet(sq) -> None:
    """No process of ours (the host, its workers) is still burning CPU."""
    assert sq.children_cpu_over(0.4) < 0.2, "a statement is still burning CPU"


# -- every statement returns by its deadline ----------------------------------------------------
@pytest.mark.parametrize("sql", list(SLOW_STEPS.values()), ids=list(SLOW_STEPS))
def test_a_slow_step_returns_by_its_deadline(make_agent, database, sql, sq) -> None:
    timeout = 1.0
    agent = make_agent().enable_sqlite(database=str(database), timeout=timeout)
    assert query(agent, COUNT).ok
    before = sq.Snapshot(database)
    record, elapsed = timed(query, agent, sql)
    assert elapsed < timeout + MARGIN, f"the record came {elapsed:.2f}s after the call"
    assert record.status == "failed", (record.status, record.result)
    assert record.error_type == "SQLiteTimeoutError", record.error
    assert "1s timeout" in record.error, record.error
    after, elapsed = timed(query, agent, COUNT)
    assert after.ok and after.result["rows"] == [[50]], after.error
    assert elapsed < 1.0
    assert_quiet(sq)
    _, elapsed = timed(agent.close)
    assert elapsed < 1.0, f"close() took {elapsed:.2f}s"
    assert sq.children() == []
    before.assert_unchanged()


def test_the_dispatcher_timeout_leaves_nothing_wedged(make_agent, database, sq) -> None:
    """The issue's case: the policy's timeout fires in the middle of a quadratic instr();
    the connection is not wedged, the next query answers, close() is immediate."""
    agent = make_agent().enable_sqlite(database=str(database))
    assert query(agent, COUNT).ok
    connection = sq.connection_of(agent)
    record, elapsed = timed(query, agent, INSTR, timeout=0.5)
    assert record.status == "failed" and record.error_type == "TimeoutError", record.error
    assert elapsed < 0.5 + MARGIN
    for _ in range(3):  # whichever worker each lands on
        after, elapsed = timed(query, agent, COUNT)
        assert after.ok and after.result["rows"] == [[50]] and elapsed < 1.0, after.error
    deadline = time.monotonic() + MARGIN
    while connection.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not connection.busy
    assert_quiet(sq)
    _, elapsed = timed(agent.close)
    assert elapsed < 1.0 and connection.closed and sq.children() == []


def test_a_slow_write_is_killed_and_rolled_back(make_agent, database, sq) -> None:
    """A write whose slow step is past its deadline: the worker is killed in the middle
    of the transaction, SQLite's journal rolls it back, both actions go on."""
    agent = make_agent(approval_handler="auto_approve")
    agent.enable_sqlite(database=str(database), read_only=False, timeout=1.0)
    slow = f"UPDATE items SET name = (SELECT instr(h, substr(h, 1, 1048576) || 'b') FROM {H4})"
    record, elapsed = timed(agent.action.execute_action, "execute_sqlite", {"query": slow})
    assert record.status == "failed" and record.error_type == "SQLiteTimeoutError"
    assert elapsed < 1.0 + MARGIN
    names = query(agent, "SELECT count(*) FROM items WHERE name LIKE 'item-%'")
    assert names.ok and names.result["rows"] == [[50]], names.error
    written = agent.action.execute_action("execute_sqlite",
                                          {"query": "DELETE FROM items WHERE id = 1"})
    assert written.ok, written.error
    agent.close()
    assert sq.row_count(database) == 49


def test_close_does_not_wait_for_a_running_step(database) -> None:
    """release() while a step runs with a 30s timeout: under a second, and the call that
    was running gets a clear record."""
    from agently_core_sqlite.provider import SQLiteProvider

    from agently_core.models import EnvironmentRequirement

    provider = SQLiteProvider()
    requirement = EnvironmentRequirement(kind="sqlite", config={"database": str(database)})

    async def scenario() -> tuple[float, Any]:
        connection = await provider.ensure(requirement)
        outcome: dict[str, Any] = {}

        async def run() -> None:
            try:
                await connection.run({"op": "run", "sql": INSTR, "params": [],
                                      "rules": {"read_only": True}, "max_rows": 10,
                                      "max_bytes": 10_000, "write": False}, timeout=30)
            except Exception as exc:
                outcome["error"] = exc

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await anyio.sleep(0.5)
            started = anyio.current_time()
            await provider.release(requirement, connection)
            took = anyio.current_time() - started
        return took, outcome.get("error")

    took, error = anyio.run(scenario)
    assert took < 1.0, f"release took {took:.2f}s"
    assert error is not None and "closed" in str(error)


def test_agent_close_during_a_slow_step(make_agent, database, sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database), timeout=30)
    assert query(agent, COUNT).ok
    records: list[Any] = []
    runner = threading.Thread(target=lambda: records.append(query(agent, INSTR)))
    runner.start()
    time.sleep(0.5)
    _, elapsed = timed(agent.close)
    runner.join(5)
    assert elapsed < 1.0, f"close() took {elapsed:.2f}s"
    assert not runner.is_alive() and records and records[0].status == "failed"
    assert sq.children() == []


# -- the worker process ------------------------------------------------------------------------
def test_the_worker_is_a_separate_isolated_interpreter(make_agent, database, sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database))
    assert query(agent, COUNT).ok
    (pid,) = sq.connection_of(agent).pool.pids()
    assert pid != os.getpid()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:3] == [b"-I", b"-S"], argv
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert [e for e in environ if e] == [b"LC_ALL=C.UTF-8"]
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    limits = Path(f"/proc/{pid}/limits").read_text()
    address = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    expected = 512 * 2**20 + 3 * 32 * 2**20 + 4 * 1_000_000 + 256 * 2**20  # the defaults
    assert address.split()[3:5] == [str(expected)] * 2, address
    modules = subprocess.run(["grep", "-c", "agently_core/", f"/proc/{pid}/maps"],
                             capture_output=True, text=True).stdout.strip()
    assert modules == "0"


def test_a_worker_that_dies_is_replaced(make_agent, database, sq) -> None:
    agent = make_agent().enable_sqlite(database=str(database), timeout=10)
    assert query(agent, COUNT).ok
    connection = sq.connection_of(agent)
    records: list[Any] = []
    runner = threading.Thread(target=lambda: records.append(query(agent, INSTR)))
    runner.start()
    deadline = time.monotonic() + 5
    while not connection.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    for pid in connection.pool.pids():
        os.kill(pid, 9)  # from outside: the OOM killer, a person, a crash
    runner.join(5)
    assert records and records[0].status == "failed"
    assert "worker process died" in records[0].error, records[0].error
    after = query(agent, COUNT)
    assert after.ok and after.result["rows"] == [[50]]


def test_a_worker_ends_with_its_host(database, sq) -> None:
    """The host dies (SIGKILL) while a step runs: its worker does not run on, orphaned."""
    script = textwrap.dedent(f"""
        import sys, threading, agently_core
        agent = agently_core.create_agent().enable_sqlite(database={str(database)!r},
                                                          timeout=120)
        agent.action.execute_action("query_sqlite", {{"query": "SELECT 1"}})
        threading.Thread(target=agent.action.execute_action,
                         args=("query_sqlite", {{"query": {INSTR!r}}})).start()
        print("running", flush=True)
        threading.Event().wait()
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert host.stdout is not None and host.stdout.readline().strip() == "running"
        time.sleep(0.5)
        workers = [int(p) for p in subprocess.run(
            ["pgrep", "-P", str(host.pid)], capture_output=True, text=True).stdout.split()]
        assert workers, "no worker process"
        assert sq.cpu_seconds(workers) > 0.1  # the step is running
        host.kill()
        host.wait(5)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
            time.sleep(0.05)
        alive = [p for p in workers if Path(f"/proc/{p}").exists()
                 and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        assert alive == [], "the worker outlived its host"
    finally:
        host.kill()
        host.wait(5)


def test_many_huge_rows_are_never_all_in_memory(tmp_path: Path, sq) -> None:
    """Twenty 20 MB rows over the byte budget: read one at a time, neither the host nor a
    worker holds them all (the budget cuts before they are kept)."""
    db = sq.create_database(tmp_path / "rows.db", rows=5)
    script = textwrap.dedent(f"""
        import resource, agently_core
        agent = agently_core.create_agent().enable_sqlite(database={str(db)!r}, timeout=60)
        agent.action.execute_action("query_sqlite", {{"query": "SELECT 1"}})
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20) "
               "SELECT x, zeroblob(20000000) FROM c")
        record = agent.action.execute_action("query_sqlite", {{"query": sql}})
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024
        agent.close()
        worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(record.status, record.result["truncated_by"], max(grown, worker), sep="|")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    status, cut, peak = done.stdout.strip().split("|")
    assert (status, cut) == ("success", "max_output_bytes")
    assert int(peak) < 150, f"{peak} MB in one process"


# -- the queue -----------------------------------------------------------------------------------
def test_one_slow_call_does_not_time_out_the_others(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=str(database), timeout=3)

    async def scenario() -> tuple[Any, list[Any]]:
        slow: list[Any] = []

        async def runaway() -> None:
            slow.append(await agent.action.async_execute_action("query_sqlite",
                                                                {"query": INSTR}))

        async with anyio.create_task_group() as group:
            group.start_soon(runaway)
            await anyio.sleep(0.3)
            calls = [ActionCall(action="query_sqlite", kwargs={"query": COUNT},
                                policy={"timeout_seconds": 1}) for _ in range(6)]
            quick = await agent.action.async_execute_actions(calls, concurrency=3)
        return slow[0], quick

    slow, quick = anyio.run(scenario)
    assert [r.status for r in quick] == ["success"] * 6, [r.error for r in quick]
    assert slow.status == "failed" and slow.error_type == "SQLiteTimeoutError"


def said_it_waited(record: Any) -> bool:
    """The dispatcher's timeout while queued, or the connection's own, says so."""
    return ("while it waited for the SQLite connection to shop.db" in record.error
            and "never started" in record.error) or (
        "after waiting" in record.error and "counts against" in record.error
        and "never started" in record.error)


def test_a_queued_call_is_told_how_long_it_waited(make_agent, database) -> None:
    """Both workers busy: a call waits, then runs; its record says how long it queued. A
    call that did not queue says nothing of the sort."""
    agent = make_agent().enable_sqlite(database=str(database), timeout=10)
    assert "queued_ms" not in query(agent, COUNT).meta

    async def scenario() -> tuple[list[Any], Any]:
        slow: list[Any] = []

        async def runaway() -> None:
            slow.append(await agent.action.async_execute_action(
                "query_sqlite", {"query": RUNAWAY}, timeout=0.8))

        async with anyio.create_task_group() as group:
            group.start_soon(runaway)
            group.start_soon(runaway)
            await anyio.sleep(0.3)
            waiting = await agent.action.async_execute_action("query_sqlite",
                                                              {"query": COUNT})
        return slow, waiting

    slow, waiting = anyio.run(scenario)
    assert [r.status for r in slow] == ["failed", "failed"]
    assert waiting.ok and waiting.result["rows"] == [[50]], waiting.error
    assert 200 < waiting.meta["queued_ms"] < 1500, waiting.meta


def test_the_wait_counts_against_the_deadline_and_the_error_says_so(make_agent,
                                                                    database) -> None:
    agent = make_agent().enable_sqlite(database=str(database), timeout=5)

    async def scenario() -> Any:
        async def runaway() -> None:
            await agent.action.async_execute_action("query_sqlite", {"query": INSTR},
                                                    timeout=2)

        async with anyio.create_task_group() as group:
            group.start_soon(runaway)
            group.start_soon(runaway)
            await anyio.sleep(0.3)
            started = anyio.current_time()
            waiting = await agent.action.async_execute_action(
                "query_sqlite", {"query": COUNT}, timeout=0.6)
            assert anyio.current_time() - started < 0.6 + MARGIN
        return waiting

    waiting = anyio.run(scenario)
    assert waiting.status == "failed", waiting.result
    assert waiting.error_type in ("TimeoutError", "SQLiteTimeoutError"), waiting.error
    assert said_it_waited(waiting), waiting.error
    assert waiting.meta["queued_ms"] >= 500, waiting.meta


def test_a_call_that_waits_past_the_connection_timeout_says_so(make_agent, database,
                                                              sq) -> None:
    """No policy timeout: the connection's own deadline ends the wait, with its own error
    naming what was ahead. (Every call of the connection has the same timeout and waits
    count against it, so a call ahead always reaches its deadline first; the waiting call
    times out in the queue only while the slow steps ahead are being killed, 0.15 s after
    their deadline: it comes just after them.)"""
    agent = make_agent().enable_sqlite(database=str(database), timeout=0.8)
    assert query(agent, COUNT).ok   # the connection exists before the race starts

    async def scenario() -> Any:
        async with anyio.create_task_group() as group:
            for _ in range(2):
                group.start_soon(agent.action.async_execute_action, "query_sqlite",
                                 {"query": INSTR})
            # Both slow statements running, however loaded the machine (a fixed sleep
            # raced the second one's admission under CI load).
            pool = sq.connection_of(agent).pool
            with anyio.fail_after(5):
                while pool.running < 2:
                    await anyio.sleep(0.005)
            return await agent.action.async_execute_action("query_sqlite", {"query": COUNT})

    waiting = anyio.run(scenario)
    assert waiting.status == "failed" and waiting.error_type == "SQLiteTimeoutError"
    assert "after waiting 0.8" in waiting.error, waiting.error
    assert "(2 statements running)" in waiting.error, waiting.error
    assert said_it_waited(waiting), waiting.error
    assert waiting.meta["queued_ms"] >= 750


def test_the_queue_is_bounded(make_agent, database) -> None:
    """Two statements running and MAX_WAITING calls waiting: one more is refused at once,
    with a clear busy error; the others are served or time out on their own deadline."""
    from agently_core_sqlite.provider import MAX_WAITING, READ_WORKERS

    agent = make_agent().enable_sqlite(database=str(database), timeout=1.0)

    async def scenario() -> tuple[list[Any], Any, float]:
        records: list[Any] = []

        async def call(sql: str) -> None:
            records.append(await agent.action.async_execute_action("query_sqlite",
                                                                   {"query": sql}))

        async with anyio.create_task_group() as group:
            for _ in range(READ_WORKERS):
                group.start_soon(call, RUNAWAY)
            await anyio.sleep(0.3)
            for _ in range(MAX_WAITING):
                group.start_soon(call, COUNT)
            await anyio.sleep(0.2)
            started = anyio.current_time()
            refused = await agent.action.async_execute_action("query_sqlite",
                                                              {"query": COUNT})
            took = anyio.current_time() - started
        return records, refused, took

    records, refused, took = anyio.run(scenario)
    assert refused.status == "failed" and refused.error_type == "SQLiteBusyError"
    assert f"{MAX_WAITING} call(s) already waiting" in refused.error
    assert "nothing ran" in refused.error
    assert took < 0.1
    assert len(records) == READ_WORKERS + MAX_WAITING
    assert query(agent, COUNT).ok


# -- a write cut off by a kill ---------------------------------------------------------------
def _big(path: Path, rows: int = 5000) -> Path:
    """``big(id, v)`` with ``rows`` 1 kB blobs: a write to all of it spills SQLite's page
    cache into the file before it commits."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB)")
    conn.executemany("INSERT INTO big (v) VALUES (zeroblob(1000))", [()] * rows)
    conn.commit()
    conn.close()
    return path


UNTOUCHED = "SELECT count(*) FROM big WHERE v = zeroblob(1000)"


def test_a_killed_write_is_rolled_back_before_anyone_reads(make_agent, tmp_path: Path) -> None:
    """The worker is killed after the write spilled into the file: a hot journal. The
    write's record comes once a fresh read-write worker has rolled it back, so the
    read-only connection (which could not roll it back) reads the old rows."""
    (tmp_path / "db").mkdir()
    db = _big(tmp_path / "db" / "big.db")
    agent = make_agent(approval_handler="auto_approve")
    agent.enable_sqlite(database=str(db), read_only=False, timeout=1.0)
    slow = ("UPDATE big SET v = CASE WHEN id < 4990 THEN randomblob(1000) ELSE (SELECT "
            f"instr(h, substr(h, 1, 1048576) || 'b') FROM {H4}) END")
    record, elapsed = timed(agent.action.execute_action, "execute_sqlite", {"query": slow})
    assert record.status == "failed" and record.error_type == "SQLiteTimeoutError"
    assert elapsed < 1.0 + MARGIN, f"the record came {elapsed:.2f}s after the call"
    assert sorted(p.name for p in db.parent.iterdir()) == ["big.db"]  # rolled back
    read = query(agent, UNTOUCHED)
    assert read.ok and read.result["rows"] == [[5000]], read.error
    agent.close()


def test_a_hot_journal_left_by_another_program_is_a_clear_error(make_agent, tmp_path: Path
                                                                ) -> None:
    db = _big(tmp_path / "big.db")
    crash = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
             "c.execute('BEGIN'); c.execute('UPDATE big SET v = randomblob(1000)'); "
             "os._exit(0)")  # dies in the middle of its transaction
    subprocess.run([sys.executable, "-c", crash, str(db)], check=True)
    assert (tmp_path / "big.db-journal").exists()
    agent = make_agent().enable_sqlite(database=str(db))
    record = query(agent, UNTOUCHED)
    assert record.status == "failed" and "hot journal" in record.error, record.error
    assert "read-only connection cannot roll it back" in record.error
    sqlite3.connect(db).execute("SELECT count(*) FROM big").fetchall()  # a writer opens it
    after = query(agent, UNTOUCHED)
    assert after.ok and after.result["rows"] == [[5000]], after.error
