"""The postgres backend passes the whole workspace backend suite, every optional part included."""

from __future__ import annotations

import pytest
from agently_core_workspace_postgres.backend import PostgresWorkspaceBackend

from agently_core.testing import WorkspaceBackendConformance
from agently_core.workspace import DISTRIBUTED_CAPABILITIES, FILES, SEARCH


class TestPostgresWorkspaceConformance(WorkspaceBackendConformance):
    @pytest.fixture(autouse=True)
    def _postgres(self, postgres_dsn: str, pg_schema: str) -> None:
        self.dsn, self.schema = postgres_dsn, pg_schema

    def make_backend(self) -> PostgresWorkspaceBackend:
        return PostgresWorkspaceBackend(self.dsn, schema=self.schema)

    def make_read_only_backend(self) -> PostgresWorkspaceBackend:
        return PostgresWorkspaceBackend(self.dsn, schema=self.schema, read_only=True)


def test_reports_every_capability(postgres_dsn: str, pg_schema: str, tmp_path) -> None:
    backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)
    try:
        assert DISTRIBUTED_CAPABILITIES | {SEARCH} <= backend.capabilities()
        assert FILES not in backend.capabilities() and backend.files_root is None
    finally:
        backend.close()
    with_files = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema, files=tmp_path / "f")
    try:
        assert FILES in with_files.capabilities()
        assert with_files.files_root == tmp_path / "f" and with_files.files_root.is_dir()
    finally:
        with_files.close()
