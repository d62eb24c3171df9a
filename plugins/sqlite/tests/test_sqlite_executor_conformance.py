"""The sqlite executor passes the executor conformance suite with its real provider: the
agent's environment manager opens the connections the actions declare (mounted as
``enable_sqlite`` mounts them) and the suite checks the executor's contract through real
SQL on a real file.

The ``concurrent`` scenario is left out: SQL has no way to wait a given time without
spending it on the CPU, so "wait N seconds side by side" cannot be written as a query.
Concurrent reads are covered by this plugin's own tests (test_sqlite_deadlines.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agently_core_sqlite import package
from agently_core_sqlite.executor import SQLiteExecutor
from agently_core_sqlite.provider import SQLiteProvider

from agently_core.models import ActionSpec
from agently_core.testing import ExecutorConformance, mounted_specs

#: Counts for ever; only the statement's deadline (the call's timeout) stops it.
ENDLESS = ("WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter) "
           "SELECT count(*) FROM counter")


class TestSQLiteExecutorConformance(ExecutorConformance):
    kind = "sqlite"
    scenarios = ("echo", "raises", "slow")

    def database(self) -> Path:
        path = self.tmp_path / "conformance.db"
        if not path.exists():
            conn = sqlite3.connect(path)
            conn.execute("CREATE TABLE t (x)")
            conn.commit()
            conn.close()
        return path

    def make_executor(self) -> SQLiteExecutor:
        return SQLiteExecutor()

    def make_provider(self) -> SQLiteProvider:
        return SQLiteProvider()

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        [spec] = mounted_specs(package.mount, self.database(), query_name=f"query_{scenario}")
        return spec, None

    def make_kwargs(self, scenario: str, **values: Any) -> dict[str, Any]:
        if scenario == "echo":
            return {"query": "SELECT ? AS message", "params": [values["message"]]}
        if scenario == "raises":  # "no such table: <message>"
            return {"query": f'SELECT * FROM "{values["message"]}"'}
        return {"query": ENDLESS}

    def result_value(self, scenario: str, result: Any) -> Any:
        return result["rows"][0][0]
