"""The ``ray`` provider on a real three-node cluster (see conftest): run_python configured
onto a worker node with no other change, placement, one actor per reuse key under 200
concurrent ensures, deadlines crossing the network, bad settings, and a node lost
mid-session (last: it removes a node)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_isolation.testing import only_resource
from agently_core_python.sandbox import PythonWorker
from agently_core_ray.provider import RayProvider

from agently_core.environments import ExecutionEnvironmentManager
from agently_core.models import EnvironmentRequirement
from agently_core.protocols import ProviderHandle


def ray_config(**placement: Any) -> dict[str, Any]:
    return {"providers": {"python": "ray"},
            "ray": {"inner_provider": {"python": "python"},
                    "placement": {"python": placement}}}


def run(agent: Any, code: str) -> Any:
    return agent.action.execute_action("run_python", {"python_code": code})


def worker_of(agent: Any) -> Any:
    return only_resource(agent, "python")


def test_run_python_is_configured_onto_a_chosen_worker_node(no_actor_left: Any,
                                                            ray_cluster: Any,
                                                            make_agent: Any) -> None:
    agent = make_agent(**ray_config(resources={"node_b": 0.01}))
    agent.enable_python()
    first = run(agent, "import socket\nx = 41")
    assert first.status == "success", first.error
    record = run(agent, "x + 1")
    assert record.status == "success", record.error
    assert record.result["value"] == "42"  # warm: the state stayed in the actor's worker
    worker = worker_of(agent)
    assert isinstance(worker, PythonWorker)  # the native executor ran it as its own
    assert worker.node_id == ray_cluster.node_b.node_id
    assert [a["name"] for a in no_actor_left()] == [worker.actor_name]
    failed = run(agent, "1/0")  # the worker's own error comes back as the native record
    assert failed.status == "failed" and "ZeroDivisionError" in failed.error
    agent.close()
    assert no_actor_left() == []
    assert worker.kills == 1


def test_passed_through_variables_are_the_nodes_and_redacted_there(
        no_actor_left: Any, ray_cluster: Any, make_agent: Any) -> None:
    NODE_SECRET_NAME, NODE_SECRET = ray_cluster.node_secret
    assert NODE_SECRET_NAME not in os.environ  # only node_b has it
    agent = make_agent(**ray_config(resources={"node_b": 0.01}))
    agent.enable_python(env_passthrough=[NODE_SECRET_NAME])
    record = run(agent, f"import os\nv = os.environ['{NODE_SECRET_NAME}']\nprint(v)\n"
                        "(len(v), v[:5])")
    assert record.status == "success", record.error
    assert record.result["value"] == f"({len(NODE_SECRET)}, {NODE_SECRET[:5]!r})"
    assert NODE_SECRET not in str(record.model_dump())  # masked before it left node_b
    assert record.result["stdout"].strip() == "***"
    agent.close()


def test_env_values_never_cross_to_a_worker_node(no_actor_left: Any, ray_cluster: Any,
                                                 make_agent: Any) -> None:
    """``env`` values are secrets to agently-core (masked in records) and would travel in
    the actor's arguments, which the cluster keeps: refused before any actor starts, naming
    the way that keeps a secret on its node (``env_passthrough``, tested above)."""
    agent = make_agent(**ray_config(resources={"node_a": 0.01}))
    agent.enable_python(env={"SERVICE_API_KEY": "sk-never-sent", "GREETING": "hello"})
    record = run(agent, "1")
    assert record.status == "failed", record.result
    assert ("does not send env values to worker nodes (agently-core treats them as "
            "secrets): GREETING, SERVICE_API_KEY") in record.error, record.error
    assert "env_passthrough" in record.error and "sk-never-sent" not in record.error
    assert no_actor_left() == []
    agent.close()


def test_run_nodejs_is_served_the_same_way(no_actor_left: Any, ray_cluster: Any,
                                           make_agent: Any) -> None:
    from agently_core_nodejs.sandbox import NodeWorker

    agent = make_agent(providers={"node": "ray"},
                       ray={"placement": {"node": {"resources": {"node_a": 0.01}}}})
    agent.enable_nodejs()
    first = agent.action.execute_action("run_nodejs", {"js_code": "globalThis.x = 40"})
    assert first.status == "success", first.error
    record = agent.action.execute_action("run_nodejs", {"js_code": "x + 2"})
    assert record.status == "success", record.error
    assert record.result["value"] == "42"
    worker = only_resource(agent, "node")
    assert isinstance(worker, NodeWorker) and worker.node_id == ray_cluster.node_a.node_id
    assert worker.calls == 2
    agent.close()
    assert no_actor_left() == [] and worker.kills == 1


@pytest.mark.anyio
async def test_200_concurrent_ensures_of_one_key_make_one_actor(no_actor_left: Any) -> None:
    provider = RayProvider({"placement": {"python": {"resources": {"pool": 0.01}}}})
    requirement = EnvironmentRequirement(kind="python", scope="global", resource_key="python")
    async with ExecutionEnvironmentManager(providers={"python": provider}) as manager:
        handles: list[Any] = []

        async def ensure() -> None:
            handles.append(await manager.async_ensure(requirement))

        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(ensure)
        assert len(handles) == 200
        assert len({h.id for h in handles}) == 1
        assert len(no_actor_left()) == 1
        worker = next(iter(manager._slots.values())).resource
        for handle in handles:
            await manager.async_release(handle.lease_id)
    assert no_actor_left() == []
    assert worker.kills == 1  # released once, the actor killed once
    await worker.aclose()
    assert worker.kills == 1


def test_a_timeout_cancels_the_remote_call_and_the_next_call_gets_a_fresh_actor(
        no_actor_left: Any, make_agent: Any) -> None:
    agent = make_agent(**ray_config(resources={"pool": 0.01}))
    agent.enable_python(timeout=1.0)
    assert run(agent, "y = 1").status == "success"
    began = time.monotonic()
    record = run(agent, "import time\ntime.sleep(60)")
    assert time.monotonic() - began < 15
    assert record.status == "failed" and "timed out" in record.error, record.error
    after = run(agent, "'y' in globals()")
    assert after.status == "success", after.error
    assert after.result["value"] == "False"  # a fresh worker in a fresh actor
    assert len(no_actor_left()) == 1  # the timed-out one was killed
    agent.close()


@pytest.mark.anyio
async def test_a_cancelled_caller_cancels_the_remote_call(no_actor_left: Any) -> None:
    provider = RayProvider({"placement": {"python": {"resources": {"pool": 0.01}}}})
    requirement = EnvironmentRequirement(kind="python", scope="global", resource_key="python")
    worker = await provider.ensure(requirement)
    try:
        assert (await worker.run("1", timeout=10, max_output=100))["value"] == "1"
        with anyio.move_on_after(1.0) as scope:  # the caller gives up long before 60 s
            await worker.run("import time\ntime.sleep(60)", timeout=120, max_output=100)
        assert scope.cancelled_caught and worker.dead
        # the remote call was cancelled, which killed the worker in the actor: a busy one
        # would still answer its ping (its process alive) for a minute
        with anyio.fail_after(5):
            while await worker.actor.ping.remote():
                await anyio.sleep(0.1)
        assert await worker.ping() is False
    finally:
        await provider.release(requirement, worker)
    assert no_actor_left() == [] and worker.kills == 1


@pytest.mark.anyio
@pytest.mark.parametrize("fresh", [0.0, 60.0])
async def test_a_killed_actor_is_unhealthy_at_the_next_check(no_actor_left: Any,
                                                             fresh: float) -> None:
    """The health check reads the actor's pending watch, which Ray fails once it learns
    the actor is gone: unhealthy at once, with a real ping (``ping_fresh_seconds = 0``) or
    without one (a sandbox that answered within the window)."""
    import ray

    provider = RayProvider({"placement": {"python": {"resources": {"pool": 0.01}}},
                            "ping_fresh_seconds": fresh})
    requirement = EnvironmentRequirement(kind="python", scope="global", resource_key="python")
    worker = await provider.ensure(requirement)
    try:
        assert (await worker.run("v = 1", timeout=10, max_output=100))["ok"]
        assert await worker.ping() is True
        pings = worker.pings
        assert pings == (1 if not fresh else 0)  # within the window: no round trip
        ray.kill(worker.actor, no_restart=True)  # the actor dies under us
        with anyio.fail_after(10):
            while await worker.ping():
                await anyio.sleep(0.01)
        assert worker.dead and "ActorDiedError" in worker.lost_reason, worker.lost_reason
        if fresh:
            assert worker.pings == pings  # the watch said so; nothing asked the dead actor
        with pytest.raises(Exception, match="not running"):
            await worker.run("v", timeout=10, max_output=100)
    finally:
        await provider.release(requirement, worker)
    assert no_actor_left() == [] and worker.kills == 1


@pytest.mark.anyio
async def test_a_sandbox_that_stops_on_its_node_is_unhealthy_without_a_round_trip(
        no_actor_left: Any) -> None:
    """The actor answers its watch when the resource inside it stops (here its worker
    process exits on the node between calls): the next check is False with no ping,
    and the manager's next ensure reports the state lost."""
    provider = RayProvider({"placement": {"python": {"resources": {"pool": 0.01}}},
                            "ping_fresh_seconds": 60})
    requirement = EnvironmentRequirement(kind="python", scope="global", resource_key="python")
    worker = await provider.ensure(requirement)
    try:
        # the sandbox's worker process exits a moment after answering, between calls
        code = "import os, threading\nthreading.Timer(0.3, os._exit, (1,)).start()"
        assert (await worker.run(code, timeout=10, max_output=100))["ok"]
        with anyio.fail_after(10):
            while await worker.ping():
                await anyio.sleep(0.05)
        assert worker.pings == 0 and worker.lost_reason == "its sandbox stopped on the node"
        assert not await provider.async_health_check(ProviderHandle("h", requirement, worker))
        fresh = await provider.ensure(requirement)
        try:
            again = await fresh.run("1", timeout=10, max_output=100)
            assert "was lost (its sandbox stopped on the node)" in again["stderr"], again
        finally:
            await provider.release(requirement, fresh)
    finally:
        await provider.release(requirement, worker)
    assert no_actor_left() == []


def test_bad_settings_give_a_clear_error_record(no_actor_left: Any, make_agent: Any) -> None:
    agent = make_agent(**ray_config(cpus=1))
    agent.enable_python()
    record = run(agent, "1")
    assert record.status == "failed" and "unknown key(s) in [ray.placement.python]: cpus" \
        in record.error, record.error
    agent = make_agent(providers={"python": "ray"}, ray={"inner_provider": {"python": "ray"}})
    agent.enable_python()
    record = run(agent, "1")
    assert record.status == "failed" and "would host the ray provider in itself" in record.error
    settings = ray_config(resources={"no_such_node": 1})
    settings["ray"]["start_timeout"] = 1.5
    agent = make_agent(**settings)
    agent.enable_python()
    record = run(agent, "1")
    assert record.status == "failed" and "did not start within 1.5s" in record.error, record.error
    assert no_actor_left() == []  # the pending actor was killed


def test_the_cli_call_runs_in_an_actor_on_the_chosen_node(no_actor_left: Any, ray_cluster: Any,
                                                          tmp_path: Any) -> None:
    """``agently-core call run_python`` in another process, configured by a file only."""
    config = tmp_path / "agently.toml"
    config.write_text(f'[providers]\npython = "ray"\n\n[ray]\naddress = "{ray_cluster.address}"\n'
                      '[ray.placement.python]\nresources = { node_a = 0.01 }\n', "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLY_", "RAY_"))}
    env.update(AGENTLY_CONFIG=str(config), RAY_AUTH_MODE="token")
    argv = [str(Path(sys.executable).with_name("agently-core")), "call", "run_python",
            "--enable", "python", "--kwargs", json.dumps({"python_code": "6 * 7"})]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**env, "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"]})
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"value": "42"' in done.stdout, done.stdout
    assert no_actor_left() == []  # the CLI's agent released its actor on the way out
    # the cluster uses token authentication: a driver with another token is refused
    probe = [sys.executable, "-c",
             f"import ray; ray.init(address={ray_cluster.address!r}); print('connected')"]
    try:
        refused = subprocess.run(probe, capture_output=True, text=True, timeout=6,
                                 env={**env, "RAY_AUTH_TOKEN": "f" * 32})
        out, err = refused.stdout, refused.stderr
        assert refused.returncode != 0
    except subprocess.TimeoutExpired as exc:  # still retrying, refused each time
        out, err = exc.stdout or "", exc.stderr or ""
        out, err = (x.decode() if isinstance(x, bytes) else x for x in (out, err))
    assert "connected" not in out and "InvalidAuthToken" in err, err[-2000:]
    assert no_actor_left() == []


def test_a_node_lost_mid_session_is_survived(no_actor_left: Any, ray_cluster: Any,
                                             make_agent: Any) -> None:
    agent = make_agent(**ray_config(resources={"pool": 0.01}))
    agent.enable_python()
    assert run(agent, "state = 'kept'").status == "success"
    first = worker_of(agent)
    doomed = next(n for n in (ray_cluster.node_a, ray_cluster.node_b)
                  if n.node_id == first.node_id)
    ray_cluster.remove_node(doomed)
    began = time.monotonic()
    record = run(agent, "'state' in globals()")
    assert time.monotonic() - began < 30  # nothing hangs
    assert record.status == "success", record.error
    assert record.result["value"] == "False"  # a fresh sandbox ...
    assert "was lost" in record.result["stderr"]  # ... that says the old state is gone
    second = worker_of(agent)
    assert second.node_id != first.node_id
    assert [a["name"] for a in no_actor_left()] == [second.actor_name]  # the lost one is gone
    agent.close()
