"""What a statement may do: the authorizer's rules.

SQLite calls the authorizer for every operation a statement would perform while the
statement is *prepared*, before anything runs. Each operation is allowed only when
:func:`decide` says so; the first refusal is kept and becomes the error the model sees.

Reads (``SELECT``, column reads, recursive CTEs), an allowlist of side-effect-free SQL
functions and an allowlist of introspection pragmas are allowed in every mode. Everything
else is refused in read-only mode. In read-write mode (``execute_sqlite``), writes are
allowed per category, following the call's policy:

* ``allow_create``: ``INSERT`` and ``CREATE TABLE/INDEX/VIEW``;
* ``allow_update``: ``UPDATE`` (an upsert's ``DO UPDATE`` too);
* ``allow_delete``: ``DELETE`` and ``DROP TABLE/INDEX/VIEW/TRIGGER``;
* ``ALTER TABLE`` needs all three (it can add, change and drop columns);
* ``CREATE TRIGGER`` needs all three too: SQLite does not authorize a trigger's body when
  the trigger is created, only when a statement that fires it is prepared, and a trigger
  stays in the file, where it also fires for every other program that writes to it;
* REPLACE conflict resolution deletes or overwrites rows, so a statement that could use
  it (the ``REPLACE`` keyword in the statement, or an ``INSERT``/``UPDATE`` of a table or
  from a trigger whose schema says ``REPLACE``) also needs ``allow_update`` and
  ``allow_delete``.

Refused in every mode: ``ATTACH``/``DETACH`` (``VACUUM`` and ``VACUUM INTO`` attach too),
transactions and savepoints, temporary objects, virtual tables, other pragmas,
``ANALYZE``/``REINDEX``, ``load_extension`` and every function off the allowlist.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

#: Functions with no side effect outside the statement (SQLite 3.40 core, date/time,
#: math, JSON, window functions, and the read-only FTS auxiliaries).
SAFE_FUNCTIONS = frozenset({
    # scalar
    "abs", "changes", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex",
    "ifnull", "iif", "instr", "last_insert_rowid", "length", "like", "likelihood", "likely",
    "lower", "ltrim", "max", "min", "nullif", "octet_length", "printf", "quote", "random",
    "randomblob", "replace", "round", "rtrim", "sign", "soundex", "sqlite_source_id",
    "sqlite_version", "substr", "substring", "total_changes", "trim", "typeof", "unhex",
    "unicode", "unlikely", "upper", "zeroblob", "sqlite_compileoption_get",
    "sqlite_compileoption_used",
    # aggregate
    "avg", "count", "group_concat", "string_agg", "sum", "total",
    # window
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
    # date and time
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
    # math
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos",
    "cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow",
    "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
    # JSON
    "json", "json_array", "json_array_length", "json_extract", "json_insert", "json_object",
    "json_patch", "json_remove", "json_replace", "json_set", "json_type", "json_valid",
    "json_quote", "json_group_array", "json_group_object", "json_error_position", "->", "->>",
    # full-text search auxiliaries (read only)
    "match", "snippet", "highlight", "bm25", "offsets", "matchinfo",
})

#: Pragmas that only report (whatever their argument: it names a table or an index).
READ_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "collation_list", "function_list",
    "module_list", "pragma_list", "database_list", "integrity_check", "quick_check",
})

#: Eponymous virtual tables warmed up before the authorizer is installed: their first use
#: on a connection performs internal schema bookkeeping the read-only rules would refuse.
WARM_TABLES = ("json_each", "json_tree", *(f"pragma_{name}" for name in sorted(READ_PRAGMAS)))

_C = sqlite3
READ_OPS = frozenset({_C.SQLITE_SELECT, _C.SQLITE_READ, _C.SQLITE_RECURSIVE})
SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master",
                           "sqlite_temp_schema"})
#: Write operations and the policy permissions each needs.
WRITE_OPS: dict[int, tuple[str, ...]] = {
    _C.SQLITE_INSERT: ("create",),
    _C.SQLITE_CREATE_TABLE: ("create",),
    _C.SQLITE_CREATE_INDEX: ("create",),
    _C.SQLITE_CREATE_VIEW: ("create",),
    _C.SQLITE_CREATE_TRIGGER: ("create", "update", "delete"),
    _C.SQLITE_UPDATE: ("update",),
    _C.SQLITE_DELETE: ("delete",),
    _C.SQLITE_DROP_TABLE: ("delete",),
    _C.SQLITE_DROP_INDEX: ("delete",),
    _C.SQLITE_DROP_VIEW: ("delete",),
    _C.SQLITE_DROP_TRIGGER: ("delete",),
    _C.SQLITE_ALTER_TABLE: ("create", "update", "delete"),
}
_NAMES = {
    _C.SQLITE_INSERT: "INSERT into {a1}",
    _C.SQLITE_UPDATE: "UPDATE of {a1}.{a2}",
    _C.SQLITE_DELETE: "DELETE from {a1}",
    _C.SQLITE_CREATE_TABLE: "CREATE TABLE {a1}",
    _C.SQLITE_CREATE_INDEX: "CREATE INDEX {a1}",
    _C.SQLITE_CREATE_VIEW: "CREATE VIEW {a1}",
    _C.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER {a1}",
    _C.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE {a1}",
    _C.SQLITE_CREATE_TEMP_INDEX: "CREATE TEMP INDEX {a1}",
    _C.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW {a1}",
    _C.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TEMP TRIGGER {a1}",
    _C.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE {a1}",
    _C.SQLITE_DROP_TABLE: "DROP TABLE {a1}",
    _C.SQLITE_DROP_INDEX: "DROP INDEX {a1}",
    _C.SQLITE_DROP_VIEW: "DROP VIEW {a1}",
    _C.SQLITE_DROP_TRIGGER: "DROP TRIGGER {a1}",
    _C.SQLITE_DROP_TEMP_TABLE: "DROP TEMP TABLE {a1}",
    _C.SQLITE_DROP_TEMP_INDEX: "DROP TEMP INDEX {a1}",
    _C.SQLITE_DROP_TEMP_VIEW: "DROP TEMP VIEW {a1}",
    _C.SQLITE_DROP_TEMP_TRIGGER: "DROP TEMP TRIGGER {a1}",
    _C.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE {a1}",
    _C.SQLITE_ALTER_TABLE: "ALTER TABLE {a2}",
    _C.SQLITE_ATTACH: "ATTACH (or VACUUM) of {a1!r}",
    _C.SQLITE_DETACH: "DETACH {a1}",
    _C.SQLITE_TRANSACTION: "transaction control ({a1})",
    _C.SQLITE_SAVEPOINT: "SAVEPOINT {a1} {a2}",
    _C.SQLITE_ANALYZE: "ANALYZE {a1}",
    _C.SQLITE_REINDEX: "REINDEX {a1}",
}
_TEMP_OPS = frozenset({
    _C.SQLITE_CREATE_TEMP_TABLE, _C.SQLITE_CREATE_TEMP_INDEX, _C.SQLITE_CREATE_TEMP_VIEW,
    _C.SQLITE_CREATE_TEMP_TRIGGER, _C.SQLITE_DROP_TEMP_TABLE, _C.SQLITE_DROP_TEMP_INDEX,
    _C.SQLITE_DROP_TEMP_VIEW, _C.SQLITE_DROP_TEMP_TRIGGER,
})
_POLICY_KEY = {"create": "allow_create", "update": "allow_update", "delete": "allow_delete"}
_NEEDS_ALL = {
    _C.SQLITE_CREATE_TRIGGER: " (a trigger's body can insert, update and delete whenever it "
                              "fires, also for other programs writing to the file, so "
                              "CREATE TRIGGER needs allow_create, allow_update and "
                              "allow_delete)",
    _C.SQLITE_ALTER_TABLE: " (ALTER TABLE needs allow_create, allow_update and allow_delete)",
}


@dataclass(frozen=True, slots=True)
class Rules:
    """What the statement of one call may do."""

    read_only: bool = True
    create: bool = False
    update: bool = False
    delete: bool = False
    #: Why writes are refused in read-only mode (shown in the error).
    reason: str = "read-only mode"
    #: Lower-case names of tables and triggers whose schema uses REPLACE conflict
    #: resolution (only filled in when ``update`` or ``delete`` is refused).
    replace_tables: frozenset[str] = frozenset()
    replace_triggers: frozenset[str] = frozenset()

    @property
    def guards_replace(self) -> bool:
        return not self.read_only and not (self.update and self.delete)


READ_ONLY = Rules()


def describe(op: int, a1: str | None, a2: str | None) -> str:
    """A short human name for one operation."""
    if op == _C.SQLITE_PRAGMA:
        return f"PRAGMA {a1}" + (f"={a2}" if a2 is not None else "")
    if op == _C.SQLITE_FUNCTION:
        return f"function {a2}()"
    template = _NAMES.get(op)
    if template is None:
        return f"operation {op}"
    return template.format(a1=a1 or "", a2=a2 or "").strip()


def decide(rules: Rules, op: int, a1: str | None, a2: str | None, db: str | None,
           trigger: str | None) -> str | None:
    """``None`` when the operation is allowed, else why it is not."""
    if op in READ_OPS:
        return None
    if op == _C.SQLITE_FUNCTION:
        if (a2 or "").lower() in SAFE_FUNCTIONS:
            return None
        return f"not allowed: {describe(op, a1, a2)}"
    if op == _C.SQLITE_PRAGMA:
        if (a1 or "").lower() in READ_PRAGMAS:
            return None
        return f"not allowed: {describe(op, a1, a2)} (only introspection pragmas such as " \
               "table_info may be used)"
    if rules.read_only:
        return f"not allowed in {rules.reason}: {describe(op, a1, a2)}"
    if op in _TEMP_OPS or db == "temp":
        return f"not allowed: {describe(op, a1, a2)} (no temporary objects)"
    needs = WRITE_OPS.get(op)
    if needs is None:  # ATTACH, DETACH, transactions, virtual tables, ANALYZE, ...
        return f"not allowed: {describe(op, a1, a2)}"
    table = (a1 or "").lower()
    if table in SCHEMA_TABLES and op in (_C.SQLITE_INSERT, _C.SQLITE_UPDATE, _C.SQLITE_DELETE):
        # SQLite's own bookkeeping for CREATE/DROP/ALTER, which are checked by their own
        # operation; a statement that targets the schema table directly is refused by
        # SQLite itself (writable_schema stays off: no pragma can turn it on).
        return None
    missing = [_POLICY_KEY[p] for p in needs if not getattr(rules, p)]
    if missing:
        why = _NEEDS_ALL.get(op, "") if len(needs) > 1 else ""
        return f"not allowed by policy ({', '.join(f'{k}=False' for k in missing)}): " \
               f"{describe(op, a1, a2)}{why}"
    if rules.guards_replace and op in (_C.SQLITE_INSERT, _C.SQLITE_UPDATE) and (
            table in rules.replace_tables
            or (trigger is not None and trigger.lower() in rules.replace_triggers)):
        return replace_refusal(rules, f"{describe(op, a1, a2)} uses REPLACE conflict "
                               "resolution from the schema")
    return None


def replace_refusal(rules: Rules, what: str) -> str:
    missing = [key for key, allowed in (("allow_update", rules.update),
                                        ("allow_delete", rules.delete)) if not allowed]
    return (f"not allowed by policy ({', '.join(f'{k}=False' for k in missing)}): {what}, "
            "which deletes or overwrites rows")


def uses_replace(sql: str) -> bool:
    """Does ``sql`` contain the REPLACE keyword (not the ``replace()`` function, a string,
    a quoted name or a comment)? Errs on the side of yes."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            end = sql.find(ch, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == ch:  # doubled quote
                end = sql.find(ch, end + 2)
            i = n if end == -1 else end + 1
        elif ch == "[":
            end = sql.find("]", i + 1)
            i = n if end == -1 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif ch.isalpha() or ch == "_":
            start = i
            while i < n and (sql[i].isalnum() or sql[i] in "_$"):
                i += 1
            if sql[start:i].lower() == "replace" and _next_significant(sql, i) != "(":
                return True
        else:
            i += 1
    return False


_HEAD_KEYWORDS = frozenset({"CREATE", "DROP", "ALTER", "TEMP", "TEMPORARY", "UNIQUE", "VIRTUAL",
                            "TABLE", "INDEX", "VIEW", "TRIGGER"})
_OBJECTS = frozenset({"TABLE", "INDEX", "VIEW", "TRIGGER"})


def statement_head(sql: str) -> str:
    """What the statement does, in a few words: ``"DROP TABLE items"``,
    ``"CREATE TEMP TABLE t"`` (comments and ``IF NOT EXISTS`` skipped)."""
    found: list[str] = []
    i, n = 0, len(sql)
    while i < n and len(found) < 5:
        i = _skip_space(sql, i)
        start = i
        while i < n and not sql[i].isspace() and sql[i] not in "(;,":
            i += 1
        if i == start:
            break
        word = sql[start:i]
        upper = word.upper()
        if upper in ("IF", "NOT", "EXISTS"):
            continue
        found.append(upper if not found or upper in _HEAD_KEYWORDS else word)
        if len(found) >= 2 and found[-2] in _OBJECTS:
            break
    return " ".join(found)


def _skip_space(sql: str, i: int) -> int:
    n = len(sql)
    while i < n:
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        else:
            break
    return i


def _next_significant(sql: str, i: int) -> str:
    n = len(sql)
    while i < n:
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        else:
            return sql[i]
    return ""
