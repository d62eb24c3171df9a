"""AgentlyActionRuntime.normalize: both planning protocols into one ActionDecision, with
every malformed call listed in ``invalid`` instead of raising."""

from __future__ import annotations

import json

import pytest
from agently_core_runtime.runtime import AgentlyActionRuntime

from agently_core.models import ActionCall, ActionDecision
from agently_core.protocols import ActionRuntime


@pytest.fixture
def runtime() -> AgentlyActionRuntime:
    return AgentlyActionRuntime()


def test_satisfies_the_protocol(runtime) -> None:
    assert isinstance(runtime, ActionRuntime)
    assert runtime.name == "agently"
    assert set(runtime.planning_protocols) == {"structured_plan", "native_tool_calls"}


# -- structured plans ----------------------------------------------------------------------
def test_structured_plan_with_action_calls(runtime) -> None:
    decision = runtime.normalize({
        "next_action": "execute",
        "action_calls": [
            {"action_id": "add", "action_input": {"a": 1, "b": 2}, "purpose": "sum",
             "todo_suggestion": "then multiply", "id": "c1"},
            {"action_id": "echo", "action_input": {"message": "hi"}},
        ],
    }, round_index=3)
    assert decision.next_action == "execute"
    assert decision.protocol == "structured_plan"
    assert decision.invalid == []
    first, second = decision.calls
    assert (first.id, first.action, first.kwargs) == ("c1", "add", {"a": 1, "b": 2})
    assert (first.purpose, first.todo_suggestion) == ("sum", "then multiply")
    assert first.source == "model" and first.round_index == 3
    assert second.action == "echo" and second.id.startswith("call_")
    assert first.id != second.id


def test_structured_plan_with_execution_commands(runtime) -> None:
    decision = runtime.normalize({"execution_commands": [
        {"action_id": "add", "action_input": {"a": 1}}]})
    assert decision.next_action == "execute"
    assert [c.action for c in decision.calls] == ["add"]


@pytest.mark.parametrize(
    "call",
    [
        {"action": "add", "kwargs": {"a": 1}},
        {"name": "add", "arguments": {"a": 1}},
        {"tool_name": "add", "input": {"a": 1}},
        {"action_id": "add", "args": {"a": 1}},
        {"action": "add", "kwargs": '{"a": 1}'},
        ("add", {"a": 1}),
        ActionCall(action="add", kwargs={"a": 1}),
    ],
)
def test_call_shapes(runtime, call) -> None:
    decision = runtime.normalize({"action_calls": [call]}, round_index=0)
    assert decision.invalid == []
    [parsed] = decision.calls
    assert (parsed.action, parsed.kwargs, parsed.source) == ("add", {"a": 1}, "model")
    assert parsed.round_index == 0


def test_a_single_call_object_and_a_bare_list(runtime) -> None:
    single = runtime.normalize({"action_id": "add", "action_input": {"a": 1}})
    assert [c.action for c in single.calls] == ["add"]
    listed = runtime.normalize([{"action": "a"}, ("b", {})])
    assert [c.action for c in listed.calls] == ["a", "b"]
    assert all(c.kwargs == {} for c in listed.calls)


def test_host_action_call_becomes_model_sourced(runtime) -> None:
    decision = runtime.normalize(ActionCall(action="add", source="host"), round_index=2)
    assert decision.calls[0].source == "model" and decision.calls[0].round_index == 2


def test_plan_given_as_a_json_string(runtime) -> None:
    raw = json.dumps({"next_action": "execute",
                      "action_calls": [{"action_id": "add", "action_input": {"a": 1}}]})
    assert runtime.normalize(raw).calls[0].action == "add"


def test_missing_or_empty_arguments_become_empty_kwargs(runtime) -> None:
    decision = runtime.normalize({"action_calls": [
        {"action_id": "a"}, {"action_id": "b", "action_input": None},
        {"action_id": "c", "action_input": ""}]})
    assert [c.kwargs for c in decision.calls] == [{}, {}, {}]


def test_call_policy_is_carried(runtime) -> None:
    decision = runtime.normalize({"action_calls": [
        {"action_id": "a", "policy": {"timeout_seconds": 1}},
        {"action_id": "b", "policy": "not a mapping"}]})
    assert [c.policy for c in decision.calls] == [{"timeout_seconds": 1}, {}]


# -- responses ----------------------------------------------------------------------------
def test_plain_string_is_the_response(runtime) -> None:
    decision = runtime.normalize("The answer is 42.")
    assert decision.next_action == "response"
    assert decision.response == "The answer is 42."
    assert decision.calls == [] and decision.invalid == []


def test_explicit_response_ignores_calls(runtime) -> None:
    decision = runtime.normalize({"next_action": "response", "response": {"total": 3},
                                  "action_calls": [{"action_id": "add"}]})
    assert decision.next_action == "response"
    assert decision.response == {"total": 3}
    assert decision.calls == []


@pytest.mark.parametrize(
    ("raw", "response"),
    [
        ({"final_answer": "fa"}, "fa"),
        ({"content": "just text"}, "just text"),
        (12.5, 12.5),
        ({"next_action": "response", "response": {}}, {}),
        ("0", "0"),
    ],
)
def test_nothing_to_do_is_a_response(runtime, raw, response) -> None:
    decision = runtime.normalize(raw)
    assert decision.next_action == "response"
    assert decision.response == response
    assert decision.diagnostics == []


@pytest.mark.parametrize(
    ("raw", "protocol"),
    [
        (None, "structured_plan"),
        ("", "structured_plan"),
        ("  \n", "structured_plan"),
        ({}, "structured_plan"),
        ([], "structured_plan"),
        ({"next_action": "execute", "action_calls": []}, "structured_plan"),
        ({"next_action": "response", "response": None}, "structured_plan"),
        ({"next_action": "response", "response": " "}, "structured_plan"),
        ({"tool_calls": [], "content": None}, "native_tool_calls"),
        ({"tool_calls": [], "content": ""}, "native_tool_calls"),
        ({"tool_calls": None}, "native_tool_calls"),
    ],
)
def test_an_empty_answer_is_marked_for_skipping(runtime, raw, protocol) -> None:
    """Neither calls nor a response: an execute decision without calls whose diagnostic
    names the protocol (the flow records it as skipped and asks again)."""
    decision = runtime.normalize(raw, protocol="structured_plan")
    assert decision.next_action == "execute"
    assert decision.calls == [] and decision.invalid == [] and decision.response is None
    assert decision.protocol == protocol
    [note] = decision.diagnostics
    assert note["code"] == f"action_runtime.{protocol}.empty"
    assert "nothing ran" in note["message"]


def test_usage_model_and_message_are_kept_in_both_protocols(runtime) -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [{"id": "tc"}]}
    extras = {"usage": {"input_tokens": 12, "output_tokens": 3}, "model": "m-1",
              "model_message": message}
    native = runtime.normalize({"tool_calls": [{"id": "tc", "type": "function", "function": {
        "name": "add", "arguments": "{}"}}], "content": None, **extras})
    structured = runtime.normalize({"next_action": "execute", "action_calls": [
        {"action_id": "add", "action_input": {}}], **extras})
    answer = runtime.normalize({"next_action": "response", "response": "r", **extras})
    empty = runtime.normalize({"tool_calls": [], "content": None, **extras})
    as_text = runtime.normalize(json.dumps({"content": "hi", **extras}))
    for decision in (native, structured, answer, empty, as_text):
        assert decision.usage == {"input_tokens": 12, "output_tokens": 3}
        assert decision.model == "m-1" and decision.model_message == message
    assert [c.action for c in native.calls] == ["add"] == [c.action for c in structured.calls]
    assert answer.response == "r" and as_text.response == "hi"


def test_malformed_extras_are_dropped_not_fatal(runtime) -> None:
    decision = runtime.normalize({"content": "ok", "usage": "lots", "model": 5})
    assert decision.response == "ok" and decision.usage is None and decision.model is None


def test_invalid_calls_know_their_place_in_the_answer(runtime) -> None:
    decision = runtime.normalize({"tool_calls": [
        {"id": "a", "function": {"name": "add", "arguments": "{}"}},
        {"id": "b", "function": {"name": "add", "arguments": "{oops"}},
        {"id": "c", "function": {"name": "add", "arguments": "{}"}},
        {"id": "d", "function": {"arguments": "{}"}}]})
    assert [c.id for c in decision.calls] == ["a", "c"]
    assert [(p["call_id"], p["index"]) for p in decision.invalid] == [("b", 1), ("d", 3)]


def test_decision_passes_through(runtime) -> None:
    decision = ActionDecision(next_action="response", response="r")
    assert runtime.normalize(decision) is decision


@pytest.mark.parametrize("text", ["42", "true", "null", '"quoted"', "3.5 apples"])
def test_plain_string_that_looks_like_json_stays_a_string(runtime, text) -> None:
    assert runtime.normalize(text).response == text


# -- native tool calls ---------------------------------------------------------------------
def test_native_tool_calls_with_json_string_arguments(runtime) -> None:
    decision = runtime.normalize({
        "content": "Let me compute that.",
        "tool_calls": [
            {"id": "tc_1", "type": "function",
             "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}},
            {"id": "tc_2", "type": "function",
             "function": {"name": "echo", "arguments": {"message": "hi"}}},
            {"id": "tc_3", "type": "function", "function": {"name": "now", "arguments": ""}},
        ],
    }, round_index=1)
    assert decision.protocol == "native_tool_calls"
    assert decision.next_action == "execute"
    assert decision.response == "Let me compute that."
    assert [(c.id, c.action, c.kwargs) for c in decision.calls] == [
        ("tc_1", "add", {"a": 1, "b": 2}),
        ("tc_2", "echo", {"message": "hi"}),
        ("tc_3", "now", {}),
    ]
    assert all(c.source == "model" and c.round_index == 1 for c in decision.calls)


def test_native_single_function_object(runtime) -> None:
    decision = runtime.normalize({"id": "x", "function": {"name": "add", "arguments": "{}"}})
    assert decision.protocol == "native_tool_calls"
    assert [c.action for c in decision.calls] == ["add"]


def test_native_without_tool_calls_is_the_content(runtime) -> None:
    decision = runtime.normalize({"content": "All done.", "tool_calls": []},
                                 protocol="native_tool_calls")
    assert decision.next_action == "response"
    assert decision.response == "All done."
    assert decision.protocol == "native_tool_calls"


# -- bad input -----------------------------------------------------------------------------
def test_bad_json_arguments_are_invalid_not_fatal(runtime) -> None:
    decision = runtime.normalize({"tool_calls": [
        {"id": "bad", "function": {"name": "add", "arguments": '{"a": 1,'}},
        {"id": "good", "function": {"name": "add", "arguments": '{"a": 1}'}},
    ]})
    assert decision.next_action == "execute"
    assert [c.id for c in decision.calls] == ["good"]
    [problem] = decision.invalid
    assert problem["call_id"] == "bad" and problem["action"] == "add"
    assert "arguments are not valid JSON" in problem["error"]


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        ({"action_input": {"a": 1}}, "names no action"),
        ({"action_id": "", "action_input": {}}, "names no action"),
        ({"action_id": 7}, "names no action"),
        ({"function": {"arguments": "{}"}}, "names no action"),
        ({"action_id": "add", "action_input": [1, 2]}, "arguments must be an object, got list"),
        ({"action_id": "add", "action_input": "[1, 2]"}, "arguments must be an object, got list"),
        ("add", "a call must be an object, got str"),
        (42, "a call must be an object, got int"),
    ],
)
def test_malformed_calls_are_listed(runtime, call, needle) -> None:
    decision = runtime.normalize({"action_calls": [call, {"action_id": "ok"}]})
    assert [c.action for c in decision.calls] == ["ok"]
    [problem] = decision.invalid
    assert needle in problem["error"]
    assert problem["call_id"]


def test_only_invalid_calls_still_execute_so_the_flow_records_them(runtime) -> None:
    decision = runtime.normalize({"action_calls": [{"purpose": "no name"}]})
    assert decision.next_action == "execute"
    assert decision.calls == [] and len(decision.invalid) == 1


@pytest.mark.parametrize("next_action", ["jump", "", 3])
def test_invalid_next_action(runtime, next_action) -> None:
    decision = runtime.normalize({"next_action": next_action, "response": "r",
                                  "action_calls": [{"action_id": "add"}]})
    assert decision.next_action == "response"
    assert decision.calls == []
    [problem] = decision.invalid
    assert "next_action must be 'execute' or 'response'" in problem["error"]
    assert repr(next_action) in problem["error"]


def test_decisions_are_serialisable(runtime) -> None:
    decision = runtime.normalize({"tool_calls": [
        {"id": "t", "function": {"name": "add", "arguments": "{bad"}},
        {"id": "u", "function": {"name": "add", "arguments": {"a": 1}}}]})
    assert ActionDecision.model_validate_json(decision.model_dump_json()) == decision


# -- plan() --------------------------------------------------------------------------------
class Recorder:
    def __init__(self, answer) -> None:
        self.answer = answer
        self.seen = []

    async def plan(self, context, request):
        self.seen.append((context, request))
        return self.answer


@pytest.mark.anyio
async def test_plan_asks_the_planner_and_normalises(runtime) -> None:
    planner = Recorder({"action_calls": [{"action_id": "add"}]})
    context = {"round_index": 4}
    request = {"planning_protocol": "structured_plan", "input": "x"}
    decision = await runtime.plan(planner, context, request)
    assert planner.seen == [(context, request)]
    assert decision.calls[0].round_index == 4


@pytest.mark.anyio
async def test_plan_defaults_to_structured_plan(runtime) -> None:
    decision = await runtime.plan(Recorder("hello"), {}, {})
    assert decision.protocol == "structured_plan" and decision.response == "hello"


@pytest.mark.anyio
async def test_plan_rejects_unknown_protocols(runtime) -> None:
    with pytest.raises(ValueError, match="unknown planning protocol 'telepathy'"):
        await runtime.plan(Recorder("x"), {}, {"planning_protocol": "telepathy"})


@pytest.mark.parametrize("text", ["{not json", "[unclosed", "  {\"a\": "])
def test_text_that_only_looks_like_json_is_the_response(runtime, text) -> None:
    decision = runtime.normalize(text)
    assert decision.next_action == "response" and decision.response == text
