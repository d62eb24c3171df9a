"""Issue 12: ``get_action_result(timeout=N)`` bounds the whole action loop.

A planner that never answers, an action that never returns (async, a blocking sync
function, code in a real Python sandbox) and environments that never start: the loop ends
on time with an ``ActionLoopStalled`` record that says where it stalled and after how
long; what finished before is kept; environments are released; other runs go on.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from agently_core.testing import MemoryProvider, require_program

STALLED = "ActionLoopStalled"


@pytest.fixture
def agent(agently_agent_factory):
    agent = agently_agent_factory()

    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @agent.action_func
    async def hang() -> str:
        """Never returns."""
        await anyio.sleep_forever()
        return "never"

    agent.use_actions([add, hang])
    return agent


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    value = function(*args, **kwargs)
    return value, time.monotonic() - started


def test_a_planner_that_never_answers_is_stopped_on_time(agent) -> None:
    async def planning_handler(context, request):
        await anyio.sleep_forever()

    agent.register_action_planning_handler(planning_handler)
    completed = []
    agent.events.subscribe(lambda event: completed.append(event.payload), "run.completed")
    agent.input("add 1 and 2")
    records, elapsed = timed(agent.get_action_result, timeout=0.5)
    assert 0.5 <= elapsed < 3
    [record] = records
    assert (record.status, record.error_type, record.action) == ("failed", STALLED, "<planning>")
    assert record.error == ("the action loop stalled: no result after 0.5 s, while "
                            "planning round 0")
    assert record.meta == {"diagnostic_code": "action_loop.stalled", "stage": "planning",
                           "timeout_s": 0.5}
    run = agent.last_run
    assert run.stop_reason == "failed" and run.records == records
    assert run.error.startswith("the action loop stalled: no result after 0.5 s, while "
                                "planning round 0; it was stopped")
    assert agent.last_execution.state == "closed"
    [event] = completed  # observers see the run end, with what ended it
    assert (event["run_id"], event["stop_reason"], event["error_type"], event["records"]) == (
        run.execution_id, "failed", STALLED, 1)


def test_a_stall_in_a_later_round_keeps_what_ran_before(agent) -> None:
    async def planning_handler(context, request):
        if context.round_index == 0:
            return [{"action": "add", "kwargs": {"a": 1, "b": 2}}]
        await anyio.sleep_forever()

    agent.register_action_planning_handler(planning_handler)
    agent.input("x")
    first, stalled = agent.get_action_result(timeout=1)
    assert (first.action, first.result) == ("add", 3)
    assert stalled.error_type == STALLED and stalled.round_index == 1
    assert "planning round 1" in stalled.error
    assert len(agent.last_run.rounds) == 1


def test_an_action_that_never_returns_is_stopped_and_the_finished_ones_kept(agent) -> None:
    agent.set_planner([[("add", {"a": 2, "b": 2}), ("hang", {})]])
    agent.input("x")
    records, elapsed = timed(agent.get_action_result, timeout=0.5, concurrency=2)
    assert elapsed < 3
    added, hung = records
    assert (added.status, added.result) == ("success", 4)
    assert (hung.action, hung.status, hung.error_type) == ("hang", "failed", STALLED)
    assert hung.call_id == agent.last_run.rounds[0].decision.calls[1].id
    assert hung.error == ("action 'hang' did not finish within the run's time bound of "
                          "0.5 s (executing round 0); it was cancelled")
    assert agent.last_run.rounds[0].record_ids == [added.call_id, hung.call_id]
    assert "while executing round 0 (unfinished calls: hang)" in agent.last_run.error


def test_a_blocking_sync_action_does_not_hold_the_loop(agent) -> None:
    release = threading.Event()

    @agent.action_func
    def block() -> str:
        """Blocks its thread until the test releases it."""
        release.wait(30)
        return "released"

    agent.use_actions(block)
    agent.set_planner([[("block", {})]])
    agent.input("x")
    try:
        records, elapsed = timed(agent.get_action_result, timeout=0.5)
    finally:
        release.set()
    assert elapsed < 3
    assert records[0].error_type == STALLED and records[0].action == "block"


def test_an_execution_handler_that_never_returns_is_stopped(agent) -> None:
    async def execution_handler(context, request):
        await anyio.sleep_forever()

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 1, "b": 1})]])
    agent.input("x")
    [record] = agent.get_action_result(timeout=0.5)
    assert record.action == "add" and record.error_type == STALLED
    assert "executing round 0" in record.error


def test_a_planner_that_answers_in_time_is_not_touched(agent) -> None:
    agent.set_planner([[("add", {"a": 1, "b": 1})]], response="two")
    agent.input("x")
    [record] = agent.get_action_result(timeout=30)
    assert record.result == 2 and agent.last_run.response == "two"
    assert agent.last_run.stop_reason == "response"


@pytest.mark.parametrize("bad", [0, -1, "5", True, float("nan")])
def test_a_bad_timeout_is_refused(agent, bad) -> None:
    agent.set_planner(["done"])
    agent.input("x")
    with pytest.raises(ValueError, match="timeout must be a number of seconds above 0"):
        agent.get_action_result(timeout=bad)


def test_environments_that_never_start_are_stopped_and_released(build_agent) -> None:
    provider = MemoryProvider()
    agent = build_agent(providers={"memory": lambda: provider})
    agent.set_planner(["done"])
    agent.input("x")
    records = agent.get_action_result(timeout=0.5, execution_environments=[
        {"kind": "memory", "scope": "execution", "config": {"start_delay": 30}}])
    assert records[0].error_type == STALLED and records[0].action == "<starting>"
    assert "while starting the execution's environments" in records[0].error
    assert agent.manager.list(kind="memory") == []
    assert provider.live == []


@pytest.mark.anyio
async def test_environments_of_a_stalled_call_are_released(build_agent) -> None:
    provider = MemoryProvider()
    agent = build_agent(providers={"memory": lambda: provider})

    @agent.action_func(execution_environments=[{"kind": "memory", "scope": "action_call"}])
    async def stuck(action_context) -> None:
        """Holds its environment and never returns."""
        await anyio.sleep_forever()

    agent.use_actions(stuck)
    agent.set_planner([[("stuck", {})]])
    result = await agent.async_run("x", timeout=0.5, execution_environments=[
        {"kind": "memory", "scope": "execution"}])
    assert result.records[0].error_type == STALLED
    assert agent.manager.list(kind="memory") == []
    assert len(provider.started) == len(provider.released) == 2
    assert provider.live == [] and provider.double_releases == []


@pytest.mark.anyio
async def test_other_runs_are_unaffected(agently_agent_factory) -> None:
    stalled, steady = agently_agent_factory(), agently_agent_factory()

    @stalled.action_func
    async def hang() -> None:
        """Never returns."""
        await anyio.sleep_forever()

    @steady.action_func
    async def slow(seconds: float) -> str:
        """Sleeps, then answers."""
        await anyio.sleep(seconds)
        return "slept"

    stalled.use_actions(hang)
    steady.use_actions(slow)
    stalled.set_planner([[("hang", {})]])
    steady.set_planner([[("slow", {"seconds": 1.0})]], response="fine")
    results: dict[str, Any] = {}

    async def run(name: str, agent: Any, timeout: float | None) -> None:
        results[name] = await agent.async_run("x", timeout=timeout)

    async with anyio.create_task_group() as group:
        group.start_soon(run, "stalled", stalled, 0.3)
        group.start_soon(run, "steady", steady, None)
    assert results["stalled"].records[0].error_type == STALLED
    assert results["steady"].stop_reason == "response" and results["steady"].response == "fine"
    assert results["steady"].records[0].result == "slept"
    # and the stalled agent runs again
    stalled.set_planner(["again"])
    assert (await stalled.async_run("y", timeout=5)).response == "again"


def test_a_python_sandbox_running_forever_is_killed(agently_agent_factory) -> None:
    require_program("bwrap", "bubblewrap")
    from agently_core_isolation.testing import running, sleep_marker, wait_gone

    agent = agently_agent_factory()
    agent.enable_python(scope="request")
    marker = sleep_marker()
    code = (f"import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\n"
            "time.sleep(3600)")
    agent.set_planner([[("run_python", {"python_code": code})]])
    agent.input("x")
    deadline = time.monotonic() + 20
    records = agent.get_action_result(timeout=3)
    assert time.monotonic() < deadline
    assert records[0].action == "run_python" and records[0].error_type == STALLED, records
    assert wait_gone(marker, timeout=5) == [], "a process of the stalled sandbox survived"
    assert not running(marker)
    assert agent.manager.list(kind="python") == []


def test_a_stall_between_stages_records_each_call_once(agent) -> None:
    async def environment_state() -> str:
        if agent.last_run is None and not seen:
            seen.append(1)
            return "ready"
        await anyio.sleep_forever()

    seen: list[int] = []
    agent.set_env_state(environment_state)  # asked before every round: hangs in round 1
    agent.set_planner([[("add", {"a": 1, "b": 2})]])
    agent.input("x")
    added, stalled = agent.get_action_result(timeout=0.5)
    assert (added.action, added.result) == ("add", 3)
    assert (stalled.action, stalled.error_type, stalled.round_index) == (
        "<planning>", STALLED, 1)


def test_a_stall_after_every_call_finished_still_says_so(agent) -> None:
    async def execution_handler(context, request):
        records = [await request.async_call_action(c) for c in request.action_calls]
        await anyio.sleep_forever()  # all calls ran; the handler never hands them back
        return records

    agent.register_action_execution_handler(execution_handler)
    agent.set_planner([[("add", {"a": 1, "b": 2})]])
    agent.input("x")
    added, stalled = agent.get_action_result(timeout=0.5)
    assert (added.action, added.status, added.result) == ("add", "success", 3)
    assert (stalled.action, stalled.error_type) == ("<executing>", STALLED)
    assert "while executing round 0" in stalled.error
