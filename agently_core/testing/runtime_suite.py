"""Conformance suite for :class:`~agently_core.protocols.ActionRuntime` plugins."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from ._base import ConformanceSuite, fail
from .harness import make_plugin, make_plugin_manager

STRUCTURED = "structured_plan"
NATIVE = "native_tool_calls"


class _Opaque:
    """An object no planning protocol knows."""

    def __repr__(self) -> str:
        return "<opaque object>"


def _deep(levels: int) -> Any:
    value: Any = {"action_id": "echo", "action_input": {}}
    for _ in range(levels):
        value = {"action_calls": [value]}
    return value


#: Inputs a runtime must survive: ``normalize`` returns an ActionDecision for each of them,
#: whatever the protocol. Keys are the test ids.
GARBAGE: dict[str, Any] = {
    "none": None,
    "empty_string": "",
    "prose": "I think I will call the add tool now.",
    "broken_json": '{"next_action": "execute", "action_calls": [',
    "json_null": "null",
    "json_number": "5",
    "json_list_of_numbers": "[1, 2]",
    "integer": 42,
    "float_nan": float("nan"),
    "boolean": True,
    "bytes": b"\x00\xff bytes",
    "plain_object": _Opaque(),
    "empty_list": [],
    "list_of_none": [None],
    "empty_object": {},
    "unknown_keys": {"foo": "bar", "baz": [1, 2]},
    "next_action_unknown": {"next_action": "dance"},
    "next_action_not_string": {"next_action": ["execute"], "action_calls": []},
    "calls_not_a_list": {"next_action": "execute", "action_calls": "add(1, 2)"},
    "calls_null": {"next_action": "execute", "action_calls": None},
    "tool_calls_not_a_list": {"tool_calls": "add"},
    "tool_calls_number": {"tool_calls": 5},
    "tool_calls_null": {"tool_calls": None, "content": 5},
    "function_not_object": {"tool_calls": [{"id": "t1", "function": "add"}]},
    "tool_call_number_id": {"tool_calls": [{"id": 7, "function": {"name": "echo",
                                                                  "arguments": "{}"}}]},
    "deeply_nested": _deep(200),
    "huge_name": {"next_action": "execute",
                  "action_calls": [{"action_id": "x" * 100_000, "action_input": {}}]},
}

#: Malformed calls: each must be reported in ``decision.invalid`` (with an ``error``), never
#: turned into a call.
MALFORMED: dict[str, Any] = {
    "call_not_object": {"next_action": "execute", "action_calls": [5]},
    "call_without_name": {"next_action": "execute", "action_calls": [{"action_input": {}}]},
    "call_empty_name": {"next_action": "execute",
                        "action_calls": [{"action_id": "", "action_input": {}}]},
    "call_name_not_string": {"next_action": "execute",
                             "action_calls": [{"action_id": 5, "action_input": {}}]},
    "arguments_not_object": {"next_action": "execute",
                             "action_calls": [{"action_id": "echo", "action_input": [1, 2]}]},
    "non_string_argument_names": {"next_action": "execute",
                                  "action_calls": [{"action_id": "echo",
                                                    "action_input": {1: "one"}}]},
    "tool_call_broken_json": {"tool_calls": [{"id": "t1", "type": "function",
                                              "function": {"name": "echo",
                                                           "arguments": '{"message": '}}]},
    "tool_call_json_list": {"tool_calls": [{"id": "t1", "type": "function",
                                            "function": {"name": "echo", "arguments": "[1]"}}]},
    "tool_call_without_name": {"tool_calls": [{"id": "t1", "type": "function",
                                               "function": {"arguments": "{}"}}]},
}


class CountingPlanner:
    """A planner that answers from ``answers`` (one per round, the last one repeated) and
    remembers every ``(context, request)`` it was asked with."""

    def __init__(self, *answers: Any) -> None:
        self.answers = answers
        self.asked: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        self.asked.append((context, request))
        return self.answers[min(len(self.asked), len(self.answers)) - 1]


def structured_plan(*calls: tuple[str, dict[str, Any]], purpose: str = "") -> dict[str, Any]:
    """A structured plan calling ``(name, kwargs)`` pairs."""
    return {"next_action": "execute", "action_calls": [
        {"action_id": name, "action_input": kwargs, "purpose": purpose,
         "todo_suggestion": ""} for name, kwargs in calls
    ]}


def native_tool_calls(*calls: tuple[str, str, Any], content: Any = None) -> dict[str, Any]:
    """A chat model's answer with native tool calls ``(id, name, arguments)``."""
    return {"content": content, "tool_calls": [
        {"id": call_id, "type": "function",
         "function": {"name": name,
                      "arguments": arguments if isinstance(arguments, str)
                      else json.dumps(arguments)}}
        for call_id, name, arguments in calls
    ]}


class RuntimeConformance(ConformanceSuite):
    """Proves an ActionRuntime keeps the :class:`~agently_core.protocols.ActionRuntime`
    contract: it normalises both planning protocols (a structured JSON plan and a chat
    model's native tool calls) into an :class:`~agently_core.models.ActionDecision` whose
    calls are marked as coming from the model; it never raises for garbage, reporting
    malformed calls in ``decision.invalid`` instead; and ``plan()`` asks the planner exactly
    once per round, passing context and request through, and tags calls with the round.

    Subclass it in a test module and supply::

        class TestMyRuntime(RuntimeConformance):
            runtime_name = "mine"
            def make_runtime(self): return MyRuntime()

    Tests of a protocol the runtime does not list in ``planning_protocols`` are skipped.
    """

    __test__ = False

    #: The runtime's ``name``; when set, the suite checks it and registers under it.
    runtime_name: ClassVar[str | None] = None
    #: How many rounds the planning test runs.
    rounds: ClassVar[int] = 3

    # -- what a subclass supplies --------------------------------------------------------
    def make_runtime(self) -> Any:
        """Return a new runtime."""
        raise NotImplementedError(f"{type(self).__name__} must define make_runtime()")

    # -- plumbing ------------------------------------------------------------------------
    def _protocols(self, runtime: Any) -> list[str]:
        return [p for p in (STRUCTURED, NATIVE) if p in tuple(runtime.planning_protocols)]

    def _require(self, runtime: Any, protocol: str) -> None:
        if protocol not in tuple(getattr(runtime, "planning_protocols", ())):
            pytest.skip(f"the runtime does not support the {protocol} planning protocol")

    def _normalize(self, runtime: Any, raw: Any, protocol: str) -> Any:
        from ..models import ActionDecision

        try:
            decision = runtime.normalize(raw, protocol=protocol)
        except Exception as exc:
            fail(f"normalize({_short(raw)}, protocol={protocol!r}) raised "
                 f"{type(exc).__name__}: {exc}; it must return an ActionDecision and list "
                 "malformed calls in decision.invalid")
        if not isinstance(decision, ActionDecision):
            fail(f"normalize({_short(raw)}) returned {type(decision).__name__}, "
                 "not an ActionDecision")
        assert decision.next_action in ("execute", "response")
        return decision

    # -- the contract --------------------------------------------------------------------
    def test_satisfies_protocol(self) -> None:
        """``isinstance(runtime, ActionRuntime)``, a name, and known planning protocols."""
        from ..protocols import ActionRuntime

        runtime = self.make_runtime()
        assert isinstance(runtime, ActionRuntime), (
            f"{type(runtime).__name__} does not satisfy protocols.ActionRuntime: it needs "
            "`name`, `planning_protocols`, async `plan(planner, context, request)` and "
            "`normalize(raw, *, protocol)`")
        assert isinstance(runtime.name, str) and runtime.name
        if self.runtime_name is not None:
            assert runtime.name == self.runtime_name
        protocols = tuple(runtime.planning_protocols)
        assert protocols and all(isinstance(p, str) for p in protocols)
        assert self._protocols(runtime), (
            f"planning_protocols {protocols!r} lists neither {STRUCTURED!r} nor {NATIVE!r}")

    def test_registered_runtime_is_created_by_name(self) -> None:
        """Registered through ``register_action_runtimes``, the plugin manager creates it."""
        from ..protocols import ActionRuntime

        name = self.runtime_name or "conformance"
        manager = make_plugin_manager(make_plugin(action_runtime={name: self.make_runtime}))
        runtime = manager.create("action_runtime", name)
        assert isinstance(runtime, ActionRuntime)

    def test_structured_plan_becomes_calls(self) -> None:
        """A structured plan gives an ``execute`` decision with the calls, in order."""
        runtime = self.make_runtime()
        self._require(runtime, STRUCTURED)
        raw = structured_plan(("add", {"a": 1, "b": 2}), ("echo", {"message": "hi"}),
                              purpose="because")
        decision = self._normalize(runtime, raw, STRUCTURED)
        assert decision.next_action == "execute" and not decision.invalid
        assert decision.protocol == STRUCTURED
        assert [(c.action, c.kwargs) for c in decision.calls] == [
            ("add", {"a": 1, "b": 2}), ("echo", {"message": "hi"})]
        assert [c.purpose for c in decision.calls] == ["because", "because"]
        assert len({c.id for c in decision.calls}) == 2, "call ids must be unique"

    def test_structured_plan_accepts_execution_commands(self) -> None:
        """``execution_commands`` is accepted for ``action_calls``."""
        runtime = self.make_runtime()
        self._require(runtime, STRUCTURED)
        raw = {"next_action": "execute",
               "execution_commands": [{"action_id": "add", "action_input": {"a": 1}}]}
        decision = self._normalize(runtime, raw, STRUCTURED)
        assert [(c.action, c.kwargs) for c in decision.calls] == [("add", {"a": 1})]

    def test_structured_response(self) -> None:
        """``next_action: response`` ends the loop with the response and no calls."""
        runtime = self.make_runtime()
        self._require(runtime, STRUCTURED)
        decision = self._normalize(runtime, {"next_action": "response", "response": "42"},
                                   STRUCTURED)
        assert decision.next_action == "response"
        assert decision.response == "42" and not decision.calls

    def test_native_tool_calls_become_calls(self) -> None:
        """Native tool calls (arguments as a JSON string or an object) become calls that
        keep the tool call ids."""
        runtime = self.make_runtime()
        self._require(runtime, NATIVE)
        raw = native_tool_calls(("tc_1", "add", '{"a": 1, "b": 2}'),
                                ("tc_2", "echo", {"message": "hi"}))
        raw["tool_calls"][1]["function"]["arguments"] = {"message": "hi"}
        decision = self._normalize(runtime, raw, NATIVE)
        assert decision.next_action == "execute" and not decision.invalid
        assert decision.protocol == NATIVE
        assert [(c.id, c.action, c.kwargs) for c in decision.calls] == [
            ("tc_1", "add", {"a": 1, "b": 2}), ("tc_2", "echo", {"message": "hi"})]

    def test_native_answer_without_tool_calls_is_a_response(self) -> None:
        """A chat answer with content and no tool calls is the response."""
        runtime = self.make_runtime()
        self._require(runtime, NATIVE)
        for raw in ({"content": "done", "tool_calls": []}, {"content": "done"}):
            decision = self._normalize(runtime, raw, NATIVE)
            assert decision.next_action == "response" and not decision.calls
            assert decision.response == "done"

    def test_an_empty_answer_is_marked_for_skipping(self) -> None:
        """An answer with neither calls nor a response is an ``execute`` decision without
        calls whose ``diagnostics`` carry ``action_runtime.<protocol>.empty`` (the flow
        records it as ``skipped`` and asks again)."""
        runtime = self.make_runtime()
        empties = {NATIVE: {"tool_calls": [], "content": None},
                   STRUCTURED: {"next_action": "execute", "action_calls": []}}
        for protocol in self._protocols(runtime):
            decision = self._normalize(runtime, empties[protocol], protocol)
            assert decision.next_action == "execute", (
                f"{protocol}: an empty answer must not end the loop as a response")
            assert not decision.calls and not decision.invalid
            codes = [d.get("code") for d in decision.diagnostics]
            assert f"action_runtime.{protocol}.empty" in codes, (
                f"{protocol}: diagnostics {decision.diagnostics!r} lack the empty-answer code")

    def test_usage_model_and_message_are_kept(self) -> None:
        """``usage``, ``model`` and ``model_message`` of a mapping answer reach the
        decision, in both protocols."""
        runtime = self.make_runtime()
        extras = {"usage": {"input_tokens": 5, "output_tokens": 2}, "model": "m-1",
                  "model_message": {"role": "assistant", "content": "x"}}
        raws = {STRUCTURED: {**structured_plan(("add", {"a": 1})), **extras},
                NATIVE: {**native_tool_calls(("tc", "add", {"a": 1})), **extras}}
        for protocol in self._protocols(runtime):
            decision = self._normalize(runtime, raws[protocol], protocol)
            assert [c.action for c in decision.calls] == ["add"]
            assert decision.usage == extras["usage"] and decision.model == "m-1"
            assert decision.model_message == extras["model_message"]

    def test_calls_are_marked_as_coming_from_the_model(self) -> None:
        """Normalised calls have ``source == "model"``, so the dispatcher lets them reach
        only visible actions and only narrow policy."""
        runtime = self.make_runtime()
        raws = {STRUCTURED: structured_plan(("add", {"a": 1})),
                NATIVE: native_tool_calls(("tc", "add", {"a": 1}))}
        for protocol in self._protocols(runtime):
            raw = dict(raws[protocol])
            decision = self._normalize(runtime, raw, protocol)
            assert decision.calls, f"no calls from {raw!r}"
            assert all(c.source == "model" for c in decision.calls), (
                f"calls normalised from a {protocol} answer must have source='model'")

    def test_decision_objects_pass_through(self) -> None:
        """An ActionDecision given to ``normalize`` comes back equivalent."""
        from ..models import ActionCall, ActionDecision

        runtime = self.make_runtime()
        given = ActionDecision(next_action="execute",
                               calls=[ActionCall(action="add", kwargs={"a": 1}, source="model")])
        for protocol in self._protocols(runtime):
            decision = self._normalize(runtime, given, protocol)
            assert [(c.action, c.kwargs) for c in decision.calls] == [("add", {"a": 1})]

    @pytest.mark.parametrize("case", sorted(GARBAGE))
    def test_normalize_never_raises(self, case: str) -> None:
        """Whatever a planner says, ``normalize`` returns an ActionDecision."""
        runtime = self.make_runtime()
        for protocol in self._protocols(runtime):
            self._normalize(runtime, GARBAGE[case], protocol)

    @pytest.mark.parametrize("case", sorted(MALFORMED))
    def test_malformed_calls_are_reported_not_run(self, case: str) -> None:
        """A malformed call is listed in ``decision.invalid`` with an error, and never
        becomes a call; a valid call beside it survives."""
        runtime = self.make_runtime()
        raw = MALFORMED[case]
        protocol = NATIVE if "tool_calls" in raw else STRUCTURED
        self._require(runtime, protocol)
        decision = self._normalize(runtime, raw, protocol)
        assert not decision.calls, f"{case}: malformed call became {decision.calls!r}"
        assert decision.invalid, f"{case}: the malformed call was silently dropped"
        assert all(isinstance(p, Mapping) and p.get("error") for p in decision.invalid)
        mixed = dict(raw)
        valid = (native_tool_calls(("tc_ok", "echo", {"message": "ok"}))["tool_calls"][0]
                 if protocol == NATIVE else {"action_id": "echo",
                                             "action_input": {"message": "ok"}})
        key = "tool_calls" if protocol == NATIVE else "action_calls"
        mixed[key] = [valid, *raw[key]]
        decision = self._normalize(runtime, mixed, protocol)
        assert [(c.action, c.kwargs) for c in decision.calls] == [("echo", {"message": "ok"})]
        assert decision.invalid

    def test_plan_asks_the_planner_once_per_round(self) -> None:
        """``plan()`` calls the planner exactly once per round, with the context and request
        it was given (the typed :class:`~agently_core.action_handlers.ActionRunContext` and
        :class:`~agently_core.action_handlers.ActionPlanningRequest` the flow builds), and
        returns the normalised decision."""
        from ..action_handlers import ActionPlanningRequest, ActionRunContext
        from ..models import ActionDecision

        runtime = self.make_runtime()
        answers = {STRUCTURED: structured_plan(("echo", {"message": "hi"})),
                   NATIVE: native_tool_calls(("tc", "echo", {"message": "hi"}))}

        async def check(protocol: str) -> None:
            planner = CountingPlanner(answers[protocol])
            for round_index in range(self.rounds):
                context = ActionRunContext(prompt="say hi", agent_name="conformance",
                                           round_index=round_index, max_rounds=self.rounds,
                                           runtime=runtime)
                request = ActionPlanningRequest(
                    planning_protocol=protocol,
                    action_list=[{"name": "echo", "description": "",
                                  "kwargs": {"type": "object"}}])
                decision = await runtime.plan(planner, context, request)
                assert len(planner.asked) == round_index + 1, (
                    f"after {round_index + 1} round(s) the planner was asked "
                    f"{len(planner.asked)} time(s)")
                asked_context, asked_request = planner.asked[-1]
                assert asked_context is context and asked_request is request, (
                    "the planner must get the run's context and request themselves")
                assert asked_context["round_index"] == asked_context.round_index == round_index
                assert asked_request["planning_protocol"] == protocol
                assert asked_context["prompt"] == "say hi"
                assert isinstance(decision, ActionDecision)
                assert [(c.action, c.kwargs) for c in decision.calls] == [
                    ("echo", {"message": "hi"})]

        for protocol in self._protocols(runtime):
            self.run(check, protocol)

    def test_plan_tags_calls_with_their_round(self) -> None:
        """Calls returned by ``plan()`` carry the round's ``round_index``, so records can be
        attributed to rounds."""
        from ..action_handlers import ActionPlanningRequest, ActionRunContext

        runtime = self.make_runtime()

        answers = {STRUCTURED: structured_plan(("echo", {"message": "hi"})),
                   NATIVE: native_tool_calls(("tc", "echo", {"message": "hi"}))}

        async def check() -> None:
            for protocol in self._protocols(runtime):
                context = ActionRunContext(agent_name="conformance", round_index=3,
                                           max_rounds=5)
                request = ActionPlanningRequest(planning_protocol=protocol)
                decision = await runtime.plan(CountingPlanner(answers[protocol]), context,
                                              request)
                assert [c.round_index for c in decision.calls] == [3], (
                    f"{protocol}: calls carry round_index "
                    f"{[c.round_index for c in decision.calls]}, the round was 3")

        self.run(check)

    def test_plan_passes_a_response_through(self) -> None:
        """A planner that answers ends the loop with its response."""
        from ..action_handlers import ActionPlanningRequest, ActionRunContext

        runtime = self.make_runtime()
        self._require(runtime, STRUCTURED)

        async def check() -> None:
            planner = CountingPlanner({"next_action": "response", "response": "all done"})
            context = ActionRunContext(agent_name="conformance")
            request = ActionPlanningRequest(planning_protocol=STRUCTURED)
            decision = await runtime.plan(planner, context, request)
            assert decision.next_action == "response" and decision.response == "all done"
            assert len(planner.asked) == 1

        self.run(check)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["GARBAGE", "MALFORMED", "CountingPlanner", "RuntimeConformance",
           "native_tool_calls", "structured_plan"]
