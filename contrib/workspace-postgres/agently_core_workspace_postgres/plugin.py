"""Entry point of agently-core-workspace-postgres: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_workspace_backends(register):
    register("postgres", "agently_core_workspace_postgres.backend:PostgresWorkspaceBackend")
