"""Real processes race on one local store: compare-and-set, leases, events, SIGKILL."""

from __future__ import annotations

from typing import Any

from agently_core.testing import WorkspaceRaceConformance


class TestLocalWorkspaceRaces(WorkspaceRaceConformance):
    def backend_spec(self) -> tuple[str, dict[str, Any]]:
        return ("agently_core_workspace_local.backend:LocalWorkspaceBackend",
                {"path": str(self.tmp_path / "ws")})

    async def verify_store(self, backend: Any) -> None:
        assert await backend.integrity_check() == ["ok"]
