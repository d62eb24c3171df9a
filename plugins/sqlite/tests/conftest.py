"""Fixtures for the sqlite plugin's tests: real SQLite files in tmp_path, agents on
configuration isolated from the machine."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
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


def _children() -> list[int]:
    """The live child processes of this process (the connections' workers among them)."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(name))
    return found


def fds_on(path: Path) -> set[str]:
    """``pid:fd`` of every descriptor this process and its children hold on ``path``."""
    found = set()
    for pid in (os.getpid(), *_children()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    found.add(f"{pid}:{fd}")
            except OSError:
                continue
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of the processes ``pids`` (the gone ones count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def children_cpu_over(seconds: float) -> float:
    """CPU seconds this process and its children burn during the next ``seconds``."""
    pids = _children()
    start_self, start_children = time.process_time(), cpu_seconds(pids)
    time.sleep(seconds)
    return time.process_time() - start_self + cpu_seconds(pids) - start_children


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
    children = staticmethod(_children)
    fds_on = staticmethod(fds_on)
    cpu_seconds = staticmethod(cpu_seconds)
    children_cpu_over = staticmethod(children_cpu_over)


@pytest.fixture
def sq() -> type[Helpers]:
    return Helpers
