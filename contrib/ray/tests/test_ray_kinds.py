"""The ``ray`` provider serving ``bash`` and ``sqlite`` on the real three-node cluster (see
conftest): run_bash and query_sqlite configured onto a chosen node with no other change,
the host's policy checks (nothing crosses for a refused call), the node's own checks,
deadlines, node-side secrets, the native error records, health and cleanup."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_bash.package import default_commands
from agently_core_bash.programs import Allowlist
from agently_core_bash.sandbox import BashSandbox
from agently_core_isolation.sandbox import Limits
from agently_core_isolation.testing import dump, only_resource
from agently_core_ray.provider import RayProvider
from agently_core_sqlite.provider import SQLiteConnection

from agently_core.models import EnvironmentRequirement


def bash_agent(make_agent: Any, node: str, **options: Any) -> Any:
    agent = make_agent(providers={"bash": "ray"},
                       ray={"placement": {"bash": {"resources": {node: 0.01}}}})
    agent.enable_shell(**options)
    return agent


def bash(agent: Any, cmd: str, **kwargs: Any) -> Any:
    return agent.action.execute_action("run_bash", {"cmd": cmd, **kwargs})


def make_db(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO t (name) VALUES (?)", [("ada",), ("grace",)])
    return path


def sqlite_agent(make_agent: Any, node: str, database: Path, **options: Any) -> Any:
    agent = make_agent(providers={"sqlite": "ray"},
                       ray={"placement": {"sqlite": {"resources": {node: 0.01}}}})
    agent.enable_sqlite(database=database, **options)
    return agent


def sql(agent: Any, action: str, query: str, params: Any = None) -> Any:
    return agent.action.execute_action(action, {"query": query, "params": params})


def test_run_bash_runs_in_a_sandbox_on_the_chosen_node(no_actor_left: Any, ray_cluster: Any,
                                                        make_agent: Any) -> None:
    agent = bash_agent(make_agent, "node_a")
    first = bash(agent, "echo from-the-node > made.txt && pwd")
    assert first.status == "success", first.error
    box = only_resource(agent, "bash")
    assert isinstance(box, BashSandbox)  # the native executor ran it as its own
    assert box.node_id == ray_cluster.node_a.node_id and box.info["pid"] != os.getpid()
    assert [a["name"] for a in no_actor_left()] == [box.actor_name]
    workspace = Path(box.roots[0])  # the node's private workspace (one file system here)
    assert first.result["stdout"].strip() == str(workspace)
    assert (workspace / "made.txt").read_text() == "from-the-node\n"
    again = bash(agent, "cat made.txt; ls missing")  # warm: the same workspace
    assert again.status == "success", again.error
    assert again.result["stdout"] == "from-the-node\n" and again.result["exit_code"] == 2
    assert "missing" in again.result["stderr"]
    # the workdir is checked by its text here and resolved again on the node, symlinks
    # and all: one that leads out of the roots is refused there, before anything runs
    (workspace / "sub").mkdir()
    (workspace / "escape").symlink_to("/etc")
    assert bash(agent, "pwd", workdir="sub").result["stdout"].strip() == str(workspace / "sub")
    calls = box.calls
    escaped = bash(agent, "touch owned", workdir="escape")
    assert escaped.status == "failed" and "outside the roots" in escaped.error, escaped.error
    assert "nothing ran" in escaped.error and box.calls == calls + 1  # it crossed: the
    assert not Path("/etc/owned").exists()                          # node refused it
    agent.close()
    assert no_actor_left() == [] and box.kills == 1
    assert not workspace.exists()  # the sandbox was released on its node


def test_a_refused_command_is_refused_on_the_host(no_actor_left: Any, make_agent: Any,
                                                  tmp_path: Path) -> None:
    agent = bash_agent(make_agent, "pool")
    assert bash(agent, "true").status == "success"
    box = only_resource(agent, "bash")
    calls = box.calls
    for line in ("touch a && python3 -c 'open(\"b\", \"w\")'", "ls | sh", "rm -rf ."):
        record = bash(agent, line)
        assert record.status == "failed", line
        assert record.error.startswith("refused, nothing ran"), record.error
    assert box.calls == calls  # nothing crossed to the node
    assert not (Path(box.roots[0]) / "a").exists()
    agent.close()


def test_a_timeout_kills_the_command_on_the_node_and_the_sandbox_stays(
        no_actor_left: Any, make_agent: Any) -> None:
    agent = bash_agent(make_agent, "node_b", timeout=1.5)
    assert bash(agent, "touch kept").status == "success"
    box = only_resource(agent, "bash")
    workspace = Path(box.roots[0])
    began = time.monotonic()
    record = bash(agent, "touch started; sleep 4; touch finished")
    assert time.monotonic() - began < 4
    assert record.status == "failed" and "timed out after 1.5s" in record.error, record.error
    assert record.result["timed_out"] is True
    time.sleep(4)
    assert (workspace / "started").exists() and not (workspace / "finished").exists()
    after = bash(agent, "ls")  # the same warm sandbox: a timeout kills the command only
    assert after.status == "success", after.error
    assert after.result["stdout"].split() == ["kept", "started"]
    assert only_resource(agent, "bash") is box and len(no_actor_left()) == 1
    agent.close()


@pytest.mark.anyio
async def test_a_cancelled_caller_stops_the_command_on_the_node_and_the_sandbox_stays(
        no_actor_left: Any) -> None:
    provider = RayProvider({"placement": {"bash": {"resources": {"pool": 0.01}}}})
    requirement = EnvironmentRequirement(kind="bash", scope="global", resource_key="bash")
    box = await provider.ensure(requirement)
    allowlist = Allowlist.from_policy(tuple(default_commands()))

    def line(cmd: str) -> Any:
        return box.run(cmd, cwd=box.roots[0], roots=box.roots, allowlist=allowlist,
                       limits=Limits(wall_seconds=60), network=False, env={}, deadline=60)

    try:
        with anyio.move_on_after(1.0) as scope:  # the caller gives up long before 60 s
            await line("touch started; sleep 3; touch finished")
        assert scope.cancelled_caught and not box.dead
        await anyio.sleep(3.5)
        workspace = Path(box.roots[0])
        assert (workspace / "started").exists() and not (workspace / "finished").exists()
        run = await line("ls")  # the same sandbox, still warm
        assert run.exit_code == 0 and run.full_stdout.split() == ["started"], run
    finally:
        await provider.release(requirement, box)
    assert no_actor_left() == [] and box.kills == 1


def test_a_lost_actor_gives_a_fresh_sandbox_that_says_so(no_actor_left: Any,
                                                         make_agent: Any) -> None:
    import ray

    agent = bash_agent(make_agent, "pool")
    assert bash(agent, "touch kept").status == "success"
    first = only_resource(agent, "bash")
    ray.kill(first.actor, no_restart=True)  # the actor dies under the agent
    deadline = time.monotonic() + 10
    while not first.stopped():  # the watch says so, no round trip
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "ActorDiedError" in first.lost_reason, first.lost_reason
    record = bash(agent, "ls")
    assert record.status == "success", record.error
    assert record.result["stdout"] == ""  # a fresh workspace ...
    assert "was lost" in record.result["stderr"]  # ... that says the old one is gone
    second = only_resource(agent, "bash")
    assert second is not first and [a["name"] for a in no_actor_left()] == [second.actor_name]
    agent.close()
    assert no_actor_left() == [] and first.kills == second.kills == 1


def test_env_passthrough_reads_the_nodes_variable_and_it_comes_back_redacted(
        no_actor_left: Any, ray_cluster: Any, make_agent: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    name, secret = ray_cluster.node_secret
    assert name not in os.environ  # only node_b has it
    # a variable of the agent's host, passed through by name: its value must not cross
    monkeypatch.setenv("HOST_ONLY_TOKEN", "host-secret-9d2c71ab")
    agent = bash_agent(make_agent, "node_b", env_passthrough=[name, "HOST_ONLY_TOKEN"],
                       commands=[*default_commands(), "printenv"])
    record = bash(agent, f"printenv {name}; printenv {name} | wc -c; "
                         "printenv HOST_ONLY_TOKEN || echo absent")
    assert record.status == "success", record.error
    assert record.result["stdout"].split() == ["***", str(len(secret) + 1), "absent"]
    assert secret not in dump(record) and "host-secret" not in dump(record)
    box = only_resource(agent, "bash")
    assert box.node_id == ray_cluster.node_b.node_id and box.env == {}
    agent.close()


def test_env_values_are_refused_for_bash_too(no_actor_left: Any, make_agent: Any) -> None:
    agent = bash_agent(make_agent, "node_a", env={"SERVICE_TOKEN": "sk-never-sent-1"})
    record = bash(agent, "true")
    assert record.status == "failed" and "does not send env values" in record.error
    assert "sk-never-sent" not in record.error and no_actor_left() == []
    agent.close()


def test_query_sqlite_reads_the_file_on_the_chosen_node(no_actor_left: Any, ray_cluster: Any,
                                                        make_agent: Any, tmp_path: Path) -> None:
    database = make_db(tmp_path / "people.db")
    agent = sqlite_agent(make_agent, "node_a", database)
    record = sql(agent, "query_sqlite", "SELECT name FROM t WHERE id = ?", [2])
    assert record.status == "success", record.error
    assert record.result["rows"] == [["grace"]] and record.result["columns"] == ["name"]
    connection = only_resource(agent, "sqlite")
    assert isinstance(connection, SQLiteConnection)  # the native executor ran it
    assert connection.node_id == ray_cluster.node_a.node_id and connection.read_only
    assert connection.settings.database == database.resolve()
    local = make_agent()  # the same calls on a local connection give the native records
    local.enable_sqlite(database=database)
    # a write through the read-only connection: the authorizer on the node refuses it
    write = sql(agent, "query_sqlite", "DELETE FROM t")
    native = sql(local, "query_sqlite", "DELETE FROM t")
    assert write.status == native.status == "failed" and write.error == native.error
    assert "DELETE" in write.error, write.error
    assert sqlite3.connect(database).execute("SELECT count(*) FROM t").fetchone() == (2,)
    # a bad query gives the native record too
    bad = sql(agent, "query_sqlite", "SELECT nope FROM missing")
    native = sql(local, "query_sqlite", "SELECT nope FROM missing")
    assert bad.status == native.status == "failed"
    assert bad.error == native.error and "no such table: missing" in bad.error, bad.error
    assert connection.calls == 3
    agent.close()
    assert no_actor_left() == [] and connection.kills == 1


def test_execute_sqlite_writes_on_the_node_within_the_policy(no_actor_left: Any,
                                                             make_agent: Any,
                                                             tmp_path: Path) -> None:
    database = make_db(tmp_path / "people.db")
    agent = sqlite_agent(make_agent, "pool", database, read_only=False, write_approval=False,
                         policy={"allow_delete": False})
    done = sql(agent, "execute_sqlite", "INSERT INTO t (name) VALUES (?)", ["linus"])
    assert done.status == "success", done.error
    assert done.result["changes"] == 1
    assert sqlite3.connect(database).execute("SELECT count(*) FROM t").fetchone() == (3,)
    refused = sql(agent, "execute_sqlite", "DELETE FROM t")  # the node's authorizer
    assert refused.status == "failed" and "allow_delete=False" in refused.error, refused.error
    connections = [agent.manager.resource(h) for h in agent.manager.list(kind="sqlite")]
    writer = next(c for c in connections if not c.read_only)
    calls = writer.calls
    # a host-side check: REPLACE needs allow_update and allow_delete; nothing crosses
    replace = sql(agent, "execute_sqlite", "REPLACE INTO t (id, name) VALUES (1, 'x')")
    assert replace.status == "failed" and "REPLACE" in replace.error, replace.error
    assert writer.calls == calls
    assert sqlite3.connect(database).execute("SELECT count(*) FROM t").fetchone() == (3,)
    agent.close()
    assert no_actor_left() == [] and all(c.kills == 1 for c in connections)


FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def test_statements_stop_at_their_timeout_and_queue_on_the_node(no_actor_left: Any,
                                                                make_agent: Any,
                                                                tmp_path: Path) -> None:
    database = make_db(tmp_path / "people.db")
    agent = sqlite_agent(make_agent, "node_b", database, timeout=0.8)
    local = make_agent()
    local.enable_sqlite(database=database, timeout=0.8)
    began = time.monotonic()
    stopped = sql(agent, "query_sqlite", FOREVER)
    assert time.monotonic() - began < 5
    native = sql(local, "query_sqlite", FOREVER)
    assert stopped.status == native.status == "failed"
    assert stopped.error == native.error and "0.8s timeout" in stopped.error, stopped.error
    # three at once on a read-only connection (two worker processes on the node): the
    # third waits there, and its record says so, as for a local connection
    records = agent.action.execute_actions(
        [{"action": "query_sqlite", "kwargs": {"query": FOREVER}} for _ in range(3)],
        concurrency=3)
    assert [r.status for r in records] == ["failed"] * 3
    assert any(r.meta.get("queued_ms", 0) > 500 and "after waiting" in r.error
               for r in records), [(r.error, r.meta) for r in records]
    connection = only_resource(agent, "sqlite")
    assert connection.calls == 4 and not connection.dead  # a timeout stops the statement only
    assert sql(agent, "query_sqlite", "SELECT count(*) FROM t").result["rows"] == [[2]]
    agent.close()
    assert no_actor_left() == []


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["bash", "sqlite"])
async def test_health_follows_the_resource_on_its_node(no_actor_left: Any, tmp_path: Path,
                                                       kind: str) -> None:
    """A sandbox or pool has no process of its own for the actor's watch: idle, it is not
    reported stopped; closed on its node, the next check is False without a round trip,
    and the real ping is the inner provider's own health check."""
    config = {"database": str(make_db(tmp_path / "h.db"))} if kind == "sqlite" else {}
    provider = RayProvider({"placement": {kind: {"resources": {"pool": 0.01}}},
                            "ping_fresh_seconds": 60})
    requirement = EnvironmentRequirement(kind=kind, scope="global", resource_key=kind,
                                         config=config)
    resource = await provider.ensure(requirement)
    try:
        await anyio.sleep(1.2)  # past two looks of the watch
        assert not resource.stopped() and not resource.closed
        assert await resource.ping() is True and resource.pings == 0  # fresh: no round trip
        resource.fresh = 0.0
        assert await resource.ping() is True and resource.pings == 1
        assert await resource.actor.ping.remote() is True  # the inner provider's check
        await resource.actor.__ray_call__.remote(lambda host: host.resource.close())
        assert await resource.actor.ping.remote() is False
        resource.fresh = 60.0
        with anyio.fail_after(5):
            while await resource.ping():
                await anyio.sleep(0.05)
        assert resource.pings == 1 and resource.closed
        assert resource.lost_reason == "its sandbox stopped on the node"
    finally:
        await provider.release(requirement, resource)
    assert no_actor_left() == [] and resource.kills == 1
