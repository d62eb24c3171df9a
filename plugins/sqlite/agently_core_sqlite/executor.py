"""The ``sqlite`` ActionExecutor: one SQL statement per call on an ensured connection.

Two operations, chosen by the action's ``spec.meta["sqlite"]["operation"]``:

``query`` (``query_sqlite``)
    Read-only whatever the connection and the policy say: the authorizer allows reads
    only.
``execute`` (``execute_sqlite``)
    Needs a read-write connection (the host opted in); the authorizer allows the write
    categories the call's policy leaves open (``read_only``, ``allow_create``,
    ``allow_update``, ``allow_delete``).

The statement runs in one of the connection's worker processes
(:mod:`agently_core_sqlite.child`). The result is ``{"columns", "rows", "row_count",
"truncated", "truncated_by"}`` (plus ``"changes"`` and ``"last_insert_rowid"`` for
``execute``): at most ``max_rows`` rows and, serialised as JSON, at most
``max_output_bytes`` (the smaller of the policy's and the connection's). A blob comes back
as ``{"blob_base64": "..."}``. A call that waited for a busy connection says so on its
``ActionContext``: its record has ``meta["queued_ms"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agently_core.errors import ActionError

from .provider import SQLiteConnection
from .rules import READ_ONLY, Rules, replace_refusal, uses_replace

_SCALARS = (str, int, float, type(None))


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
        message = {"op": "run", "sql": query, "params": params, "rules": _rules_dict(rules),
                   "max_rows": s.max_rows, "max_bytes": max_bytes,
                   "write": operation == "execute"}
        return await connection.run(message, timeout=timeout, context=context)

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


def _rules_dict(rules: Rules) -> dict[str, Any]:
    """What the worker rebuilds the rules from (it works out the REPLACE schema itself)."""
    return {"read_only": rules.read_only, "create": rules.create, "update": rules.update,
            "delete": rules.delete, "reason": rules.reason}


def _params(params: Any) -> Any:
    if params is None:
        return []
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
    return list(params) if isinstance(params, list) else dict(params)


__all__ = ["SQLiteExecutor"]
