"""Every scope ends with its owner, and every exit is clean.

* a direct call is its own request: a request-scoped sandbox ends with the call;
* ``agent.close()`` releases what the agent's calls started in every scope it owns;
* a host's own event loop that ends (``asyncio.run``) takes its sandboxes with it: no
  ``Event loop is closed`` traceback at exit, no process left;
* after ``Execution.close()`` its environments report ``released``.

Real Python sandboxes (agently-core-python) throughout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import agently_core
from agently_core._sync import run_sync
from agently_core.models import EnvironmentRequirement


@pytest.fixture
def agent():
    agent = agently_core.create_agent(config={"providers": {}})
    events: list[str] = []
    agent.events.subscribe(lambda event: events.append(event.type), "execution_environment.*")
    agent.seen = events
    yield agent
    agent.close()


def test_a_direct_call_ends_its_request_scope(agent) -> None:
    agent.enable_python(scope="request")
    for number in range(3):
        record = agent.action.execute_action("run_python", {"python_code": f"x = {number}"})
        assert record.status == "success", record.error
        assert agent.manager.list(kind="python") == []  # gone with the call
    assert agent.seen.count("execution_environment.ready") == 3
    assert agent.seen.count("execution_environment.released") == 3
    assert agent.dispatcher.owners == set()


def test_a_run_ends_its_request_scope(agent) -> None:
    agent.enable_python(scope="request")
    agent.use_actions(["run_python"]).set_planner(
        [[("run_python", {"python_code": "y = 1"})], [("run_python", {"python_code": "y"})],
         "done"])
    records = agent.input("twice").get_action_result()
    assert [r.status for r in records] == ["success", "success"]
    assert records[1].result["value"] == "1"  # one worker for the whole request
    assert agent.manager.list(kind="python") == []
    assert agent.seen.count("execution_environment.released") == 1


def test_agent_close_releases_every_scope_it_started(agent) -> None:
    agent.enable_python(scope="agent")
    agent.enable_python(scope="request", name="run_python_request")
    execution = agent.create_execution(execution_environments=[
        EnvironmentRequirement(kind="python", scope="execution", resource_key="py")])
    run_sync(execution.async_start)  # left open: the agent must close it
    assert agent.action.execute_action("run_python", {"python_code": "1"}).status == "success"
    assert len(agent.manager.list(kind="python")) == 2  # the agent's and the execution's
    agent.close()
    assert agent.manager.list() == []
    assert agent.dispatcher.owners == set()


def test_execution_close_reports_released_environments(agent) -> None:
    execution = agent.create_execution(execution_environments=[
        EnvironmentRequirement(kind="python", scope="execution", resource_key="py")])
    run_sync(execution.async_start)
    assert [h.status for h in execution.handles.values()] == ["ready"]
    snapshot = execution.close()
    assert [h.status for h in snapshot.environments] == ["released"]
    assert [h.ref_count for h in snapshot.environments] == [0]
    assert agent.manager.list() == []


SCRIPT = textwrap.dedent("""
    import asyncio, agently_core

    async def main():
        agent = agently_core.create_agent()
        agent.manager.events.subscribe(lambda e: print("released", flush=True),
                                       "execution_environment.released")
        agent.enable_python()
        record = await agent.action.async_execute_action("run_python", {"python_code": "2 + 3"})
        print("result", record.status, record.result and record.result["value"], flush=True)
        worker = agent.manager.resource(agent.manager.list(kind="python")[0])
        print("pid", worker.process.pid, flush=True)
        # returns without agent.close()

    asyncio.run(main())
    print("after the loop", flush=True)
""")


def test_a_host_loop_that_ends_without_close_leaves_no_traceback_and_no_process() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr
    assert "result success 5" in done.stdout
    lines = done.stdout.splitlines()
    # released while the loop still ran (before asyncio.run returned), not at exit
    assert lines.index("released") < lines.index("after the loop"), done.stdout
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr, \
        done.stderr
    pid = int(next(line.split()[1] for line in lines if line.startswith("pid ")))
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
