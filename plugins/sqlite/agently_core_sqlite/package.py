"""The ``sqlite`` action package: ``agent.enable_sqlite(database=...)``.

It mounts ``query_sqlite(query, params)``, always read-only, and, only when the host
passes ``read_only=False``, ``execute_sqlite(query, params)`` for statements that write,
which asks for approval before every call (unless the host also passes
``write_approval=False``). Each action declares its own connection: ``query_sqlite``
reads through a ``mode=ro`` connection even when writes are enabled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agently_core.errors import ConfigError
from agently_core.models import ActionSpec, EnvironmentRequirement

from .provider import DEFAULTS, SQLiteConfigError, check_database, settings

SCOPES = ("action_call", "request", "execution", "session", "agent", "global")
_SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}
MAX_QUERY_CHARS = 100_000
#: Where ``database`` comes from when the host does not pass it (the command line).
DATABASE_VARIABLE = "AGENTLY_SQLITE_DATABASE"


def _input_schema(what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS,
                      "description": what},
            "params": {
                "description": "Values bound to the statement's placeholders: a list for "
                               "`?`, an object for `:name`. Always pass values this way "
                               "rather than writing them into the SQL.",
                "anyOf": [{"type": "array", "items": _SCALAR, "maxItems": 1000},
                          {"type": "object", "additionalProperties": _SCALAR,
                           "maxProperties": 1000},
                          {"type": "null"}],
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def mount(agent: Any, database: str | os.PathLike[str] | None = None, *, read_only: bool = True,
          scope: str = "agent", max_rows: int = DEFAULTS["max_rows"],
          max_output_bytes: int = DEFAULTS["max_output_bytes"],
          timeout: float = DEFAULTS["timeout_seconds"],
          busy_timeout: float = DEFAULTS["busy_timeout_seconds"],
          max_value_bytes: int = DEFAULTS["max_value_bytes"],
          heap_limit_bytes: int | None = DEFAULTS["heap_limit_bytes"],
          write_approval: bool = True, policy: Mapping[str, Any] | None = None,
          query_name: str = "query_sqlite", execute_name: str = "execute_sqlite") -> list[str]:
    """Mount ``query_sqlite`` (and ``execute_sqlite`` when ``read_only=False``) for the
    SQLite file ``database``, which must exist (default: the ``AGENTLY_SQLITE_DATABASE``
    environment variable, so ``agently-core call query_sqlite --enable sqlite`` works).
    Returns the names mounted."""
    if database is None:
        database = os.environ.get(DATABASE_VARIABLE, "").strip() or None
        if database is None:
            raise ConfigError(f"enable_sqlite needs database=PATH (or the {DATABASE_VARIABLE} "
                              "environment variable)")
    if not isinstance(read_only, bool):
        raise ConfigError(f"enable_sqlite: read_only must be True or False, got {read_only!r}")
    if not isinstance(write_approval, bool):
        raise ConfigError(f"enable_sqlite: write_approval must be True or False, got "
                          f"{write_approval!r}")
    if scope not in SCOPES:
        raise ConfigError(f"enable_sqlite: unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")
    config: dict[str, Any] = {
        "database": os.fspath(database) if isinstance(database, (str, os.PathLike)) else database,
        "max_rows": max_rows, "max_output_bytes": max_output_bytes, "timeout_seconds": timeout,
        "busy_timeout_seconds": busy_timeout, "max_value_bytes": max_value_bytes,
        "heap_limit_bytes": heap_limit_bytes,
    }
    try:
        checked = settings({**config, "read_only": read_only})
        check_database(checked.database, read_only)
    except SQLiteConfigError as exc:
        raise ConfigError(f"enable_sqlite: {exc}") from None
    config["database"] = str(checked.database)
    name = Path(checked.database).name
    limits = (f"At most {checked.max_rows} rows and {checked.max_output_bytes} bytes come back "
              "(`truncated` says when more were left out); a statement is stopped after "
              f"{checked.timeout_seconds:g}s.")

    def spec(action: str, operation: str, description: str, what: str,
             connection_read_only: bool, approval: bool) -> ActionSpec:
        requirement = EnvironmentRequirement(
            kind="sqlite", scope=scope, resource_key="sqlite",
            config={**config, "read_only": connection_read_only})
        return ActionSpec(
            name=action, description=description, input_schema=_input_schema(what),
            kind="sqlite", approval_required=approval, policy=dict(policy or {}),
            tags=["sqlite", "database"], execution_environments=[requirement],
            meta={"sqlite": {"operation": operation, "resource_key": "sqlite"},
                  "instruction": "query"})

    names = [query_name]
    agent.action.register_action(spec(
        query_name, "query",
        f"Run one read-only SQL query on the SQLite database {name!r} and get back "
        "{columns, rows, row_count, truncated}. Only reads are allowed: SELECT (with CTEs and "
        "window functions) and schema introspection (`SELECT * FROM sqlite_master`, "
        "`PRAGMA table_info(name)`). Writes, other pragmas, ATTACH and extensions are "
        f"refused. {limits}",
        "One SQL statement that only reads (SELECT or WITH ... SELECT).",
        True, False))
    if not read_only:
        names.append(execute_name)
        agent.action.register_action(spec(
            execute_name, "execute",
            f"Run one SQL statement that may change the SQLite database {name!r}: INSERT, "
            "UPDATE, DELETE, CREATE/DROP TABLE, INDEX, VIEW or TRIGGER, ALTER TABLE "
            "(RETURNING rows come back as columns and rows, with `changes`). "
            + ("Every call waits for a person's approval. " if write_approval else "")
            + "One statement per call (it commits on its own); no ATTACH, PRAGMA, "
            f"transactions, temporary objects or extensions. Use {query_name} to read. "
            + limits,
            "One SQL statement (INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ...).",
            False, write_approval))
    return names


__all__ = ["mount"]
