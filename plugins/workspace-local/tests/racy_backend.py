"""A deliberately broken local backend: compare-and-set and lease claims read outside the
write transaction. The race suite must catch it (see test_local_backend.py)."""

from __future__ import annotations

import secrets
import time

from agently_core_workspace_local import clock
from agently_core_workspace_local.backend import LocalWorkspaceBackend
from agently_core_workspace_local.store import LocalStore

from agently_core.workspace import Lease, VersionConflict


class RacyStore(LocalStore):
    def write_snapshot(self, key, text, expected):
        row = self.read(lambda conn: conn.execute(
            "SELECT version FROM snapshots WHERE key = ?", (key,)).fetchone())
        current = 0 if row is None else row[0]
        if expected is not None and expected != current:
            raise VersionConflict(key, expected, current)
        time.sleep(0.0005)  # the window a real race needs
        self.write(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO snapshots (key, version, value, updated_at) "
            "VALUES (?, ?, ?, 0)", (key, current + 1, text)))
        return current + 1

    def claim_lease(self, name, owner, ttl):
        if self.read_lease(name) is not None:
            return None
        row = self.read(lambda conn: conn.execute(
            "SELECT fence FROM leases WHERE name = ?", (name,)).fetchone())
        time.sleep(0.0005)
        fence, token = (row[0] if row else 0) + 1, secrets.token_hex(8)
        epoch, now = clock.now()
        self.write(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO leases (name, owner, token, fence, ttl, epoch, deadline, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            (name, owner, token, fence, ttl, epoch, now + ttl)))
        return Lease(name, owner, token, fence, ttl, 0.0)


class RacyBackend(LocalWorkspaceBackend):
    def __init__(self, path):
        super().__init__(path)
        self._store.close()
        self._store = RacyStore(path)
