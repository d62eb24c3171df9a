"""Read-write mode: only by host opt-in, writes behind approval, policy per category."""

from __future__ import annotations

import io
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agently_core.models import ActionCall


@pytest.fixture(autouse=True)
def _no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard input is a pipe that would answer "y" if anybody read it."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))


def run(agent, action: str, sql: str, params=None, **options) -> Any:
    kwargs = {"query": sql} if params is None else {"query": sql, "params": params}
    return agent.action.execute_action(action, kwargs, **options)


def write_agent(make_agent, database: Path, handler: str = "auto_approve", **options) -> Any:
    agent = make_agent(approval_handler=handler)
    agent.enable_sqlite(database=str(database), read_only=False, **options)
    return agent


def test_read_write_is_host_opt_in(make_agent, database) -> None:
    read_only = make_agent().enable_sqlite(database=str(database))
    assert [a["name"] for a in read_only.action.get_action_info()] == ["query_sqlite"]
    agent = write_agent(make_agent, database)
    names = [a["name"] for a in agent.action.get_action_info()]
    assert names == ["query_sqlite", "execute_sqlite"]
    execute = agent.registry.require("execute_sqlite").spec
    query = agent.registry.require("query_sqlite").spec
    assert execute.approval_required is True and query.approval_required is False
    assert execute.execution_environments[0].config["read_only"] is False
    assert query.execution_environments[0].config["read_only"] is True
    assert "approval" in execute.description


def test_fail_closed_leaves_the_write_waiting_for_approval(make_agent, database, sq) -> None:
    agent = write_agent(make_agent, database, handler="fail_closed")
    before = sq.Snapshot(database)
    record = run(agent, "execute_sqlite", "DELETE FROM items")
    assert record.status == "approval_required", record.error
    assert record.approval_request_id and "waiting for approval" in record.error
    assert agent.manager.list(kind="sqlite") == []  # nothing even connected
    before.assert_unchanged()
    assert run(agent, "query_sqlite", "SELECT count(*) FROM items").result["rows"] == [[50]]


def test_denied_by_default_without_a_terminal(make_agent, database, sq) -> None:
    agent = make_agent()  # the default handler: input_timeout_fail
    agent.enable_sqlite(database=str(database), read_only=False)
    before = sq.Snapshot(database)
    record = run(agent, "execute_sqlite", "DELETE FROM items")
    assert record.status == "blocked" and "denied" in record.error
    before.assert_unchanged()


def test_approval_mode_never_blocks_writes(make_agent, database, sq) -> None:
    agent = write_agent(make_agent, database, policy={"approval_mode": "never"})
    before = sq.Snapshot(database)
    record = run(agent, "execute_sqlite", "DELETE FROM items")
    assert record.status == "blocked" and "approval_mode is 'never'" in record.error
    before.assert_unchanged()


def test_approved_writes_land(make_agent, database, sq) -> None:
    agent = write_agent(make_agent, database)
    inserted = run(agent, "execute_sqlite",
                   "INSERT INTO items (name, value) VALUES (?, ?) RETURNING id, name",
                   ["new", 9.5])
    assert inserted.status == "success", inserted.error
    assert inserted.result["rows"] == [[51, "new"]]
    assert inserted.result["changes"] == 1 and inserted.result["last_insert_rowid"] == 51
    updated = run(agent, "execute_sqlite", "UPDATE items SET value = 0 WHERE id <= :n",
                  {"n": 10})
    assert updated.result["changes"] == 10 and updated.result["columns"] == []
    created = run(agent, "execute_sqlite", "CREATE TABLE notes (id INTEGER PRIMARY KEY, t TEXT)")
    assert created.status == "success", created.error
    deleted = run(agent, "execute_sqlite", "DELETE FROM items WHERE id > 40")
    assert deleted.result["changes"] == 11
    assert run(agent, "query_sqlite", "SELECT count(*) FROM items").result["rows"] == [[40]]
    agent.close()
    assert sq.row_count(database) == 40 and "notes" in sq.tables(database)


def test_write_approval_can_be_switched_off_by_the_host(make_agent, database, sq) -> None:
    agent = write_agent(make_agent, database, handler="fail_closed", write_approval=False)
    assert agent.registry.require("execute_sqlite").spec.approval_required is False
    assert run(agent, "execute_sqlite", "DELETE FROM items WHERE id = 1").ok
    agent.close()
    assert sq.row_count(database) == 49


def test_query_sqlite_stays_read_only_in_read_write_mode(make_agent, database, sq) -> None:
    agent = write_agent(make_agent, database)
    before = sq.Snapshot(database)
    for sql in ("DELETE FROM items", "WITH x AS (SELECT 1) INSERT INTO items (name) "
                "SELECT 'e' FROM x", "DROP TABLE items", "PRAGMA query_only = OFF"):
        record = run(agent, "query_sqlite", sql)
        assert record.status == "failed" and "not allowed" in record.error, sql
    assert run(agent, "query_sqlite", "SELECT count(*) FROM items").result["rows"] == [[50]]
    connection = sq.connection_of(agent, read_only=True)
    assert connection.read_only and connection.settings.read_only
    before.assert_unchanged()


def test_both_actions_see_one_database(make_agent, database) -> None:
    agent = write_agent(make_agent, database)
    assert run(agent, "execute_sqlite", "INSERT INTO items (name) VALUES ('seen')").ok
    record = run(agent, "query_sqlite", "SELECT count(*) FROM items WHERE name = 'seen'")
    assert record.result["rows"] == [[1]]
    assert len(agent.manager.list(kind="sqlite")) == 2  # a mode=ro and a mode=rw connection


# -- what stays refused even with writes enabled ---------------------------------------------
@pytest.mark.parametrize(("sql", "fragment"), [
    ("ATTACH DATABASE '{dir}/evil.db' AS evil", "ATTACH"),
    ("VACUUM INTO '{dir}/copy.db'", "ATTACH (or VACUUM)"),
    ("VACUUM", "ATTACH (or VACUUM)"),
    ("BEGIN IMMEDIATE", "transaction control"),
    ("SAVEPOINT s", "SAVEPOINT"),
    ("PRAGMA journal_mode = WAL", "PRAGMA journal_mode"),
    ("PRAGMA writable_schema = ON", "PRAGMA writable_schema"),
    ("PRAGMA foreign_keys = ON", "PRAGMA foreign_keys"),
    ("CREATE TEMP TABLE t (x)", "no temporary objects"),
    ("CREATE VIRTUAL TABLE v USING fts5(x)", "CREATE VIRTUAL TABLE"),
    ("ANALYZE", "ANALYZE"),
    ("SELECT load_extension('x')", "load_extension"),
    ("UPDATE sqlite_master SET sql = 'evil'", "may not be modified"),
    ("INSERT INTO items (name) VALUES ('a'); DROP TABLE items", "one SQL statement"),
    ("DELETE FROM items; SELECT 1", "one SQL statement"),
])
def test_refused_even_in_read_write_mode(make_agent, database, sql, fragment, sq) -> None:
    agent = write_agent(make_agent, database)
    record = run(agent, "execute_sqlite", sql.format(dir=database.parent))
    assert record.status == "failed" and fragment in record.error, record.error
    assert run(agent, "execute_sqlite", "SELECT count(*) FROM items").result["rows"] == [[50]]
    agent.close()
    assert sq.row_count(database) == 50 and sq.tables(database) == ["items", "items_name"]
    assert sorted(p.name for p in database.parent.iterdir()) == ["shop.db"]


def test_a_runaway_write_stops_and_rolls_back(make_agent, database, sq) -> None:
    agent = write_agent(make_agent, database)
    started = time.monotonic()
    record = run(agent, "execute_sqlite",
                 "INSERT INTO items (name) SELECT 'flood' FROM (WITH RECURSIVE c(x) AS "
                 "(SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)", timeout=0.5)
    assert record.status == "failed" and time.monotonic() - started < 1.5
    assert run(agent, "query_sqlite", "SELECT count(*) FROM items").result["rows"] == [[50]]
    assert run(agent, "execute_sqlite", "DELETE FROM items WHERE id = 50").ok
    agent.close()
    assert sq.row_count(database) == 49


# -- policy: read_only and allow_* map onto the authorizer -----------------------------------
CASES = [
    ({"read_only": True}, "INSERT INTO items (name) VALUES ('x')", "policy read_only=True"),
    ({"read_only": True}, "SELECT count(*) FROM items", None),
    ({"allow_create": False}, "INSERT INTO items (name) VALUES ('x')", "allow_create=False"),
    ({"allow_create": False}, "CREATE TABLE t (x)", "allow_create=False"),
    ({"allow_create": False}, "UPDATE items SET name = 'x' WHERE id = 1", None),
    ({"allow_update": False}, "UPDATE items SET name = 'x'", "allow_update=False"),
    ({"allow_update": False}, "INSERT INTO items (id, name) VALUES (1, 'x') "
     "ON CONFLICT (id) DO UPDATE SET name = 'x'", "allow_update=False"),
    ({"allow_update": False}, "ALTER TABLE items ADD COLUMN extra TEXT", "allow_update=False"),
    ({"allow_update": False}, "INSERT INTO items (name) VALUES ('x')", None),
    ({"allow_delete": False}, "DELETE FROM items WHERE id = 1", "allow_delete=False"),
    ({"allow_delete": False}, "DROP TABLE items", "allow_delete=False"),
    ({"allow_delete": False}, "DROP INDEX items_name", "allow_delete=False"),
    ({"allow_delete": False}, "REPLACE INTO items (id, name) VALUES (1, 'x')", "REPLACE"),
    ({"allow_delete": False}, "INSERT OR REPLACE INTO items (id, name) VALUES (1, 'x')",
     "REPLACE"),
    ({"allow_update": False}, "UPDATE OR REPLACE items SET id = 2 WHERE id = 1", "REPLACE"),
    ({"allow_delete": False}, "INSERT INTO items (name) VALUES (replace('abc', 'b', 'x'))", None),
    ({"allow_delete": False}, "INSERT INTO items (name) VALUES ('REPLACE')", None),
    ({"allow_delete": False}, "INSERT /* replace */ INTO \"items\" (name) VALUES ('x')", None),
    ({}, "REPLACE INTO items (id, name) VALUES (1, 'x')", None),
]


@pytest.mark.parametrize(("policy", "sql", "refusal"), CASES,
                         ids=[f"{p}-{s[:40]}" for p, s, _ in CASES])
def test_policy_categories(make_agent, database, policy, sql, refusal, sq) -> None:
    agent = write_agent(make_agent, database, policy=policy)
    before = sq.Snapshot(database)
    record = run(agent, "execute_sqlite", sql)
    if refusal is None:
        assert record.status == "success", record.error
        return
    assert record.status == "failed" and refusal in record.error, record.error
    assert "not allowed" in record.error
    agent.close()
    before.assert_unchanged()


def test_replace_from_the_schema_is_refused_without_allow_delete(make_agent, tmp_path: Path,
                                                                  sq) -> None:
    db = tmp_path / "replace.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE tags (name TEXT UNIQUE ON CONFLICT REPLACE, n INTEGER);
        INSERT INTO tags VALUES ('a', 1);
        CREATE TABLE log (name TEXT PRIMARY KEY);
        CREATE TABLE src (x);
        CREATE TRIGGER copy AFTER INSERT ON src BEGIN
            INSERT OR REPLACE INTO log VALUES (new.x);
        END;
    """)
    conn.close()
    agent = write_agent(make_agent, db, policy={"allow_delete": False})
    before = sq.Snapshot(db)
    table = run(agent, "execute_sqlite", "INSERT INTO tags VALUES ('a', 2)")
    assert table.status == "failed" and "REPLACE conflict resolution" in table.error
    trigger = run(agent, "execute_sqlite", "INSERT INTO src VALUES ('a')")
    assert trigger.status == "failed" and "REPLACE" in trigger.error, trigger.error
    before.assert_unchanged()
    widened = write_agent(make_agent, db)
    assert run(widened, "execute_sqlite", "INSERT INTO tags VALUES ('a', 2)").ok
    assert run(widened, "query_sqlite", "SELECT n FROM tags").result["rows"] == [[2]]


def test_trigger_bodies_are_authorized_too(make_agent, tmp_path: Path, sq) -> None:
    db = tmp_path / "trigger.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE a (x); CREATE TABLE b (x); INSERT INTO b VALUES (1);
        CREATE TRIGGER wipe AFTER INSERT ON a BEGIN DELETE FROM b; END;
    """)
    conn.close()
    agent = write_agent(make_agent, db, policy={"allow_delete": False})
    record = run(agent, "execute_sqlite", "INSERT INTO a VALUES (1)")
    assert record.status == "failed" and "DELETE from b" in record.error
    assert run(agent, "query_sqlite", "SELECT count(*) FROM b").result["rows"] == [[1]]


def test_a_model_can_narrow_the_policy_but_never_widen_it(make_agent, database, sq) -> None:
    open_agent = write_agent(make_agent, database)
    narrowed = ActionCall(action="execute_sqlite", kwargs={"query": "DELETE FROM items"},
                          source="model", policy={"allow_delete": False})
    (record,) = open_agent.action.execute_actions([narrowed])
    assert record.status == "failed" and "allow_delete=False" in record.error
    closed_agent = write_agent(make_agent, database, policy={"allow_delete": False,
                                                            "read_only": False})
    widening = ActionCall(action="execute_sqlite", kwargs={"query": "DELETE FROM items"},
                          source="model", policy={"allow_delete": True, "read_only": False,
                                                  "approval_mode": "never"})
    (record,) = closed_agent.action.execute_actions([widening])
    assert record.status == "failed" and "allow_delete=False" in record.error
    assert sq.row_count(database) == 50


def test_write_approval_in_an_action_loop(make_agent, database, sq) -> None:
    """A planner's write pauses the loop; a person's approval resumes it and it lands."""
    agent = write_agent(make_agent, database, handler="fail_closed")
    agent.set_planner([[("execute_sqlite", {"query": "DELETE FROM items WHERE id <= 5"})]],
                      response="done")

    async def scenario() -> tuple[str, list[str], Any]:
        paused = await agent.async_run("clean up")
        # (copied now: the resumed run continues the same result)
        stop, statuses = paused.stop_reason, [r.status for r in paused.records]
        assert sq.row_count(database) == 50
        resumed = await agent.last_execution.continue_with("approved", resume_request_id="r1",
                                                           actor="alice")
        return stop, statuses, resumed

    stop, statuses, resumed = anyio.run(scenario)
    assert stop == "approval_required" and statuses == ["approval_required"]
    assert resumed.stop_reason == "response" and resumed.response == "done"
    done = [r for r in resumed.records if r.action == "execute_sqlite" and r.ok]
    assert done and done[-1].result["changes"] == 5
    assert sq.row_count(database) == 45
