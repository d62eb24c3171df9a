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
    ({}, "CREATE TRIGGER t AFTER INSERT ON items BEGIN SELECT 1; END", None),
    ({"allow_create": False}, "CREATE TRIGGER t AFTER INSERT ON items BEGIN SELECT 1; END",
     "allow_create=False"),
    ({"allow_delete": False}, "CREATE TRIGGER t AFTER INSERT ON items BEGIN SELECT 1; END",
     "allow_delete=False"),
    ({"allow_delete": False}, "CREATE VIEW v AS SELECT name FROM items", None),
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
        resumed = await agent.last_execution.async_continue_with("approved", resume_request_id="r1",
                                                                 actor="alice")
        return stop, statuses, resumed

    stop, statuses, resumed = anyio.run(scenario)
    assert stop == "approval_required" and statuses == ["approval_required"]
    assert resumed.stop_reason == "response" and resumed.response == "done"
    done = [r for r in resumed.records if r.action == "execute_sqlite" and r.ok]
    assert done and done[-1].result["changes"] == 5
    assert sq.row_count(database) == 45


# -- triggers: code stored in the file that writes later ----------------------------------
TRIGGER_BODIES = {
    "delete": "DELETE FROM items WHERE id < new.id",
    "update": "UPDATE items SET name = 'evil'",
    "insert": "INSERT INTO items (name) VALUES ('evil')",
}


@pytest.mark.parametrize("policy", [{"allow_delete": False}, {"allow_update": False},
                                    {"allow_create": False}, {"read_only": True}],
                         ids=["no-delete", "no-update", "no-create", "read-only"])
@pytest.mark.parametrize("body", list(TRIGGER_BODIES.values()), ids=list(TRIGGER_BODIES))
def test_create_trigger_needs_every_write_permission(make_agent, database, policy, body,
                                                     sq) -> None:
    """A trigger's body is not authorized when the trigger is created, and it fires later
    for every program writing to the file: unless all three permissions are open, CREATE
    TRIGGER is refused, whatever the body."""
    agent = write_agent(make_agent, database, policy=policy)
    before = sq.Snapshot(database)
    record = run(agent, "execute_sqlite",
                 f"CREATE TRIGGER evil AFTER INSERT ON items BEGIN {body}; END")
    assert record.status == "failed" and "not allowed" in record.error, record.error
    (key,) = policy
    expected = "policy read_only=True" if key == "read_only" else f"{key}=False"
    assert expected in record.error and "CREATE TRIGGER evil" in record.error, record.error
    agent.close()
    before.assert_unchanged()
    assert sq.tables(database) == ["items", "items_name"]
    other = sqlite3.connect(database)  # another program writes to the file later
    other.execute("INSERT INTO items (name) VALUES ('later')")
    other.commit()
    other.close()
    assert sq.row_count(database) == 51
    assert sq.row_count(database, "items WHERE name = 'evil'") == 0


def _two_tables(tmp_path: Path) -> Path:
    db = tmp_path / "xy.db"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE x (v); CREATE TABLE y (v); "
                       "INSERT INTO y VALUES (1), (2), (3);")
    conn.close()
    return db


def test_a_deleting_trigger_cannot_be_planted_without_allow_delete(make_agent, tmp_path: Path,
                                                                    sq) -> None:
    db = _two_tables(tmp_path)
    agent = write_agent(make_agent, db, policy={"allow_delete": False})
    created = run(agent, "execute_sqlite",
                  "CREATE TRIGGER t AFTER INSERT ON x BEGIN DELETE FROM y; END")
    assert created.status == "failed", created.result
    assert "allow_delete=False" in created.error and "CREATE TRIGGER t" in created.error
    assert "trigger's body" in created.error
    inserted = run(agent, "execute_sqlite", "INSERT INTO x VALUES (1)")
    assert inserted.ok, inserted.error
    agent.close()
    other = sqlite3.connect(db)
    other.execute("INSERT INTO x VALUES (2)")
    other.commit()
    other.close()
    assert sq.row_count(db, "y") == 3 and sq.tables(db) == ["x", "y"]


def test_an_instead_of_trigger_on_a_view_is_refused_too(make_agent, tmp_path: Path, sq) -> None:
    db = _two_tables(tmp_path)
    agent = write_agent(make_agent, db, policy={"allow_update": False, "allow_delete": False})
    assert run(agent, "execute_sqlite", "CREATE VIEW v AS SELECT v FROM x").ok
    record = run(agent, "execute_sqlite",
                 "CREATE TRIGGER tv INSTEAD OF INSERT ON v BEGIN DELETE FROM y; END")
    assert record.status == "failed"
    assert "allow_update=False, allow_delete=False" in record.error, record.error
    agent.close()
    assert sq.tables(db) == ["v", "x", "y"] and sq.row_count(db, "y") == 3


def test_with_every_permission_a_trigger_can_be_created_and_fires(make_agent, tmp_path: Path,
                                                                 sq) -> None:
    db = _two_tables(tmp_path)
    agent = write_agent(make_agent, db)
    assert run(agent, "execute_sqlite",
               "CREATE TRIGGER t AFTER INSERT ON x BEGIN DELETE FROM y; END").ok
    fired = run(agent, "execute_sqlite", "INSERT INTO x VALUES (1)")
    assert fired.ok and fired.result["changes"] == 4, fired.result
    (narrowed,) = agent.action.execute_actions([ActionCall(
        action="execute_sqlite", kwargs={"query": "INSERT INTO x VALUES (2)"},
        policy={"allow_delete": False})])
    assert narrowed.status == "failed" and "DELETE from y" in narrowed.error
    agent.close()
    assert sq.row_count(db, "x") == 1 and sq.row_count(db, "y") == 0


# -- triggers already in the file run under the calling statement's rules ------------------
def _with_triggers(tmp_path: Path) -> Path:
    db = tmp_path / "triggers.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE a (v); CREATE TABLE b (v); CREATE TABLE c (v);
        INSERT INTO c VALUES (1), (2);
        CREATE TRIGGER a_to_b AFTER INSERT ON a BEGIN INSERT INTO b VALUES (new.v); END;
        CREATE TRIGGER b_wipes_c AFTER INSERT ON b BEGIN DELETE FROM c; END;
        CREATE VIEW cv AS SELECT v FROM c;
        CREATE TRIGGER cv_insert INSTEAD OF INSERT ON cv BEGIN UPDATE c SET v = new.v; END;
        CREATE TRIGGER c_update AFTER UPDATE ON c BEGIN INSERT INTO a VALUES (0); END;
    """)
    conn.close()
    return db


@pytest.mark.parametrize(("policy", "sql", "refusal"), [
    ({"allow_delete": False}, "INSERT INTO a VALUES (1)", "DELETE from c"),  # two levels down
    ({"allow_update": False}, "INSERT INTO cv VALUES (9)", "UPDATE of c.v"),  # INSTEAD OF
    ({"allow_create": False}, "UPDATE c SET v = 5", "INSERT into a"),
], ids=["nested-delete", "instead-of-update", "update-fires-insert"])
def test_existing_triggers_cannot_write_what_the_call_may_not(make_agent, tmp_path: Path,
                                                              policy, sql, refusal, sq) -> None:
    db = _with_triggers(tmp_path)
    agent = write_agent(make_agent, db, policy=policy)
    before = sq.Snapshot(db)
    record = run(agent, "execute_sqlite", sql)
    assert record.status == "failed" and refusal in record.error, record.error
    agent.close()
    before.assert_unchanged()


def test_foreign_key_actions_never_run_behind_the_authorizer(make_agent, tmp_path: Path,
                                                             sq) -> None:
    """Foreign keys stay off (and the pragma that turns them on is refused): deleting a
    parent with allow_update=False sets no child to NULL and deletes none."""
    db = tmp_path / "fk.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE parent (id INTEGER PRIMARY KEY);
        CREATE TABLE child (p INTEGER REFERENCES parent(id) ON DELETE SET NULL);
        CREATE TABLE owned (p INTEGER REFERENCES parent(id) ON DELETE CASCADE);
        INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (1);
        INSERT INTO owned VALUES (1);
    """)
    conn.close()
    agent = write_agent(make_agent, db, policy={"allow_update": False})
    assert run(agent, "execute_sqlite", "PRAGMA foreign_keys = ON").status == "failed"
    deleted = run(agent, "execute_sqlite", "DELETE FROM parent WHERE id = 1")
    assert deleted.ok and deleted.result["changes"] == 1, deleted.error
    agent.close()
    assert sq.row_count(db, "child WHERE p = 1") == 1
    assert sq.row_count(db, "owned") == 1
