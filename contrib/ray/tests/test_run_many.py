"""``run_many`` on the session's real cluster: 50 loops as Ray tasks with a concurrency
bound, results in order, two injected failures (a planner that raises, a worker process
that dies) staying with their own requests, records redacted on the worker, bad input;
loops saved to a workspace: paused for approval and resumed as other tasks, and a loop
whose worker process died, or whose node was removed, mid-loop resumed by Ray's retry
from its last saved round (on a PostgreSQL workspace)."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from agently_core_ray import run_many
from agently_core_ray.many import Progress

from agently_core.models import FlowResult
from agently_core.testing.requirements import require

# the factory below travels by value: the workers cannot import this test module
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SECRET = "sk-test-0123456789abcdefghij"


def make_agent() -> Any:
    """On the worker: an agent with one action and a planner scripted by the request."""
    from agently_core import Config, PluginManager, create_agent

    agent = create_agent(plugins=PluginManager(Config()).load())

    def double(x: int) -> dict[str, Any]:
        """Double x."""
        return {"value": 2 * x, "pid": os.getpid(), "token": SECRET}

    agent.action_func(double)
    agent.use_actions([double])
    agent.redactor.add(SECRET)

    def plan(context: Any, request: Any) -> Any:
        n = context["prompt"]["n"]
        if n == 13:
            raise RuntimeError("injected planner failure")
        if n == 31:
            os._exit(3)  # the worker process dies mid-loop
        if context["round_index"] == 0:
            return [{"action": "double", "kwargs": {"x": n}}]
        return f"doubled {n}"

    agent.set_planner(plan)
    return agent


def test_fifty_loops_with_two_injected_failures(ray_cluster: Any) -> None:
    seen: list[int] = []
    results = run_many(make_agent, [{"n": n} for n in range(50)], max_concurrent=3,
                       progress=lambda index, result: seen.append(index),
                       task_options={"max_retries": 0, "num_cpus": 1})
    assert len(results) == 50 and sorted(seen) == list(range(50))
    assert all(isinstance(r, FlowResult) for r in results)
    failed = {n for n, r in enumerate(results) if r.stop_reason == "failed"}
    assert failed == {13, 31}, {n: results[n].error for n in failed}
    assert "injected planner failure" in results[13].error
    assert "the loop's Ray task failed" in results[31].error and results[31].request == {"n": 31}
    for n, result in enumerate(results):
        if n in failed:
            continue
        assert result.request == {"n": n} and result.response == f"doubled {n}"  # in order
        (record,) = result.records
        assert record.status == "success" and record.result["value"] == 2 * n
        assert SECRET not in str(record.result)  # redacted on the worker
    assert os.getpid() not in {r.records[0].result["pid"] for r in results if r.records}


def test_progress_bar_and_bad_input(ray_cluster: Any) -> None:
    stream = io.StringIO()
    bar = Progress(2, stream=stream)
    results = run_many(make_agent, [{"n": 1}, {"n": 13}], progress=bar)
    assert [r.stop_reason for r in results] == ["response", "failed"]
    assert stream.getvalue().endswith("2/2 (1 failed) " + stream.getvalue().split()[-1] + "\n")
    with pytest.raises(ValueError, match="max_concurrent"):
        run_many(make_agent, [{"n": 1}], max_concurrent=0)
    with pytest.raises(TypeError, match="agent_factory must be callable"):
        run_many("not a factory", [{"n": 1}])
    assert run_many(make_agent, [], progress=False) == []


def make_gated_agent() -> Any:
    """On the worker: a loop whose one action needs a person's approval."""
    from agently_core import Config, PluginManager, create_agent

    agent = create_agent(plugins=PluginManager(Config()).load())
    agent.approval.set_default("fail_closed")

    @agent.action_func(approval_required=True)
    def transfer(n: int) -> dict[str, Any]:
        """Move n units (needs approval)."""
        return {"moved": n, "pid": os.getpid()}

    agent.use_actions(transfer)

    def plan(context: Any, request: Any) -> Any:
        if context["round_index"] == 0:
            return [{"action": "transfer", "kwargs": {"n": context["prompt"]["n"]}}]
        statuses = [r["status"] for r in context["last_round_records"]]
        return f"n={context['prompt']['n']} {','.join(statuses)}"

    agent.set_planner(plan)
    return agent


def test_loops_paused_for_approval_are_saved_and_resumed_as_other_tasks(
        ray_cluster: Any, tmp_path: Any) -> None:
    from agently_core_ray import resume_many

    from agently_core import Workspace

    path = str(tmp_path / "ws")  # a shared workspace (PostgreSQL across machines)

    def workspace() -> Any:
        return Workspace("local", path=path)

    paused = run_many(make_gated_agent, [{"n": n} for n in range(4)], workspace=workspace,
                      progress=False)
    assert [r.stop_reason for r in paused] == ["approval_required"] * 4, \
        [r.error for r in paused]
    assert len({r.execution_id for r in paused}) == 4
    decisions = ["approved", "denied", "approved", "approved"]
    resumes = [(r.execution_id, d, f"ticket-{n}")
               for n, (r, d) in enumerate(zip(paused, decisions, strict=True))]
    resumed = resume_many(make_gated_agent, resumes, workspace=workspace, progress=False)
    assert [r.stop_reason for r in resumed] == ["response"] * 4, [r.error for r in resumed]
    assert [r.execution_id for r in resumed] == [r.execution_id for r in paused]
    assert resumed[0].records[-1].result["moved"] == 0
    assert resumed[1].records[-1].status != "success"  # denied: it did not run
    assert resumed[2].response.startswith("n=2")
    again = resume_many(make_gated_agent, resumes[:1], workspace=workspace, progress=False)
    assert again[0].records[-1].result == resumed[0].records[-1].result  # once only
    broken = resume_many(make_gated_agent, [("exec_nope", "approved", "t")],
                         workspace=workspace, progress=False)
    assert broken[0].stop_reason == "failed" and "exec_nope" in broken[0].error
    with pytest.raises(TypeError, match="workspace must be a factory"):
        resume_many(make_gated_agent, resumes, workspace=None)  # type: ignore[arg-type]


# -- a lost worker mid-loop: the retry resumes from the saved round ---------------------
@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL server for the module (AGENTLY_POSTGRES_DSN, or a throwaway one)."""
    from agently_core_workspace_postgres.testing import ServerUnavailable, find_or_start_server

    try:
        server = find_or_start_server()
    except ServerUnavailable as exc:
        require(False, f"no PostgreSQL server: {exc}")
    try:
        yield server.dsn
    finally:
        server.stop()


def make_dying_agent() -> Any:
    """On the worker: round 0 appends a line to a file; round 1's planner kills its own
    worker process (``os._exit``) the first time for a request with ``die`` (a marker
    file says it happened), then answers."""
    from agently_core import Config, PluginManager, create_agent

    agent = create_agent(plugins=PluginManager(Config()).load())

    def append(path: str, line: str) -> dict[str, Any]:
        """Append a line to a file."""
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{line} {os.getpid()}\n")
        return {"line": line, "pid": os.getpid()}

    agent.action_func(append)
    agent.use_actions([append])

    def plan(context: Any, request: Any) -> Any:
        prompt = context["prompt"]
        home, n = Path(prompt["home"]), prompt["n"]
        if context["round_index"] == 0:
            return [{"action": "append",
                     "kwargs": {"path": str(home / f"appended-{n}.txt"), "line": "round0"}}]
        marker = home / f"died-{n}"
        if prompt["die"] and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(9)  # the worker process dies mid-loop, holding the loop's lease
        return f"finished {n} after {len(context['done_plans'])} record(s) in {os.getpid()}"

    agent.set_planner(plan)
    return agent


def test_a_loop_whose_worker_died_resumes_from_its_saved_round(
        ray_cluster: Any, tmp_path: Path, postgres_dsn: str) -> None:
    import anyio
    from agently_core_workspace_postgres.testing import drop_schema, unique_schema

    from agently_core import Workspace
    from agently_core.execution import saved_key

    schema = unique_schema("ray")

    def workspace() -> Any:
        return Workspace("postgres", dsn=postgres_dsn, schema=schema)

    requests = [{"n": n, "die": n == 0, "home": str(tmp_path)} for n in range(3)]
    try:
        results = run_many(make_dying_agent, requests, workspace=workspace, progress=False,
                           batch_id="lost", lease_ttl=2.0, max_concurrent=3,
                           task_options={"max_retries": 1, "num_cpus": 1})
        assert [r.stop_reason for r in results] == ["response"] * 3, \
            [r.error for r in results]
        died_pid = int((tmp_path / "died-0").read_text())
        first = results[0]
        assert first.execution_id == "lost-0" and first.request == requests[0]
        # round 0's action ran exactly once, in the process that died; the retried task
        # went on from round 1 in another process
        lines = (tmp_path / "appended-0.txt").read_text().splitlines()
        assert lines == [f"round0 {died_pid}"]
        (record,) = first.records
        assert record.status == "success" and record.result["pid"] == died_pid
        assert first.response.startswith("finished 0 after 1 record(s) in ")
        assert int(first.response.split()[-1]) != died_pid
        assert [r.round_index for r in first.rounds] == [0, 1]
        for n in (1, 2):  # the others were not disturbed
            assert results[n].response.startswith(f"finished {n} after 1 record(s)")
            assert len((tmp_path / f"appended-{n}.txt").read_text().splitlines()) == 1

        async def saved() -> Any:
            async with workspace() as ws:
                return [await ws.read_snapshot(saved_key(f"lost-{n}")) for n in range(3)]

        documents = anyio.run(saved)
        # round 0 saved, then the end (by the retried task for lost-0)
        assert [version for version, _ in documents] == [2, 2, 2]
        assert all(d["state"] == "closed" and d["save_rounds"] for _, d in documents)
        # the same batch again: every loop returns its saved result, nothing runs
        again = run_many(make_dying_agent, requests, workspace=workspace, progress=False,
                         batch_id="lost", lease_ttl=2.0)
        assert [r.response for r in again] == [r.response for r in results]
        assert (tmp_path / "appended-0.txt").read_text().splitlines() == lines
    finally:
        drop_schema(postgres_dsn, schema)


def make_stalling_agent() -> Any:
    """On the worker: round 0 appends a line to a file; round 1's planner, on its first
    attempt, says on which node it runs and waits there (its node is removed under it);
    a later attempt answers with its own node."""
    from agently_core import Config, PluginManager, create_agent

    agent = create_agent(plugins=PluginManager(Config()).load())

    def append(path: str, line: str) -> dict[str, Any]:
        """Append a line to a file."""
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{line}\n")
        return {"line": line}

    agent.action_func(append)
    agent.use_actions([append])

    def plan(context: Any, request: Any) -> Any:
        home = Path(context["prompt"]["home"])
        node = ray.get_runtime_context().get_node_id()
        if context["round_index"] == 0:
            return [{"action": "append",
                     "kwargs": {"path": str(home / "appended.txt"), "line": node}}]
        stalled = home / "stalled"
        if not stalled.exists():
            stalled.write_text(node)
            time.sleep(120)  # the node goes away first
        return f"finished on {node}"

    agent.set_planner(plan)
    return agent


def test_a_loop_on_a_lost_node_resumes_on_another_node(
        ray_cluster: Any, tmp_path: Path, postgres_dsn: str) -> None:
    """A node removed while its loop is in round 1: Ray runs the task again elsewhere, and
    it goes on from the round saved before the loss (round 0's action ran once)."""
    from agently_core_workspace_postgres.testing import drop_schema, unique_schema
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from agently_core import Workspace

    schema = unique_schema("raynode")

    def workspace() -> Any:
        return Workspace("postgres", dsn=postgres_dsn, schema=schema)

    doomed = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    first_there = NodeAffinitySchedulingStrategy(doomed.node_id, soft=True)
    done: dict[str, Any] = {}

    def batch() -> None:
        done["results"] = run_many(
            make_stalling_agent, [{"home": str(tmp_path)}], workspace=workspace,
            progress=False, batch_id="node", lease_ttl=2.0,
            task_options={"max_retries": 1, "num_cpus": 1, "scheduling_strategy": first_there})

    runner = threading.Thread(target=batch, daemon=True)
    try:
        runner.start()
        deadline = time.monotonic() + 60
        while not (tmp_path / "stalled").exists():
            assert time.monotonic() < deadline and runner.is_alive(), done
            time.sleep(0.1)
        assert (tmp_path / "stalled").read_text() == doomed.node_id
        ray_cluster.remove_node(doomed)
        runner.join(120)
        assert not runner.is_alive(), "run_many did not come back after the node was lost"
        (result,) = done["results"]
        assert result.stop_reason == "response", result.error
        assert result.execution_id == "node-0"
        assert result.response.startswith("finished on ")
        assert result.response.split()[-1] != doomed.node_id  # went on elsewhere
        # round 0's action ran once, on the lost node; round 1 was not planned twice there
        assert (tmp_path / "appended.txt").read_text().splitlines() == [doomed.node_id]
        assert [r.round_index for r in result.rounds] == [0, 1]
    finally:
        drop_schema(postgres_dsn, schema)
