"""The PostgreSQL server every test here uses: found or started once per session.

``AGENTLY_POSTGRES_DSN`` names an existing server; otherwise a throwaway cluster of the
machine's PostgreSQL binaries is started (see ``agently_core_workspace_postgres.testing``).
Under ``CI=true`` (or with ``AGENTLY_POSTGRES_DSN`` set) a server that cannot be had FAILS
the tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from agently_core_workspace_postgres.testing import (
    DSN_VARIABLE,
    PostgresServer,
    ServerUnavailable,
    drop_schema,
    find_or_start_server,
    in_ci,
    unique_schema,
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = find_or_start_server()
    except ServerUnavailable as exc:
        if in_ci():
            pytest.fail(f"CI=true and no PostgreSQL server could be found or started: {exc}",
                        pytrace=False)
        if os.environ.get(DSN_VARIABLE):
            pytest.fail(str(exc), pytrace=False)  # asked for by name: never skip quietly
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.dsn


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test's workspace, dropped afterwards."""
    name = unique_schema()
    yield name
    drop_schema(postgres_dsn, name)
