"""The worker process: one SQLite connection, one statement at a time, JSON lines.

Started by the host (:mod:`agently_core_sqlite.pool`) as ``python -I -S -c BOOT`` with the
standard library only: it imports this module and :mod:`~agently_core_sqlite.rules`,
nothing else of the package. The first line on standard input is the configuration; the
worker applies its resource limits, opens the database (limits, settings, then the
authorizer and the progress handler) and answers ``{"ready": true}`` or an error. Every
later line is a request, answered by exactly one line:

``{"id", "op": "run", "sql", "params", "rules", "max_rows", "max_bytes", "write",
"deadline", "timeout"}``
    Run one statement under ``rules`` until ``deadline`` (``time.monotonic()``, the same
    clock in every process); the reply is ``{"id", "ok": true, "result"}`` or ``{"id",
    "ok": false, "type", "error"}``.
``{"id", "op": "ping"}``
    A ``SELECT 1`` round trip.

``SIGUSR1`` asks the running statement to stop (the caller went away). A step SQLite does
not interrupt (one ``instr()`` over megabytes, say) is not waited for: the host kills the
process at the deadline and starts another. End of input closes the connection and ends
the process, as does the host's death (a watchdog thread looks at the parent).
"""

from __future__ import annotations

import base64
import json
import os
import resource
import signal
import sqlite3
import sys
import threading
import time
from typing import Any

from .rules import (
    READ_ONLY,
    SCHEMA_TABLES,
    WARM_TABLES,
    Rules,
    decide,
    statement_head,
    uses_replace,
)

#: Virtual machine steps between two looks at the deadline (about a millisecond).
PROGRESS_STEPS = 4000
MAX_SQL_LENGTH = 1_000_000
MAX_LIKE_PATTERN = 1000
_DML = frozenset({sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE})
#: Room kept in the byte budget for the keys after ``rows`` (counts, flags, changes).
_TAIL_RESERVE = 120
_SCHEMA_VERBS = frozenset({"CREATE", "DROP", "ALTER"})


class Refused(Exception):
    """A statement's failure, as the host reports it (``kind`` names the error class)."""

    def __init__(self, message: str, kind: str = "ActionError") -> None:
        super().__init__(message)
        self.kind = kind


class _Call:
    """One statement's run: its deadline and rules, and what stopped it."""

    __slots__ = ("deadline", "denied", "denied_bookkeeping", "rules", "stopped")

    def __init__(self, rules: Rules, deadline: float) -> None:
        self.rules = rules
        self.deadline = deadline
        self.denied: str | None = None
        self.denied_bookkeeping = False
        self.stopped = False


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class Database:
    """The worker's connection and the hooks SQLite calls on it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.current: _Call | None = None
        self.cancelled = False
        self.conn = self._open(config)

    def _open(self, config: dict[str, Any]) -> sqlite3.Connection:
        read_only = bool(config["read_only"])
        conn = sqlite3.connect(config["uri"], uri=True, isolation_level=None,
                               check_same_thread=False,
                               cached_statements=0,  # every statement is authorized afresh
                               timeout=float(config["busy_timeout"]))
        try:
            conn.text_factory = _decode
            # Limits first, then settings, then the authorizer: nothing the worker needs
            # runs under the model's rules, and nothing the model runs escapes them.
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(config["max_value_bytes"]))
            conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN)
            if read_only:
                conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cell_size_check = ON")
            if config.get("heap_limit_bytes") is not None:
                conn.execute(f"PRAGMA hard_heap_limit = {int(config['heap_limit_bytes'])}")
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            except sqlite3.DatabaseError as exc:
                why = HOT_JOURNAL if _hot_journal(exc) else str(exc)
                raise Refused(f"{config['database']!r} is not a usable SQLite database: "
                              f"{why}", "SQLiteConfigError") from None
            for table in WARM_TABLES:
                try:
                    conn.execute(f'SELECT * FROM "{table}" LIMIT 0').fetchall()
                except sqlite3.Error:
                    pass  # not compiled in: the authorizer refuses it later
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._progress, PROGRESS_STEPS)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- the hooks SQLite calls --------------------------------------------------------------
    def _authorize(self, op: int, a1: str | None, a2: str | None, db: str | None,
                   trigger: str | None) -> int:
        call = self.current
        refusal = decide(call.rules if call is not None else READ_ONLY, op, a1, a2, db, trigger)
        if refusal is None:
            return sqlite3.SQLITE_OK
        if call is not None:
            # Keep the first refusal, unless it was SQLite's own bookkeeping on the schema
            # table and the statement's real operation (CREATE, DROP, PRAGMA...) follows.
            bookkeeping = op in _DML and (a1 or "").lower() in SCHEMA_TABLES
            if call.denied is None or (call.denied_bookkeeping and not bookkeeping):
                call.denied, call.denied_bookkeeping = refusal, bookkeeping
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        call = self.current
        if call is not None and (self.cancelled or time.monotonic() > call.deadline):
            call.stopped = True
            return 1  # SQLite stops the statement: "interrupted"
        return 0

    # -- requests ----------------------------------------------------------------------------
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        rules = Rules(**request["rules"])
        call = _Call(rules, float(request["deadline"]))
        query = request["sql"]
        params = request["params"]
        if isinstance(params, list):
            params = tuple(params)
        self.current = call
        try:
            if rules.guards_replace:
                call.rules = _with_replace_schema(self.conn, rules)
            return _run_statement(self.conn, query, params, int(request["max_rows"]),
                                  int(request["max_bytes"]), write=bool(request["write"]))
        except Refused:
            raise
        except Exception as exc:
            raise _error(exc, call, float(request["timeout"]), query,
                         self.cancelled) from None
        finally:
            self.current = None

    def ping(self) -> bool:
        self.current = _Call(READ_ONLY, time.monotonic() + 5.0)
        try:
            return self.conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            self.current = None


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
    return len(json.dumps(value, ensure_ascii=False, default=repr).encode("utf-8",
                                                                          "surrogatepass"))


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
            # One row at a time: only the row in hand and the kept ones are in memory.
            for raw in cursor:
                if len(rows) >= max_rows:
                    result["truncated"], result["truncated_by"] = True, "max_rows"
                    break
                # a cheap lower bound first: a huge value is never serialised to be measured
                least = sum(len(v) for v in raw if isinstance(v, (str, bytes)))
                row = [_cell(v) for v in raw] if used + least <= max_bytes else None
                size = _size(row) + 2 if row is not None else least  # and the ", " before it
                if row is None or used + size > max_bytes:
                    result["truncated"], result["truncated_by"] = True, "max_output_bytes"
                    break
                rows.append(row)
                used += size
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


#: SQLITE_READONLY_ROLLBACK: a read-only connection found a hot journal.
_READONLY_ROLLBACK = 776
HOT_JOURNAL = ("the file has a hot journal, left by a write that was interrupted, and a "
               "read-only connection cannot roll it back (opening the file read-write, as "
               "execute_sqlite or any other writer does, rolls it back)")


def _hot_journal(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == _READONLY_ROLLBACK


def _error(exc: BaseException, call: _Call, timeout: float, query: str,
           cancelled: bool) -> Refused:
    """A clear error for anything a statement raised."""
    if call.denied is not None:
        head = statement_head(query)
        if call.denied_bookkeeping and head.split(" ", 1)[0] in _SCHEMA_VERBS:
            # SQLite asks about its own schema table before the statement's own operation
            mode = call.denied.split(":", 1)[0]
            temporary = "sqlite_temp_master" in call.denied or "temporary" in call.denied
            why = "no temporary objects" if temporary else "it changes the database schema"
            return Refused(f"{mode}: {head} ({why})")
        return Refused(call.denied)
    if call.stopped:
        if cancelled:
            return Refused("the statement was cancelled")
        return Refused(f"the statement was stopped at its {timeout:g}s timeout",
                       "SQLiteTimeoutError")
    if isinstance(exc, MemoryError):
        return Refused("the statement ran out of memory (the worker's memory limit, "
                       "heap_limit_bytes, stopped it)")
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in str(exc):
        return Refused("only one SQL statement per call is allowed")
    if isinstance(exc, (sqlite3.Error, sqlite3.Warning)):
        if _hot_journal(exc):
            return Refused(f"SQL error: {HOT_JOURNAL}")
        if "out of memory" in str(exc).lower():
            return Refused("the statement ran out of memory (SQLite's heap limit, "
                           "heap_limit_bytes, stopped it)")
        return Refused(f"SQL error: {exc}")
    if isinstance(exc, (OverflowError, ValueError, TypeError)):
        return Refused(f"invalid query or params: {exc}")
    return Refused(f"{type(exc).__name__}: {exc}")


# -- the process ------------------------------------------------------------------------------
def _limit_resources(config: dict[str, Any]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    address_space = config.get("address_space_bytes")
    if address_space is not None:
        resource.setrlimit(resource.RLIMIT_AS, (int(address_space), int(address_space)))


def _watch_parent(parent: int) -> None:
    """End the process when the host is gone, even in the middle of a statement."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


class _Wire:
    """JSON lines on the file descriptors the host gave us."""

    def __init__(self) -> None:
        self.reader = sys.stdin.buffer
        self.writer = sys.stdout.buffer

    def read(self) -> dict[str, Any] | None:
        line = self.reader.readline()
        return json.loads(line) if line else None

    def write(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=True, allow_nan=True, default=repr)
        self.writer.write(data.encode("ascii") + b"\n")
        self.writer.flush()


def main() -> None:
    """Serve one connection until the host closes standard input."""
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wire = _Wire()
    config = wire.read()
    if config is None:
        return
    threading.stack_size(256 * 1024)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        _limit_resources(config)
        database = Database(config)
    except Refused as exc:
        wire.write({"ready": False, "type": exc.kind, "error": str(exc)})
        return
    except Exception as exc:  # the host reports it as a start failure
        wire.write({"ready": False, "type": "SQLiteConfigError",
                    "error": f"cannot open {config.get('database')!r}: {exc}"})
        return

    def stop(signum: int, frame: Any) -> None:
        database.cancelled = True

    signal.signal(signal.SIGUSR1, stop)
    wire.write({"ready": True, "pid": os.getpid(), "sqlite": sqlite3.sqlite_version})
    while True:
        request = wire.read()
        if request is None:
            break
        database.cancelled = False
        ident = request.get("id")
        try:
            if request.get("op") == "ping":
                reply: dict[str, Any] = {"id": ident, "ok": database.ping()}
            else:
                reply = {"id": ident, "ok": True, "result": database.run(request)}
        except Refused as exc:
            reply = {"id": ident, "ok": False, "type": exc.kind, "error": str(exc)}
        except MemoryError:
            reply = {"id": ident, "ok": False, "type": "ActionError",
                     "error": "the statement ran out of memory (the worker's memory limit, "
                              "heap_limit_bytes, stopped it)"}
        except Exception as exc:
            reply = {"id": ident, "ok": False, "type": "ActionError",
                     "error": f"{type(exc).__name__}: {exc}"}
        wire.write(reply)
    database.conn.close()


#: What the host runs with ``python -I -S -c``: the package's parent directory is the only
#: path added, and only this module and ``rules`` are imported from it.
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from agently_core_sqlite.child import main; main()")

__all__ = ["BOOT", "Database", "Refused", "main"]
