"""What is particular to the local backend: WAL, the schema, the lease clock, the event
loop never waiting for another process's lock, and a race suite that bites."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from agently_core_workspace_local import clock
from agently_core_workspace_local.backend import LocalWorkspaceBackend

from agently_core.testing import Heartbeat, WorkspaceRaceConformance
from agently_core.workspace import WorkspaceClosedError, WorkspaceError


def run(fn, *args):
    return anyio.run(fn, *args)


def test_layout_and_wal(tmp_path):
    backend = LocalWorkspaceBackend(tmp_path / "ws")
    backend.close()
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) >= ["artifacts", "files",
                                                                    "workspace.db"]
    conn = sqlite3.connect(tmp_path / "ws" / "workspace.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_read_only_needs_an_existing_store(tmp_path):
    with pytest.raises(WorkspaceError, match="no local workspace"):
        LocalWorkspaceBackend(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_a_newer_schema_is_refused(tmp_path):
    LocalWorkspaceBackend(tmp_path / "ws").close()
    conn = sqlite3.connect(tmp_path / "ws" / "workspace.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(WorkspaceError, match="upgrade"):
        LocalWorkspaceBackend(tmp_path / "ws")


def test_options_are_checked(tmp_path):
    with pytest.raises(WorkspaceError, match="synchronous"):
        LocalWorkspaceBackend(tmp_path / "ws", synchronous="sometimes")
    with pytest.raises(WorkspaceError, match="path"):
        LocalWorkspaceBackend()


def test_closed_backend_refuses_work(tmp_path):
    async def main():
        backend = LocalWorkspaceBackend(tmp_path / "ws")
        await backend.aclose()
        await backend.aclose()
        with pytest.raises(WorkspaceClosedError):
            await backend.put_record("c", "k", {})
        with pytest.raises(WorkspaceClosedError):
            await backend.read_artifact("sha256:" + "0" * 64)

    run(main)


def test_the_lease_clock_is_monotonic_per_boot():
    epoch, now = clock.now()
    if sys.platform.startswith("linux"):
        assert epoch.startswith("boot:")
        assert abs(now - time.monotonic()) < 1
    assert not clock.expired(epoch, now + 60)
    assert clock.expired(epoch, now - 1)
    assert clock.expired("boot:another-boot", now + 60)
    assert clock.expired(None, None)


def test_a_lease_from_another_boot_is_expired(tmp_path):
    async def main():
        backend = LocalWorkspaceBackend(tmp_path / "ws")
        held = await backend.claim_lease("job", "before-reboot", 3600)
        conn = sqlite3.connect(tmp_path / "ws" / "workspace.db")
        conn.execute("UPDATE leases SET epoch = 'boot:previous-boot'")
        conn.commit()
        conn.close()
        assert await backend.read_lease("job") is None
        taken = await backend.claim_lease("job", "after-reboot", 60)
        assert taken is not None and taken.fence > held.fence
        await backend.aclose()

    run(main)


def test_a_corrupt_artifact_is_reported(tmp_path):
    async def main():
        backend = LocalWorkspaceBackend(tmp_path / "ws")
        ref = await backend.put_artifact(b"payload")
        digest = ref["artifact_id"].removeprefix("sha256:")
        (tmp_path / "ws" / "artifacts" / digest[:2] / digest).write_bytes(b"tampered")
        with pytest.raises(WorkspaceError, match="corrupt"):
            await backend.read_artifact(ref["artifact_id"])
        await backend.aclose()

    run(main)


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def _hold_write_lock(db: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_waiting_for_another_process_never_blocks_the_event_loop(tmp_path):
    """Another process holds the write lock for a second: a write waits for it in a worker
    thread while the loop keeps running, and reads are not held up at all."""

    async def main():
        backend = LocalWorkspaceBackend(tmp_path / "ws")
        await backend.put_record("c", "k", {"v": 1})
        holder = _hold_write_lock(tmp_path / "ws" / "workspace.db", 1.0)
        try:
            async with Heartbeat() as beat:
                started = time.monotonic()
                assert await backend.get_record("c", "k") == {"v": 1}
                assert time.monotonic() - started < 0.5
                version = await backend.write_snapshot("s", {"v": 2})
                waited = time.monotonic() - started
        finally:
            holder.wait(10)
        assert version == 1 and waited > 0.5
        assert beat.max_gap < 0.25, f"the loop was blocked for {beat.max_gap:.3f} s"
        await backend.aclose()

    run(main)


def test_a_writer_gives_up_after_the_busy_timeout(tmp_path):
    async def main():
        backend = LocalWorkspaceBackend(tmp_path / "ws", busy_timeout=0.2)
        holder = _hold_write_lock(tmp_path / "ws" / "workspace.db", 1.5)
        try:
            with pytest.raises(WorkspaceError, match="stayed locked"):
                await backend.write_snapshot("s", {"v": 1})
        finally:
            holder.wait(10)
        assert await backend.write_snapshot("s", {"v": 1}) == 1  # nothing half-done
        await backend.aclose()

    run(main)


def test_the_wal_is_checkpointed(tmp_path):
    async def main():
        backend = LocalWorkspaceBackend(tmp_path / "ws")
        version = 0
        for i in range(3000):
            version = await backend.write_snapshot("s", {"i": i}, expected_state_version=version)
        wal = (tmp_path / "ws" / "workspace.db-wal").stat().st_size
        assert wal < 8 << 20, f"the WAL grew to {wal} bytes"
        assert await backend.integrity_check() == ["ok"]
        await backend.aclose()

    run(main)


def test_the_race_suite_catches_a_racy_backend(tmp_path, monkeypatch):
    """The same suite, run against a backend that checks outside its write transaction,
    fails: proof that the passing run above means something."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # spawned workers import it

    class Racy(WorkspaceRaceConformance):
        __test__ = False
        cas_writes = 200
        lease_rounds = 10

        def backend_spec(self):
            return ("racy_backend:RacyBackend", {"path": str(tmp_path / "ws")})

    suite = Racy()
    suite.tmp_path = tmp_path
    with pytest.raises(AssertionError, match="won the compare-and-set"):
        suite.test_compare_and_set_across_processes()
    with pytest.raises(AssertionError, match="hold the one lease"):
        suite.test_lease_claims_across_processes()
