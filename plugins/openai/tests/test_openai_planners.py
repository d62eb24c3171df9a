"""Both OpenAI planners, one round at a time, through the real ``openai`` SDK against a
loopback server speaking the real wire formats: streaming and tool-call assembly,
parallel calls, malformed arguments, retries, failures, timeouts, cancellation, usage and
events, both planning protocols, the transcript budget and tool names."""

from __future__ import annotations

import json
import math
import time

import anyio
import pytest

from agently_core.errors import ConfigError, ModelError
from agently_core.testing.model_servers import Reply, ToolCall

pytestmark = pytest.mark.anyio
PLANNERS = ["openai_compatible", "openai_responses"]


def sent_text(body: dict) -> str:
    """Everything a request sent as JSON text (to search in)."""
    return json.dumps(body)


def tool_results(name: str, body: dict) -> dict[str, str]:
    """The tool results a request carried: call id -> text."""
    if name == "openai_compatible":
        return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}
    return {i["call_id"]: i["output"] for i in body["input"]
            if i.get("type") == "function_call_output"}


# -- streaming and assembly ---------------------------------------------------------------------
@pytest.mark.parametrize("name", PLANNERS)
async def test_streamed_tool_call_arguments_split_across_chunks(name, server, kit) -> None:
    arguments = {"a": 123456789, "b": 987654321, "note": "x" * 40}
    text = "Adding the two numbers now."
    srv = server([Reply(text=text, tool_calls=[ToolCall("add", arguments)], chunk_chars=3)])
    events = kit.Events()
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url)
    raw = await planner.plan(kit.context(events=events), kit.request())
    assert srv.last_request.json["stream"] is True
    [call] = raw["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "add"
    assert json.loads(call["function"]["arguments"]) == arguments
    assert raw["content"] == text
    deltas = [e["text"] for e in events.of("model.delta")]
    assert "".join(deltas) == text and len(deltas) == math.ceil(len(text) / 3)
    assert all(e["planner"] == name and e["run_id"] == "run_test" and e["round_index"] == 0
               for e in events.of("model.delta"))


@pytest.mark.parametrize("name", PLANNERS)
async def test_a_whole_answer_without_streaming(name, server, kit) -> None:
    srv = server([Reply(text="thinking", tool_calls=[ToolCall("add", {"a": 1, "b": 2})])])
    events = kit.Events()
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url, stream=False)
    raw = await planner.plan(kit.context(events=events), kit.request())
    assert "stream" not in srv.last_request.json
    assert json.loads(raw["tool_calls"][0]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert raw["content"] == "thinking"
    assert events.of("model.delta") == []
    assert events.of("model.response")[0]["tool_calls"] == 1


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("name", PLANNERS)
async def test_parallel_tool_calls_and_their_results_go_back_by_id(name, stream, server,
                                                                   kit) -> None:
    srv = server([Reply(tool_calls=[ToolCall("add", {"a": 1, "b": 2}, id="call_A"),
                                    ToolCall("add", {"a": 3, "b": 4}, id="call_B")]),
                  Reply(text="3 and 7")])
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url, stream=stream)
    raw = await planner.plan(kit.context(), kit.request())
    assert [c["id"] for c in raw["tool_calls"]] == ["call_A", "call_B"]
    assert [json.loads(c["function"]["arguments"]) for c in raw["tool_calls"]] == [
        {"a": 1, "b": 2}, {"a": 3, "b": 4}]
    # the records come back in another order: each result still finds its call
    history = [{"round_index": 0, "model_message": raw["model_message"], "response": None,
                "calls": [], "invalid": [],
                "records": [{"call_id": "call_B", "action": "add", "status": "success",
                             "result": 7},
                            {"call_id": "call_A", "action": "add", "status": "success",
                             "result": 3}]}]
    second = await planner.plan(kit.context(1, history), kit.request())
    assert second["content"] == "3 and 7" and second["tool_calls"] == []
    results = tool_results(name, srv.last_request.json)
    assert results == {"call_A": '{"status":"success","result":3}',
                       "call_B": '{"status":"success","result":7}'}


@pytest.mark.parametrize("name", PLANNERS)
async def test_malformed_arguments_are_returned_as_sent_and_replayed_as_valid_json(
        name, server, kit) -> None:
    srv = server([Reply(tool_calls=[ToolCall("add", '{"a": 1, "b":', id="call_bad")]),
                  Reply(text="sorry")])
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url)
    raw = await planner.plan(kit.context(), kit.request())
    assert raw["tool_calls"][0]["function"]["arguments"] == '{"a": 1, "b":'
    history = [{"round_index": 0, "model_message": raw["model_message"], "response": None,
                "calls": [], "invalid": [{"call_id": "call_bad", "action": "add",
                                          "error": "arguments are not valid JSON"}],
                "records": [{"call_id": "call_bad", "action": "add", "status": "failed",
                             "error_type": "InvalidCall",
                             "error": "arguments are not valid JSON: Expecting value"}]}]
    await planner.plan(kit.context(1, history), kit.request())
    body = srv.last_request.json
    assert json.loads(tool_results(name, body)["call_bad"]) == {
        "status": "failed", "error_type": "InvalidCall",
        "error": "arguments are not valid JSON: Expecting value"}
    replayed = (body["messages"][2]["tool_calls"][0]["function"]["arguments"]
                if name == "openai_compatible" else body["input"][1]["arguments"])
    assert json.loads(replayed) == {"invalid_arguments": '{"a": 1, "b":'}


@pytest.mark.parametrize("name", PLANNERS)
async def test_an_empty_answer_is_no_calls_and_no_text(name, server, kit) -> None:
    srv = server([Reply()])
    raw = await kit.planner_of(name, model="stand-in", base_url=srv.base_url).plan(
        kit.context(), kit.request())
    assert raw["tool_calls"] == [] and raw["content"] is None and raw["model_message"] is None


# -- failures ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PLANNERS)
async def test_429_then_success_is_retried_by_the_sdk(name, server, kit) -> None:
    srv = server([Reply.failure(429, retry_after=0.01), Reply(text="fine")])
    raw = await kit.planner_of(name, model="stand-in", base_url=srv.base_url).plan(
        kit.context(), kit.request())
    assert raw["content"] == "fine"
    assert [r.headers["x-stainless-retry-count"] for r in srv.requests] == ["0", "1"]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("name", PLANNERS)
async def test_401_names_the_key_variable_and_the_server(name, stream, server, kit) -> None:
    srv = server([Reply.failure(401)])
    events = kit.Events()
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url, stream=stream)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(events=events), kit.request())
    message = str(failed.value)
    assert message == (f"{name}: the key in OPENAI_API_KEY was refused by {srv.base_url}: "
                       "401 Incorrect API key provided.")
    assert failed.value.status == 401 and failed.value.planner == name
    assert failed.value.__cause__ is None and failed.value.__context__ is None
    assert len(srv.requests) == 1  # a refused key is not retried
    assert srv.requests[0].headers["authorization"] == f"Bearer {kit.KEY}"
    assert events.of("model.failed") == [{"planner": name, "model": "stand-in",
                                          "error": message, "run_id": "run_test",
                                          "round_index": 0}]


async def test_401_names_the_variable_chosen_with_api_key_env(server, kit, monkeypatch) -> None:
    monkeypatch.setenv("TEAM_MODEL_KEY", "team-key-0123456789")
    srv = server([Reply.failure(401, "bad key team-key-0123456789 given")])
    planner = kit.planner_of("openai_compatible", model="m", base_url=srv.base_url,
                             api_key_env="TEAM_MODEL_KEY")
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert str(failed.value) == (f"openai_compatible: the key in TEAM_MODEL_KEY was refused by "
                                 f"{srv.base_url}: 401 bad key *** given")
    assert srv.requests[0].headers["authorization"] == "Bearer team-key-0123456789"


@pytest.mark.parametrize("name", PLANNERS)
async def test_5xx_is_retried_then_reported(name, server, kit) -> None:
    srv = server([Reply.failure(500, retry_after=0.01)] * 3)
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url, max_retries=2)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert len(srv.requests) == 3
    assert str(failed.value) == (f"{name}: {srv.base_url} failed after 2 retries: 500 The "
                                 "server had an error while processing your request.")


@pytest.mark.parametrize(("status", "words"), [
    (404, "has no model 'stand-in' or no such endpoint"),
    (403, "the key in OPENAI_API_KEY may not use model 'stand-in'"),
    (400, "rejected the request for model 'stand-in'"),
])
async def test_other_refusals_say_what_to_check(status, words, server, kit) -> None:
    srv = server([Reply.failure(status)])
    planner = kit.planner_of("openai_compatible", model="stand-in", base_url=srv.base_url)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert words in str(failed.value) and failed.value.status == status


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("name", PLANNERS)
async def test_a_hanging_server_times_out(name, stream, server, kit) -> None:
    srv = server([Reply.hanging(), Reply.hanging()])
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url, timeout=0.3,
                             max_retries=1, stream=stream)
    started = time.monotonic()
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert time.monotonic() - started < 5
    assert len(srv.requests) == 2
    assert str(failed.value) == (f"{name}: no answer from {srv.base_url} within 0.3 s after 1 "
                                 "retry; check that the server runs and answers, or raise the "
                                 "timeout option")


@pytest.mark.parametrize("name", PLANNERS)
async def test_a_stream_that_goes_silent_midway_times_out(name, server, kit) -> None:
    srv = server([Reply(text="a long answer that stops", stop_after=3, hang=True)])
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url, timeout=0.3)
    with pytest.raises(ModelError, match=r"no answer from .* within 0\.3 s"):
        await planner.plan(kit.context(), kit.request())
    assert len(srv.requests) == 1  # a stream that started is not sent again


@pytest.mark.parametrize("name", PLANNERS)
async def test_a_stream_that_breaks_off_is_a_model_error(name, server, kit) -> None:
    srv = server([Reply(text="a long answer that breaks off", stop_after=4)])
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url)
    with pytest.raises(ModelError, match=f"{name}: the answer from .* broke off"):
        await planner.plan(kit.context(), kit.request())


async def test_an_unreachable_server_says_so(kit) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    planner = kit.planner_of("openai_compatible", model="m", base_url=url, max_retries=0)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert str(failed.value).startswith(f"openai_compatible: could not reach {url}")


async def test_a_responses_stream_error_event_is_a_model_error(server, kit) -> None:
    body = ('event: response.created\ndata: {"type":"response.created","sequence_number":0,'
            '"response":{"id":"r","object":"response","created_at":0,"model":"m","output":[],'
            '"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"status":"in_progress"}}'
            '\n\nevent: error\ndata: {"type":"error","sequence_number":1,"code":"server_error",'
            '"message":"the model crashed","param":null}\n\n')
    srv = server([Reply(body=body)])
    planner = kit.planner_of("openai_responses", model="m", base_url=srv.base_url)
    with pytest.raises(ModelError, match="server_error: the model crashed"):
        await planner.plan(kit.context(), kit.request())


# -- cancellation ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PLANNERS)
async def test_cancelling_mid_stream_cancels_the_request(name, server, kit) -> None:
    text = "word " * 200  # 500 pieces of 2 characters, 20 ms apart: ~10 s in all
    srv = server([Reply(text=text, chunk_chars=2, chunk_delay=0.02), Reply(text="again")])
    events = kit.Events()
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url)
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        async def first_round() -> None:
            await planner.plan(kit.context(events=events), kit.request())
            raise AssertionError("the round finished although it was cancelled")

        group.start_soon(first_round)
        with anyio.fail_after(5):
            while not events.of("model.delta"):
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    assert time.monotonic() - started < 3
    with anyio.fail_after(5):
        while not srv.aborted:  # the server sees its client go away
            await anyio.sleep(0.01)
    assert srv.aborted == [1]
    assert len(events.of("model.delta")) < 100
    assert events.of("model.response") == []
    raw = await planner.plan(kit.context(), kit.request())  # the planner carries on
    assert raw["content"] == "again"


# -- usage and events ----------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("name", PLANNERS)
async def test_usage_and_model_events(name, stream, server, kit) -> None:
    srv = server([Reply(text="hi", tool_calls=[("add", {"a": 1, "b": 2})],
                        usage={"input_tokens": 120, "output_tokens": 7})])
    events = kit.Events()
    planner = kit.planner_of(name, model="stand-in", base_url=srv.base_url, stream=stream)
    raw = await planner.plan(kit.context(3, events=events), kit.request())
    assert raw["usage"] == {"input_tokens": 120, "output_tokens": 7}
    assert raw["model"] == "stand-in"
    [asked] = events.of("model.request")
    assert asked == {"planner": name, "model": "stand-in", "messages": 2 if name ==
                     "openai_compatible" else 1, "tools": 1, "stream": stream,
                     "run_id": "run_test", "round_index": 3}
    [answered] = events.of("model.response")
    assert answered["latency_ms"] > 0
    assert {k: v for k, v in answered.items() if k != "latency_ms"} == {
        "planner": name, "model": "stand-in", "input_tokens": 120, "output_tokens": 7,
        "tool_calls": 1, "finish_reason": "tool_calls" if name == "openai_compatible"
        else "completed", "run_id": "run_test", "round_index": 3}
    assert [e.source for e in events.seen] == ["planner"] * len(events.seen)


@pytest.mark.parametrize("name", PLANNERS)
async def test_no_usage_reported_is_none(name, server, kit) -> None:
    srv = server([Reply(text="hi", usage=False)])
    raw = await kit.planner_of(name, model="m", base_url=srv.base_url).plan(
        kit.context(), kit.request())
    assert raw["usage"] is None


async def test_stream_usage_can_be_turned_off(server, kit) -> None:
    srv = server([Reply(text="hi")])
    raw = await kit.planner_of("openai_compatible", model="m", base_url=srv.base_url,
                               stream_usage=False).plan(kit.context(), kit.request())
    assert "stream_options" not in srv.last_request.json and raw["usage"] is None


# -- the structured plan ---------------------------------------------------------------------
CHATTY_PLAN = ('Sure! Here is my plan:\n```json\n{"next_action": "execute", "action_calls": '
               '[{"action_id": "add", "action_input": {"a": 1, "b": 2}, "purpose": "sum"}]}\n'
               '```\nI hope this helps.')


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("name", PLANNERS)
async def test_structured_plan_with_the_schema_and_tolerant_parsing(name, stream, server,
                                                                    kit) -> None:
    srv = server([Reply(text=CHATTY_PLAN),
                  Reply(text='{"next_action": "response", "response": "3"}')])
    planner = kit.planner_of(name, model="m", base_url=srv.base_url, stream=stream,
                             planning_protocol="structured_plan")
    raw = await planner.plan(kit.context(), kit.request())
    assert raw["next_action"] == "execute"
    assert raw["action_calls"] == [{"action_id": "add", "action_input": {"a": 1, "b": 2},
                                    "purpose": "sum"}]
    body = srv.last_request.json
    assert "tools" not in body
    if name == "openai_compatible":
        schema = body["response_format"]["json_schema"]["schema"]
        prompt = body["messages"][0]["content"]
    else:
        schema = body["text"]["format"]["schema"]
        prompt = body["instructions"]
    assert schema["properties"]["action_calls"]["items"]["properties"]["action_id"]["enum"] \
        == ["add"]
    assert '"next_action": "response"' in prompt and "- add: Add two integers." in prompt
    history = [{"round_index": 0, "model_message": raw["model_message"], "response": None,
                "calls": [{"id": "call_x", "action": "add", "kwargs": {"a": 1, "b": 2}}],
                "invalid": [], "records": [{"call_id": "call_x", "action": "add",
                                            "status": "success", "result": 3}]}]
    second = await planner.plan(kit.context(1, history), kit.request())
    assert second["next_action"] == "response" and second["response"] == "3"
    turns = (srv.last_request.json["messages"][2:] if name == "openai_compatible"
             else srv.last_request.json["input"][1:])
    assert turns == [{"role": "assistant", "content": CHATTY_PLAN},
                     {"role": "user", "content": 'Results of your action calls in round 0:\n'
                                                 '- add (call call_x): '
                                                 '{"status":"success","result":3}'}]


@pytest.mark.parametrize(("mode", "expected"), [
    ("json_object", {"type": "json_object"}), ("none", None)])
async def test_structured_output_modes(mode, expected, server, kit) -> None:
    srv = server([Reply(text='{"next_action": "response", "response": "ok"}')])
    raw = await kit.planner_of("openai_compatible", model="m", base_url=srv.base_url,
                               planning_protocol="structured_plan",
                               structured_output=mode).plan(kit.context(), kit.request())
    assert srv.last_request.json.get("response_format") == expected
    assert raw["response"] == "ok"


@pytest.mark.parametrize("name", PLANNERS)
async def test_a_plain_answer_in_the_structured_protocol_is_the_response(name, server,
                                                                        kit) -> None:
    srv = server([Reply(text="The answer is 3.")])
    raw = await kit.planner_of(name, model="m", base_url=srv.base_url,
                               planning_protocol="structured_plan").plan(
        kit.context(), kit.request())
    assert raw["next_action"] == "response" and raw["response"] == "The answer is 3."


# -- prompts, the transcript budget, tool names ---------------------------------------------------
@pytest.mark.parametrize("name", PLANNERS)
async def test_env_state_and_instructions_reach_the_system_prompt(name, server, kit) -> None:
    srv = server([Reply(text="ok")])
    await kit.planner_of(name, model="m", base_url=srv.base_url,
                         instructions="Answer in French.").plan(
        kit.context(env_state="cwd: /work\nfiles: notes.txt"), kit.request())
    body = srv.last_request.json
    prompt = body["messages"][0]["content"] if name == "openai_compatible" \
        else body["instructions"]
    assert prompt.startswith("You are tester, an agent")
    assert "Environment state:\ncwd: /work\nfiles: notes.txt" in prompt
    assert prompt.endswith("Answer in French.")


@pytest.mark.parametrize("name", PLANNERS)
async def test_the_context_budget_shrinks_then_drops_the_oldest_results(name, server,
                                                                       kit) -> None:
    srv = server([Reply(text="ok")])
    planner = kit.planner_of(name, model="m", base_url=srv.base_url, max_context_chars=7000)

    def round_(i: int) -> dict:
        call_id = f"call_{i}"
        return {"round_index": i, "response": None, "invalid": [],
                "model_message": None,
                "calls": [{"id": call_id, "action": "add", "kwargs": {"a": i, "b": i}}],
                "records": [{"call_id": call_id, "action": "add", "status": "success",
                             "result": f"r{i}:" + "x" * 3000,
                             "artifact_refs": [{"artifact_id": f"art_{i}"}]}]}

    await planner.plan(kit.context(30, [round_(i) for i in range(30)]), kit.request())
    body = srv.last_request.json
    results = tool_results(name, body)
    text = sent_text(body)
    assert len(text) < 12_000  # 7000 characters of text, escaped on the wire (90,000 whole)
    assert results["call_29"].startswith('{"status":"success","result":"r29:xxx')  # latest
    assert "call_0" not in results  # the oldest left out ...
    prompt = body["messages"][0]["content"] if name == "openai_compatible" \
        else body["instructions"]
    assert "earlier round(s) of this run were left out to fit the context budget" in prompt
    shrunk = [v for v in results.values() if "left out to fit the context budget" in v]
    assert shrunk, results  # ... and the older ones that stay are shrunk to their ids
    assert all('"artifacts":["art_' in v for v in shrunk)


@pytest.mark.parametrize("name", PLANNERS)
async def test_action_names_a_provider_refuses_are_mapped(name, server, kit) -> None:
    action = {"name": "files.read", "description": "Read a file.",
              "kwargs": {"type": "object", "properties": {"path": {"type": "string"}}}}
    srv = server([Reply(tool_calls=[ToolCall("files_read", {"path": "a.txt"})])])
    raw = await kit.planner_of(name, model="m", base_url=srv.base_url).plan(
        kit.context(), kit.request(actions=[action]))
    tools = srv.last_request.json["tools"]
    names = [t["function"]["name"] if name == "openai_compatible" else t["name"] for t in tools]
    assert names == ["files_read"]
    assert raw["tool_calls"][0]["function"]["name"] == "files.read"


async def test_max_tokens_and_temperature_reach_the_request(server, kit) -> None:
    srv = server([Reply(text="ok"), Reply(text="ok")])
    await kit.planner_of("openai_compatible", model="m", base_url=srv.base_url, max_tokens=64,
                         temperature=0.2).plan(kit.context(), kit.request())
    assert srv.last_request.json["max_tokens"] == 64
    assert srv.last_request.json["temperature"] == 0.2
    await kit.planner_of("openai_responses", model="m", base_url=srv.base_url,
                         max_tokens=64).plan(kit.context(), kit.request())
    assert srv.last_request.json["max_output_tokens"] == 64


# -- options, the key ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PLANNERS)
def test_a_missing_model_names_the_planner_and_every_way_to_set_it(name, kit) -> None:
    with pytest.raises(ConfigError) as failed:
        kit.planner_of(name, base_url="http://127.0.0.1:9/v1")
    assert str(failed.value) == (f"{name}: no model; set planner_options.model, "
                                 "AGENTLY_PLANNER_OPTION_MODEL or set_planner(..., model=...)")


@pytest.mark.parametrize(("options", "words"), [
    ({"temprature": 0.2}, "unknown option 'temprature'; known options: api_key_env, base_url"),
    ({"timeout": 0}, "option timeout must be above 0, got 0"),
    ({"timeout": "soon"}, "option timeout must be a number, got 'soon'"),
    ({"max_retries": -1}, "option max_retries must be at least 0"),
    ({"stream": "maybe"}, "option stream must be true or false"),
    ({"planning_protocol": "telepathy"}, "option planning_protocol must be one of"),
    ({"base_url": "localhost:11434"}, "option base_url must be an http:// or https:// URL"),
    ({"extra_headers": {"X-A": "1\r\nX-B: 2"}}, "must not hold a line break"),
    ({"api_key_env": "MY KEY"}, "option api_key_env must be the name of an environment"),
])
def test_bad_options_are_config_errors(options, words, kit) -> None:
    with pytest.raises(ConfigError, match=r"^openai_compatible: ") as failed:
        kit.planner_of("openai_compatible", **{"model": "m",
                                               "base_url": "http://127.0.0.1:9/v1", **options})
    assert words in str(failed.value)


def test_the_key_is_never_an_option_and_never_echoed(kit) -> None:
    with pytest.raises(ConfigError) as failed:
        kit.planner_of("openai_compatible", model="m", api_key="sk-given-by-mistake-123")
    assert str(failed.value) == ("openai_compatible: the API key is not an option; put it in "
                                 "the environment variable OPENAI_API_KEY (choose another one "
                                 "with api_key_env=...)")


def test_no_key_for_the_openai_api_is_a_config_error(kit, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="openai_responses: no API key: OPENAI_API_KEY is not "
                                          "set; put your OpenAI key there, or set base_url"):
        kit.planner_of("openai_responses", model="m")


async def test_no_key_for_a_local_server_sends_no_authorization(server, kit,
                                                                monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    srv = server([Reply(text="local"), Reply.failure(401)])
    planner = kit.planner_of("openai_compatible", model="llama3.2", base_url=srv.base_url)
    assert (await planner.plan(kit.context(), kit.request()))["content"] == "local"
    assert "authorization" not in srv.last_request.headers
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert str(failed.value).startswith(f"openai_compatible: {srv.base_url} wants an API key "
                                        "and OPENAI_API_KEY is not set")


async def test_extra_headers_timeout_and_retries_reach_the_sdk(server, kit) -> None:
    srv = server([Reply(text="ok")])
    planner = kit.planner_of("openai_compatible", model="m", base_url=srv.base_url,
                             extra_headers={"X-Team": "blue"}, timeout=7, max_retries=0)
    await planner.plan(kit.context(), kit.request())
    headers = srv.last_request.headers
    assert headers["x-team"] == "blue" and headers["x-stainless-read-timeout"] == "7.0"
    assert planner.client().max_retries == 0


@pytest.mark.parametrize("name", PLANNERS)
async def test_the_key_is_in_no_event_error_log_or_repr(name, server, kit, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    srv = server([Reply(text="ok", tool_calls=[("add", {"a": 1, "b": 2})]),
                  Reply.failure(401, f"Incorrect API key provided: {kit.KEY}")])
    events = kit.Events()
    planner = kit.planner_of(name, model="m", base_url=srv.base_url,
                             extra_headers={"X-Api-Key": kit.KEY[::-1]})
    raw = await planner.plan(kit.context(events=events), kit.request())
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(events=events), kit.request())
    # it was sent (the search below can find it) ...
    assert srv.requests[0].headers["authorization"] == f"Bearer {kit.KEY}"
    assert srv.requests[0].headers["x-api-key"] == kit.KEY[::-1]
    # ... and it is nowhere else
    seen = [json.dumps(raw), str(failed.value), repr(failed.value), repr(planner),
            repr(planner.settings), caplog.text,
            json.dumps([e.model_dump(mode="json") for e in events.seen])]
    for text in seen:
        assert kit.KEY not in text and kit.KEY[::-1] not in text
    assert "***" in str(failed.value)


def test_discovery_does_not_import_the_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys; from agently_core.plugins import PluginManager; "
            "pm = PluginManager().load(); "
            "names = pm.registrations('planner'); assert 'openai_compatible' in names, names; "
            "assert 'openai_responses' in names; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('openai', 'httpx', 'httpx2', 'agently_core_openai')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['agently_core_openai', 'agently_core_openai.plugin']"


# -- generate (auto_func) -------------------------------------------------------------------------
@pytest.mark.parametrize("name", PLANNERS)
async def test_generate_asks_for_the_output_schema_with_the_loop_and_the_feedback(
        name, server, kit) -> None:
    srv = server([Reply(text='{"result": 42}', usage={"input_tokens": 50, "output_tokens": 4})])
    events = kit.Events()
    schema = {"type": "object", "properties": {"result": {"type": "integer"}},
              "required": ["result"]}
    history = [{"round_index": 0, "model_message": None, "response": None, "invalid": [],
                "calls": [{"id": "c1", "action": "count_rows", "kwargs": {"table": "apples"}}],
                "records": [{"call_id": "c1", "action": "count_rows", "status": "success",
                             "result": 42}]}]
    answer = await kit.planner_of(name, model="m", base_url=srv.base_url).generate(
        kit.context(history=history, events=events, env_state="db: fruit.db"),
        {"instruction": "Count the apples.", "function": "count", "input": {"things": "apples"},
         "output_schema": schema, "attempt": 1,
         "feedback": [{"output": '{"result": "many"}',
                       "error": "result: Input should be a valid integer"}]})
    assert answer == {"text": '{"result": 42}', "model": "m",
                      "usage": {"input_tokens": 50, "output_tokens": 4}}
    body = srv.last_request.json
    if name == "openai_compatible":
        assert body["response_format"] == {"type": "json_schema", "json_schema": {
            "name": "output", "schema": schema, "strict": False}}
        system, *turns = body["messages"]
        system = system["content"]
    else:
        assert body["text"]["format"]["schema"] == schema
        system, turns = body["instructions"], body["input"]
    assert "Environment state:\ndb: fruit.db" in system
    assert "tools" not in body
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    task = turns[0]["content"]
    assert task.startswith("Compute the result of the function count.\nInstruction:\n"
                           "Count the apples.\nInput (JSON): {\"things\":\"apples\"}")
    assert '- count_rows({"table":"apples"}): {"status":"success","result":42}' in task
    assert turns[1]["content"] == '{"result": "many"}'
    assert turns[2]["content"].startswith("That answer is not valid: result: Input should be "
                                          "a valid integer\nAnswer with one JSON value")
    kinds = [e.type for e in events.seen]
    assert kinds[0] == "model.request" and kinds[-1] == "model.response"
    assert set(kinds[1:-1]) == {"model.delta"}


@pytest.mark.parametrize("name", PLANNERS)
def test_auto_func_end_to_end(name, server, make_agent) -> None:
    srv = server([Reply(text='{"title": "Hello", "words": 2}')])
    agent = make_agent()
    agent.set_planner(name, model="m", base_url=srv.base_url)

    @agent.auto_func(output={"title": (str, "a title", True), "words": (int, "", True)})
    def summarize(text: str) -> dict:
        """Give {text} a title and count its words."""

    assert summarize("hello world") == {"title": "Hello", "words": 2}
    assert "hello world" in srv.last_request.body.decode()


async def test_streamed_tool_calls_without_an_index_are_told_apart_by_their_ids(server,
                                                                              kit) -> None:
    def chunk(delta: dict, finish: str | None = None) -> str:
        return "data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0,
                                      "model": "m", "choices": [{"index": 0, "delta": delta,
                                                                 "finish_reason": finish}]})

    def call(**fields) -> dict:
        return {"tool_calls": [{"type": "function", **fields}]}

    body = "\n\n".join([
        chunk(call(id="c1", function={"name": "add", "arguments": '{"a": 1,'})),
        chunk(call(function={"arguments": ' "b": 2}'})),
        chunk(call(id="c2", function={"name": "add", "arguments": '{"a": 3, "b": 4}'})),
        chunk({}, "tool_calls"), "data: [DONE]", ""])
    srv = server([Reply(body=body)])
    raw = await kit.planner_of("openai_compatible", model="m", base_url=srv.base_url).plan(
        kit.context(), kit.request())
    assert [(c["id"], json.loads(c["function"]["arguments"])) for c in raw["tool_calls"]] == [
        ("c1", {"a": 1, "b": 2}), ("c2", {"a": 3, "b": 4})]


async def test_an_error_inside_a_chat_stream_is_a_model_error(server, kit) -> None:
    body = ('data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
            '"choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}\n\n'
            f'data: {{"error":{{"message":"overloaded mid-stream, key {kit.KEY}",'
            '"type":"server_error"}}\n\n')
    srv = server([Reply(body=body)])
    planner = kit.planner_of("openai_compatible", model="m", base_url=srv.base_url)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert str(failed.value) == (f"openai_compatible: the answer from {srv.base_url} broke off "
                                 "or could not be read: overloaded mid-stream, key ***")


async def test_a_failed_response_is_a_model_error(server, kit) -> None:
    def event(kind: str, **fields) -> str:
        return f"event: {kind}\ndata: " + json.dumps({"type": kind, **fields}) + "\n\n"

    response = {"id": "r", "object": "response", "created_at": 0, "model": "m", "output": [],
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    body = (event("response.created", sequence_number=0,
                  response={**response, "status": "in_progress"})
            + event("response.failed", sequence_number=1, response={
                **response, "status": "failed",
                "error": {"code": "server_error", "message": "the model gave up"}}))
    srv = server([Reply(body=body)])
    planner = kit.planner_of("openai_responses", model="m", base_url=srv.base_url)
    with pytest.raises(ModelError, match="server_error: the model gave up"):
        await planner.plan(kit.context(), kit.request())
