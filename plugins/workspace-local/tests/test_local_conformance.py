"""The local backend passes the whole workspace backend suite, every optional part included."""

from __future__ import annotations

from agently_core_workspace_local.backend import LocalWorkspaceBackend

from agently_core.testing import WorkspaceBackendConformance
from agently_core.workspace import DISTRIBUTED_CAPABILITIES, FILES, SEARCH


class TestLocalWorkspaceConformance(WorkspaceBackendConformance):
    def make_backend(self) -> LocalWorkspaceBackend:
        return LocalWorkspaceBackend(self.tmp_path / "ws")

    def make_read_only_backend(self) -> LocalWorkspaceBackend:
        return LocalWorkspaceBackend(self.tmp_path / "ws", read_only=True)


def test_reports_every_capability(tmp_path) -> None:
    backend = LocalWorkspaceBackend(tmp_path / "ws")
    try:
        assert DISTRIBUTED_CAPABILITIES | {SEARCH, FILES} <= backend.capabilities()
    finally:
        backend.close()
