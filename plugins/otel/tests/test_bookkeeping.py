"""Open-span bookkeeping stays bounded and every span ends: idle entries are ended by the
reaper thread, the least recently active runs make room past ``max_open_spans``, bad
payloads never break the observer, concurrent runs never mix their spans."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from agently_core_otel import SpanObserver, observe
from agently_core_otel import attributes as attr
from opentelemetry.trace import StatusCode

from agently_core import EventCenter


def emit_all(center: EventCenter, events: list[tuple[str, dict[str, Any]]]) -> None:
    async def main() -> None:
        for event_type, payload in events:
            await center.emit(event_type, "test", **payload)

    anyio.run(main)


def test_idle_entries_are_ended_by_the_reaper(exporter, read_tree, wait_until) -> None:
    provider, memory = exporter
    center = EventCenter()
    observer = observe(center, tracer_provider=provider, idle_timeout=0.2, poll_interval=0.02)
    emit_all(center, [
        ("action.started", {"call_id": "lonely", "action": "hang"}),
        ("model.request", {"run_id": "run_idle", "round_index": 0, "model": "m"}),
        ("action.started", {"run_id": "run_idle", "call_id": "c1", "action": "hang"}),
    ])
    assert observer.open_spans == 5  # a tool outside any run; a run, its round, chat, tool
    wait_until(lambda: observer.open_spans == 0)
    wait_until(lambda: observer._reaper is None)  # the thread ends with the last open span
    tree = read_tree(memory)
    lonely = next(s for s in tree.named("execute_tool")
                  if s.attributes[attr.TOOL_CALL_ID] == "lonely")
    assert lonely.status.status_code == StatusCode.ERROR
    assert lonely.attributes[attr.ERROR_TYPE] == "idle_timeout"
    assert lonely.attributes[attr.INCOMPLETE] is True
    run = tree.one("invoke_agent")
    assert run.attributes[attr.STOP_REASON] == "idle_timeout"
    assert run.attributes[attr.INCOMPLETE] is True
    for span in tree.spans:  # ended at their last event, not when the reaper noticed
        assert span.end_time - span.start_time < 150_000_000, span.name


def test_open_spans_never_exceed_the_bound(exporter, read_tree) -> None:
    provider, memory = exporter
    center = EventCenter()
    observer = observe(center, tracer_provider=provider, max_open_spans=16)
    peak = 0

    async def main() -> None:
        nonlocal peak
        for n in range(300):  # runs whose calls never finish, and calls outside any run
            await center.emit("action.started", "test", run_id=f"run_{n}", call_id=f"c{n}",
                              action="stuck")
            await center.emit("action.started", "test", call_id=f"direct_{n}", action="stuck")
            peak = max(peak, observer.open_spans)
        await center.emit("action.completed", "test", run_id="run_0", call_id="c0",
                          action="stuck", status="success")  # its run was evicted long ago

    anyio.run(main)
    assert peak <= 16
    assert len(observer._runs) + len(observer._root.tools) <= 16
    tree = read_tree(memory)
    evicted = [s for s in tree.named("invoke_agent")
               if s.attributes.get(attr.STOP_REASON) == "evicted"]
    assert len(evicted) > 250
    assert all(s.status.status_code == StatusCode.ERROR for s in evicted)
    late = [s for s in tree.named("execute_tool") if s.attributes[attr.TOOL_CALL_ID] == "c0"
            and s.attributes.get(attr.ACTION_STATUS) == "success"]
    assert len(late) == 1  # a late event still ends as a span of its own
    observer.shutdown()
    assert observer.open_spans == 0


@pytest.mark.parametrize("payload", [
    {"call_id": 123, "action": None},
    {"call_id": ["x"], "action": {"a": 1}, "run_id": {"nested": True}},
    {"call_id": "c" * 10_000, "action": "a" * 10_000, "run_id": "r" * 10_000},
    {"run_id": "", "round_index": "1", "call_id": "ok", "action": "ok"},
    {"round_index": -1, "model": 7, "input_tokens": True, "latency_ms": "fast"},
])
def test_malformed_payloads_never_break_the_observer(exporter, read_tree, payload) -> None:
    provider, memory = exporter
    center = EventCenter()
    observer = observe(center, tracer_provider=provider)
    types = ["run.started", "round.started", "model.request", "model.delta", "model.response",
             "model.failed", "policy.approval.requested", "action.started", "action.failed",
             "action.completed", "round.completed", "run.completed", "policy.approval.resumed"]
    emit_all(center, [(t, payload) for t in types])
    assert center.failures == []
    observer.shutdown()
    assert observer.open_spans == 0
    for span in read_tree(memory).spans:
        assert len(span.name) <= len("execute_tool ") + attr.MAX_TEXT
        for value in span.attributes.values():
            assert not isinstance(value, str) or len(value) <= attr.MAX_TEXT


def test_shutdown_ends_everything_and_unsubscribes(exporter, read_tree) -> None:
    provider, memory = exporter
    center = EventCenter()
    observer = observe(center, tracer_provider=provider)
    emit_all(center, [("model.request", {"run_id": "r", "round_index": 0, "model": "m"})])
    assert observer.open_spans == 3
    observer.shutdown()
    assert observer.open_spans == 0
    assert not center.active  # nobody observes: emitting is free again
    assert {s.name for s in read_tree(memory).spans} == {"invoke_agent", "agently.round",
                                                         "chat m"}


def test_concurrent_runs_keep_their_own_spans(make_agent, exporter, read_tree) -> None:
    provider, memory = exporter
    agent = make_agent()
    observer = SpanObserver(tracer_provider=provider)
    agent.manager.events.subscribe(observer)

    @agent.action_func
    async def tag(run: int, call: int) -> str:
        """Sleep a little, then name the call."""
        await anyio.sleep(0.01 * ((run + call) % 3))
        return f"{run}:{call}"

    agent.use_actions(["tag"])
    results: dict[int, Any] = {}

    def steps(run: int) -> list[Any]:
        return [[("tag", {"run": run, "call": c}) for c in range(4)],
                [("tag", {"run": run, "call": 4})], f"done {run}"]

    async def one(run: int) -> None:
        from agently_core_runtime.planners import ScriptedPlanner

        # a run takes the agent's planner when it starts, before its first await
        agent.set_planner(ScriptedPlanner(steps(run)))
        results[run] = await agent.async_run("go", concurrency=4)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for run in range(6):
                group.start_soon(one, run)
                await anyio.sleep(0)

    try:
        anyio.run(main)
        observer.flush()
    finally:
        agent.close()
    tree = read_tree(memory)
    runs = {s.attributes[attr.RUN_ID]: s for s in tree.named("invoke_agent")}
    assert len(runs) == 6
    by_call = {r.call_id: (run, r) for run, res in results.items() for r in res.records}
    assert len(by_call) == len(tree.named("execute_tool"))
    for span in tree.named("execute_tool"):
        run, record = by_call[span.attributes[attr.TOOL_CALL_ID]]
        assert tree.run_of(span).attributes[attr.RUN_ID] == results[run].execution_id
        assert record.result == f"{record.kwargs['run']}:{record.kwargs['call']}"
    assert observer.open_spans == 0


_AT_EXIT = """
import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(
    formatter=lambda span: f"{span.name}|{span.attributes.get('error.type')}\\n")))
trace.set_tracer_provider(provider)
from agently_core import EventCenter
from agently_core_otel import observe

center = EventCenter()
observe(center)
anyio.run(lambda: center.emit("action.started", "test", call_id="c1", action="hang"))
print("exiting")
"""


def test_open_spans_are_ended_and_exported_at_interpreter_exit(tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _AT_EXIT], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["exiting", "execute_tool hang|shutdown"]
