"""A PostgreSQL server for tests and benchmarks: found or started, never assumed.

:func:`find_or_start_server` returns a :class:`PostgresServer` with a ``dsn``:

1. ``AGENTLY_POSTGRES_DSN`` when it is set (the server is checked with one connection and
   left running afterwards; an unreachable one is an error, not a reason to start another);
2. otherwise a throwaway cluster of the PostgreSQL binaries on this machine (Debian's
   ``/usr/lib/postgresql/<version>/bin``, else ``initdb``/``postgres`` on ``PATH``):
   ``initdb`` into a new temporary directory, then ``postgres`` listening **only on a Unix
   socket** in that directory (no TCP; ``trust`` authentication is therefore limited to
   whoever can enter the directory), with ``fsync=off`` for speed, and a database
   ``agently``. PostgreSQL refuses to run as root: as root the cluster belongs to the
   ``postgres`` system user (Debian's package creates it), else to a system user
   ``agently-pg`` created for it. :meth:`PostgresServer.stop` stops it and removes the
   directory; a cluster left behind by a killed test run is removed by the next start.

:class:`ServerUnavailable` says why no server could be had. Whether that fails or skips a
test is the caller's choice: :func:`in_ci` tells whether ``CI`` is set (then it must fail).
This module imports neither pytest nor the backend, so a benchmark can use it too.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The variable naming an existing server to use instead of starting one.
DSN_VARIABLE = "AGENTLY_POSTGRES_DSN"
#: The system user a cluster started as root belongs to, when ``postgres`` is missing.
CLUSTER_USER = "agently-pg"
#: The prefix of every temporary cluster directory.
DIRECTORY_PREFIX = "agently-pg-"
#: Seconds to wait for a started server to accept connections.
START_TIMEOUT = 60.0


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started; the message says why and what to do."""


def in_ci() -> bool:
    """Is ``CI`` set to a true value (then a missing server must fail, not skip)?"""
    from agently_core.testing.requirements import in_ci as ci

    return ci()


@dataclass
class PostgresServer:
    """A server to connect to: ``dsn`` and, for a cluster this module started, its
    process and directory (``stop()`` ends both; for an external server it does nothing)."""

    dsn: str
    external: bool = True
    directory: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    command: list[str] = field(default_factory=list, repr=False)
    launch: dict[str, Any] = field(default_factory=dict, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def halt(self) -> None:
        """Stop the server process (fast shutdown: every client is disconnected) and keep
        its data, so :meth:`resume` can bring it back at the same DSN. Only for a cluster
        this module started."""
        if self.external:
            raise ServerUnavailable("an external server (AGENTLY_POSTGRES_DSN) is not stopped "
                                    "by the tests")
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnect and stop
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def resume(self) -> None:
        """Start the halted server again and wait until it accepts connections."""
        if self.external or (self.process is not None and self.process.poll() is None):
            return
        assert self.log is not None and self.command
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(self.command, stdout=handle,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            **self.launch)
        _wait_ready(self)

    def stop(self) -> None:
        """Stop the server this module started and remove its directory."""
        if self._stopped or self.external:
            return
        self._stopped = True
        self.halt()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def find_or_start_server() -> PostgresServer:
    """``AGENTLY_POSTGRES_DSN``'s server, else a throwaway cluster started now; raises
    :class:`ServerUnavailable` when neither can be had."""
    dsn = os.environ.get(DSN_VARIABLE, "").strip()
    if dsn:
        _check_connect(dsn, what=f"{DSN_VARIABLE} is set but")
        return PostgresServer(dsn=dsn, external=True)
    return start_cluster()


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``postgres``: the newest of Debian's
    ``/usr/lib/postgresql/*/bin``, else the one ``PATH`` (or ``pg_config --bindir``) names."""

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for directory in candidates:
        if all(os.access(Path(directory) / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb is not None:
        directory = Path(initdb).resolve().parent
        if os.access(directory / "postgres", os.X_OK):
            return directory
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if out and all(os.access(Path(out) / tool, os.X_OK)
                           for tool in ("initdb", "postgres")):
                return Path(out)
    raise ServerUnavailable(
        "no PostgreSQL server binaries (initdb, postgres) were found in "
        "/usr/lib/postgresql/*/bin or on PATH: install Debian's 'postgresql' package "
        "(./dev setup does it as root) or set AGENTLY_POSTGRES_DSN to a server's DSN")


def start_cluster() -> PostgresServer:
    """initdb + postgres in a new temporary directory; see the module's docs."""
    bindir = find_binaries()
    sweep_stale_clusters()
    user = _cluster_user()
    directory = Path(tempfile.mkdtemp(prefix=DIRECTORY_PREFIX, dir=_temp_root()))
    started = False
    try:
        (directory / "owner.pid").write_text(str(os.getpid()))
        data, sockets, log = directory / "data", directory / "sock", directory / "server.log"
        sockets.mkdir()
        log.touch()
        if user is not None:
            for path in (directory, sockets, log):
                os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(directory, 0o700)
        run_as = _run_as(user)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C",
               "HOME": str(directory), "TZ": "UTC"}
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "agently", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            cwd=directory, env=env, capture_output=True, text=True, timeout=120, **run_as)
        if initdb.returncode != 0:
            raise ServerUnavailable(f"initdb failed ({initdb.returncode}):\n"
                                    f"{initdb.stdout[-2000:]}{initdb.stderr[-2000:]}")
        port = 50000 + secrets.randbelow(10000)  # names the socket file; no TCP is opened
        settings = {
            "listen_addresses": "", "unix_socket_directories": str(sockets),
            "unix_socket_permissions": "0700", "port": str(port), "fsync": "off",
            "synchronous_commit": "off", "full_page_writes": "off",
            "max_connections": "200", "shared_buffers": "64MB", "max_wal_size": "1GB",
            "log_min_messages": "warning", "log_timezone": "UTC", "timezone": "UTC",
        }
        command = [str(bindir / "postgres"), "-D", str(data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        server = PostgresServer(dsn=f"host={sockets} port={port} user=agently dbname=postgres",
                                external=False, directory=directory, log=log, command=command,
                                launch={"cwd": directory, "env": env, **run_as})
        try:
            server.resume()
            _create_database(server)
        except BaseException:
            server.stop()
            raise
        started = True
        return server
    finally:
        if not started:
            shutil.rmtree(directory, ignore_errors=True)


def sweep_stale_clusters() -> None:
    """Stop and remove the clusters of test runs whose process is gone (killed runs)."""
    for owner in Path(_temp_root()).glob(f"{DIRECTORY_PREFIX}*/owner.pid"):
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        directory = owner.parent
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int((directory / "data" / "postmaster.pid").read_text().split()[0])
            if _alive(postmaster):
                os.kill(postmaster, signal.SIGQUIT)
                for _ in range(100):
                    if not _alive(postmaster):
                        break
                    time.sleep(0.05)
        shutil.rmtree(directory, ignore_errors=True)


def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (a test's workspace); quietly does nothing if
    the server is gone."""
    import psycopg
    from psycopg import sql

    with contextlib.suppress(psycopg.Error), psycopg.connect(dsn, autocommit=True,
                                                             connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def unique_schema(prefix: str = "t") -> str:
    """A fresh schema name: ``<prefix>_<hex>``."""
    return f"{prefix}_{secrets.token_hex(6)}"


# -- helpers -----------------------------------------------------------------------------
def _temp_root() -> str:
    """Where cluster directories go: short enough for a Unix socket path (108 bytes)."""
    root = tempfile.gettempdir()
    return root if len(root) < 40 else "/tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cluster_user() -> pwd.struct_passwd | None:
    """The unprivileged user to own the cluster when we are root; ``None`` otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", CLUSTER_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", CLUSTER_USER],
                       check=True, capture_output=True, text=True, timeout=60)
        return pwd.getpwnam(CLUSTER_USER)
    except (OSError, subprocess.SubprocessError, KeyError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise ServerUnavailable(f"PostgreSQL refuses to run as root and no unprivileged user "
                                f"could be made (useradd {CLUSTER_USER}): {detail}") from None


def _run_as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _wait_ready(server: PostgresServer) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise ServerUnavailable(f"postgres exited with {server.process.returncode} at "
                                    f"start:\n{_tail(server.log)}")
        try:
            with psycopg.connect(server.dsn, connect_timeout=5, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    raise ServerUnavailable(f"postgres did not accept connections within {START_TIMEOUT} s "
                            f"({last}):\n{_tail(server.log)}")


def _create_database(server: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(server.dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE DATABASE agently")
    server.dsn = server.dsn.replace("dbname=postgres", "dbname=agently")


def _check_connect(dsn: str, *, what: str) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise ServerUnavailable(f"{what} no connection could be made: "
                                f"{str(exc).strip()}") from None


def _tail(log: Path | None, size: int = 3000) -> str:
    if log is None:
        return ""
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return ""


__all__ = [
    "DSN_VARIABLE",
    "PostgresServer",
    "ServerUnavailable",
    "drop_schema",
    "find_binaries",
    "find_or_start_server",
    "in_ci",
    "start_cluster",
    "sweep_stale_clusters",
    "unique_schema",
]
