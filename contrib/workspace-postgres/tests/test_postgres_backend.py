"""What is particular to the postgres backend: bad DSNs, a server that goes away and comes
back, read-only sessions, timeouts, the server clock, and a race suite that bites."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import psycopg
import pytest
from agently_core_workspace_postgres import testing as pg_testing
from agently_core_workspace_postgres.backend import PostgresWorkspaceBackend
from agently_core_workspace_postgres.connections import PostgresUnavailable

from agently_core.testing import Heartbeat, WorkspaceRaceConformance
from agently_core.workspace import (
    DISTRIBUTED_CAPABILITIES,
    ReadOnlyError,
    Workspace,
    WorkspaceClosedError,
    WorkspaceError,
)


def run(fn, *args):
    return anyio.run(fn, *args)


# -- opening ------------------------------------------------------------------------------
def test_a_malformed_dsn_is_a_clear_error(pg_schema):
    with pytest.raises(WorkspaceError, match="DSN is malformed"):
        PostgresWorkspaceBackend("host=localhost port", schema=pg_schema)


def test_an_unreachable_server_is_a_clear_error_without_the_password(tmp_path, pg_schema):
    dsn = f"host={tmp_path} port=5 user=someone password=hunter2 dbname=nothing"
    with pytest.raises(PostgresUnavailable, match="cannot connect to PostgreSQL") as caught:
        PostgresWorkspaceBackend(dsn, schema=pg_schema)
    assert "hunter2" not in str(caught.value)
    assert f"host={tmp_path}" in str(caught.value)
    url = "postgresql://someone:hunter2@127.0.0.1:1/nothing"
    with pytest.raises(PostgresUnavailable) as caught:
        PostgresWorkspaceBackend(url, schema=pg_schema, connect_timeout=2)
    assert "hunter2" not in str(caught.value)


def test_no_dsn_names_the_variable(monkeypatch):
    monkeypatch.delenv("AGENTLY_POSTGRES_DSN", raising=False)
    with pytest.raises(WorkspaceError, match="AGENTLY_POSTGRES_DSN"):
        PostgresWorkspaceBackend()


def test_the_dsn_variable_is_used(monkeypatch, postgres_dsn, pg_schema):
    monkeypatch.setenv("AGENTLY_POSTGRES_DSN", postgres_dsn)
    PostgresWorkspaceBackend(schema=pg_schema).close()


@pytest.mark.parametrize("options, message", [
    ({"schema": ""}, "schema must be"),
    ({"schema": 'x"; DROP TABLE y; --'}, "schema must be"),
    ({"schema": "x$fn$y"}, "schema must be"),
    ({"schema": "a" * 64}, "schema must be"),
    ({"schema": "pg_catalog"}, "belongs to PostgreSQL"),
    ({"schema": "public"}, "belongs to PostgreSQL"),
    ({"pool_size": 0}, "pool_size"),
    ({"operation_timeout": -1}, "operation_timeout"),
])
def test_options_are_checked(postgres_dsn, options, message):
    with pytest.raises(WorkspaceError, match=message):
        PostgresWorkspaceBackend(postgres_dsn, **{"schema": "ok", **options})


def test_read_only_needs_an_existing_workspace(postgres_dsn, pg_schema):
    with pytest.raises(WorkspaceError, match="not an initialised workspace"):
        PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema, read_only=True)
    with psycopg.connect(postgres_dsn) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                             (pg_schema,)).fetchone()[0]
    assert found == 0, "a read-only open created the schema"


def test_a_newer_schema_is_refused(postgres_dsn, pg_schema):
    PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'UPDATE "{pg_schema}".meta SET value = \'99\' '
                     "WHERE key = 'schema_version'")
    with pytest.raises(WorkspaceError, match="upgrade"):
        PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)


def test_many_processes_may_create_one_workspace_at_once(postgres_dsn, pg_schema):
    errors: list[BaseException] = []

    def create() -> None:
        try:
            PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


# -- use ------------------------------------------------------------------------------------
def test_through_the_workspace_facade(postgres_dsn, pg_schema):
    async def main():
        async with Workspace("postgres", dsn=postgres_dsn, schema=pg_schema,
                             require_distributed_provider=True) as ws:
            assert ws.capabilities() >= DISTRIBUTED_CAPABILITIES
            version = await ws.put_snapshot("s", {"n": 1}, expected_state_version=0)
            lease = await ws.claim_lease("job", ttl=5, owner="me")
            assert lease is not None and lease.fence == 1
        async with Workspace("postgres", dsn=postgres_dsn, schema=pg_schema,
                             read_only=True) as reader:
            assert reader.backend.read_only is True
            assert await reader.read_snapshot("s") == (version, {"n": 1})
            with pytest.raises(ReadOnlyError):
                await reader.put_snapshot("s", {"n": 2})

    run(main)


def test_read_only_sessions_are_read_only_in_postgres_too(postgres_dsn, pg_schema):
    """Past the backend's own refusal, the server refuses writes of a read-only session."""
    PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema).close()

    async def main():
        reader = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema, read_only=True)
        try:
            async def sneaky(conn):
                await conn.execute(f'INSERT INTO "{pg_schema}".snapshots (key, version, value) '
                                   "VALUES ('s', 1, '{}')")

            with pytest.raises(ReadOnlyError, match="read-only"):
                await reader._run("a raw insert", sneaky)  # write=False: the server decides
            assert await reader.read_snapshot("s") is None
        finally:
            await reader.aclose()

    run(main)


def test_closed_backend_refuses_work(postgres_dsn, pg_schema):
    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)
        await backend.put_record("c", "k", {})
        await backend.aclose()
        await backend.aclose()
        with pytest.raises(WorkspaceClosedError):
            await backend.put_record("c", "k", {})
        with pytest.raises(WorkspaceClosedError):
            await backend.read_artifact("sha256:" + "0" * 64)

    run(main)


def test_values_postgres_cannot_hold_are_clear_errors(postgres_dsn, pg_schema):
    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)
        try:
            with pytest.raises(WorkspaceError, match="NUL"):
                await backend.put_record("c", "nul\x00key", {"v": 1})
            await backend.put_record("c", "k", {"nul": "a\x00b", "big": 1e300, "x": 2**70})
            assert await backend.get_record("c", "k") == {"nul": "a\x00b", "big": 1e300,
                                                          "x": 2**70}
        finally:
            await backend.aclose()

    run(main)


def test_two_schemas_are_two_workspaces(postgres_dsn, pg_schema):
    other = pg_testing.unique_schema()

    async def main():
        first = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)
        second = PostgresWorkspaceBackend(postgres_dsn, schema=other)
        try:
            await first.write_snapshot("s", {"who": "first"})
            assert await second.read_snapshot("s") is None
            assert await second.append_event("x", "e", {}) == 1
            assert await first.append_event("x", "other", {}) == 1
        finally:
            await first.aclose()
            await second.aclose()

    try:
        run(main)
    finally:
        pg_testing.drop_schema(postgres_dsn, other)


def test_long_words_are_searched_exactly(postgres_dsn, pg_schema):
    """The index keeps the first 100 characters of a word; longer ones are re-checked."""
    long_a, long_b = "a" * 150, "a" * 100 + "b" * 50

    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)
        try:
            await backend.put_record("w", "a", {"text": f"{long_a} tail"})
            await backend.put_record("w", "b", {"text": f"{long_b} tail"})
            await backend.put_record("w", "blob", {"text": "x" * 300_000})
            assert [h["key"] for h in await backend.search_records(long_a)] == ["a"]
            assert [h["key"] for h in await backend.search_records(long_b.upper())] == ["b"]
            assert sorted(h["key"] for h in await backend.search_records("tail")) == ["a", "b"]
            assert [h["key"] for h in await backend.search_records("x" * 300_000)] == ["blob"]
            assert await backend.search_records("x" * 299_999) == []
        finally:
            await backend.aclose()

    run(main)


def test_a_backend_moves_between_event_loops(postgres_dsn, pg_schema):
    backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema, pool_size=2)

    async def write(n):
        return await backend.write_snapshot("s", {"n": n})

    try:
        assert [run(write, n) for n in range(3)] == [1, 2, 3]
    finally:
        backend.close()


def test_more_tasks_than_connections_wait_their_turn(postgres_dsn, pg_schema):
    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema, pool_size=1)
        got: list[int] = []
        try:
            async with anyio.create_task_group() as group:
                for index in range(10):
                    group.start_soon(lambda i=index: _append(backend, got, i))
            assert sorted(got) == list(range(1, 11))
        finally:
            await backend.aclose()

    run(main)


async def _append(backend, got, index):
    got.append(await backend.append_event("x", f"e{index}", {}))


def test_lease_deadlines_are_on_the_server_clock(postgres_dsn, pg_schema):
    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)
        try:
            lease = await backend.claim_lease("job", "me", 30.0)
            (server_now,), = await backend._fetchall(
                "now", "SELECT extract(epoch FROM clock_timestamp())::float8")
            assert abs(lease.expires_at - (server_now + 30.0)) < 1.0
            with psycopg.connect(postgres_dsn) as conn:
                stored = conn.execute(f'SELECT token_hash FROM "{pg_schema}".leases').fetchone()
            assert lease.token.encode() not in bytes(stored[0]), "the token itself is stored"
        finally:
            await backend.aclose()

    run(main)


# -- locks, timeouts, cancels ---------------------------------------------------------------
def _hold_row_lock(dsn: str, schema: str, key: str, seconds: float) -> threading.Thread:
    """Another session holds the snapshot row ``key`` locked for ``seconds``."""
    locked = threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute(f'SELECT 1 FROM "{schema}".snapshots WHERE key = %s FOR UPDATE',
                         (key,))
            locked.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    return thread


def test_waiting_for_a_lock_never_blocks_the_event_loop(postgres_dsn, pg_schema):
    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema)
        try:
            version = await backend.write_snapshot("s", {"v": 1})
            holder = _hold_row_lock(postgres_dsn, pg_schema, "s", 1.0)
            async with Heartbeat() as beat:
                started = time.monotonic()
                assert await backend.read_snapshot("s") == (version, {"v": 1})
                assert time.monotonic() - started < 0.5  # readers never wait for writers
                new = await backend.write_snapshot("s", {"v": 2},
                                                   expected_state_version=version)
                waited = time.monotonic() - started
            holder.join(10)
            assert new == version + 1 and waited > 0.5
            assert beat.max_gap < 0.25, f"the loop was blocked for {beat.max_gap:.3f} s"
        finally:
            await backend.aclose()

    run(main)


def test_a_statement_that_waits_too_long_is_cancelled_and_writes_nothing(postgres_dsn,
                                                                           pg_schema):
    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema,
                                           operation_timeout=0.3)
        try:
            await backend.write_snapshot("s", {"v": 1})
            holder = _hold_row_lock(postgres_dsn, pg_schema, "s", 1.5)
            with pytest.raises(WorkspaceError, match="nothing was written"):
                await backend.write_snapshot("s", {"v": 2}, expected_state_version=1)
            holder.join(10)
            assert await backend.read_snapshot("s") == (1, {"v": 1})
            assert await backend.write_snapshot("s", {"v": 2}, expected_state_version=1) == 2
        finally:
            await backend.aclose()

    run(main)


def test_a_cancel_lands_before_or_after_a_call_never_inside(postgres_dsn, pg_schema):
    """Cancelled while waiting for a lock, the write still finishes (shielded) and its
    result is known; the connection goes back clean and the next call works."""

    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema, pool_size=1)
        try:
            await backend.write_snapshot("s", {"v": 1})
            holder = _hold_row_lock(postgres_dsn, pg_schema, "s", 0.6)
            started = time.monotonic()
            with anyio.move_on_after(0.1):
                await backend.write_snapshot("s", {"v": 2}, expected_state_version=1)
                await anyio.sleep(5)  # the cancel lands here, after the write
            assert 0.4 < time.monotonic() - started < 4
            holder.join(10)
            assert await backend.read_snapshot("s") == (2, {"v": 2})
            with anyio.CancelScope() as early:
                early.cancel()
                await backend.write_snapshot("s", {"v": 3})  # cancelled before it is sent
            assert await backend.read_snapshot("s") == (2, {"v": 2})
        finally:
            await backend.aclose()

    run(main)


# -- the server going away ------------------------------------------------------------------
def test_terminated_connections_are_replaced_without_an_error(postgres_dsn, pg_schema):
    """Idle connections the server closed (pg_terminate_backend, a restart) are noticed
    before use, without a round trip, and replaced."""

    async def main():
        backend = PostgresWorkspaceBackend(postgres_dsn, schema=pg_schema, pool_size=4)
        try:
            async with anyio.create_task_group() as group:
                for index in range(8):
                    group.start_soon(lambda i=index: backend.put_record("c", f"k{i}", {"i": i}))
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'agently-core-workspace' AND pid <> "
                    "pg_backend_pid()").fetchone()[0]
            assert killed >= 1
            await anyio.sleep(0.2)
            for index in range(8):
                assert await backend.get_record("c", f"k{index}") == {"i": index}
        finally:
            await backend.aclose()

    run(main)


@pytest.fixture
def private_server():
    """A cluster of its own, to stop and start (never the session's server)."""
    try:
        server = pg_testing.start_cluster()
    except pg_testing.ServerUnavailable as exc:
        if pg_testing.in_ci() and not pg_testing.os.environ.get(pg_testing.DSN_VARIABLE):
            pytest.fail(f"CI=true and no PostgreSQL cluster could be started: {exc}",
                        pytrace=False)
        pytest.skip(f"no local PostgreSQL binaries to start a private cluster: {exc}")
    try:
        yield server
    finally:
        server.stop()


def test_server_gone_mid_use_is_a_clear_error_and_the_backend_recovers(private_server):
    async def main():
        backend = PostgresWorkspaceBackend(private_server.dsn, schema="gone", pool_size=2)
        try:
            version = await backend.write_snapshot("s", {"v": 1})
            await backend.append_event("x", "e1", {})
            private_server.halt()
            with pytest.raises(PostgresUnavailable, match="PostgreSQL") as caught:
                await backend.write_snapshot("s", {"v": 2}, expected_state_version=version)
            assert "host=" in str(caught.value)
            with pytest.raises(PostgresUnavailable):
                await backend.read_snapshot("s")
            private_server.resume()
            assert await backend.read_snapshot("s") == (version, {"v": 1})
            assert await backend.write_snapshot("s", {"v": 2},
                                                expected_state_version=version) == version + 1
            assert await backend.append_event("x", "e2", {}) == 2
        finally:
            await backend.aclose()

    run(main)


def test_a_server_restart_between_calls_is_invisible(private_server):
    async def main():
        backend = PostgresWorkspaceBackend(private_server.dsn, schema="restart", pool_size=2)
        try:
            await backend.put_record("c", "k", {"v": 1})
            private_server.halt()
            private_server.resume()
            assert await backend.get_record("c", "k") == {"v": 1}
        finally:
            await backend.aclose()

    run(main)


# -- the race suite bites -------------------------------------------------------------------
def test_the_race_suite_catches_a_racy_backend(tmp_path, monkeypatch, postgres_dsn, pg_schema):
    """The same suite, run against a backend that checks in one statement and writes in
    another, fails: proof that the passing run means something."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # spawned workers import it

    class Racy(WorkspaceRaceConformance):
        __test__ = False
        cas_writes = 200
        lease_rounds = 10

        def backend_spec(self):
            return ("racy_postgres_backend:RacyPostgresBackend",
                    {"dsn": postgres_dsn, "schema": pg_schema})

    suite = Racy()
    suite.tmp_path = tmp_path
    with pytest.raises(AssertionError, match="won the compare-and-set"):
        suite.test_compare_and_set_across_processes()
    with pytest.raises(AssertionError, match="hold the one lease"):
        suite.test_lease_claims_across_processes()
