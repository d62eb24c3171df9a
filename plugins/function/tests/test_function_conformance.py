"""The local function executor passes the executor conformance suite."""

from __future__ import annotations

import time
from typing import Any

import anyio
from agently_core_function.executor import FunctionExecutor

from agently_core.errors import ActionError
from agently_core.models import ActionSpec
from agently_core.schema import function_schema
from agently_core.testing import ExecutorConformance, make_agent, make_plugin, make_plugin_manager


def echo(message: str) -> str:
    """Return the message (a sync function: it runs in a worker thread)."""
    return message


def raises(message: str) -> None:
    """Fail with the message."""
    raise ValueError(message)


async def slow(seconds: float) -> str:
    """Sleep on the event loop; cancelled by the timeout."""
    await anyio.sleep(seconds)
    return "finished"


def concurrent(seconds: float, message: str) -> str:
    """Block a worker thread, never the loop."""
    time.sleep(seconds)
    return message


SCENARIOS = {"echo": echo, "raises": raises, "slow": slow, "concurrent": concurrent}


def function_action(fn: Any) -> tuple[ActionSpec, Any]:
    schema = function_schema(fn)
    spec = ActionSpec(name=schema.name, description=schema.description,
                      input_schema=schema.input_schema, kind="function")
    return spec, fn


class TestFunctionExecutorConformance(ExecutorConformance):
    kind = "function"

    def make_executor(self) -> FunctionExecutor:
        return FunctionExecutor()

    def make_action(self, scenario: str) -> tuple[ActionSpec, Any]:
        return function_action(SCENARIOS[scenario])


class TestAsyncFunctionExecutorConformance(ExecutorConformance):
    """The same contract with async functions, and with ActionError for failures."""

    kind = "function"

    def make_executor(self) -> FunctionExecutor:
        return FunctionExecutor(max_threads=2)

    def make_action(self, scenario: str) -> tuple[ActionSpec, Any]:
        async def echo(message: str) -> str:
            return message

        async def raises(message: str) -> None:
            raise ActionError(message)

        async def concurrent(seconds: float, message: str) -> str:
            await anyio.sleep(seconds)
            return message

        targets = {"echo": echo, "raises": raises, "slow": slow, "concurrent": concurrent}
        return function_action(targets[scenario])


def _run_sync_action(fn: Any, kwargs: dict[str, Any], timeout: float | None = None) -> Any:
    plugin = make_plugin(action_executor={"function": FunctionExecutor})
    agent = make_agent(make_plugin_manager(plugin))
    agent.action_func(fn)

    async def call() -> Any:
        started = anyio.current_time()
        record = await agent.action.async_execute_action(fn.__name__, kwargs, timeout=timeout)
        return record, anyio.current_time() - started

    return anyio.run(call)


def test_sync_function_past_its_timeout_is_abandoned_on_time() -> None:
    def stuck(seconds: float) -> str:
        time.sleep(seconds)
        return "late"

    record, elapsed = _run_sync_action(stuck, {"seconds": 1.0}, timeout=0.2)
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert elapsed < 0.8


def test_agently_plugin_manager_fixture_runs_the_executor(agently_plugin_manager: Any) -> None:
    manager = agently_plugin_manager(executors={"function": FunctionExecutor})
    agent = make_agent(manager)
    agent.action_func(echo)
    record = agent.action.execute_action("echo", {"message": "hi"})
    assert record.status == "success" and record.result == "hi"


def test_function_raising_timeout_error_gives_a_failed_record() -> None:
    def lookup() -> None:
        raise TimeoutError("the upstream service did not answer")

    record, _ = _run_sync_action(lookup, {})
    assert record.status == "failed"
    assert "upstream service" in (record.error or "")
