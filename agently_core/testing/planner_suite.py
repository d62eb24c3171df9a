"""Conformance suite for :class:`~agently_core.protocols.Planner` plugins, model planners
above all.

The suite scripts the model with :class:`~agently_core.testing.model_servers.Reply`
objects (text, tool calls with ids, usage, or a fault) and runs real agents (the
``function`` executor and the ``agently`` runtime and flow) against the planner under
test. A subclass says how to stand the model in: by default a
:class:`~agently_core.testing.model_servers.LoopbackModelServer` on 127.0.0.1 whose
``base_url`` the planner gets, so a model planner (an HTTP client) only names itself::

    from agently_core.testing import PlannerConformance
    import agently_core_openai.plugin

    class TestOpenAIChatConformance(PlannerConformance):
        planner_name = "openai_compatible"
        planner_plugin = agently_core_openai.plugin
        api_key_env = "CONFORMANCE_OPENAI_KEY"

A planner that talks to no server overrides :meth:`PlannerConformance.start_model` and
returns a :class:`StandIn` whose ``options`` script it, for instance with a
:class:`CallableModel` (the scripted planner does).

What it proves, with both planning protocols where they apply: tool calls run and their
ids come back in the records; each result (or error) reaches the model in the next
request, invalid calls and empty answers included; an empty answer is a ``skipped``
record and the loop goes on; usage adds up in ``FlowResult.usage``; the history survives
a durable pause/resume into a new planner; the environment state reaches the model; a
refused key, a server error and a hang end the run with a
:class:`~agently_core.errors.ModelError` message (never a traceback); the key is
registered with the agent's redactor by ``bind`` and appears in no result, event, repr or
error; ``generate`` gives ``@agent.auto_func`` its value, asked again with the validation
error when it was invalid.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import pytest

from ._base import ConformanceSuite, fail, maybe_await
from .harness import make_plugin_manager
from .model_servers import LoopbackModelServer, Reply, ToolCall

STRUCTURED = "structured_plan"
NATIVE = "native_tool_calls"
EMPTY_CODE = "action_runtime.native_tool_calls.empty"
FAULTS = ("unauthorized", "server_error", "timeout")


def fingerprint_of(text: str) -> str:
    """What the suite's ``fingerprint`` action returns for ``text``: a value that is in
    no call's arguments, so finding it in a request proves a result went back."""
    return "fp-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class StandIn:
    """A model stand-in for one test: the planner options that point a planner at it,
    what the model received (one text per request, oldest first) and how to stop it."""

    options: dict[str, Any]
    inputs: Callable[[], list[str]]
    close: Callable[[], Any] = lambda: None


class CallableModel:
    """A stand-in for a planner that talks to no server: it plays the replies through
    ``plan(context, request)`` and ``generate(context, request)`` (hand them to the
    planner as its options), as a model planner would turn them into raw decisions:
    tool calls as native tool calls, a structured plan's JSON text as the plan, a fault
    as the :class:`~agently_core.errors.ModelError` a model planner raises. What "the
    model received" (:meth:`inputs`) is the request and planning context it was given,
    as JSON."""

    def __init__(self, replies: Sequence[Reply], *, name: str = "stand-in",
                 api_key_env: str | None = None) -> None:
        self.replies = list(replies)
        self.name = name
        self.api_key_env = api_key_env
        self.seen: list[str] = []

    def inputs(self) -> list[str]:
        return list(self.seen)

    def _next(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Reply:
        from ..errors import ModelError

        self.seen.append(json.dumps({
            "prompt": context.get("prompt"), "input": request.get("input"),
            "instruction": request.get("instruction"),
            "feedback": request.get("feedback"), "action_list": request.get("action_list"),
            "history": context.get("history"), "env_state": context.get("env_state"),
        }, default=repr))
        if not self.replies:
            raise ModelError(f"{self.name}: the stand-in has no reply left", planner=self.name)
        reply = self.replies.pop(0)
        if reply.hang:
            raise ModelError(f"{self.name}: no answer in time (timeout)", planner=self.name)
        if reply.status in (401, 403):
            where = f"the key in {self.api_key_env}" if self.api_key_env else "the key"
            raise ModelError(f"{self.name}: {where} was refused: {reply.status}",
                             planner=self.name, status=reply.status)
        if reply.status != 200:
            raise ModelError(f"{self.name}: the model answered {reply.status}",
                             planner=self.name, status=reply.status)
        return reply

    def _extras(self, reply: Reply) -> dict[str, Any]:
        extras: dict[str, Any] = {"model": f"{self.name}-model"}
        if isinstance(reply.usage, Mapping):
            extras["usage"] = dict(reply.usage)
        return extras

    def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        reply = self._next(context, request)
        extras = self._extras(reply)
        if reply.tool_calls:
            calls = [{"id": call.id or f"call_{n}", "type": "function",
                      "function": {"name": call.name, "arguments": call.arguments_text()}}
                     for n, call in enumerate(reply.calls())]
            return {"tool_calls": calls, "content": reply.text, **extras,
                    "model_message": {"role": "assistant", "content": reply.text,
                                      "tool_calls": calls}}
        if request.get("planning_protocol") == STRUCTURED and reply.text:
            try:
                plan = json.loads(reply.text)
            except ValueError:
                plan = None
            if isinstance(plan, dict):
                return {**plan, **extras}
        return {"tool_calls": [], "content": reply.text, **extras}

    def generate(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        reply = self._next(context, request)
        return {"text": reply.text or "", **self._extras(reply)}


@dataclass
class _Run:
    """What one scripted run left behind."""

    result: Any
    inputs: list[str]
    events: list[Any] = field(default_factory=list)
    agent: Any = None


def plan_reply(calls: Sequence[ToolCall] = (), text: str | None = None,
               usage: Mapping[str, int] | None = None) -> Reply:
    """A structured-plan answer as a model writes it: the plan's JSON as text."""
    if calls:
        plan: dict[str, Any] = {"next_action": "execute", "action_calls": [
            {"action_id": c.name, "action_input": c.arguments, "purpose": "conformance"}
            for c in calls]}
    else:
        plan = {"next_action": "response", "response": text}
    return Reply(text=json.dumps(plan), usage=dict(usage) if usage else False)


class PlannerConformance(ConformanceSuite):
    """See the module's docstring. Class attributes:

    ``planner_name`` (required): the name the planner is registered under.
    ``planner_plugin``: the plugin (module or object) that registers it; ``None`` when
    ``agently-core-runtime``'s plugin does (the scripted planner).
    ``protocols``: the planning protocols it speaks.
    ``api_key_env``: the variable its key is read from (the suite sets it to a fresh
    secret for every test); ``None`` for a planner without a key (the key check is not
    generated: a case that does not apply to a planner does not exist for it).
    ``faults``: which of ``unauthorized`` (401), ``server_error`` (500) and ``timeout``
    (no answer) to check.
    ``supports_generate``: whether it implements ``generate`` (``@agent.auto_func``).
    ``stand_in_options``: options added for the loopback stand-in (a short ``timeout``,
    no retries).
    ``run_timeout``: the longest one scripted run may take.
    """

    __test__ = False

    planner_name: ClassVar[str] = ""
    planner_plugin: ClassVar[Any] = None
    protocols: ClassVar[tuple[str, ...]] = (STRUCTURED, NATIVE)
    api_key_env: ClassVar[str | None] = None
    faults: ClassVar[tuple[str, ...]] = FAULTS
    supports_generate: ClassVar[bool] = True
    stand_in_options: ClassVar[Mapping[str, Any]] = {"timeout": 1.0, "max_retries": 0}
    run_timeout: ClassVar[float] = 30.0
    model: ClassVar[str] = "conformance-model"

    secret: str = ""

    # -- what a subclass may supply ------------------------------------------------------
    def start_model(self, replies: list[Reply]) -> StandIn:
        """Stand the model in, answering ``replies`` in order. Default: a loopback server
        speaking the providers' wire formats; the planner gets its ``base_url``."""
        server = LoopbackModelServer(replies, model=self.model).start()
        options: dict[str, Any] = {"model": self.model, "base_url": server.base_url,
                                   **self.stand_in_options}
        if self.api_key_env:
            options["api_key_env"] = self.api_key_env

        def inputs() -> list[str]:
            return [r.body.decode("utf-8", "replace") for r in server.requests
                    if r.method == "POST"]

        return StandIn(options=options, inputs=inputs, close=server.close)

    def fault_reply(self, fault: str) -> list[Reply]:
        """The replies that make ``fault`` happen (enough of them for retries)."""
        if fault == "unauthorized":
            return [Reply.failure(401)]
        if fault == "server_error":
            return [Reply.failure(500) for _ in range(4)]
        if fault == "timeout":
            return [Reply.hanging()]
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")

    # -- fixtures ------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _agently_planner_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        if not self.planner_name:
            fail(f"{type(self).__name__} must set planner_name")
        self.secret = "sk-conformance-" + os.urandom(12).hex()
        if self.api_key_env:
            monkeypatch.setenv(self.api_key_env, self.secret)

    # -- helpers -------------------------------------------------------------------------
    def _agent(self, **config: Any) -> Any:
        from ..config import Config
        from .harness import installed_plugin, make_agent

        function_plugin, runtime_plugin = installed_plugin("function"), installed_plugin("runtime")

        plugins = [function_plugin, runtime_plugin]
        if self.planner_plugin is not None and self.planner_plugin is not runtime_plugin:
            plugins.append(self.planner_plugin)
        manager = make_plugin_manager(*plugins, config=Config(**config) if config else None)
        agent = make_agent(manager)

        @agent.action_func
        def fingerprint(text: str) -> str:
            """Return the fingerprint of a text."""
            return fingerprint_of(text)

        @agent.action_func(approval_required=True)
        def publish(text: str) -> str:
            """Publish a text (a person approves it first)."""
            return "published " + fingerprint_of(text)

        agent.use_actions([fingerprint, publish])
        return agent

    def _replies(self, protocol: str, *turns: Any) -> list[Reply]:
        """Turns as replies in ``protocol``: a ``(calls, usage)`` pair, a text, or a
        :class:`Reply` (used as it is)."""
        replies = []
        for turn in turns:
            if isinstance(turn, Reply):
                replies.append(turn)
                continue
            calls, text, usage = turn if isinstance(turn, tuple) else ((), turn, None)
            if protocol == NATIVE:
                replies.append(Reply(text=text, tool_calls=list(calls),
                                     usage=dict(usage) if usage else False))
            else:
                replies.append(plan_reply(calls, text, usage))
        return replies

    async def _run(self, protocol: str, replies: list[Reply], request: str = "conformance",
                   *, env_state: str | None = None, max_rounds: int = 5) -> _Run:
        import anyio

        stand_in = self.start_model(replies)
        agent = self._agent()
        events: list[Any] = []
        agent.events.subscribe(events.append)
        try:
            agent.set_planner(self.planner_name, **self._options(stand_in, protocol))
            with anyio.fail_after(self.run_timeout):
                result = await agent.async_run(request, planning_protocol=protocol,
                                               max_rounds=max_rounds, env_state=env_state)
            return _Run(result, stand_in.inputs(), events, agent)
        finally:
            await agent.aclose()
            await maybe_await(stand_in.close())

    @staticmethod
    def _options(stand_in: StandIn, protocol: str) -> dict[str, Any]:
        """The stand-in's options, with the planning protocol the planner is to speak."""
        return {**stand_in.options, "planning_protocol": protocol}

    #: Cases that exist only for a planner with the capability they check (a case that
    #: does not apply is not generated: nothing is skipped).
    _ONLY_WITH: ClassVar[dict[str, Any]] = {
        "test_an_empty_answer_is_skipped_and_asked_again": lambda c: NATIVE in c.protocols,
        "test_the_history_is_replayed_every_round": lambda c: NATIVE in c.protocols,
        "test_the_history_survives_a_durable_resume": lambda c: NATIVE in c.protocols,
        "test_a_model_failure_fails_the_run_clearly": lambda c: bool(c.faults),
        "test_the_key_is_bound_and_never_leaks": lambda c: bool(c.api_key_env),
        "test_generate_gives_auto_func_its_value": lambda c: c.supports_generate,
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, applies in cls._ONLY_WITH.items():
            if not applies(cls):
                setattr(cls, name, None)  # not collected

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Each case that takes a ``protocol`` runs once per protocol the planner speaks,
        and the failure case once per fault it declares."""
        if "protocol" in metafunc.fixturenames:
            metafunc.parametrize("protocol", list(self.protocols))
        if "fault" in metafunc.fixturenames:
            metafunc.parametrize("fault", list(self.faults))

    # -- the contract --------------------------------------------------------------------
    def test_created_by_name_with_options(self) -> None:
        """Registered by its plugin, created by name with the stand-in's options (and
        from ``planner`` + ``planner_options`` configuration), with ``plan``."""
        from ..protocols import Planner

        async def check() -> None:
            stand_in = self.start_model(self._replies(self.protocols[0], "configured"))
            agent = self._agent(planner=self.planner_name,
                                planner_options=self._options(stand_in, self.protocols[0]))
            try:
                result = await agent.async_run("x", planning_protocol=self.protocols[0])
                assert isinstance(agent._get_planner(), Planner)
                assert result.stop_reason == "response", result.error
                assert result.response == "configured"
            finally:
                await agent.aclose()
                await maybe_await(stand_in.close())

        self.run(check)

    def test_calls_run_and_results_reach_the_model(self, protocol: str) -> None:
        """Two calls in one answer run; the next request holds both results (and, with
        native tool calls, their ids, which the records keep)."""
        calls = [ToolCall("fingerprint", {"text": "alpha"}, id="call_conf_1"),
                 ToolCall("fingerprint", {"text": "beta"}, id="call_conf_2")]
        done = self.run(self._run, protocol, self._replies(protocol, (calls, None, None),
                                                           "all done"))
        result = done.result
        assert result.stop_reason == "response", result.error
        assert result.response == "all done"
        assert [(r.status, r.result) for r in result.records] == [
            ("success", fingerprint_of("alpha")), ("success", fingerprint_of("beta"))]
        assert len(done.inputs) == 2, f"the model was asked {len(done.inputs)} times, not 2"
        for value in (fingerprint_of("alpha"), fingerprint_of("beta")):
            assert value in done.inputs[1], f"result {value} did not reach the model"
        if protocol == NATIVE:
            assert [r.call_id for r in result.records] == ["call_conf_1", "call_conf_2"]
            for call_id in ("call_conf_1", "call_conf_2"):
                assert call_id in done.inputs[1], f"tool call id {call_id} was not echoed"

    def test_invalid_calls_reach_the_model(self, protocol: str) -> None:
        """An unknown action and arguments that are not JSON become failed records (the
        loop goes on) and the model reads their errors in the next request."""
        calls = [ToolCall("no_such_action", {}, id="call_bad_1"),
                 ToolCall("fingerprint", '{"text": ', id="call_bad_2"),
                 ToolCall("fingerprint", {"text": "gamma"}, id="call_ok_3")]
        done = self.run(self._run, protocol, self._replies(protocol, (calls, None, None),
                                                           "recovered"))
        result = done.result
        assert result.stop_reason == "response" and result.response == "recovered"
        assert [(r.status, r.error_type) for r in result.records] == [
            ("failed", "ActionNotFoundError"), ("failed", "InvalidCall"), ("success", None)]
        second = done.inputs[1]
        assert "unknown action" in second and "no_such_action" in second
        assert "not valid JSON" in second, "the invalid call's error did not reach the model"
        assert fingerprint_of("gamma") in second
        if protocol == NATIVE:
            assert [r.call_id for r in result.records] == ["call_bad_1", "call_bad_2",
                                                           "call_ok_3"]
            assert "call_bad_1" in second and "call_bad_2" in second

    def test_an_empty_answer_is_skipped_and_asked_again(self) -> None:
        """An answer with neither tool calls nor text is a ``skipped`` record with
        ``action_runtime.native_tool_calls.empty``; the model is asked again."""
        done = self.run(self._run, NATIVE, [Reply(text=None, usage=False),
                                            *self._replies(NATIVE, "second try")])
        result = done.result
        assert result.stop_reason == "response" and result.response == "second try"
        [skipped] = result.records
        assert skipped.status == "skipped"
        assert skipped.meta.get("diagnostic_code") == EMPTY_CODE
        assert len(done.inputs) == 2

    def test_usage_is_reported(self, protocol: str) -> None:
        """Each round's decision names the model and its token usage; the run totals it."""
        calls = [ToolCall("fingerprint", {"text": "u"}, id="call_u")]
        done = self.run(self._run, protocol, self._replies(
            protocol, (calls, None, {"input_tokens": 11, "output_tokens": 7}),
            ((), "counted", {"input_tokens": 13, "output_tokens": 5})))
        result = done.result
        assert result.stop_reason == "response", result.error
        usage = result.usage or {}
        assert (usage.get("input_tokens"), usage.get("output_tokens"),
                usage.get("requests")) == (24, 12, 2), f"usage {result.usage}"
        for round_ in result.rounds:
            assert isinstance(round_.decision.model, str) and round_.decision.model
            assert round_.decision.usage is not None

    def test_the_history_is_replayed_every_round(self) -> None:
        """The third request holds the request, both earlier calls and both results."""
        nonce = os.urandom(4).hex()
        done = self.run(self._run, NATIVE, self._replies(
            NATIVE, ([ToolCall("fingerprint", {"text": "one"}, id="call_h1")], None, None),
            ([ToolCall("fingerprint", {"text": "two"}, id="call_h2")], None, None),
            "three rounds"), f"conformance request {nonce}")
        assert done.result.response == "three rounds", done.result.error
        assert len(done.inputs) == 3
        third = done.inputs[2]
        for needle in (f"conformance request {nonce}", "call_h1", "call_h2",
                       fingerprint_of("one"), fingerprint_of("two")):
            assert needle in third, f"{needle!r} is missing from the third request"
        assert all(f"conformance request {nonce}" in text for text in done.inputs)

    def test_env_state_reaches_the_model(self) -> None:
        nonce = "env-state-" + os.urandom(4).hex()
        done = self.run(partial(self._run, env_state=nonce), self.protocols[0],
                        self._replies(self.protocols[0], "seen"), "x")
        assert done.result.stop_reason == "response", done.result.error
        assert nonce in done.inputs[0], "env_state is not in the model's request"

    def test_the_history_survives_a_durable_resume(self) -> None:
        """A run paused on an approval is saved; a new agent with a new planner loads
        it and resumes; its request replays the first round, the approved result in it."""

        async def check() -> None:
            from ..workspace import Workspace
            from .memory_workspace import MemoryWorkspaceBackend

            stand_in = self.start_model(self._replies(
                NATIVE, ([ToolCall("publish", {"text": "news"}, id="call_pub")], None, None),
                "published it"))
            workspace = Workspace(MemoryWorkspaceBackend())
            first = self._agent(approval_handler="fail_closed")
            second = self._agent(approval_handler="fail_closed")
            try:
                first.set_planner(self.planner_name, **self._options(stand_in, NATIVE))
                paused = await first.async_run("publish the news", workspace=workspace,
                                               planning_protocol=NATIVE)
                assert paused.stop_reason == "approval_required", paused.error
                await first.aclose()
                second.set_planner(self.planner_name, **self._options(stand_in, NATIVE))
                execution = await second.async_load_execution(paused.execution_id,
                                                              workspace=workspace)
                result = await execution.async_continue_with("approved", resume_request_id="r1")
                assert result.stop_reason == "response", result.error
                assert result.response == "published it"
                inputs = stand_in.inputs()
                assert len(inputs) == 2
                for needle in ("publish the news", "call_pub",
                               "published " + fingerprint_of("news")):
                    assert needle in inputs[1], f"{needle!r} is missing after the resume"
            finally:
                await first.aclose()
                await second.aclose()
                await workspace.aclose()
                await maybe_await(stand_in.close())

        self.run(check)

    def test_a_model_failure_fails_the_run_clearly(self, fault: str) -> None:
        """A refused key, a server error or a hang ends the run ``failed`` with the
        planner's ModelError message: no traceback, no key, the variable named for a
        refused key."""
        started = time.monotonic()
        done = self.run(self._run, self.protocols[0], self.fault_reply(fault))
        result = done.result
        assert result.stop_reason == "failed", f"{fault}: the run ended {result.stop_reason}"
        error = result.error or ""
        assert error and "Traceback" not in error
        assert not error.startswith("planner failed in round"), (
            f"{fault}: the planner raised something else than ModelError: {error}")
        assert self.secret not in error
        if fault == "unauthorized":
            assert "401" in error
            if self.api_key_env:
                assert self.api_key_env in error, f"the refused key's variable is not named: {error}"
        failed = [e for e in done.events if e.type == "run.completed"]
        assert failed and failed[-1].payload.get("error_type"), "run.completed has no error_type"
        assert time.monotonic() - started < self.run_timeout

    def test_the_key_is_bound_and_never_leaks(self) -> None:
        """``bind`` registers the key with the agent's redactor; it is in no result,
        event, repr or str of the planner."""
        async def check() -> None:
            protocol = self.protocols[-1]
            stand_in = self.start_model(self._replies(
                protocol, ([ToolCall("fingerprint", {"text": "k"}, id="call_k")], None, None),
                "done"))
            agent = self._agent()
            events: list[Any] = []
            agent.events.subscribe(events.append)
            try:
                agent.set_planner(self.planner_name, **self._options(stand_in, protocol))
                assert agent.redactor.text(f"key {self.secret}") == "key ***", (
                    "bind(agent) did not register the key with agent.redactor")
                planner = agent._get_planner()
                result = await agent.async_run("x", planning_protocol=protocol)
                assert result.stop_reason == "response", result.error
                for where, text in (("the FlowResult", result.model_dump_json()),
                                    ("repr(planner)", repr(planner)),
                                    ("str(planner)", str(planner)),
                                    ("the events", repr([e.payload for e in events]))):
                    assert self.secret not in text, f"the key is in {where}"
            finally:
                await agent.aclose()
                await maybe_await(stand_in.close())

        self.run(check)

    def test_generate_gives_auto_func_its_value(self) -> None:
        """``generate`` answers ``@agent.auto_func``; an invalid value is asked again
        with the validation error, which the model reads."""
        async def check() -> None:
            stand_in = self.start_model([Reply(text='{"result": "many"}', usage=False),
                                         Reply(text='```json\n{"result": 42}\n```',
                                               usage=False)])
            agent = self._agent()
            try:
                agent.set_planner(self.planner_name, **self._options(stand_in,
                                                                     self.protocols[0]))

                @agent.auto_func(use_actions=False)
                async def count(things: str) -> int:
                    """Count the {things}."""

                assert await count("conformance apples") == 42
                inputs = stand_in.inputs()
                assert len(inputs) == 2
                assert "conformance apples" in inputs[0]
                assert "valid integer" in inputs[1], "the validation error did not reach the model"
            finally:
                await agent.aclose()
                await maybe_await(stand_in.close())

        self.run(check)


__all__ = ["EMPTY_CODE", "FAULTS", "NATIVE", "STRUCTURED", "CallableModel",
           "PlannerConformance", "StandIn", "fingerprint_of", "plan_reply"]
