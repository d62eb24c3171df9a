"""Conformance suite for :class:`~agently_core.protocols.ActionExecutor` plugins."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio

from ._base import ConformanceSuite, close_quietly, fail
from .harness import Heartbeat, make_agent, make_plugin, make_plugin_manager

SCENARIOS = ("echo", "raises", "slow", "concurrent")


class ExecutorConformance(ConformanceSuite):
    """Proves an executor keeps the :class:`~agently_core.protocols.ActionExecutor`
    contract, running it the way the core does: registered through a plugin manager and
    driven by the real :class:`~agently_core.dispatch.ActionDispatcher` of an agent.

    Subclass it in a test module (the name must start with ``Test``) and supply::

        class TestMyExecutor(ExecutorConformance):
            kind = "python"
            def make_executor(self): return MyExecutor()
            def make_action(self, scenario): return ActionSpec(name=scenario, kind="python",
                                                              ...), target

    ``make_action(scenario)`` returns ``(spec, target)`` (``spec`` an
    :class:`~agently_core.models.ActionSpec` or a dict; ``target`` is what the executor
    finds as ``context.target``, ``None`` if it needs none). The spec's ``kind`` must be
    :attr:`kind`, and each scenario needs its own action name:

    ============== ================================= ======================================
    scenario       keyword arguments the suite sends what the action must do
    ============== ================================= ======================================
    ``echo``       ``message: str``                  return ``message`` unchanged
    ``raises``     ``message: str``                  fail (raise ``ActionError`` or any
                                                     exception) with ``message`` in the error
    ``slow``       ``seconds: float``                run at least ``seconds`` (the suite
                                                     times it out long before)
    ``concurrent`` ``seconds: float, message: str``  wait ``seconds`` without holding other
                                                     calls back, then return ``message``
    ============== ================================= ======================================

    Tunables (class attributes): :attr:`timeout_seconds`, :attr:`deadline_grace`,
    :attr:`slow_seconds`, :attr:`concurrent_calls`, :attr:`concurrent_seconds`,
    :attr:`max_loop_block`. Executors with an ``aclose()`` or ``close()`` are closed after
    each test; override :meth:`close_executor` to do more.
    """

    __test__ = False

    #: The action kind the executor serves (``ActionSpec.kind``); required.
    kind: ClassVar[str] = ""
    #: The name it is registered under; defaults to :attr:`kind`.
    executor_name: ClassVar[str | None] = None
    #: The per-call timeout used against the ``slow`` scenario.
    timeout_seconds: ClassVar[float] = 0.3
    #: How late after the timeout the record may arrive.
    deadline_grace: ClassVar[float] = 1.0
    #: How long the ``slow`` scenario is asked to run.
    slow_seconds: ClassVar[float] = 10.0
    #: How many ``concurrent`` calls run at once, and how long each waits.
    concurrent_calls: ClassVar[int] = 4
    concurrent_seconds: ClassVar[float] = 0.4
    #: The longest the event loop may stall while calls run.
    max_loop_block: ClassVar[float] = 0.25
    #: Messages the ``echo`` round trip sends.
    echo_messages: ClassVar[tuple[str, ...]] = (
        "hello",
        "",
        'ünïcödé ✓ "quoted" \\ back\\slash\nsecond line\t{"json": [1, 2]}',
    )

    # -- what a subclass supplies --------------------------------------------------------
    def make_executor(self) -> Any:
        """Return a new executor."""
        raise NotImplementedError(f"{type(self).__name__} must define make_executor()")

    def make_action(self, scenario: str) -> tuple[Any, Any]:
        """Return ``(spec, target)`` for ``scenario`` (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_action(scenario)")

    async def close_executor(self, executor: Any) -> None:
        """Release an executor the suite made (default: its ``aclose()``/``close()``)."""
        await close_quietly(executor)

    # -- plumbing ------------------------------------------------------------------------
    def _action(self, scenario: str) -> tuple[Any, Any]:
        from ..models import ActionSpec

        made = self.make_action(scenario)
        spec, target = made if isinstance(made, tuple) else (made, None)
        if isinstance(spec, Mapping):
            spec = ActionSpec.model_validate({"kind": self.kind, **spec})
        if not isinstance(spec, ActionSpec):
            fail(f"make_action({scenario!r}) must return (ActionSpec or dict, target), "
                 f"got {made!r}")
        if spec.kind != self.kind:
            fail(f"make_action({scenario!r}) returned a spec of kind {spec.kind!r}; "
                 f"the suite tests kind {self.kind!r}")
        return spec, target

    def _kind(self) -> str:
        if not self.kind:
            fail(f"{type(self).__name__} must set the class attribute `kind`")
        return self.kind

    async def _check(self, body: Any, *scenarios: str) -> None:
        """Run ``body(agent, names)`` with an agent whose only executor is the one under
        test, registered through a plugin manager, and the scenarios' actions mounted."""
        kind = self._kind()
        made: list[Any] = []

        def factory() -> Any:
            executor = self.make_executor()
            made.append(executor)
            return executor

        name = self.executor_name or kind
        plugin = make_plugin(f"conformance_{kind}_executor",
                             action_executor={name: (factory, {"kind": kind})})
        agent = make_agent(make_plugin_manager(plugin))
        names: dict[str, str] = {}
        for scenario in scenarios:
            spec, target = self._action(scenario)
            if spec.name in names.values():
                fail(f"make_action() gives scenarios {sorted(names)} and {scenario!r} the same "
                     f"action name {spec.name!r}; give each scenario its own name")
            agent.action.register_action(spec, target)
            names[scenario] = spec.name
        try:
            await body(agent, names)
        finally:
            for executor in made:
                await self.close_executor(executor)

    # -- the contract --------------------------------------------------------------------
    def test_kind_attribute(self) -> None:
        """The executor's ``kind`` is a non-empty string equal to the kind it serves."""
        kind = self._kind()

        async def check() -> None:
            executor = self.make_executor()
            try:
                found = getattr(executor, "kind", None)
                assert isinstance(found, str) and found, (
                    f"{type(executor).__name__}.kind must be a non-empty string, got {found!r}")
                assert found == kind, f"executor.kind is {found!r}, the suite expects {kind!r}"
            finally:
                await self.close_executor(executor)

        self.run(check)

    def test_satisfies_protocol(self) -> None:
        """``isinstance(executor, agently_core.protocols.ActionExecutor)`` holds."""
        from ..protocols import ActionExecutor

        async def check() -> None:
            executor = self.make_executor()
            try:
                assert isinstance(executor, ActionExecutor), (
                    f"{type(executor).__name__} does not satisfy protocols.ActionExecutor: it "
                    "needs a `kind` attribute and an async `execute(spec, kwargs, context)`")
            finally:
                await self.close_executor(executor)

        self.run(check)

    def test_registered_executor_is_selected_by_kind(self) -> None:
        """Registered through ``register_action_executors``, it is the one selected for its
        kind and its factory makes a working executor."""
        kind = self._kind()
        name = self.executor_name or kind
        plugin = make_plugin(action_executor={name: (self.make_executor, {"kind": kind})})
        manager = make_plugin_manager(plugin)
        registration = manager.select("action_executor", kind=kind)
        assert registration.name == name and registration.kind == kind

        async def check() -> None:
            executor = manager.create("action_executor", kind=kind)
            try:
                assert getattr(executor, "kind", None) == kind
            finally:
                await self.close_executor(executor)

        self.run(check)

    def test_execute_returns_the_result(self) -> None:
        """``await executor.execute(spec, kwargs, context)`` returns the action's value."""
        from ..actions import ActionContext
        from ..models import ActionCall, Policy

        spec, target = self._action("echo")

        async def check() -> None:
            executor = self.make_executor()
            try:
                for message in self.echo_messages:
                    kwargs = {"message": message}
                    context = ActionContext(ActionCall(action=spec.name, kwargs=kwargs), spec,
                                            Policy(), target)
                    pending = executor.execute(spec, dict(kwargs), context)
                    assert inspect.isawaitable(pending), "execute() must be a coroutine"
                    result = await pending
                    assert result == message, f"echo returned {result!r}, sent {message!r}"
            finally:
                await self.close_executor(executor)

        self.run(check)

    def test_round_trip_through_dispatcher(self) -> None:
        """Through an agent's dispatcher: a ``success`` record whose result is what the
        action returned and that survives JSON serialisation."""
        from ..models import ActionRecord

        async def body(agent: Any, names: dict[str, str]) -> None:
            for message in self.echo_messages:
                record = await agent.action.async_execute_action(names["echo"],
                                                                 {"message": message})
                assert record.status == "success", (
                    f"echo failed: {record.error_type}: {record.error}")
                assert record.result == message, f"result {record.result!r} != {message!r}"
                assert record.error is None and record.action == names["echo"]
                assert record.duration_ms >= 0
                again = ActionRecord.model_validate_json(record.model_dump_json())
                assert again.result == message

        self.run(self._check, body, "echo")

    def test_exception_becomes_failed_record(self) -> None:
        """A failing action gives a ``failed`` record with a clear error; the caller does not
        see an exception and the executor keeps working."""
        message = "conformance failure #42"

        async def body(agent: Any, names: dict[str, str]) -> None:
            record = await agent.action.async_execute_action(names["raises"],
                                                             {"message": message})
            assert record.status == "failed", f"expected failed, got {record.status}"
            assert record.error and message in record.error, (
                f"the error should carry the action's message {message!r}, got {record.error!r}")
            assert record.error_type, "a failed record names its error_type"
            assert record.result is None
            after = await agent.action.async_execute_action(names["echo"], {"message": "ok"})
            assert after.status == "success" and after.result == "ok", (
                f"the executor stopped working after a failure: {after.error}")

        self.run(self._check, body, "raises", "echo")

    def test_failure_is_isolated_among_concurrent_calls(self) -> None:
        """One failing call in a round leaves the others' records intact, in call order."""
        from ..models import ActionCall

        async def body(agent: Any, names: dict[str, str]) -> None:
            calls = [
                ActionCall(action=names["echo"], kwargs={"message": "first"}),
                ActionCall(action=names["raises"], kwargs={"message": "middle"}),
                ActionCall(action=names["echo"], kwargs={"message": "last"}),
            ]
            records = await agent.action.async_execute_actions(calls, concurrency=3)
            assert [r.status for r in records] == ["success", "failed", "success"], (
                [(r.status, r.error) for r in records])
            assert [r.call_id for r in records] == [c.id for c in calls]
            assert (records[0].result, records[2].result) == ("first", "last")

        self.run(self._check, body, "raises", "echo")

    def test_timeout_holds(self) -> None:
        """A call past its timeout gives the caller a ``failed`` ``TimeoutError`` record by
        the deadline (plus :attr:`deadline_grace`), and the executor keeps working."""
        timeout = self.timeout_seconds

        async def body(agent: Any, names: dict[str, str]) -> None:
            started = anyio.current_time()
            record = None
            with anyio.move_on_after(timeout + self.deadline_grace + 5):
                record = await agent.action.async_execute_action(
                    names["slow"], {"seconds": self.slow_seconds}, timeout=timeout)
            elapsed = anyio.current_time() - started
            if record is None:
                fail(f"no record {elapsed:.1f}s after a call with a {timeout}s timeout")
            assert elapsed <= timeout + self.deadline_grace, (
                f"the record arrived {elapsed:.2f}s after the call; the timeout was "
                f"{timeout}s (grace {self.deadline_grace}s)")
            assert record.status == "failed", (
                f"a call past its timeout must fail, got {record.status} {record.result!r}")
            assert record.error_type == "TimeoutError", (record.error_type, record.error)
            after = await agent.action.async_execute_action(names["echo"], {"message": "ok"})
            assert after.status == "success" and after.result == "ok", (
                f"the executor stopped working after a timeout: {after.error}")

        self.run(self._check, body, "slow", "echo")

    def test_concurrent_calls_do_not_block_each_other(self) -> None:
        """:attr:`concurrent_calls` calls of :attr:`concurrent_seconds` each finish in far
        less than their serial time, and the event loop keeps running meanwhile."""
        from ..models import ActionCall

        count, seconds = self.concurrent_calls, self.concurrent_seconds

        async def body(agent: Any, names: dict[str, str]) -> None:
            calls = [ActionCall(action=names["concurrent"],
                                kwargs={"seconds": seconds, "message": f"call-{i}"})
                     for i in range(count)]
            started = anyio.current_time()
            async with Heartbeat() as beat:
                records = await agent.action.async_execute_actions(calls, concurrency=count)
            elapsed = anyio.current_time() - started
            assert [r.status for r in records] == ["success"] * count, (
                [(r.status, r.error) for r in records])
            assert [r.result for r in records] == [f"call-{i}" for i in range(count)]
            assert elapsed < seconds * 2, (
                f"{count} calls of {seconds}s took {elapsed:.2f}s (serial: {count * seconds}s): "
                "calls block each other")
            assert beat.max_gap <= self.max_loop_block, (
                f"the event loop was blocked for {beat.max_gap:.2f}s while calls ran")

        self.run(self._check, body, "concurrent")


__all__ = ["SCENARIOS", "ExecutorConformance"]

