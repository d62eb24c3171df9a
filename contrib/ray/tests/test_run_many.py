"""``run_many`` on the session's real cluster: 50 loops as Ray tasks with a concurrency
bound, results in order, two injected failures (a planner that raises, a worker process
that dies) staying with their own requests, records redacted on the worker, bad input."""

from __future__ import annotations

import io
import os
import sys
from typing import Any

import pytest
import ray
from agently_core_ray import run_many
from agently_core_ray.many import Progress

from agently_core.models import FlowResult

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
