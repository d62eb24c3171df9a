"""Conformance suite for :class:`~agently_core.protocols.ActionExecutor` plugins."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio

from ._base import ConformanceSuite, close_quietly, fail
from .harness import Heartbeat, make_agent, make_plugin, make_plugin_manager

SCENARIOS = ("echo", "raises", "slow", "concurrent")
#: The scenarios every executor's test supplies; the others are optional.
REQUIRED_SCENARIOS = ("echo", "raises")
#: The owner the suite's own environment ensures (outside a dispatcher) are made for.
SUITE_OWNER = "executor-conformance"


class ExecutorConformance(ConformanceSuite):
    """Proves an executor keeps the :class:`~agently_core.protocols.ActionExecutor`
    contract, running it the way the core does: registered through a plugin manager and
    driven by the real :class:`~agently_core.dispatch.ActionDispatcher` of an agent, with
    the execution environments its actions declare ensured by the agent's
    :class:`~agently_core.environments.ExecutionEnvironmentManager` from the provider the
    test supplies.

    Subclass it in a test module (the name must start with ``Test``) and supply::

        class TestMyExecutor(ExecutorConformance):
            kind = "python"
            def make_executor(self): return MyExecutor()
            def make_action(self, scenario): return ActionSpec(name=scenario, kind="python",
                                                              ...), target

    ``make_action(scenario)`` returns ``(spec, target)`` (``spec`` an
    :class:`~agently_core.models.ActionSpec` or a dict; ``target`` is what the executor
    finds as ``context.target``, ``None`` if it needs none). The spec's ``kind`` must be
    :attr:`kind`, and each scenario needs its own action name. The suite calls each
    scenario's action with the keyword arguments below, passed through
    :meth:`make_kwargs`, and compares what came back through :meth:`result_value`:

    ============== ================================= ======================================
    scenario       keyword arguments the suite sends what the action must do
    ============== ================================= ======================================
    ``echo``       ``message: str``                  return ``message`` unchanged
    ``raises``     ``message: str``                  fail (raise ``ActionError`` or any
                                                     exception) with ``message`` in the error
    ``slow``       ``seconds: float``                run at least ``seconds`` (the suite
                                                     times it out, or cancels its caller,
                                                     long before)
    ``concurrent`` ``seconds: float, message: str``  wait ``seconds`` without holding other
                                                     calls back, then return ``message``
    ============== ================================= ======================================

    ``echo`` and ``raises`` are required; list the scenarios you supply in
    :attr:`scenarios`: a case that needs one you do not supply is not generated.

    **Executors that run code or queries.** Override :meth:`make_kwargs` to turn the
    scenario's values into the action's own arguments (``{"python_code": ...}``, a query
    and its parameters) and :meth:`result_value` to pick the scenario's answer out of the
    result (``result["stdout"]``, the first cell of the first row).

    **Executors backed by an environment.** When the actions declare
    ``execution_environments`` (a sandbox worker, a connection, an MCP session), return
    the :class:`~agently_core.protocols.ExecutionEnvironmentProvider` of their kind from
    :meth:`make_provider`. The suite registers it beside the executor, so the agent's
    environment manager ensures, reuses and releases the environments exactly as in
    production, and the direct ``execute`` case ensures them through an
    ``ExecutionEnvironmentManager`` of its own and puts the handles and resources in the
    :class:`~agently_core.actions.ActionContext` under each requirement's resource key, as
    the dispatcher does. Every environment ensured must be released when the agent closes.

    Cases that hold for any executor, whether or not it runs code: arguments that break
    the action's input schema give a ``failed`` record naming the problem; a ``raises``
    failure is a ``failed`` record and does not stop the executor; results survive JSON;
    a timeout, and a caller that gives up (cancellation), end the call on time.

    Tunables (class attributes): :attr:`timeout_seconds`, :attr:`deadline_grace`,
    :attr:`slow_seconds`, :attr:`concurrent_calls`, :attr:`concurrent_seconds`,
    :attr:`max_loop_block`. Executors with an ``aclose()`` or ``close()`` are closed after
    each test; override :meth:`close_executor` to do more (and :meth:`close_provider`).
    """

    __test__ = False

    #: The action kind the executor serves (``ActionSpec.kind``); required.
    kind: ClassVar[str] = ""
    #: The name it is registered under; defaults to :attr:`kind`.
    executor_name: ClassVar[str | None] = None
    #: The scenarios :meth:`make_action` supplies (``echo`` and ``raises`` at least).
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS
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

    #: Cases generated only for the scenarios (or the provider) they need.
    _NEEDS: ClassVar[dict[str, Any]] = {
        "test_timeout_holds": lambda c: "slow" in c.scenarios,
        "test_a_caller_that_gives_up_ends_the_call": lambda c: "slow" in c.scenarios,
        "test_concurrent_calls_do_not_block_each_other": lambda c: "concurrent" in c.scenarios,
        "test_environments_are_reused_and_released": lambda c: c._has_provider(),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, applies in cls._NEEDS.items():
            if not applies(cls):
                setattr(cls, name, None)  # not collected

    # -- what a subclass supplies --------------------------------------------------------
    def make_executor(self) -> Any:
        """Return a new executor."""
        raise NotImplementedError(f"{type(self).__name__} must define make_executor()")

    def make_action(self, scenario: str) -> tuple[Any, Any]:
        """Return ``(spec, target)`` for ``scenario`` (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_action(scenario)")

    def make_provider(self) -> Any:
        """Return the environment provider the actions' ``execution_environments`` need
        (its ``kind`` attribute names the kind it serves), or ``None`` (the default) when
        they declare none."""
        return None

    def make_kwargs(self, scenario: str, **values: Any) -> dict[str, Any]:
        """The action's keyword arguments for the scenario's ``values`` (default: the
        values themselves)."""
        return dict(values)

    def result_value(self, scenario: str, result: Any) -> Any:
        """The scenario's answer in the action's result (default: the result itself)."""
        return result

    async def close_executor(self, executor: Any) -> None:
        """Release an executor the suite made (default: its ``aclose()``/``close()``)."""
        await close_quietly(executor)

    async def close_provider(self, provider: Any) -> None:
        """Release a provider the suite made (default: its ``aclose()``/``close()``)."""
        await close_quietly(provider)

    # -- plumbing ------------------------------------------------------------------------
    @classmethod
    def _has_provider(cls) -> bool:
        return cls.make_provider is not ExecutorConformance.make_provider

    def _scenarios(self, *needed: str) -> None:
        missing = [s for s in dict.fromkeys((*REQUIRED_SCENARIOS, *needed))
                   if s not in self.scenarios]
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if missing or unknown:
            fail(f"{type(self).__name__}.scenarios is {self.scenarios!r}: "
                 + (f"it must include {missing}" if missing else f"unknown {unknown}; "
                    f"the scenarios are {SCENARIOS}"))

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

    def _kwargs(self, scenario: str, **values: Any) -> dict[str, Any]:
        made = self.make_kwargs(scenario, **values)
        if not isinstance(made, Mapping):
            fail(f"make_kwargs({scenario!r}, ...) must return a dict, got {made!r}")
        return dict(made)

    def _provider(self) -> tuple[Any, str] | None:
        """A new provider from :meth:`make_provider` and the kind it serves."""
        provider = self.make_provider()
        if provider is None:
            return None
        kind = getattr(provider, "kind", None)
        if not isinstance(kind, str) or not kind:
            fail(f"{type(provider).__name__}.kind must name the environment kind it serves, "
                 f"got {kind!r}")
        return provider, kind

    def _plugin(self, made: list[Any], provider: tuple[Any, str] | None) -> Any:
        """An in-code plugin registering the executor (and the provider) under test."""
        kind = self._kind()

        def executor_factory() -> Any:
            executor = self.make_executor()
            made.append(executor)
            return executor

        roles: dict[str, Any] = {
            "action_executor": {self.executor_name or kind: (executor_factory, {"kind": kind})}}
        if provider is not None:
            instance, provider_kind = provider
            name = getattr(instance, "name", None) or provider_kind
            roles["environment_provider"] = {name: (lambda: instance, {"kind": provider_kind})}
        return make_plugin(f"conformance_{kind}_executor", **roles)

    async def _check(self, body: Any, *scenarios: str) -> None:
        """Run ``body(agent, names)`` with an agent whose only executor is the one under
        test (and whose only provider the one :meth:`make_provider` gives), registered
        through a plugin manager, and the scenarios' actions mounted. The agent is closed
        afterwards, releasing its environments."""
        self._scenarios(*scenarios)
        made: list[Any] = []
        provider = self._provider()
        agent = make_agent(make_plugin_manager(self._plugin(made, provider)))
        names: dict[str, str] = {}
        try:
            for scenario in scenarios:
                spec, target = self._action(scenario)
                if spec.name in names.values():
                    fail(f"make_action() gives scenarios {sorted(names)} and {scenario!r} the "
                         f"same action name {spec.name!r}; give each scenario its own name")
                if spec.execution_environments and provider is None:
                    fail(f"the {scenario!r} action declares execution environments "
                         f"{[r.kind for r in spec.execution_environments]}; return their "
                         f"provider from {type(self).__name__}.make_provider()")
                agent.action.register_action(spec, target)
                names[scenario] = spec.name
            await body(agent, names)
        finally:
            with anyio.CancelScope(shield=True):
                await agent.aclose()
                for executor in made:
                    await self.close_executor(executor)
                if provider is not None:
                    await self.close_provider(provider[0])

    async def _call(self, agent: Any, names: dict[str, str], scenario: str, *,
                    timeout: float | None = None, **values: Any) -> Any:
        return await agent.action.async_execute_action(
            names[scenario], self._kwargs(scenario, **values), timeout=timeout)

    def _assert_echo(self, record: Any, message: str) -> None:
        assert record.status == "success", f"echo failed: {record.error_type}: {record.error}"
        found = self.result_value("echo", record.result)
        assert found == message, f"echo returned {found!r}, sent {message!r}"

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
        """``await executor.execute(spec, kwargs, context)`` returns the action's value, with
        the spec's environments ensured through an ``ExecutionEnvironmentManager`` and put
        in the context under their resource keys, as the dispatcher does."""
        from ..actions import ActionContext
        from ..environments import ExecutionEnvironmentManager
        from ..models import ActionCall, Policy

        self._scenarios()
        spec, target = self._action("echo")

        async def check() -> None:
            executor = self.make_executor()
            provider = self._provider()
            manager = ExecutionEnvironmentManager(
                make_plugin_manager(),
                providers={provider[1]: provider[0]} if provider is not None else None)
            try:
                for message in self.echo_messages:
                    kwargs = self._kwargs("echo", message=message)
                    call = ActionCall(action=spec.name, kwargs=kwargs)
                    context = ActionContext(call, spec, Policy(), target)
                    leases = []
                    try:
                        for requirement in spec.execution_environments:
                            handle = await manager.async_ensure(_owned(requirement, call.id))
                            leases.append(handle)
                            key = requirement.resource_key or requirement.kind
                            context.execution_environment_handles[key] = handle
                            context.execution_environment_resources[key] = manager.resource(handle)
                        pending = executor.execute(spec, dict(kwargs), context)
                        assert inspect.isawaitable(pending), "execute() must be a coroutine"
                        result = await pending
                    finally:
                        for handle in leases:
                            await manager.async_release(handle)
                    found = self.result_value("echo", result)
                    assert found == message, f"echo returned {found!r}, sent {message!r}"
                    json.dumps(result)  # JSON-able as it comes from the executor
            finally:
                with anyio.CancelScope(shield=True):
                    await manager.aclose()
                    assert manager.list() == [], "the manager kept environments after closing"
                    await self.close_executor(executor)
                    if provider is not None:
                        await self.close_provider(provider[0])

        self.run(check)

    def test_round_trip_through_dispatcher(self) -> None:
        """Through an agent's dispatcher: a ``success`` record whose result is what the
        action returned and that survives JSON serialisation."""
        from ..models import ActionRecord

        async def body(agent: Any, names: dict[str, str]) -> None:
            for message in self.echo_messages:
                record = await self._call(agent, names, "echo", message=message)
                self._assert_echo(record, message)
                assert record.error is None and record.action == names["echo"]
                assert record.duration_ms >= 0
                assert json.loads(json.dumps(record.result)) == record.result, (
                    f"the result does not survive JSON: {record.result!r}")
                again = ActionRecord.model_validate_json(record.model_dump_json())
                assert self.result_value("echo", again.result) == message

        self.run(self._check, body, "echo")

    def test_bad_kwargs_give_a_clear_error(self) -> None:
        """Arguments that break the action's input schema give a ``failed`` record that
        names the problem (none of its arguments; one it does not take when its schema
        allows no others), never an exception or a success, and the executor keeps
        working."""

        async def body(agent: Any, names: dict[str, str]) -> None:
            name = names["echo"]
            good = self._kwargs("echo", message="ok")
            record = await agent.action.async_execute_action(name, {})
            assert record.status == "failed", (
                f"a call without its arguments {sorted(good)} gave {record.status}: "
                f"{record.result!r}")
            assert record.error_type and record.error
            assert any(key in record.error for key in good), (
                f"the error should name the missing argument(s) {sorted(good)}: {record.error!r}")
            schema = agent.action.get_action_info(include_hidden=True)
            kwargs_schema = next(i["kwargs"] for i in schema if i["name"] == name)
            if kwargs_schema.get("additionalProperties") is False:
                record = await agent.action.async_execute_action(
                    name, {**good, "no_such_argument": 1})
                assert record.status == "failed" and record.error_type == "ArgumentsError", (
                    record.status, record.error_type, record.error)
                assert "no_such_argument" in (record.error or ""), record.error
            self._assert_echo(await self._call(agent, names, "echo", message="ok"), "ok")

        self.run(self._check, body, "echo")

    def test_exception_becomes_failed_record(self) -> None:
        """A failing action gives a ``failed`` record with a clear error; the caller does not
        see an exception and the executor keeps working."""
        message = "conformance failure #42"

        async def body(agent: Any, names: dict[str, str]) -> None:
            record = await self._call(agent, names, "raises", message=message)
            assert record.status == "failed", f"expected failed, got {record.status}"
            assert record.error and message in record.error, (
                f"the error should carry the action's message {message!r}, got {record.error!r}")
            assert record.error_type, "a failed record names its error_type"
            json.dumps(record.model_dump(mode="json"))
            after = await self._call(agent, names, "echo", message="ok")
            assert after.status == "success", (
                f"the executor stopped working after a failure: {after.error}")
            self._assert_echo(after, "ok")

        self.run(self._check, body, "raises", "echo")

    def test_failure_is_isolated_among_concurrent_calls(self) -> None:
        """One failing call in a round leaves the others' records intact, in call order."""
        from ..models import ActionCall

        async def body(agent: Any, names: dict[str, str]) -> None:
            calls = [
                ActionCall(action=names["echo"], kwargs=self._kwargs("echo", message="first")),
                ActionCall(action=names["raises"],
                           kwargs=self._kwargs("raises", message="middle")),
                ActionCall(action=names["echo"], kwargs=self._kwargs("echo", message="last")),
            ]
            records = await agent.action.async_execute_actions(calls, concurrency=3)
            assert [r.status for r in records] == ["success", "failed", "success"], (
                [(r.status, r.error) for r in records])
            assert [r.call_id for r in records] == [c.id for c in calls]
            self._assert_echo(records[0], "first")
            self._assert_echo(records[2], "last")

        self.run(self._check, body, "raises", "echo")

    def test_timeout_holds(self) -> None:
        """A call past its timeout gives the caller a ``failed`` ``TimeoutError`` record (or
        one of the executor's own ``...TimeoutError`` when it stops the call at the same
        deadline itself) by the deadline (plus :attr:`deadline_grace`), and the executor
        keeps working."""
        timeout = self.timeout_seconds

        async def body(agent: Any, names: dict[str, str]) -> None:
            started = anyio.current_time()
            record = None
            with anyio.move_on_after(timeout + self.deadline_grace + 5):
                record = await self._call(agent, names, "slow", timeout=timeout,
                                          seconds=self.slow_seconds)
            elapsed = anyio.current_time() - started
            if record is None:
                fail(f"no record {elapsed:.1f}s after a call with a {timeout}s timeout")
            assert elapsed <= timeout + self.deadline_grace, (
                f"the record arrived {elapsed:.2f}s after the call; the timeout was "
                f"{timeout}s (grace {self.deadline_grace}s)")
            assert record.status == "failed", (
                f"a call past its timeout must fail, got {record.status} {record.result!r}")
            # the dispatcher's TimeoutError, or the executor's own when it enforces the same
            # deadline itself and gets there first (SQLiteTimeoutError)
            assert record.error_type and record.error_type.endswith("TimeoutError"), (
                f"a call past its timeout must fail with a TimeoutError, got "
                f"{record.error_type}: {record.error}")
            after = await self._call(agent, names, "echo", message="ok")
            assert after.status == "success", (
                f"the executor stopped working after a timeout: {after.error}")
            self._assert_echo(after, "ok")

        self.run(self._check, body, "slow", "echo")

    def test_a_caller_that_gives_up_ends_the_call(self) -> None:
        """A caller cancelled while the call runs (no timeout on the call) gets control
        back by :attr:`deadline_grace`; the call's ``action_call`` environments are
        released, and the executor keeps working."""

        async def body(agent: Any, names: dict[str, str]) -> None:
            gave_up = self.timeout_seconds
            started = anyio.current_time()
            with anyio.move_on_after(gave_up) as scope:
                await self._call(agent, names, "slow", seconds=self.slow_seconds)
            elapsed = anyio.current_time() - started
            assert elapsed <= gave_up + self.deadline_grace, (
                f"the caller gave up after {gave_up}s and got control back only after "
                f"{elapsed:.2f}s: the executor does not honour cancellation")
            assert scope.cancelled_caught, (
                f"the slow scenario returned within {elapsed:.2f}s, before its caller gave up "
                f"after {gave_up}s")
            left = agent.manager.list(scope="action_call")
            assert left == [], f"environments of the cancelled call are still live: {left}"
            after = await self._call(agent, names, "echo", message="ok")
            assert after.status == "success", (
                f"the executor stopped working after a cancelled call: {after.error}")
            self._assert_echo(after, "ok")

        self.run(self._check, body, "slow", "echo")

    def test_concurrent_calls_do_not_block_each_other(self) -> None:
        """:attr:`concurrent_calls` calls of :attr:`concurrent_seconds` each finish in far
        less than their serial time, and the event loop keeps running meanwhile."""
        from ..models import ActionCall

        count, seconds = self.concurrent_calls, self.concurrent_seconds

        async def body(agent: Any, names: dict[str, str]) -> None:
            calls = [ActionCall(action=names["concurrent"],
                                kwargs=self._kwargs("concurrent", seconds=seconds,
                                                    message=f"call-{i}"))
                     for i in range(count)]
            started = anyio.current_time()
            async with Heartbeat() as beat:
                records = await agent.action.async_execute_actions(calls, concurrency=count)
            elapsed = anyio.current_time() - started
            assert [r.status for r in records] == ["success"] * count, (
                [(r.status, r.error) for r in records])
            found = [self.result_value("concurrent", r.result) for r in records]
            assert found == [f"call-{i}" for i in range(count)], found
            assert elapsed < seconds * 2, (
                f"{count} calls of {seconds}s took {elapsed:.2f}s (serial: {count * seconds}s): "
                "calls block each other")
            assert beat.max_gap <= self.max_loop_block, (
                f"the event loop was blocked for {beat.max_gap:.2f}s while calls ran")

        self.run(self._check, body, "concurrent")

    def test_environments_are_reused_and_released(self) -> None:
        """The environments the calls declare are ensured through the provider, reused
        from call to call (healthy, not restarted) unless they are of ``action_call``
        scope, released right after their call when they are, and all released cleanly
        (the provider's ``release`` not failing) when the agent closes."""
        seen: list[tuple[str, dict[str, Any]]] = []

        def observe(event: Any) -> None:
            seen.append((event.type, dict(event.payload)))

        def handles(event_type: str) -> dict[str, str]:
            return {p["handle_id"]: p["scope"] for t, p in seen if t == event_type}

        async def body(agent: Any, names: dict[str, str]) -> None:
            agent.manager.events.subscribe(observe, "execution_environment.*")
            for message in ("one", "two", "three"):
                self._assert_echo(await self._call(agent, names, "echo", message=message),
                                  message)
            await self._call(agent, names, "raises", message="fails")
            self._assert_echo(await self._call(agent, names, "echo", message="four"), "four")
            ready = handles("execution_environment.ready")
            assert ready, ("no environment was ensured: the actions declare none, or the "
                           "provider was not used")
            unhealthy = handles("execution_environment.unhealthy")
            assert not unhealthy, (
                f"environments failed their health check on reuse and were restarted: "
                f"{unhealthy}; the provider's async_health_check must pass for a live resource")
            kept = [h for h, scope in ready.items() if scope != "action_call"]
            declared = _long_lived(agent, names)
            assert len(kept) <= declared, (
                f"{len(kept)} long-lived environments started for {declared} declared "
                "requirement(s) over five calls: they are not reused")
            per_call = {h for h, scope in ready.items() if scope == "action_call"}
            released = set(handles("execution_environment.released"))
            assert per_call <= released, (
                f"action_call environments not released after their call: {per_call - released}")

        self.run(self._check, body, "echo", "raises")
        ready = handles("execution_environment.ready")
        released = handles("execution_environment.released")
        assert set(ready) <= set(released), (
            f"environments still held after the agent closed: {set(ready) - set(released)}")
        failed = [p.get("error") for t, p in seen if t == "execution_environment.failed"]
        assert not failed, f"the provider failed to release environments: {failed}"


def _long_lived(agent: Any, names: dict[str, str]) -> int:
    """How many environment requirements other than ``action_call`` ones the mounted
    scenarios declare."""
    return sum(1 for name in names.values()
               for requirement in agent.registry.get(name).spec.execution_environments
               if requirement.scope != "action_call")


def _owned(requirement: Any, call_id: str) -> Any:
    """``requirement`` with an owner, as the dispatcher gives one (the call for
    ``action_call`` scope, the suite otherwise)."""
    if requirement.owner_id is not None or requirement.scope == "global":
        return requirement
    owner = call_id if requirement.scope == "action_call" else SUITE_OWNER
    return requirement.model_copy(update={"owner_id": owner, "id": f"{requirement.id}@{owner}"})


__all__ = ["REQUIRED_SCENARIOS", "SCENARIOS", "ExecutorConformance"]

