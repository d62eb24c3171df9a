"""Fixtures for the sqlite plugin's tests: real SQLite files in tmp_path, agents on
configuration isolated from the machine."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


def create_database(path: Path, rows: int = 50) -> Path:
    """A database with ``items(id, name, value)`` holding ``rows`` rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                     "value REAL)")
        conn.executemany("INSERT INTO items (name, value) VALUES (?, ?)",
                         [(f"item-{i}", i * 1.5) for i in range(rows)])
        conn.execute("CREATE INDEX items_name ON items (name)")
        conn.commit()
    finally:
        conn.close()
    return path


def row_count(path: Path, table: str = "items") -> int:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def tables(path: Path) -> list[str]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master"))
    finally:
        conn.close()


class Snapshot:
    """The database file's bytes and mtime, and the files next to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        stat = path.stat()
        self.digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.mtime = stat.st_mtime_ns
        self.size = stat.st_size
        self.neighbours = sorted(os.listdir(path.parent))

    def assert_unchanged(self) -> None:
        now = Snapshot(self.path)
        assert now.neighbours == self.neighbours, (
            f"files appeared or vanished next to the database: {self.neighbours} -> "
            f"{now.neighbours}")
        assert (now.digest, now.size, now.mtime) == (self.digest, self.size, self.mtime), (
            "the database file changed")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A fresh database with 50 rows in ``items``, alone in its own directory."""
    return create_database(tmp_path / "data" / "shop.db")


@pytest.fixture
def make_agent(agently_agent_factory: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``make_agent(**settings)``: an agent with every installed plugin whose configuration
    reads only ``settings``; closed after the test."""
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        agent = agently_agent_factory(**settings)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


def connection_of(agent: Any, read_only: bool = True) -> Any:
    """The live sqlite connection an agent's manager holds (of the given mode)."""
    for handle in agent.manager.list(kind="sqlite"):
        resource = agent.manager.resource(handle)
        if resource.read_only is read_only:
            return resource
    raise AssertionError("no live sqlite connection")


class Helpers:
    """The helpers above, for test modules (which cannot import this conftest)."""

    create_database = staticmethod(create_database)
    row_count = staticmethod(row_count)
    tables = staticmethod(tables)
    Snapshot = Snapshot
    connection_of = staticmethod(connection_of)


@pytest.fixture
def sq() -> type[Helpers]:
    return Helpers
