"""Entry point of agently-core-sqlite: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_action_executors(register):
    register("sqlite", "agently_core_sqlite.executor:SQLiteExecutor", kind="sqlite")


@hookimpl
def register_execution_environment_providers(register):
    register("sqlite", "agently_core_sqlite.provider:SQLiteProvider", kind="sqlite")


@hookimpl
def register_action_packages(register):
    register("sqlite", "agently_core_sqlite.package:mount",
             description="query_sqlite (read-only SQL on a SQLite file); execute_sqlite "
                         "(writes, behind approval) when the host opts in.",
             actions=("query_sqlite", "execute_sqlite"))
