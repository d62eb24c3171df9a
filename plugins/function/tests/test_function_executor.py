"""FunctionExecutor directly and through an agent: async on the loop, sync in worker
threads, the thread cap, failures, and the entry point that registers it."""

from __future__ import annotations

import functools
import gc
import sys
import threading
import time

import anyio
import pytest
from agently_core_function.executor import FunctionExecutor

from agently_core import ActionError
from agently_core.actions import ActionContext
from agently_core.models import ActionCall, ActionSpec, Policy
from agently_core.protocols import ActionExecutor


def context_for(fn, name: str = "f") -> ActionContext:
    spec = ActionSpec(name=name)
    return ActionContext(ActionCall(action=name), spec, Policy(), target=fn)


async def run(executor: FunctionExecutor, fn, **kwargs):
    context = context_for(fn)
    return await executor.execute(context.spec, kwargs, context)


# -- directly ----------------------------------------------------------------------------------
def test_satisfies_the_protocol() -> None:
    executor = FunctionExecutor()
    assert isinstance(executor, ActionExecutor)
    assert executor.kind == "function"


@pytest.mark.anyio
async def test_async_function_runs_on_the_loop() -> None:
    loop_thread = threading.get_ident()

    async def where(tag: str) -> tuple[str, int]:
        await anyio.sleep(0)
        return tag, threading.get_ident()

    assert await run(FunctionExecutor(), where, tag="t") == ("t", loop_thread)


@pytest.mark.anyio
async def test_sync_function_runs_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    def where(tag: str) -> tuple[str, int]:
        return tag, threading.get_ident()

    tag, thread = await run(FunctionExecutor(), where, tag="t")
    assert tag == "t" and thread != loop_thread


@pytest.mark.anyio
async def test_sync_function_does_not_block_the_loop() -> None:
    ticks = 0

    def block() -> str:
        time.sleep(0.2)
        return "done"

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(heartbeat)
        assert await run(FunctionExecutor(), block) == "done"
        group.cancel_scope.cancel()
    assert ticks >= 8


@pytest.mark.anyio
async def test_sync_calls_run_concurrently_up_to_max_threads() -> None:
    def nap() -> None:
        time.sleep(0.1)

    for max_threads, low, high in ((4, 0.09, 0.19), (1, 0.38, 1.0)):
        executor = FunctionExecutor(max_threads=max_threads)
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(run, executor, nap)
        elapsed = time.perf_counter() - started
        assert low <= elapsed < high, (max_threads, elapsed)


@pytest.mark.anyio
async def test_sync_function_returning_an_awaitable_is_awaited() -> None:
    async def later() -> str:
        return "awaited"

    def make() -> object:
        return later()

    assert await run(FunctionExecutor(), make) == "awaited"


@pytest.mark.anyio
async def test_partial_and_wrapped_functions() -> None:
    async def scaled(x: int, factor: int) -> int:
        return x * factor

    @functools.wraps(scaled)
    async def wrapped(**kwargs) -> int:
        return await scaled(**kwargs)

    executor = FunctionExecutor()
    assert await run(executor, functools.partial(scaled, factor=3), x=2) == 6
    assert await run(executor, wrapped, x=2, factor=5) == 10


@pytest.mark.anyio
async def test_exceptions_propagate_to_the_dispatcher() -> None:
    def boom() -> None:
        raise ValueError("bad")

    async def boom_async() -> None:
        raise KeyError("worse")

    with pytest.raises(ValueError, match="bad"):
        await run(FunctionExecutor(), boom)
    with pytest.raises(KeyError):
        await run(FunctionExecutor(), boom_async)


@pytest.mark.anyio
async def test_missing_target_is_an_action_error() -> None:
    with pytest.raises(ActionError, match="no function bound"):
        await run(FunctionExecutor(), None)
    with pytest.raises(ActionError):
        await run(FunctionExecutor(), "not callable")


@pytest.mark.anyio
async def test_cancellation_abandons_a_blocking_sync_function() -> None:
    def block() -> str:
        time.sleep(0.5)
        return "late"

    started = time.perf_counter()
    with anyio.move_on_after(0.1):
        await run(FunctionExecutor(), block)
    assert time.perf_counter() - started < 0.4


@pytest.mark.anyio
async def test_async_cache_survives_id_reuse() -> None:
    executor = FunctionExecutor()

    def make_async():
        async def f() -> str:
            return "async"
        return f

    def make_sync():
        def f() -> str:
            return "sync"
        return f

    for _ in range(200):
        fn = make_async()
        assert await run(executor, fn) == "async"
        old_id = id(fn)
        del fn
        gc.collect()
        candidate = make_sync()
        if id(candidate) == old_id:
            assert await run(executor, candidate) == "sync"
            return
    # no id was reused this time: the property still holds for a fresh sync function
    assert await run(executor, make_sync()) == "sync"


# -- through an agent ------------------------------------------------------------------------
def test_registered_by_entry_point_and_lazy(make_agent) -> None:
    agent = make_agent()
    registration = agent.plugins.select("action_executor", kind="function")
    assert registration.distribution == "agently-core-function"
    assert registration.factory == "agently_core_function.executor:FunctionExecutor"
    assert registration.load() is FunctionExecutor
    assert "agently_core_function.plugin" in sys.modules


def test_agent_uses_one_executor_for_all_function_actions(make_agent) -> None:
    agent = make_agent()

    @agent.action_func
    def one() -> int:
        return 1

    @agent.action_func
    async def two() -> int:
        return 2

    assert agent.action.execute_action("one").result == 1
    assert agent.action.execute_action("two").result == 2
    executors = {agent.registry.require(n).executor for n in ("one", "two")}
    assert len(executors) == 1
    assert isinstance(executors.pop(), FunctionExecutor)


def test_examples_package_through_the_agent(make_agent) -> None:
    agent = make_agent()
    agent.use_actions("examples")
    records = agent.action.execute_actions([
        {"action": "add", "kwargs": {"a": 1, "b": 2}},
        {"action": "multiply", "kwargs": {"a": 3, "b": 4}},
        {"action": "word_count", "kwargs": {"text": "one two"}},
        {"action": "echo", "kwargs": {"message": "hey", "repeat": 3}},
        {"action": "echo", "kwargs": {"repeat": 3}},
    ])
    assert [r.result for r in records[:4]] == [3, 12, {"words": 2, "characters": 7},
                                               "hey hey hey"]
    assert records[4].status == "failed" and "message" in records[4].error


def test_executor_pinned_by_name(make_agent) -> None:
    agent = make_agent()
    agent.action.register_action({"name": "pinned", "kind": "function", "executor": "function"},
                                 lambda: "pinned ok")
    assert agent.action.execute_action("pinned").result == "pinned ok"
    agent.action.register_action({"name": "ghost", "kind": "function", "executor": "nope"},
                                 lambda: "never")
    record = agent.action.execute_action("ghost")
    assert record.status == "failed" and record.error_type == "NotInstalledError"


def test_timeout_through_the_agent(make_agent) -> None:
    agent = make_agent()

    @agent.action_func(timeout=0.1)
    def stuck() -> None:
        time.sleep(0.5)

    started = time.perf_counter()
    record = agent.action.execute_action("stuck")
    assert record.error_type == "TimeoutError"
    assert time.perf_counter() - started < 0.5
