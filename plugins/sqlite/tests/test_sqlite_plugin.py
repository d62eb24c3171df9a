"""The plugin, its provider and its package: discovery, the provider contract, mounting.

The provider runs the ProviderConformance suite (read-only and read-write); the executor
runs ExecutorConformance with this provider in test_sqlite_executor_conformance.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_sqlite.executor import SQLiteExecutor
from agently_core_sqlite.provider import (
    SQLiteConfigError,
    SQLiteConnection,
    SQLiteProvider,
)

from agently_core import Config, PluginManager
from agently_core.errors import ConfigError
from agently_core.models import ActionCall, EnvironmentRequirement
from agently_core.protocols import ActionExecutor, ExecutionEnvironmentProvider, ProviderHandle
from agently_core.testing import Heartbeat, ProviderConformance

_HELPERS: list[Any] = []


@pytest.fixture(autouse=True)
def _helpers(sq) -> None:
    _HELPERS[:] = [sq]


def _fds_on(path: Path) -> set[str]:
    """Descriptors on ``path`` held by this process or its children (the worker
    processes): what a connection holds."""
    return _HELPERS[0].fds_on(path)


class TestSQLiteProviderConformance(ProviderConformance):
    kind = "sqlite"

    def db(self) -> Path:
        path = self.tmp_path / "conformance.db"
        if not path.exists():
            import sqlite3

            conn = sqlite3.connect(path)
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
            conn.close()
        return path

    def make_provider(self) -> SQLiteProvider:
        return SQLiteProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        if scenario == "bad_config":
            return {"config": {"database": str(self.tmp_path / "missing.db")}}
        return {"config": {"database": str(self.db())}}

    def live_resources(self) -> set[str]:
        return _fds_on(self.db())


class TestSQLiteProviderConformanceReadWrite(TestSQLiteProviderConformance):
    def make_requirement(self, scenario: str) -> dict[str, Any]:
        made = super().make_requirement(scenario)
        made["config"]["read_only"] = False
        return made


# -- discovery ---------------------------------------------------------------------------
def test_entry_point_registers_every_role(tmp_path: Path) -> None:
    pm = PluginManager(Config.load(env={}, cwd=tmp_path)).load()
    info = pm.plugins["sqlite"]
    assert (info.status, info.distribution) == ("loaded", "agently-core-sqlite")
    assert pm.select("action_executor", kind="sqlite").name == "sqlite"
    assert pm.select("environment_provider", kind="sqlite").name == "sqlite"
    assert "sqlite" in pm.registrations("action_package")
    assert isinstance(pm.create("action_executor", kind="sqlite"), ActionExecutor)
    assert isinstance(pm.create("environment_provider", kind="sqlite"),
                      ExecutionEnvironmentProvider)


def test_discovery_imports_nothing_heavy() -> None:
    code = ("import sys, agently_core_sqlite.plugin; "
            "print(sorted(m for m in sys.modules if m.startswith('agently_core_sqlite') "
            "or m in ('sqlite3', 'agently_core.models')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "['agently_core_sqlite', 'agently_core_sqlite.plugin']"
    init = Path(__import__("agently_core_sqlite").__file__)
    assert init.read_text() == ""


def test_executor_declares_only_what_it_enforces() -> None:
    assert SQLiteExecutor.enforced_policy == {"read_only", "allow_create", "allow_update",
                                              "allow_delete"}


# -- the package -------------------------------------------------------------------------
def test_enable_sqlite_mounts_query_sqlite(make_agent, database) -> None:
    agent = make_agent()
    assert agent.enable_sqlite(database=str(database)) is agent
    info = {a["name"]: a for a in agent.action.get_action_info()}
    assert list(info) == ["query_sqlite"]
    schema = info["query_sqlite"]["kwargs"]
    assert set(schema["properties"]) == {"query", "params"}
    assert schema["additionalProperties"] is False and schema["required"] == ["query"]
    assert "read-only" in info["query_sqlite"]["description"]
    spec = agent.registry.require("query_sqlite").spec
    (requirement,) = spec.execution_environments
    assert (requirement.kind, requirement.scope, requirement.resource_key) == (
        "sqlite", "agent", "sqlite")
    assert requirement.config["read_only"] is True
    assert requirement.config["database"] == str(database.resolve())
    assert spec.approval_required is False


def test_enable_returns_names_and_adjusts_descriptions(make_agent, database) -> None:
    agent = make_agent()
    assert agent.enable("sqlite", database=database, desc="The shop's orders.") == [
        "query_sqlite"]
    assert agent.registry.require("query_sqlite").spec.description.endswith(
        "\nThe shop's orders.")
    other = make_agent()
    other.enable("sqlite", database=database, read_only=False, desc="Only this.",
                 desc_mode="override")
    assert {e.spec.description for e in other.registry} == {"Only this."}


def test_database_must_exist(make_agent, tmp_path: Path) -> None:
    agent = make_agent()
    with pytest.raises(ConfigError, match="does not exist"):
        agent.enable_sqlite(database=str(tmp_path / "nope.db"))
    with pytest.raises(ConfigError, match="does not exist"):
        agent.enable_sqlite(database=str(tmp_path / "nope.db"), read_only=False)
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(ConfigError, match="not a regular file"):
        agent.enable_sqlite(database=str(tmp_path))
    assert agent.action.get_action_info() == []


@pytest.mark.parametrize(("options", "message"), [
    ({"scope": "forever"}, "unknown scope"),
    ({"read_only": "no"}, "read_only must be"),
    ({"max_rows": 0}, "max_rows must be positive"),
    ({"max_rows": True}, "max_rows must be an integer"),
    ({"timeout": -1}, "timeout_seconds must be positive"),
    ({"write_approval": "yes"}, "write_approval must be"),
])
def test_bad_options_are_refused(make_agent, database, options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_agent().enable_sqlite(database=str(database), **options)


def test_unknown_option_is_refused(make_agent, database) -> None:
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_agent().enable_sqlite(database=str(database), create=True)


def test_not_a_database_fails_the_call_clearly(make_agent, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("this is not a database\n" * 100)
    agent = make_agent().enable_sqlite(database=str(bogus))
    record = agent.action.execute_action("query_sqlite", {"query": "SELECT 1"})
    assert record.status == "failed"
    assert "not a usable SQLite database" in record.error
    assert bogus.read_text() == "this is not a database\n" * 100


def test_two_databases_under_their_own_names(make_agent, tmp_path: Path, sq) -> None:
    first = sq.create_database(tmp_path / "a.db", rows=3)
    second = sq.create_database(tmp_path / "b.db", rows=7)
    agent = make_agent().enable_sqlite(database=first)
    agent.enable_sqlite(database=second, query_name="query_b")
    count = "SELECT count(*) AS n FROM items"
    assert agent.action.execute_action("query_sqlite", {"query": count}).result["rows"] == [[3]]
    assert agent.action.execute_action("query_b", {"query": count}).result["rows"] == [[7]]


# -- lifecycle through the manager ------------------------------------------------------
def test_agent_scope_reuses_one_connection_and_closes_it_with_the_agent(
        make_agent, database, sq) -> None:
    agent = make_agent().enable_sqlite(database=database)
    for _ in range(3):
        assert agent.action.execute_action("query_sqlite", {"query": "SELECT 1"}).ok
    handles = agent.manager.list(kind="sqlite")
    assert len(handles) == 1
    connection = sq.connection_of(agent)
    assert _fds_on(database.resolve())
    agent.close()
    assert connection.closed
    assert not _fds_on(database.resolve())


def test_action_call_scope_opens_and_closes_per_call(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database, scope="action_call")
    record = agent.action.execute_action("query_sqlite", {"query": "SELECT count(*) FROM items"})
    assert record.result["rows"] == [[50]]
    assert agent.manager.list(kind="sqlite") == []
    assert not _fds_on(database.resolve())


def test_health_check_is_a_round_trip_and_release_happens_once(database) -> None:
    provider = SQLiteProvider()
    requirement = EnvironmentRequirement(kind="sqlite", config={"database": str(database)})

    async def scenario() -> None:
        connection = await provider.ensure(requirement)
        assert isinstance(connection, SQLiteConnection)
        handle = ProviderHandle("envh_sqlite", requirement, connection)
        assert await provider.async_health_check(handle) is True
        assert connection.close() is True
        assert connection.close() is False  # exactly once
        await provider.release(requirement, connection)  # no error, no second close
        assert await provider.async_health_check(handle) is False
        assert await provider.async_health_check(
            ProviderHandle("envh_other", requirement, object())) is False

    anyio.run(scenario)
    assert not _fds_on(database.resolve())


@pytest.mark.parametrize(("config", "message"), [
    ({}, "database must be a file path"),
    ({"database": 42}, "database must be a file path"),
    ({"database": "x.db", "colour": "blue"}, "unknown sqlite config key"),
    ({"database": "x.db", "read_only": "false"}, "read_only must be true or false"),
    ({"database": "x.db", "max_output_bytes": -5}, "must be positive"),
    ({"database": "/definitely/not/here.db"}, "does not exist"),
])
def test_provider_refuses_bad_configs(config, message) -> None:
    requirement = EnvironmentRequirement(kind="sqlite", config=config)
    with pytest.raises(SQLiteConfigError, match=message):
        anyio.run(SQLiteProvider().ensure, requirement)


def test_executor_without_a_connection_fails_clearly(make_agent) -> None:
    agent = make_agent()
    agent.action.register_action({"name": "bare", "kind": "sqlite",
                                  "input_schema": {"type": "object"}})
    record = agent.action.execute_action("bare", {"query": "SELECT 1"})
    assert record.status == "failed" and "has no sqlite connection" in record.error


# -- threads and the event loop ----------------------------------------------------------
def test_queries_never_block_the_event_loop(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database, scope="action_call")
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000) "
            "SELECT count(*) FROM c")

    async def scenario() -> tuple[list[Any], float]:
        calls = [ActionCall(action="query_sqlite", kwargs={"query": slow}) for _ in range(4)]
        async with Heartbeat() as beat:
            records = await agent.action.async_execute_actions(calls, concurrency=4)
        return records, beat.max_gap

    records, gap = anyio.run(scenario)
    assert [r.result["rows"] for r in records] == [[[500000]]] * 4
    assert gap < 0.25, f"the event loop stalled for {gap:.2f}s"


def test_concurrent_calls_share_one_connection_one_at_a_time(make_agent, database) -> None:
    agent = make_agent().enable_sqlite(database=database)
    calls = [ActionCall(action="query_sqlite",
                        kwargs={"query": "SELECT count(*) + ? FROM items", "params": [i]})
             for i in range(16)]
    records = agent.action.execute_actions(calls, concurrency=8)
    assert [r.result["rows"][0][0] for r in records] == [50 + i for i in range(16)]
    assert len(agent.manager.list(kind="sqlite")) == 1


# -- the command line ---------------------------------------------------------------------
def test_database_is_required(make_agent, monkeypatch) -> None:
    monkeypatch.delenv("AGENTLY_SQLITE_DATABASE", raising=False)
    with pytest.raises(ConfigError, match="needs database=PATH"):
        make_agent().enable_sqlite()


def test_command_line_reads_the_database_from_the_environment(database, monkeypatch, capsys,
                                                              sq) -> None:
    from agently_core.cli import main

    before = sq.Snapshot(database)
    monkeypatch.setenv("AGENTLY_SQLITE_DATABASE", str(database))
    code = main(["call", "query_sqlite", "--enable", "sqlite", "--kwargs",
                 '{"query": "SELECT count(*) AS n FROM items"}'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out)["result"]["rows"] == [[50]]
    code = main(["call", "query_sqlite", "--enable", "sqlite", "--kwargs",
                 '{"query": "DELETE FROM items"}'])
    assert code == 1 and "read-only mode" in capsys.readouterr().out
    before.assert_unchanged()


# -- the rules' helpers -------------------------------------------------------------------
@pytest.mark.parametrize(("sql", "found"), [
    ("REPLACE INTO t VALUES (1)", True),
    ("insert or replace into t values (1)", True),
    ("UPDATE OR REPLACE t SET a = 1", True),
    ("INSERT INTO t VALUES (replace('a', 'b', 'c'))", False),
    ("INSERT INTO t VALUES (REPLACE ('a', 'b', 'c'))", False),
    ("INSERT INTO t VALUES (replace /* x */ ('a', 'b', 'c'))", False),
    ("INSERT INTO t VALUES ('replace')", False),
    ('INSERT INTO "replace" VALUES (1)', False),
    ("INSERT INTO [replace] VALUES (1)", False),
    ("INSERT INTO t VALUES (1) -- or replace", False),
    ("INSERT /* or replace */ INTO t VALUES (1)", False),
    ("INSERT INTO t VALUES ('it''s replace')", False),
    ("INSERT OR/**/REPLACE INTO t VALUES (1)", True),
    ("CREATE TABLE t (a UNIQUE ON CONFLICT REPLACE)", True),
    ("INSERT INTO t VALUES ('unterminated", False),
])
def test_uses_replace(sql, found) -> None:
    from agently_core_sqlite.rules import uses_replace

    assert uses_replace(sql) is found


@pytest.mark.parametrize(("sql", "head"), [
    ("DROP TABLE items", "DROP TABLE items"),
    ("  -- comment\n create temp table t (x)", "CREATE TEMP TABLE t"),
    ("CREATE TABLE IF NOT EXISTS foo(x)", "CREATE TABLE foo"),
    ("CREATE UNIQUE INDEX i ON t (x)", "CREATE UNIQUE INDEX i"),
])
def test_statement_head(sql, head) -> None:
    from agently_core_sqlite.rules import statement_head

    assert statement_head(sql) == head
