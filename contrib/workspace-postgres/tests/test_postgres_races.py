"""Real processes race on one PostgreSQL workspace: compare-and-set, leases, events, SIGKILL."""

from __future__ import annotations

from typing import Any

import pytest

from agently_core.testing import WorkspaceRaceConformance


class TestPostgresWorkspaceRaces(WorkspaceRaceConformance):
    @pytest.fixture(autouse=True)
    def _postgres(self, postgres_dsn: str, pg_schema: str) -> None:
        self.dsn, self.schema = postgres_dsn, pg_schema

    def backend_spec(self) -> tuple[str, dict[str, Any]]:
        return ("agently_core_workspace_postgres.backend:PostgresWorkspaceBackend",
                {"dsn": self.dsn, "schema": self.schema})

    async def verify_store(self, backend: Any) -> None:
        assert await backend.check_consistency() == []
