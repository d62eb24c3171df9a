"""The ``sqlite`` ActionExecutor: one SQL statement per call on an ensured connection.

Two operations, chosen by the action's ``spec.meta["sqlite"]["operation"]``:

``query`` (``query_sqlite``)
    Read-only whatever the connection and the policy say: the authorizer allows reads
    only.
``execute`` (``execute_sqlite``)
    Needs a read-write connection (the host opted in); the authorizer allows the write
    categories the call's policy leaves open (``read_only``, ``allow_create``,
    ``allow_update``, ``allow_delete``).

The result is ``{"columns", "rows", "row_count", "truncated", "truncated_by"}`` (plus
``"changes"`` and ``"last_insert_rowid"`` for ``execute``): at most ``max_rows`` rows and,
serialised as JSON, at most ``max_output_bytes`` (the smaller of the policy's and the
connection's). A blob comes back as ``{"blob_base64": "..."}``.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from agently_core.errors import ActionError

from .provider import SQLiteConnection, SQLiteTimeoutError
from .rules import READ_ONLY, Rules, replace_refusal, statement_head, uses_replace

_SCALARS = (str, int, float, type(None))
#: Room kept in the byte budget for the keys after ``rows`` (counts, flags, changes).
_TAIL_RESERVE = 120
_SCHEMA_VERBS = frozenset({"CREATE", "DROP", "ALTER"})


class SQLiteExecutor:
    """Executor for ``kind="sqlite"``."""

    kind = "sqlite"
    #: Enforced by the authorizer (see :mod:`agently_core_sqlite.rules`).
    enforced_policy = frozenset({"read_only", "allow_create", "allow_update", "allow_delete"})

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        meta = spec.meta.get("sqlite") if isinstance(spec.meta, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        operation = meta.get("operation", "query")
        if operation not in ("query", "execute"):
            raise ActionError(f"action {spec.name!r}: unknown sqlite operation {operation!r}")
        key = meta.get("resource_key", "sqlite")
        connection = context.execution_environment_resources.get(key)
        if not isinstance(connection, SQLiteConnection):
            raise ActionError(f"action {spec.name!r} has no sqlite connection (it must declare "
                              f"an execution environment of kind 'sqlite' with resource_key "
                              f"{key!r})")
        query = kwargs.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ActionError("query must be a non-empty SQL string")
        params = _params(kwargs.get("params"))
        policy = context.policy
        rules = self._rules(operation, connection, policy)
        s = connection.settings
        timeout = s.timeout_seconds
        if policy.timeout_seconds is not None:
            timeout = min(timeout, policy.timeout_seconds)
        max_bytes = s.max_output_bytes
        if policy.max_output_bytes is not None:
            max_bytes = min(max_bytes, policy.max_output_bytes)
        if rules.guards_replace and uses_replace(query):
            raise ActionError(replace_refusal(rules, "the statement uses REPLACE"))

        def run(conn: sqlite3.Connection, call: Any) -> dict[str, Any]:
            try:
                if rules.guards_replace:
                    call.rules = _with_replace_schema(conn, rules)
                return _run_statement(conn, query, params, s.max_rows, max_bytes,
                                      write=operation == "execute")
            except ActionError:
                raise
            except Exception as exc:
                raise _error(exc, call, timeout, query) from None

        return await connection.run(run, rules=rules, timeout=timeout)

    @staticmethod
    def _rules(operation: str, connection: SQLiteConnection, policy: Any) -> Rules:
        if operation == "query":
            return READ_ONLY
        if connection.read_only:
            raise ActionError("execute_sqlite needs a read-write connection; the host enables "
                              "it with enable_sqlite(..., read_only=False)")
        if policy.read_only:
            return Rules(reason="read-only mode (policy read_only=True)")
        return Rules(read_only=False, create=policy.allow_create is not False,
                     update=policy.allow_update is not False,
                     delete=policy.allow_delete is not False)


def _params(params: Any) -> Any:
    if params is None:
        return ()
    if isinstance(params, list):
        values = params
    elif isinstance(params, Mapping):
        if not all(isinstance(k, str) for k in params):
            raise ActionError("params names must be strings")
        values = list(params.values())
    else:
        raise ActionError(f"params must be a list, an object or null, got {type(params).__name__}")
    for value in values:
        if not isinstance(value, (*_SCALARS, bool)):
            raise ActionError(f"params values must be strings, numbers, booleans or null, got "
                              f"{type(value).__name__}")
    return params if isinstance(params, list) else dict(params)


def _with_replace_schema(conn: sqlite3.Connection, rules: Rules) -> Rules:
    """``rules`` plus the tables and triggers whose schema uses REPLACE."""
    tables, triggers = set(), set()
    for kind, name, table, sql in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL"):
        if isinstance(sql, str) and uses_replace(sql):
            if kind == "trigger":
                triggers.add(str(name).lower())
            elif kind == "table":
                tables.add(str(table).lower())
    return Rules(read_only=False, create=rules.create, update=rules.update, delete=rules.delete,
                 replace_tables=frozenset(tables), replace_triggers=frozenset(triggers))


def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"blob_base64": base64.b64encode(value).decode("ascii")}
    return value


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=repr).encode())


def _run_statement(conn: sqlite3.Connection, query: str, params: Any, max_rows: int,
                   max_bytes: int, *, write: bool) -> dict[str, Any]:
    before = conn.total_changes
    cursor = conn.execute(query, params)
    try:
        columns = [d[0] for d in cursor.description or ()]
        result: dict[str, Any] = {"columns": columns, "rows": [], "row_count": 0,
                                  "truncated": False, "truncated_by": None}
        rows: list[list[Any]] = result["rows"]
        used = _size(result) + _TAIL_RESERVE
        if columns:
            while True:
                chunk = cursor.fetchmany(min(256, max_rows + 1 - len(rows)))
                if not chunk:
                    break
                for raw in chunk:
                    if len(rows) >= max_rows:
                        result["truncated"], result["truncated_by"] = True, "max_rows"
                        break
                    row = [_cell(v) for v in raw]
                    size = _size(row) + 2  # and the ", " before it
                    if used + size > max_bytes:
                        result["truncated"], result["truncated_by"] = True, "max_output_bytes"
                        break
                    rows.append(row)
                    used += size
                if result["truncated"]:
                    break
    finally:
        cursor.close()  # resets the statement: no read transaction stays open
    result["row_count"] = len(rows)
    if write:
        result["changes"] = conn.total_changes - before
        result["last_insert_rowid"] = cursor.lastrowid
    while rows and _size(result) > max_bytes:  # never leave the cut to the dispatcher
        rows.pop()
        result["row_count"] = len(rows)
        result["truncated"], result["truncated_by"] = True, "max_output_bytes"
    return result


def _error(exc: BaseException, call: Any, timeout: float, query: str) -> ActionError:
    """A clear ActionError for anything a statement raised."""
    if call.denied is not None:
        head = statement_head(query)
        if call.denied_bookkeeping and head.split(" ", 1)[0] in _SCHEMA_VERBS:
            # SQLite asks about its own schema table before the statement's own operation
            mode = call.denied.split(":", 1)[0]
            temporary = "sqlite_temp_master" in call.denied or "temporary" in call.denied
            why = "no temporary objects" if temporary else "it changes the database schema"
            return ActionError(f"{mode}: {head} ({why})")
        return ActionError(call.denied)
    if call.stopped:
        if call.abort.is_set():
            return ActionError("the statement was cancelled")
        return SQLiteTimeoutError(f"the statement was stopped at its {timeout:g}s timeout")
    if isinstance(exc, MemoryError):
        return ActionError("the statement ran out of memory (SQLite's heap limit, "
                           "heap_limit_bytes, stopped it)")
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in str(exc):
        return ActionError("only one SQL statement per call is allowed")
    if isinstance(exc, (sqlite3.Error, sqlite3.Warning)):
        return ActionError(f"SQL error: {exc}")
    if isinstance(exc, (OverflowError, ValueError, TypeError)):
        return ActionError(f"invalid query or params: {exc}")
    return ActionError(f"{type(exc).__name__}: {exc}")


__all__ = ["SQLiteExecutor"]
