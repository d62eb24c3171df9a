"""agently_core.planning: what every model planner shares (options, tools, the transcript
and its budget, the structured plan, prompts, events, failure messages)."""

from __future__ import annotations

import json

import pytest

from agently_core.errors import ConfigError
from agently_core.events import EventCenter
from agently_core.planning import (
    NOT_RUN_TEXT,
    RoundEvents,
    ToolNames,
    anthropic_tools,
    failure_message,
    one_of,
    openai_chat_tools,
    openai_responses_tools,
    optional_bool,
    parse_plan,
    plan_schema,
    read_api_key,
    record_text,
    system_prompt,
    transcript,
    validate_options,
)


def settings(**options):
    return validate_options("demo_planner", {"model": "m", **options}, api_key_env="DEMO_KEY")


# -- options -----------------------------------------------------------------------------------
def test_optional_bool_takes_none_and_booleans_only() -> None:
    assert [optional_bool(v) for v in (None, True, False)] == [None, True, False]
    for bad in ("yes", 1, 0, "true"):
        with pytest.raises(ValueError, match=r"^must be true or false, got "):
            optional_bool(bad)


def test_one_of_lists_the_choices() -> None:
    check = one_of("json_schema", "none")
    assert check("none") == "none"
    for bad in ("json", None, 3, ["none"]):
        with pytest.raises(ValueError, match=r"^must be one of json_schema, none, got "):
            check(bad)
    with pytest.raises(ValueError, match="at least one choice"):
        one_of()


def test_planner_options_use_the_shared_checks() -> None:
    extra = {"store": (optional_bool, None), "mode": (one_of("a", "b"), "a")}
    s = validate_options("demo_planner", {"model": "m", "store": False}, api_key_env="K",
                         extra=extra)
    assert s.extra == {"store": False, "mode": "a"}
    for options, words in (({"store": "no"}, "option store must be true or false, got 'no'"),
                           ({"mode": "c"}, "option mode must be one of a, b, got 'c'"),
                           ({"planning_protocol": "x"}, "option planning_protocol must be "
                            "one of native_tool_calls, structured_plan, got 'x'")):
        with pytest.raises(ConfigError) as failed:
            validate_options("demo_planner", {"model": "m", **options}, api_key_env="K",
                             extra=extra)
        assert str(failed.value) == f"demo_planner: {words}"


def test_defaults_and_values_from_environment_strings() -> None:
    s = settings(timeout="30", stream="false", max_retries="0", temperature=0,
                 extra_headers='{"X-Team": "blue"}')
    assert (s.timeout, s.stream, s.max_retries, s.temperature) == (30.0, False, 0, 0.0)
    assert s.extra_headers == {"X-Team": "blue"}
    d = settings()
    assert (d.api_key_env, d.planning_protocol, d.stream, d.base_url, d.max_retries) == (
        "DEMO_KEY", "native_tool_calls", True, None, 2)


def test_a_missing_model_is_named_with_every_way_to_set_it() -> None:
    for options in ({}, {"model": ""}, {"model": None}):
        with pytest.raises(ConfigError) as failed:
            validate_options("x_planner", options, api_key_env="K")
        assert str(failed.value) == ("x_planner: no model; set planner_options.model, "
                                     "AGENTLY_PLANNER_OPTION_MODEL or set_planner(..., model=...)")


def test_unknown_options_and_the_planners_own() -> None:
    with pytest.raises(ConfigError, match=r"unknown options 'colour', 'size'; known options: "):
        settings(size=1, colour="red")
    own = validate_options("p", {"model": "m", "store": True}, api_key_env="K",
                           extra={"store": (bool, None)})
    assert own.extra == {"store": True}


def test_the_key_is_refused_as_an_option_without_repeating_it() -> None:
    with pytest.raises(ConfigError) as failed:
        settings(api_key="sk-very-secret-value", api_key_env="sk-not-a-name")
    assert "sk-very-secret-value" not in str(failed.value)
    assert "sk-not-a-name" not in str(failed.value)
    assert "environment variable DEMO_KEY" in str(failed.value)


def test_the_key_comes_from_the_named_variable(monkeypatch) -> None:
    monkeypatch.setenv("DEMO_KEY", "  key-123456  ")
    assert read_api_key(settings()) == "key-123456"
    monkeypatch.setenv("DEMO_KEY", "")
    assert read_api_key(settings()) is None
    monkeypatch.setenv("OTHER", "other-key")
    assert read_api_key(settings(api_key_env="OTHER")) == "other-key"


def test_settings_repr_names_headers_only() -> None:
    text = repr(settings(extra_headers={"Authorization": "Bearer abcdef123456"}))
    assert "abcdef123456" not in text and "Authorization" in text


# -- tools ---------------------------------------------------------------------------------------
ACTIONS = [{"name": "add", "description": "Add.", "kwargs": {"properties": {"a": {}}}},
           {"name": "fs.read", "description": "x" * 2000, "kwargs": None},
           {"name": "fs_read", "description": "", "kwargs": {"type": "object"}}]


def test_tool_names_stay_valid_unique_and_map_back() -> None:
    names = ToolNames(a["name"] for a in ACTIONS)
    assert names.tool("add") == "add" and names.tool("fs_read") == "fs_read"
    assert names.tool("fs.read") == "fs_read_2"
    assert names.action("fs_read_2") == "fs.read" and names.action("unknown") == "unknown"
    long = ToolNames(["a" * 100, "a" * 64])
    assert len(long.tool("a" * 100)) <= 64 and long.tool("a" * 100) != "a" * 64


def test_tool_definitions_per_provider() -> None:
    names = ToolNames(a["name"] for a in ACTIONS)
    chat = openai_chat_tools(ACTIONS, names)
    assert chat[0] == {"type": "function", "function": {
        "name": "add", "description": "Add.",
        "parameters": {"properties": {"a": {}}, "type": "object"}}}
    assert len(chat[1]["function"]["description"]) == 1024
    assert chat[1]["function"]["parameters"] == {"type": "object", "properties": {}}
    responses = openai_responses_tools(ACTIONS, names)
    assert responses[1]["name"] == "fs_read_2" and responses[1]["strict"] is False
    anthropic = anthropic_tools(ACTIONS, names)
    assert anthropic[2] == {"name": "fs_read", "description": "",
                            "input_schema": {"type": "object", "properties": {}}}


# -- records as the model sees them ----------------------------------------------------------
def test_record_text_uses_the_digest_when_there_is_one() -> None:
    digest = {"action": "run_python", "result_preview": "42"}
    text = record_text({"status": "success", "result": {"stdout": "huge"}, "digest": digest,
                        "artifact_refs": [{"artifact_id": "art_1"}]})
    assert json.loads(text) == {"status": "success", "digest": digest}
    assert record_text({"status": "success", "result": [1, 2]}) == \
        '{"status":"success","result":[1,2]}'
    failed = json.loads(record_text({"status": "failed", "error_type": "ActionError",
                                     "error": "boom", "result": {"stderr": "trace"}}))
    assert failed == {"status": "failed", "error_type": "ActionError", "error": "boom",
                      "result": {"stderr": "trace"}}


def test_record_text_is_cut_to_its_cap_naming_the_artifacts() -> None:
    text = record_text({"status": "success", "result": "x" * 5000,
                        "artifact_refs": [{"artifact_id": "art_9"}]},
                       max_chars=300)
    assert len(text) == 300
    assert text.endswith("...[cut: 5054 characters in all; the full result is in artifacts "
                         "art_9]")


def _round(i: int, size: int = 1000) -> dict:
    return {"round_index": i, "model_message": {"role": "assistant", "content": f"r{i}"},
            "response": None, "calls": [], "invalid": [],
            "records": [{"call_id": f"c{i}", "action": "a", "status": "success",
                         "result": "x" * size,
                         "artifact_refs": [{"artifact_id": f"art_{i}"}]}]}


def test_a_turn_answers_every_call_id_with_its_result_or_not_run() -> None:
    history = [{"round_index": 0, "calls": [{"id": "a", "action": "x", "kwargs": {}},
                                             {"id": "b", "action": "x", "kwargs": {}}],
                "records": [{"call_id": "a", "action": "x", "status": "success",
                             "result": 7}]}]
    turn = transcript(history, max_result_chars=1000, max_context_chars=10_000).turns[0]
    assert turn.result_text("a") == turn.result_for("a").text == '{"status":"success","result":7}'
    assert turn.result_text("b") == NOT_RUN_TEXT
    assert json.loads(NOT_RUN_TEXT) == {"status": "skipped", "error": "this call did not run"}


def test_transcript_within_budget_is_whole() -> None:
    t = transcript([_round(0), _round(1)], max_result_chars=16000, max_context_chars=100000)
    assert (t.dropped, t.shrunk) == (0, 0)
    assert [r.shrunk for turn in t.turns for r in turn.results] == [False, False]


def test_transcript_shrinks_oldest_results_first() -> None:
    t = transcript([_round(i) for i in range(3)], max_result_chars=16000,
                   max_context_chars=1500)
    assert t.dropped == 0
    assert [turn.results[0].shrunk for turn in t.turns] == [True, True, False]
    assert json.loads(t.turns[0].results[0].text) == {
        "status": "success", "note": "left out to fit the context budget",
        "artifacts": ["art_0"]}


def test_transcript_drops_the_oldest_rounds_but_never_the_latest() -> None:
    t = transcript([_round(i) for i in range(20)], max_result_chars=16000,
                   max_context_chars=2500)
    assert t.dropped > 0 and t.turns[-1].round_index == 19
    assert not t.turns[-1].results[0].shrunk
    assert sum(turn.chars for turn in t.turns) <= 2500
    last_only = transcript([_round(0, 50000)], max_result_chars=100000, max_context_chars=1000)
    assert last_only.dropped == 0 and last_only.turns[0].results[0].shrunk


# -- the structured plan -----------------------------------------------------------------------
PLAN = {"next_action": "execute", "action_calls": [{"action_id": "add",
                                                    "action_input": {"a": 1}}]}


@pytest.mark.parametrize("text", [
    json.dumps(PLAN),
    f"```json\n{json.dumps(PLAN)}\n```",
    f"Sure. {{not json}} Here it is: {json.dumps(PLAN)} -- and {{\"other\": 1}}",
    f"Thinking...\n```\n{json.dumps(PLAN, indent=2)}\n```\nDone.",
])
def test_parse_plan_finds_the_plan(text) -> None:
    assert parse_plan(text) == PLAN


@pytest.mark.parametrize("text", ["The answer is 42.", '{"answer": 42}', "{broken", ""])
def test_text_without_a_plan_is_the_response(text) -> None:
    assert parse_plan(text) == {"next_action": "response", "response": text or None}


def test_plan_schema_lists_the_actions() -> None:
    schema = plan_schema([{"name": "add"}, {"name": "sub"}])
    items = schema["properties"]["action_calls"]["items"]
    assert items["properties"]["action_id"]["enum"] == ["add", "sub"]
    assert schema["required"] == ["next_action"]


def test_system_prompt_parts() -> None:
    native = system_prompt(agent_name="helper", protocol="native_tool_calls",
                           env_state="cwd=/work", instructions="Be brief.", dropped_rounds=2)
    assert native.startswith("You are helper, an agent")
    assert "Environment state:\ncwd=/work" in native
    assert "2 earlier round(s) of this run were left out" in native
    assert native.endswith("Be brief.")
    plan = system_prompt(agent_name=None, protocol="structured_plan",
                         action_list=[{"name": "add", "description": "Add.",
                                       "kwargs": {"type": "object"}}])
    assert plan.startswith("You are an agent") and "- add: Add." in plan
    assert "Environment state" not in plan


# -- events and failures -----------------------------------------------------------------------
@pytest.mark.anyio
async def test_round_events_payloads() -> None:
    center = EventCenter()
    seen = []
    center.subscribe(seen.append)
    events = RoundEvents("p", "m", {"run_id": "r1", "round_index": 2, "events": center})
    await events.request(messages=3, tools=1, stream=True)
    await events.delta("he")
    await events.delta("")
    await events.response(model=None, usage={"input_tokens": 5, "output_tokens": 1},
                          tool_calls=0, finish_reason="stop")
    await events.failed("boom")
    assert [e.type for e in seen] == ["model.request", "model.delta", "model.response",
                                      "model.failed"]
    assert seen[1].payload == {"planner": "p", "text": "he", "run_id": "r1", "round_index": 2}
    assert seen[2].payload["model"] == "m" and seen[2].payload["input_tokens"] == 5
    quiet = RoundEvents("p", "m", {"events": EventCenter()})
    assert not quiet.active


def test_failure_messages_say_what_to_do() -> None:
    s = settings(timeout=2)
    url = "http://h/v1"
    assert failure_message(s, kind="status", base_url=url, status=401, detail="bad") == \
        "demo_planner: the key in DEMO_KEY was refused by http://h/v1: 401 bad"
    assert "DEMO_KEY is not set" in failure_message(s, kind="status", base_url=url,
                                                   status=401, key_set=False)
    assert failure_message(s, kind="timeout", base_url=url, retries=2) == (
        "demo_planner: no answer from http://h/v1 within 2 s after 2 retries; check that the "
        "server runs and answers, or raise the timeout option")
    assert "could not reach http://h/v1" in failure_message(s, kind="connection", base_url=url)
    assert "kept limiting the rate" in failure_message(s, kind="status", base_url=url,
                                                       status=429, retries=1)
    assert "lower max_context_chars" in failure_message(s, kind="status", base_url=url,
                                                        status=413)
    assert len(failure_message(s, kind="status", base_url=url, status=400,
                               detail="y" * 5000)) < 400
