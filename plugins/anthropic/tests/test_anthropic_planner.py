"""The Anthropic planner, one round at a time, through the real ``anthropic`` SDK against
a loopback server speaking the real Messages wire format: streaming and tool-input
assembly, parallel tool use, malformed input, retries, failures, timeouts, cancellation,
usage and events, both planning protocols, the transcript budget, tool names, options
and the key."""

from __future__ import annotations

import itertools
import json
import math
import time

import anyio
import pytest

from agently_core.errors import ConfigError, ModelError
from agently_core.testing.model_servers import Reply, ToolCall

pytestmark = pytest.mark.anyio
NAME = "anthropic_compatible"


def history_of(raw: dict, records: list[dict], *, calls: list | None = None,
               round_index: int = 0) -> list[dict]:
    return [{"round_index": round_index, "model_message": raw["model_message"],
             "response": raw.get("content"), "calls": calls or [], "invalid": [],
             "records": records}]


# -- streaming and assembly ---------------------------------------------------------------------
async def test_streamed_tool_input_split_across_chunks(server, kit) -> None:
    arguments = {"a": 123456789, "b": 987654321, "note": "x" * 40}
    text = "Adding the two numbers now."
    srv = server([Reply(text=text, tool_calls=[ToolCall("add", arguments, id="toolu_1")],
                        chunk_chars=3)])
    events = kit.Events()
    planner = kit.planner_of(model="stand-in", base_url=srv.url)
    raw = await planner.plan(kit.context(events=events), kit.request())
    sent = srv.last_request
    assert sent.path == "/v1/messages" and sent.json["stream"] is True
    [call] = raw["tool_calls"]
    assert call == {"id": "toolu_1", "type": "function",
                    "function": {"name": "add", "arguments": json.dumps(
                        arguments, separators=(",", ":"))}}
    assert raw["content"] == text
    assert raw["model_message"] == {"role": "assistant", "content": [
        {"type": "text", "text": text},
        {"type": "tool_use", "id": "toolu_1", "name": "add", "input": arguments}]}
    deltas = [e["text"] for e in events.of("model.delta")]
    assert "".join(deltas) == text and len(deltas) == math.ceil(len(text) / 3)
    assert all(e["planner"] == NAME and e["run_id"] == "run_test" and e["round_index"] == 0
               for e in events.of("model.delta"))


async def test_a_whole_answer_without_streaming(server, kit) -> None:
    srv = server([Reply(text="thinking", tool_calls=[ToolCall("add", {"a": 1, "b": 2})])])
    events = kit.Events()
    planner = kit.planner_of(model="stand-in", base_url=srv.url, stream=False)
    raw = await planner.plan(kit.context(events=events), kit.request())
    assert "stream" not in srv.last_request.json
    assert json.loads(raw["tool_calls"][0]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert raw["tool_calls"][0]["id"] == "toolu_lb1x0"
    assert raw["content"] == "thinking"
    assert events.of("model.delta") == []
    assert events.of("model.response")[0]["tool_calls"] == 1


async def test_the_request_carries_system_tools_and_max_tokens(server, kit) -> None:
    srv = server([Reply(text="ok")])
    await kit.planner_of(model="claude-stand-in", base_url=srv.url).plan(
        kit.context(), kit.request())
    body = srv.last_request.json
    assert set(body) == {"model", "max_tokens", "system", "messages", "tools", "stream"}
    assert body["model"] == "claude-stand-in" and body["max_tokens"] == 8192
    assert body["system"].startswith("You are tester, an agent")
    assert body["messages"] == [{"role": "user", "content": "add 1 and 2"}]
    assert body["tools"] == [{"name": "add", "description": "Add two integers.",
                              "input_schema": kit.ADD["kwargs"]}]


@pytest.mark.parametrize("stream", [True, False])
async def test_parallel_tool_use_and_results_go_back_by_tool_use_id(stream, server,
                                                                   kit) -> None:
    srv = server([Reply(text="Both at once.",
                        tool_calls=[ToolCall("add", {"a": 1, "b": 2}, id="toolu_A"),
                                    ToolCall("add", {"a": 3, "b": 4}, id="toolu_B")]),
                  Reply(text="3 and 7")])
    planner = kit.planner_of(model="stand-in", base_url=srv.url, stream=stream)
    raw = await planner.plan(kit.context(), kit.request())
    assert [c["id"] for c in raw["tool_calls"]] == ["toolu_A", "toolu_B"]
    assert [json.loads(c["function"]["arguments"]) for c in raw["tool_calls"]] == [
        {"a": 1, "b": 2}, {"a": 3, "b": 4}]
    # the records come back in another order: each result still finds its tool_use
    records = [{"call_id": "toolu_B", "action": "add", "status": "success", "result": 7},
               {"call_id": "toolu_A", "action": "add", "status": "success", "result": 3}]
    second = await planner.plan(kit.context(1, history_of(raw, records)), kit.request())
    assert second["content"] == "3 and 7" and second["tool_calls"] == []
    assert srv.last_request.json["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Both at once."},
            {"type": "tool_use", "id": "toolu_A", "name": "add", "input": {"a": 1, "b": 2}},
            {"type": "tool_use", "id": "toolu_B", "name": "add", "input": {"a": 3, "b": 4}}]},
        {"role": "user", "content": [  # in the order of the tool_use blocks
            {"type": "tool_result", "tool_use_id": "toolu_A",
             "content": '{"status":"success","result":3}'},
            {"type": "tool_result", "tool_use_id": "toolu_B",
             "content": '{"status":"success","result":7}'}]}]


async def test_disabling_parallel_tool_use(server, kit) -> None:
    srv = server([Reply(text="ok")])
    await kit.planner_of(model="m", base_url=srv.url, parallel_tool_use=False).plan(
        kit.context(), kit.request())
    assert srv.last_request.json["tool_choice"] == {"type": "auto",
                                                    "disable_parallel_tool_use": True}


@pytest.mark.parametrize("stream", [True, False])
async def test_malformed_tool_input_is_returned_as_sent_and_replayed_as_an_object(
        stream, server, kit) -> None:
    srv = server([Reply(tool_calls=[ToolCall("add", '{"a": 1, "b":', id="toolu_bad")]),
                  Reply(text="sorry")])
    planner = kit.planner_of(model="stand-in", base_url=srv.url, stream=stream)
    raw = await planner.plan(kit.context(), kit.request())
    assert raw["tool_calls"][0]["function"]["arguments"] == '{"a": 1, "b":'
    records = [{"call_id": "toolu_bad", "action": "add", "status": "failed",
                "error_type": "InvalidCall",
                "error": "arguments are not valid JSON: Expecting value"}]
    await planner.plan(kit.context(1, history_of(raw, records)), kit.request())
    body = srv.last_request.json
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_bad", "name": "add",
         "input": {"invalid_input": '{"a": 1, "b":'}}]
    result = kit.tool_results(body)["toolu_bad"]
    assert result["is_error"] is True
    assert json.loads(result["content"]) == {
        "status": "failed", "error_type": "InvalidCall",
        "error": "arguments are not valid JSON: Expecting value"}


async def test_a_tool_without_input_deltas_has_empty_arguments(server, kit) -> None:
    events = ('event: message_start\ndata: {"type":"message_start","message":{"id":"m1",'
              '"type":"message","role":"assistant","model":"m","content":[],'
              '"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,'
              '"output_tokens":1}}}\n\n'
              'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
              '"content_block":{"type":"tool_use","id":"toolu_now","name":"now","input":{}}}\n\n'
              'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
              'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
              '"tool_use","stop_sequence":null},"usage":{"output_tokens":3}}\n\n'
              'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    srv = server([Reply(body=events)])
    now = {"name": "now", "description": "The time.", "kwargs": {"type": "object"}}
    raw = await kit.planner_of(model="m", base_url=srv.url).plan(
        kit.context(), kit.request(actions=[now]))
    assert raw["tool_calls"] == [{"id": "toolu_now", "type": "function",
                                  "function": {"name": "now", "arguments": "{}"}}]
    assert raw["usage"] == {"input_tokens": 5, "output_tokens": 3}


async def test_an_empty_answer_is_no_calls_and_no_text(server, kit) -> None:
    srv = server([Reply()])
    raw = await kit.planner_of(model="stand-in", base_url=srv.url).plan(
        kit.context(), kit.request())
    assert raw["tool_calls"] == [] and raw["content"] is None and raw["model_message"] is None


async def test_an_empty_answer_then_its_skipped_record_reaches_the_model(server, kit) -> None:
    srv = server([Reply(text="fine")])
    skipped = [{"round_index": 0, "model_message": None, "response": None, "calls": [],
                "invalid": [], "records": [{"call_id": "call_empty", "action": "<none>",
                                            "status": "skipped",
                                            "error": "the answer had nothing"}]}]
    await kit.planner_of(model="m", base_url=srv.url).plan(kit.context(1, skipped),
                                                           kit.request())
    # one user message: the request and the round's record, merged (roles alternate)
    assert srv.last_request.json["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "add 1 and 2"},
        {"type": "text", "text": "Results of your action calls in round 0:\n- <none> (call "
                                 'call_empty): {"status":"skipped","error":"the answer had '
                                 'nothing"}'}]}]


# -- failures ----------------------------------------------------------------------------------
async def test_429_then_success_is_retried_by_the_sdk(server, kit) -> None:
    srv = server([Reply.failure(429, retry_after=0.01), Reply(text="fine")])
    raw = await kit.planner_of(model="stand-in", base_url=srv.url).plan(
        kit.context(), kit.request())
    assert raw["content"] == "fine"
    assert [r.headers["x-stainless-retry-count"] for r in srv.requests] == ["0", "1"]


@pytest.mark.parametrize("stream", [True, False])
async def test_401_names_the_key_variable_and_the_server(stream, server, kit) -> None:
    srv = server([Reply.failure(401)])
    events = kit.Events()
    planner = kit.planner_of(model="stand-in", base_url=srv.url, stream=stream)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(events=events), kit.request())
    message = str(failed.value)
    assert message == (f"{NAME}: the key in ANTHROPIC_API_KEY was refused by {srv.url}: "
                       "401 invalid x-api-key")
    assert failed.value.status == 401 and failed.value.planner == NAME
    assert failed.value.__cause__ is None and failed.value.__context__ is None
    assert len(srv.requests) == 1  # a refused key is not retried
    assert srv.requests[0].headers["authorization"] == f"Bearer {kit.KEY}"
    assert events.of("model.failed") == [{"planner": NAME, "model": "stand-in",
                                          "error": message, "run_id": "run_test",
                                          "round_index": 0}]


async def test_401_names_the_variable_chosen_with_api_key_env(server, kit, monkeypatch) -> None:
    monkeypatch.setenv("TEAM_CLAUDE_KEY", "team-key-0123456789")
    srv = server([Reply.failure(401, "bad key team-key-0123456789 given")])
    planner = kit.planner_of(model="m", base_url=srv.url, api_key_env="TEAM_CLAUDE_KEY")
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert str(failed.value) == (f"{NAME}: the key in TEAM_CLAUDE_KEY was refused by "
                                 f"{srv.url}: 401 bad key *** given")
    assert srv.requests[0].headers["authorization"] == "Bearer team-key-0123456789"


@pytest.mark.parametrize(("status", "words"), [
    (500, "Internal server error."), (529, "Overloaded")])
async def test_5xx_and_overloaded_are_retried_then_reported(status, words, server,
                                                            kit) -> None:
    srv = server([Reply.failure(status, retry_after=0.01)] * 3)
    planner = kit.planner_of(model="stand-in", base_url=srv.url, max_retries=2)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert len(srv.requests) == 3
    assert str(failed.value) == f"{NAME}: {srv.url} failed after 2 retries: {status} {words}"


@pytest.mark.parametrize(("status", "words"), [
    (404, "has no model 'stand-in' or no such endpoint; check the model and base_url "
          "options: 404 model: not found"),
    (403, "the key in ANTHROPIC_API_KEY may not use model 'stand-in'"),
    (400, "rejected the request for model 'stand-in': 400 The request is invalid."),
    (413, "found the request too large; lower max_context_chars"),
])
async def test_other_refusals_say_what_to_check(status, words, server, kit) -> None:
    srv = server([Reply.failure(status)])
    planner = kit.planner_of(model="stand-in", base_url=srv.url)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert words in str(failed.value) and failed.value.status == status
    assert len(srv.requests) == 1


async def test_a_404_under_a_v1_base_url_says_the_sdk_adds_it(server, kit) -> None:
    srv = server([Reply.failure(404, "Not Found")])
    planner = kit.planner_of(model="m", base_url=srv.base_url)  # http://...:PORT/v1
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert srv.requests[0].path == "/v1/v1/messages"
    assert str(failed.value).endswith("404 Not Found; the Anthropic SDK adds /v1/messages to "
                                      "base_url: leave the /v1 out of it")


@pytest.mark.parametrize("stream", [True, False])
async def test_a_hanging_server_times_out(stream, server, kit) -> None:
    srv = server([Reply.hanging(), Reply.hanging()])
    planner = kit.planner_of(model="stand-in", base_url=srv.url, timeout=0.3, max_retries=1,
                             stream=stream)
    started = time.monotonic()
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert time.monotonic() - started < 5
    assert len(srv.requests) == 2
    assert str(failed.value) == (f"{NAME}: no answer from {srv.url} within 0.3 s after 1 "
                                 "retry; check that the server runs and answers, or raise the "
                                 "timeout option")


async def test_a_stream_that_goes_silent_midway_times_out(server, kit) -> None:
    srv = server([Reply(text="a long answer that stops", stop_after=4, hang=True)])
    planner = kit.planner_of(model="stand-in", base_url=srv.url, timeout=0.3)
    with pytest.raises(ModelError, match=r"no answer from .* within 0\.3 s; check"):
        await planner.plan(kit.context(), kit.request())
    assert len(srv.requests) == 1  # a stream that started is not sent again


async def test_a_stream_that_breaks_off_is_a_model_error(server, kit) -> None:
    srv = server([Reply(text="a long answer that breaks off", stop_after=4)])
    planner = kit.planner_of(model="stand-in", base_url=srv.url)
    with pytest.raises(ModelError, match=f"^{NAME}: the answer from .* broke off or could "
                                         "not be read: Connection to 127.0.0.1"):
        await planner.plan(kit.context(), kit.request())
    assert len(srv.requests) == 1


async def test_a_stream_without_message_stop_is_a_model_error(server, kit) -> None:
    body = ('event: message_start\ndata: {"type":"message_start","message":{"id":"m1",'
            '"type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,'
            '"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
            'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
            '"content_block":{"type":"text","text":""}}\n\n'
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            '"delta":{"type":"text_delta","text":"half an ans"}}\n\n')
    srv = server([Reply(body=body)])
    with pytest.raises(ModelError, match="broke off or could not be read: the stream ended "
                                         "before message_stop"):
        await kit.planner_of(model="m", base_url=srv.url).plan(kit.context(), kit.request())


async def test_an_error_event_inside_the_stream_is_a_model_error(server, kit) -> None:
    body = ('event: message_start\ndata: {"type":"message_start","message":{"id":"m1",'
            '"type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,'
            '"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
            'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
            '"message":"Overloaded"}}\n\n')
    srv = server([Reply(body=body)])
    events = kit.Events()
    with pytest.raises(ModelError) as failed:
        await kit.planner_of(model="m", base_url=srv.url).plan(kit.context(events=events),
                                                               kit.request())
    assert str(failed.value) == (f"{NAME}: the answer from {srv.url} broke off or could not "
                                 "be read: overloaded_error: Overloaded")
    assert failed.value.status is None
    assert events.of("model.failed")[0]["error"] == str(failed.value)


@pytest.mark.parametrize("where", ["status", "stream"])
async def test_a_provider_body_echoing_the_key_is_in_no_traceback(where, server, kit) -> None:
    import traceback

    echo = f"invalid x-api-key {kit.KEY}"
    if where == "status":
        reply = Reply.failure(401, echo)
    else:
        reply = Reply(body='event: error\ndata: ' + json.dumps(
            {"type": "error", "error": {"type": "authentication_error", "message": echo}})
            + '\n\n')
    srv = server([reply])
    with pytest.raises(ModelError) as failed:
        await kit.planner_of(model="m", base_url=srv.url).plan(kit.context(), kit.request())
    assert failed.value.__context__ is None and failed.value.__cause__ is None
    shown = "".join(traceback.format_exception(failed.value))
    assert kit.KEY not in shown and "invalid x-api-key ***" in shown


async def test_an_unreachable_server_says_so(kit) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    planner = kit.planner_of(model="m", base_url=url, max_retries=0)
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert str(failed.value).startswith(f"{NAME}: could not reach {url}: Connection to "
                                        f"127.0.0.1:{port} failed")
    assert str(failed.value).endswith("; check base_url and that the server runs")


# -- cancellation ------------------------------------------------------------------------------
async def test_cancelling_mid_stream_cancels_the_request(server, kit) -> None:
    text = "word " * 200  # 500 pieces of 2 characters, 20 ms apart: ~10 s in all
    srv = server([Reply(text=text, chunk_chars=2, chunk_delay=0.02), Reply(text="again")])
    events = kit.Events()
    planner = kit.planner_of(model="stand-in", base_url=srv.url)
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
    assert events.of("model.response") == [] and events.of("model.failed") == []
    raw = await planner.plan(kit.context(), kit.request())  # the planner carries on
    assert raw["content"] == "again"


# -- usage and events ----------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [True, False])
async def test_usage_and_model_events(stream, server, kit) -> None:
    srv = server([Reply(text="hi", tool_calls=[("add", {"a": 1, "b": 2})],
                        usage={"input_tokens": 120, "output_tokens": 7})])
    events = kit.Events()
    planner = kit.planner_of(model="stand-in", base_url=srv.url, stream=stream)
    raw = await planner.plan(kit.context(3, events=events), kit.request())
    assert raw["usage"] == {"input_tokens": 120, "output_tokens": 7}
    assert raw["model"] == "stand-in"
    [asked] = events.of("model.request")
    assert asked == {"planner": NAME, "model": "stand-in", "messages": 1, "tools": 1,
                     "stream": stream, "run_id": "run_test", "round_index": 3}
    [answered] = events.of("model.response")
    assert answered["latency_ms"] > 0
    assert {k: v for k, v in answered.items() if k != "latency_ms"} == {
        "planner": NAME, "model": "stand-in", "input_tokens": 120, "output_tokens": 7,
        "tool_calls": 1, "finish_reason": "tool_use", "run_id": "run_test", "round_index": 3}
    assert [e.source for e in events.seen] == ["planner"] * len(events.seen)


@pytest.mark.parametrize("stream", [True, False])
async def test_cached_input_tokens_count_as_input(stream, server, kit) -> None:
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 300,
             "cache_read_input_tokens": 2000, "output_tokens": 4}
    if stream:
        body = ('event: message_start\ndata: ' + json.dumps({
            "type": "message_start", "message": {
                "id": "m1", "type": "message", "role": "assistant", "model": "claude-x",
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {**usage, "output_tokens": 1}}}) + '\n\n'
                'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                '"content_block":{"type":"text","text":""}}\n\n'
                'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                '"delta":{"type":"text_delta","text":"cached"}}\n\n'
                'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
                'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
                '"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}\n\n'
                'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    else:
        body = json.dumps({"id": "m1", "type": "message", "role": "assistant",
                           "model": "claude-x", "content": [{"type": "text", "text": "cached"}],
                           "stop_reason": "end_turn", "stop_sequence": None, "usage": usage})
    srv = server([Reply(body=body)])
    raw = await kit.planner_of(model="m", base_url=srv.url, stream=stream).plan(
        kit.context(), kit.request())
    assert raw["content"] == "cached" and raw["model"] == "claude-x"
    assert raw["usage"] == {"input_tokens": 2310, "output_tokens": 4}


# -- the structured plan ---------------------------------------------------------------------
CHATTY_PLAN = ('Sure! Here is my plan:\n```json\n{"next_action": "execute", "action_calls": '
               '[{"action_id": "add", "action_input": {"a": 1, "b": 2}, "purpose": "sum"}]}\n'
               '```\nI hope this helps.')


@pytest.mark.parametrize("stream", [True, False])
async def test_structured_plan_with_instructions_and_tolerant_parsing(stream, server,
                                                                     kit) -> None:
    srv = server([Reply(text=CHATTY_PLAN),
                  Reply(text='{"next_action": "response", "response": "3"}')])
    planner = kit.planner_of(model="m", base_url=srv.url, stream=stream,
                             planning_protocol="structured_plan")
    raw = await planner.plan(kit.context(), kit.request())
    assert raw["next_action"] == "execute"
    assert raw["action_calls"] == [{"action_id": "add", "action_input": {"a": 1, "b": 2},
                                    "purpose": "sum"}]
    assert raw["model_message"] == {"role": "assistant",
                                    "content": [{"type": "text", "text": CHATTY_PLAN}]}
    body = srv.last_request.json
    assert "tools" not in body and "tool_choice" not in body
    prompt = body["system"]
    assert '"next_action": "response"' in prompt and "- add: Add two integers." in prompt
    assert '"action_id":{"type":"string","description":"the action to call","enum":["add"]}' \
        in prompt
    history = history_of(raw, [{"call_id": "call_x", "action": "add", "status": "success",
                                "result": 3}],
                         calls=[{"id": "call_x", "action": "add", "kwargs": {"a": 1, "b": 2}}])
    second = await planner.plan(kit.context(1, history), kit.request())
    assert second["next_action"] == "response" and second["response"] == "3"
    assert srv.last_request.json["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "text", "text": CHATTY_PLAN}]},
        {"role": "user", "content": [{"type": "text", "text": (
            'Results of your action calls in round 0:\n- add (call call_x): '
            '{"status":"success","result":3}')}]}]


async def test_a_plain_answer_in_the_structured_protocol_is_the_response(server, kit) -> None:
    srv = server([Reply(text="The answer is 3.")])
    raw = await kit.planner_of(model="m", base_url=srv.url,
                               planning_protocol="structured_plan").plan(
        kit.context(), kit.request())
    assert raw["next_action"] == "response" and raw["response"] == "The answer is 3."


# -- prompts, the transcript budget, tool names ---------------------------------------------------
async def test_env_state_and_instructions_reach_the_system_prompt(server, kit) -> None:
    srv = server([Reply(text="ok")])
    await kit.planner_of(model="m", base_url=srv.url, instructions="Answer in French.").plan(
        kit.context(env_state="cwd: /work\nfiles: notes.txt"), kit.request())
    prompt = srv.last_request.json["system"]
    assert prompt.startswith("You are tester, an agent")
    assert "Environment state:\ncwd: /work\nfiles: notes.txt" in prompt
    assert prompt.endswith("Answer in French.")


async def test_the_context_budget_shrinks_then_drops_the_oldest_results(server, kit) -> None:
    srv = server([Reply(text="ok")])
    planner = kit.planner_of(model="m", base_url=srv.url, max_context_chars=7000)

    def round_(i: int) -> dict:
        call_id = f"toolu_{i}"
        return {"round_index": i, "response": None, "invalid": [], "model_message": None,
                "calls": [{"id": call_id, "action": "add", "kwargs": {"a": i, "b": i}}],
                "records": [{"call_id": call_id, "action": "add", "status": "success",
                             "result": f"r{i}:" + "x" * 3000,
                             "artifact_refs": [{"artifact_id": f"art_{i}"}]}]}

    await planner.plan(kit.context(30, [round_(i) for i in range(30)]), kit.request())
    body = srv.last_request.json
    results = {k: v["content"] for k, v in kit.tool_results(body).items()}
    assert len(json.dumps(body)) < 12_000  # 7000 characters of text (90,000 whole)
    assert results["toolu_29"].startswith('{"status":"success","result":"r29:xxx')  # latest
    assert "toolu_0" not in results  # the oldest left out ...
    assert "earlier round(s) of this run were left out to fit the context budget" \
        in body["system"]
    shrunk = [v for v in results.values() if "left out to fit the context budget" in v]
    assert shrunk, results  # ... and the older ones that stay are shrunk to their ids
    assert all('"artifacts":["art_' in v for v in shrunk)
    roles = [m["role"] for m in body["messages"]]  # still alternating, user first and last
    assert roles[0] == roles[-1] == "user"
    assert all(a != b for a, b in itertools.pairwise(roles))


async def test_action_names_the_api_refuses_are_mapped(server, kit) -> None:
    action = {"name": "files.read", "description": "Read a file.",
              "kwargs": {"type": "object", "properties": {"path": {"type": "string"}}}}
    srv = server([Reply(tool_calls=[ToolCall("files_read", {"path": "a.txt"})])])
    raw = await kit.planner_of(model="m", base_url=srv.url).plan(
        kit.context(), kit.request(actions=[action]))
    assert [t["name"] for t in srv.last_request.json["tools"]] == ["files_read"]
    assert raw["tool_calls"][0]["function"]["name"] == "files.read"
    assert raw["model_message"]["content"][0]["name"] == "files_read"  # replayed as sent


async def test_history_from_another_planner_is_rebuilt_as_blocks(server, kit) -> None:
    srv = server([Reply(text="ok")])
    history = [{"round_index": 0, "response": "Reading.", "invalid": [],
                "model_message": {"role": "assistant", "content": "Reading.",  # Chat style
                                  "tool_calls": [{"id": "call_1"}]},
                "calls": [{"id": "call_1", "action": "add", "kwargs": {"a": 1, "b": 1}}],
                "records": [{"call_id": "call_1", "action": "add", "status": "success",
                             "result": 2}]}]
    await kit.planner_of(model="m", base_url=srv.url).plan(kit.context(1, history),
                                                           kit.request())
    assert srv.last_request.json["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "call_1", "name": "add", "input": {"a": 1, "b": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                      "content": '{"status":"success","result":2}'}]}]


@pytest.mark.parametrize("protocol", ["native_tool_calls", "structured_plan"])
async def test_without_tools_earlier_calls_are_told_in_text(protocol, server, kit) -> None:
    """The API refuses tool_use and tool_result blocks in a request that declares no
    tools: with no action visible any more (or the structured plan after native rounds),
    the earlier calls and their results go as text."""
    srv = server([Reply(text="ok")])
    raw = {"model_message": {"role": "assistant", "content": [
        {"type": "text", "text": "Adding."},
        {"type": "tool_use", "id": "toolu_9", "name": "add", "input": {"a": 1, "b": 2}}]},
        "content": "Adding."}
    history = history_of(raw, [{"call_id": "toolu_9", "action": "add", "status": "success",
                                "result": 3}])
    await kit.planner_of(model="m", base_url=srv.url, planning_protocol=protocol).plan(
        kit.context(1, history), kit.request(actions=[] if protocol == "native_tool_calls"
                                             else [kit.ADD]))
    body = srv.last_request.json
    assert "tools" not in body
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Adding."},
            {"type": "text", "text": '[called add (call toolu_9) with {"a":1,"b":2}]'}]},
        {"role": "user", "content": [{"type": "text", "text": (
            'Results of your action calls in round 0:\n- add (call toolu_9): '
            '{"status":"success","result":3}')}]}]


async def test_max_tokens_and_temperature_reach_the_request(server, kit) -> None:
    srv = server([Reply(text="ok")])
    await kit.planner_of(model="m", base_url=srv.url, max_tokens=64, temperature=0.2).plan(
        kit.context(), kit.request())
    assert srv.last_request.json["max_tokens"] == 64
    assert srv.last_request.json["temperature"] == 0.2


# -- generate (auto_func) ---------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [True, False])
async def test_generate_asks_for_the_output_schema_with_the_loop_and_the_feedback(
        stream, server, kit) -> None:
    srv = server([Reply(text='```json\n{"result": 42}\n```',
                        usage={"input_tokens": 50, "output_tokens": 4})])
    events = kit.Events()
    schema = {"type": "object", "properties": {"result": {"type": "integer"}},
              "required": ["result"]}
    history = [{"round_index": 0, "model_message": None, "response": None, "invalid": [],
                "calls": [{"id": "c1", "action": "count_rows", "kwargs": {"table": "apples"}}],
                "records": [{"call_id": "c1", "action": "count_rows", "status": "success",
                             "result": 42}]}]
    answer = await kit.planner_of(model="m", base_url=srv.url, stream=stream).generate(
        kit.context(history=history, events=events, env_state="db: fruit.db"),
        {"instruction": "Count the apples.", "function": "count", "input": {"things": "apples"},
         "output_schema": schema, "attempt": 2,
         "feedback": [{"output": '{"result": "many"}',
                       "error": "result: Input should be a valid integer"},
                      {"output": "", "error": "the answer holds no JSON value"}]})
    assert answer == {"text": '```json\n{"result": 42}\n```', "model": "m",
                      "usage": {"input_tokens": 50, "output_tokens": 4}}
    body = srv.last_request.json
    assert "tools" not in body and "tool_choice" not in body
    assert "Environment state:\ndb: fruit.db" in body["system"]
    turns = body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    task = turns[0]["content"]
    assert task.startswith("Compute the result of the function count.\nInstruction:\n"
                           "Count the apples.\nInput (JSON): {\"things\":\"apples\"}")
    assert '- count_rows({"table":"apples"}): {"status":"success","result":42}' in task
    assert json.dumps(schema, separators=(",", ":")) in task
    assert turns[1]["content"] == '{"result": "many"}'
    assert turns[2]["content"].startswith("That answer is not valid: result: Input should be "
                                          "a valid integer\nAnswer with one JSON value")
    assert turns[3]["content"] == "(an empty answer)"  # the API refuses empty text
    kinds = [e.type for e in events.seen]
    assert kinds[0] == "model.request" and kinds[-1] == "model.response"
    assert set(kinds[1:-1]) == ({"model.delta"} if stream else set())


async def test_generate_failures_are_model_errors(server, kit) -> None:
    srv = server([Reply.failure(401)])
    with pytest.raises(ModelError, match="the key in ANTHROPIC_API_KEY was refused"):
        await kit.planner_of(model="m", base_url=srv.url).generate(
            kit.context(), {"instruction": "x", "output_schema": {"type": "object"}})


# -- options, the key ------------------------------------------------------------------------------
def test_a_missing_model_names_the_planner_and_every_way_to_set_it(kit) -> None:
    with pytest.raises(ConfigError) as failed:
        kit.planner_of(base_url="http://127.0.0.1:9")
    assert str(failed.value) == (f"{NAME}: no model; set planner_options.model, "
                                 "AGENTLY_PLANNER_OPTION_MODEL or set_planner(..., model=...)")


@pytest.mark.parametrize(("options", "words"), [
    ({"temprature": 0.2}, "unknown option 'temprature'; known options: api_key_env, base_url"),
    ({"timeout": 0}, "option timeout must be above 0, got 0"),
    ({"max_retries": -1}, "option max_retries must be at least 0"),
    ({"max_tokens": 0}, "option max_tokens must be at least 1"),
    ({"stream": "maybe"}, "option stream must be true or false"),
    ({"parallel_tool_use": "no"}, "option parallel_tool_use must be true or false"),
    ({"planning_protocol": "telepathy"}, "option planning_protocol must be one of"),
    ({"base_url": "localhost:8080"}, "option base_url must be an http:// or https:// URL"),
    ({"extra_headers": {"X-A": "1\r\nX-B: 2"}}, "must not hold a line break"),
    ({"api_key_env": "MY KEY"}, "option api_key_env must be the name of an environment"),
])
def test_bad_options_are_config_errors(options, words, kit) -> None:
    with pytest.raises(ConfigError, match=f"^{NAME}: ") as failed:
        kit.planner_of(**{"model": "m", "base_url": "http://127.0.0.1:9", **options})
    assert words in str(failed.value)


def test_the_key_is_never_an_option_and_never_echoed(kit) -> None:
    with pytest.raises(ConfigError) as failed:
        kit.planner_of(model="m", api_key="sk-ant-given-by-mistake-123")
    assert str(failed.value) == (f"{NAME}: the API key is not an option; put it in the "
                                 "environment variable ANTHROPIC_API_KEY (choose another one "
                                 "with api_key_env=...)")


def test_no_key_for_the_anthropic_api_is_a_config_error(kit, monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ConfigError, match=f"^{NAME}: no API key: ANTHROPIC_API_KEY is not "
                                          "set; put your Anthropic key there, or set base_url"):
        kit.planner_of(model="claude-x")


async def test_no_key_for_a_local_server_sends_no_authorization(server, kit,
                                                                monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    srv = server([Reply(text="local"), Reply.failure(401)])
    planner = kit.planner_of(model="local-model", base_url=srv.url)
    assert (await planner.plan(kit.context(), kit.request()))["content"] == "local"
    headers = srv.last_request.headers
    assert "authorization" not in headers and "x-api-key" not in headers
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(), kit.request())
    assert str(failed.value).startswith(f"{NAME}: {srv.url} wants an API key and "
                                        "ANTHROPIC_API_KEY is not set")


@pytest.mark.parametrize("source", ["environment", "profile"])
async def test_the_key_comes_from_the_named_variable_only(source, server, kit, monkeypatch,
                                                          tmp_path) -> None:
    """The SDK finds credentials of its own (ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, a
    profile under its config directory); with api_key_env naming an unset variable, none
    of them is sent, and the SDK's own base URL variable is not followed either."""
    if source == "environment":
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "sk-ant-token-not-chosen-0000")
    else:
        monkeypatch.delenv("ANTHROPIC_API_KEY")
        monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path))
        (tmp_path / "configs").mkdir()
        (tmp_path / "credentials").mkdir()
        (tmp_path / "configs" / "default.json").write_text(
            json.dumps({"authentication": {"type": "user_oauth"}}))
        secret = tmp_path / "credentials" / "default.json"
        secret.write_text(json.dumps({"access_token": "sk-ant-profile-not-chosen-0000",
                                      "expires_at": int(time.time()) + 3600}))
        secret.chmod(0o600)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    srv = server([Reply(text="ok")])
    planner = kit.planner_of(model="m", base_url=srv.url, api_key_env="UNSET_TEAM_KEY")
    assert (await planner.plan(kit.context(), kit.request()))["content"] == "ok"
    request = srv.last_request
    assert "authorization" not in request.headers and "x-api-key" not in request.headers
    assert "not-chosen" not in json.dumps(request.headers)


async def test_extra_headers_timeout_and_retries_reach_the_sdk(server, kit) -> None:
    srv = server([Reply(text="ok")])
    planner = kit.planner_of(model="m", base_url=srv.url, extra_headers={"X-Team": "blue"},
                             timeout=7, max_retries=0)
    await planner.plan(kit.context(), kit.request())
    headers = srv.last_request.headers
    assert headers["x-team"] == "blue" and headers["x-stainless-read-timeout"] == "7.0"
    assert "traceparent" not in headers
    client = planner.client()
    assert client.max_retries == 0
    assert client.open_telemetry["traces"]["enabled"] is False  # no SDK spans
    await planner.aclose()


async def test_the_key_is_in_no_event_error_log_or_repr(server, kit, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    srv = server([Reply(text="ok", tool_calls=[("add", {"a": 1, "b": 2})]),
                  Reply.failure(401, f"invalid x-api-key: {kit.KEY}")])
    events = kit.Events()
    planner = kit.planner_of(model="m", base_url=srv.url,
                             extra_headers={"X-Team-Token": kit.KEY[::-1]})
    raw = await planner.plan(kit.context(events=events), kit.request())
    with pytest.raises(ModelError) as failed:
        await planner.plan(kit.context(events=events), kit.request())
    # it was sent (the search below can find it) ...
    assert srv.requests[0].headers["authorization"] == f"Bearer {kit.KEY}"
    assert srv.requests[0].headers["x-team-token"] == kit.KEY[::-1]
    # ... and it is nowhere else
    seen = [json.dumps(raw), str(failed.value), repr(failed.value), repr(planner),
            repr(planner.settings), caplog.text,
            json.dumps([e.model_dump(mode="json") for e in events.seen])]
    for text in seen:
        assert kit.KEY not in text and kit.KEY[::-1] not in text
    assert "***" in str(failed.value)
    for request in srv.requests:  # never in a body
        assert kit.KEY not in request.body.decode()


def test_discovery_does_not_import_the_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys; from agently_core.plugins import PluginManager; "
            "pm = PluginManager().load(); "
            "names = pm.registrations('planner'); assert 'anthropic_compatible' in names, names; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('anthropic', 'httpx', 'httpx2', 'agently_core_anthropic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['agently_core_anthropic', 'agently_core_anthropic.plugin']"
