"""query_sqlite on real files: results, parameters, caps, and reads that work."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agently_core.models import ActionRecord


def query(agent, sql: str, params=None, **options) -> ActionRecord:
    kwargs = {"query": sql} if params is None else {"query": sql, "params": params}
    return agent.action.execute_action("query_sqlite", kwargs, **options)


def test_happy_path(make_agent, database, sq) -> None:
    before = sq.Snapshot(database)
    agent = make_agent().enable_sqlite(database=str(database))
    record = query(agent, "SELECT id, name, value FROM items ORDER BY id LIMIT 3")
    assert record.status == "success", record.error
    assert record.result == {
        "columns": ["id", "name", "value"],
        "rows": [[1, "item-0", 0.0], [2, "item-1", 1.5], [3, "item-2", 3.0]],
        "row_count": 3, "truncated": False, "truncated_by": None,
    }
    assert ActionRecord.model_validate_json(record.model_dump_json()).result == record.result
    agent.close()
    before.assert_unchanged()


def test_positional_and_named_params(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database)
    positional = query(agent, "SELECT name FROM items WHERE id IN (?, ?) ORDER BY id", [2, 5])
    assert positional.result["rows"] == [["item-1"], ["item-4"]]
    named = query(agent, "SELECT count(*) FROM items WHERE value >= :low AND name LIKE :p",
                  {"low": 30, "p": "item-%"})
    assert named.result["rows"] == [[30]]
    injected = query(agent, "SELECT count(*) FROM items WHERE name = ?", ["x' OR '1'='1"])
    assert injected.result["rows"] == [[0]]
    nothing = query(agent, "SELECT ? IS NULL, ?, ?", [None, True, 2.5])
    assert nothing.result["rows"] == [[1, 1, 2.5]]


@pytest.mark.parametrize(("params", "message"), [
    ([1, 2], "Incorrect number of bindings"),
    ({"other": 1}, "You did not supply a value for binding"),
    ([2**70], "invalid query or params"),
])
def test_bad_params_fail_clearly(make_agent, database, params, message) -> None:
    agent = make_agent().enable_sqlite(database=database)
    record = query(agent, "SELECT * FROM items WHERE id = :id", params)
    assert record.status == "failed" and message in record.error
    assert query(agent, "SELECT 1").ok


@pytest.mark.parametrize("params", [[[1]], {"a": {"b": 1}}, "text", 5])
def test_params_of_the_wrong_shape_are_refused_by_the_schema(make_agent, database, params) -> None:
    agent = make_agent().enable_sqlite(database=database)
    record = query(agent, "SELECT ?", params)
    assert record.status == "failed" and record.error_type == "ArgumentsError"


def test_row_cap(make_agent, tmp_path: Path, sq) -> None:
    db = sq.create_database(tmp_path / "big.db", rows=2500)
    agent = make_agent().enable_sqlite(database=db, max_rows=100)
    record = query(agent, "SELECT id FROM items ORDER BY id")
    assert record.result["row_count"] == 100 and len(record.result["rows"]) == 100
    assert record.result["truncated"] is True and record.result["truncated_by"] == "max_rows"
    assert record.result["rows"][-1] == [100]
    exact = query(agent, "SELECT id FROM items WHERE id <= 100")
    assert exact.result["row_count"] == 100 and exact.result["truncated"] is False
    default = make_agent().enable_sqlite(database=db)
    assert query(default, "SELECT id FROM items").result["row_count"] == 1000


def test_byte_cap_from_policy_and_config(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database, policy={"max_output_bytes": 600})
    record = query(agent, "SELECT id, name, value FROM items")
    assert record.status == "success"
    result = record.result
    assert isinstance(result, dict), "the executor's own cap keeps the result structured"
    assert result["truncated"] is True and result["truncated_by"] == "max_output_bytes"
    assert 0 < result["row_count"] < 50 and result["row_count"] == len(result["rows"])
    assert len(json.dumps(result, ensure_ascii=False).encode()) <= 600
    assert "truncated" not in record.meta  # the dispatcher had nothing left to cut
    capped = make_agent().enable_sqlite(database=database, max_output_bytes=300)
    small = query(capped, "SELECT name FROM items").result
    assert small["truncated"] and len(json.dumps(small, ensure_ascii=False).encode()) <= 300


def test_a_row_too_big_for_the_budget_is_left_out(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database, max_output_bytes=1000)
    record = query(agent, "SELECT 'a', zeroblob(5000)")
    assert record.result["rows"] == [] and record.result["truncated"] is True


def test_values_of_every_type(make_agent, tmp_path: Path) -> None:
    db = tmp_path / "types.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE v (i INTEGER, r REAL, t TEXT, b BLOB, n)")
    conn.execute("INSERT INTO v VALUES (?, ?, ?, ?, NULL)", (2**62, -0.25, "ünï ✓", b"\x00\xff"))
    conn.execute("INSERT INTO v (t) VALUES (CAST(x'ff41' AS TEXT))")  # invalid UTF-8
    conn.commit()
    conn.close()
    agent = make_agent().enable_sqlite(database=db)
    rows = query(agent, "SELECT * FROM v ORDER BY rowid").result["rows"]
    assert rows[0] == [2**62, -0.25, "ünï ✓", {"blob_base64": "AP8="}, None]
    assert rows[1][2] == "\ufffdA"


def test_reads_that_are_allowed(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database)
    allowed = [
        "SELECT name, sql FROM sqlite_master",
        "PRAGMA table_info(items)",
        "SELECT * FROM pragma_table_info('items')",
        "PRAGMA index_list('items')",
        "SELECT * FROM json_each('[1, 2, 3]')",
        "SELECT json_extract('{\"a\": 1}', '$.a'), '{\"b\": 2}' ->> '$.b'",
        "SELECT name, rank() OVER (ORDER BY value DESC) FROM items LIMIT 3",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) "
        "SELECT sum(x) FROM n",
        "SELECT date('2024-01-31', '+1 day'), sqrt(16), printf('%05d', 42), upper('a')",
        "EXPLAIN QUERY PLAN SELECT * FROM items WHERE id = 1",
        "SELECT count(*) FROM items -- a comment\n",
        "PRAGMA integrity_check",
    ]
    for sql in allowed:
        record = query(agent, sql)
        assert record.status == "success", f"{sql}: {record.error}"
    assert query(agent, "SELECT upper(name) FROM items WHERE id = 1").result["rows"] == [["ITEM-0"]]


def test_query_sees_what_others_commit(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database)
    assert query(agent, "SELECT count(*) FROM items").result["rows"] == [[50]]
    writer = sqlite3.connect(database)
    writer.execute("INSERT INTO items (name) VALUES ('late')")
    writer.commit()
    writer.close()
    assert query(agent, "SELECT count(*) FROM items").result["rows"] == [[51]]


def test_wal_database_reads_and_stays_unchanged(make_agent, tmp_path: Path, sq) -> None:
    db = sq.create_database(tmp_path / "wal.db", rows=5)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    agent = make_agent().enable_sqlite(database=db)
    assert query(agent, "SELECT count(*) FROM items").result["rows"] == [[5]]
    assert query(agent, "DELETE FROM items").status == "failed"
    assert query(agent, "PRAGMA wal_checkpoint(TRUNCATE)").status == "failed"
    agent.close()
    assert sq.row_count(db) == 5


def test_policy_read_only_is_enforced_not_blocked(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database, policy={
        "read_only": True, "allow_create": False, "allow_update": False, "allow_delete": False})
    assert query(agent, "SELECT count(*) FROM items").result["rows"] == [[50]]
    assert "read-only" in query(agent, "DELETE FROM items").error


def test_empty_query_is_refused(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database)
    assert query(agent, "").error_type == "ArgumentsError"
    record = query(agent, "   ")
    assert record.status == "failed" and "non-empty" in record.error
    only_comment = query(agent, "-- nothing here")
    assert only_comment.status == "success" and only_comment.result["rows"] == []
