"""A deliberately broken postgres backend: compare-and-set and lease claims check in one
statement and write in another. The race suite must catch it (test_postgres_backend.py)."""

from __future__ import annotations

import secrets
import time

from agently_core_workspace_postgres.backend import PostgresWorkspaceBackend, _token_hash

from agently_core.workspace import Lease, VersionConflict, dump_value


class RacyPostgresBackend(PostgresWorkspaceBackend):
    async def write_snapshot(self, key, value, *, expected_state_version=None):
        text = dump_value(value, key)
        found = await self.read_snapshot(key)
        current = 0 if found is None else found[0]
        if expected_state_version is not None and expected_state_version != current:
            raise VersionConflict(key, expected_state_version, current)
        time.sleep(0.0005)  # the window a real race needs

        async def op(conn):
            await conn.execute(
                f"INSERT INTO {self._q}.snapshots (key, version, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET version = excluded.version, "
                "value = excluded.value", (key, current + 1, text))

        await self._run("racy write", op, write=True)
        return current + 1

    async def claim_lease(self, name, owner, ttl):
        if await self.read_lease(name) is not None:
            return None
        row = await self._fetchone("racy fence", f"SELECT fence FROM {self._q}.leases "
                                   "WHERE name = %s", (name,))
        time.sleep(0.0005)
        fence, token = (row[0] if row else 0) + 1, secrets.token_hex(8)

        async def op(conn):
            await conn.execute(
                f"INSERT INTO {self._q}.leases (name, owner, token_hash, fence, ttl, deadline) "
                "VALUES (%s, %s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s)) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "token_hash = excluded.token_hash, fence = excluded.fence, "
                "deadline = excluded.deadline",
                (name, owner, _token_hash(token), fence, float(ttl), float(ttl)))

        await self._run("racy claim", op, write=True)
        return Lease(name, owner, token, fence, float(ttl), 0.0)

    @property
    def _q(self):
        return '"' + self.schema + '"'
