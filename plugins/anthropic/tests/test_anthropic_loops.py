"""Whole action loops on the Anthropic planner: an agent, real actions (run_python in its
sandbox, plain functions), the real SDK, and a loopback server that checks what the
planner sent every round."""

from __future__ import annotations

import json
import logging
import os
import time

import anyio
import pytest
from pydantic import BaseModel

from agently_core.testing.model_servers import Reply, ToolCall

NAME = "anthropic_compatible"


def adder(agent) -> None:
    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    agent.use_actions([add])


def tool_results(body: dict) -> dict[str, dict]:
    return {block["tool_use_id"]: block for message in body["messages"]
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"] if block.get("type") == "tool_result"}


def test_run_python_end_to_end(server, make_agent) -> None:
    srv = server([Reply(text="Let me compute it.",
                        tool_calls=[ToolCall("run_python", {"python_code": "print(6 * 7)"})]),
                  Reply(text="6 * 7 = 42")])
    agent = make_agent()
    agent.enable_python()
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)
    records = agent.input("What is 6 * 7? Use Python.").get_action_result()
    assert [(r.action, r.status) for r in records] == [("run_python", "success")]
    assert records[0].result["stdout"] == "42\n"
    assert records[0].call_id == "toolu_lb1x0"
    assert agent.last_run.stop_reason == "response"
    assert agent.last_run.response == "6 * 7 = 42"
    first = srv.requests[0].json
    [tool] = [t for t in first["tools"] if t["name"] == "run_python"]
    assert "python_code" in tool["input_schema"]["properties"]
    # round 2 sent the call's digest back under its tool_use_id
    [result] = tool_results(srv.requests[1].json).values()
    assert result["tool_use_id"] == "toolu_lb1x0" and "is_error" not in result
    sent = json.loads(result["content"])
    assert sent["status"] == "success" and "42" in sent["digest"]["result_preview"]
    assert sent["digest"]["instruction_preview"] == "print(6 * 7)"


def test_history_replayed_over_three_rounds(server, make_agent) -> None:
    srv = server([
        Reply(text="First the small sum.",
              tool_calls=[ToolCall("add", {"a": 1, "b": 2}, "toolu_0")]),
        Reply(tool_calls=[ToolCall("add", {"a": 3, "b": 4}, "toolu_1"),
                          ToolCall("add", {"a": 5, "b": 6}, "toolu_2")]),
        Reply(text="3, 7 and 11"),
    ])
    agent = make_agent()
    adder(agent)
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)
    result = agent.run("Add 1+2, then 3+4 and 5+6.")
    assert result.stop_reason == "response" and result.response == "3, 7 and 11"
    assert [r.result for r in result.records] == [3, 7, 11]
    assert [r.call_id for r in result.records] == ["toolu_0", "toolu_1", "toolu_2"]

    def use(i, a, b):
        return {"type": "tool_use", "id": f"toolu_{i}", "name": "add", "input": {"a": a, "b": b}}

    def ok(i, value):
        return {"type": "tool_result", "tool_use_id": f"toolu_{i}",
                "content": f'{{"status":"success","result":{value}}}'}

    request = {"role": "user", "content": "Add 1+2, then 3+4 and 5+6."}
    second_round = [
        request,
        {"role": "assistant", "content": [{"type": "text", "text": "First the small sum."},
                                          use(0, 1, 2)]},
        {"role": "user", "content": [ok(0, 3)]},
    ]
    assert [r.json["messages"] for r in srv.requests] == [
        [request],
        second_round,
        [*second_round,
         {"role": "assistant", "content": [use(1, 3, 4), use(2, 5, 6)]},
         {"role": "user", "content": [ok(1, 7), ok(2, 11)]}],
    ]
    assert all(r.json["system"].startswith(f"You are {agent.name}, an agent")
               for r in srv.requests)
    assert all(r.json["tools"][0]["name"] == "add" for r in srv.requests)


def test_malformed_input_fails_that_call_and_the_model_sees_why(server, make_agent) -> None:
    srv = server([Reply(tool_calls=[ToolCall("add", '{"a": 1, "b": ', "bad"),
                                    ToolCall("add", {"a": 2, "b": 2}, "good"),
                                    ToolCall("subtract", {"a": 2}, "unknown")]),
                  Reply(text="2 + 2 = 4; the first call was broken")])
    agent = make_agent()
    adder(agent)
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)
    result = agent.run("add things")
    assert result.stop_reason == "response"
    by_id = {r.call_id: r for r in result.records}
    assert by_id["bad"].status == "failed" and by_id["bad"].error_type == "InvalidCall"
    assert "not valid JSON" in by_id["bad"].error
    assert by_id["good"].status == "success" and by_id["good"].result == 4
    assert by_id["unknown"].status == "failed"
    second = srv.requests[1].json
    sent = tool_results(second)
    assert list(sent) == ["bad", "good", "unknown"]
    assert sent["bad"]["is_error"] and sent["unknown"]["is_error"]
    assert "is_error" not in sent["good"]
    assert "not valid JSON" in json.loads(sent["bad"]["content"])["error"]
    assert json.loads(sent["good"]["content"]) == {"status": "success", "result": 4}
    assert "subtract" in json.loads(sent["unknown"]["content"])["error"]
    # the broken input is replayed as an object the API accepts
    assert second["messages"][1]["content"][0]["input"] == {"invalid_input": '{"a": 1, "b": '}


def test_an_empty_answer_is_skipped_and_the_loop_goes_on(server, make_agent) -> None:
    srv = server([Reply(), Reply(text="done now")])
    agent = make_agent()
    adder(agent)
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)
    result = agent.run("anything")
    assert result.stop_reason == "response" and result.response == "done now"
    [skipped] = result.records
    assert skipped.status == "skipped"
    assert skipped.meta["diagnostic_code"] == "action_runtime.native_tool_calls.empty"
    [message] = srv.requests[1].json["messages"]  # the request and the note, one message
    assert message["role"] == "user" and message["content"][0]["text"] == "anything"
    assert "neither tool calls nor text" in message["content"][1]["text"]


def test_structured_plan_loop(server, make_agent) -> None:
    plan = {"next_action": "execute", "action_calls": [
        {"action_id": "add", "action_input": {"a": 20, "b": 22}, "purpose": "the sum"}]}
    srv = server([Reply(text="Plan:\n```json\n" + json.dumps(plan) + "\n```"),
                  Reply(text='{"next_action": "response", "response": "42"}')])
    agent = make_agent()
    adder(agent)
    agent.set_planner(NAME, model="stand-in", base_url=srv.url,
                      planning_protocol="structured_plan")
    result = agent.run("What is 20 + 22?", planning_protocol="structured_plan")
    assert result.stop_reason == "response" and result.response == "42"
    assert [(r.action, r.result) for r in result.records] == [("add", 42)]
    second = srv.requests[1].json
    assert "tools" not in second
    call_id = result.records[0].call_id
    assert second["messages"][2] == {"role": "user", "content": [{"type": "text", "text": (
        f'Results of your action calls in round 0:\n- add (call {call_id}): '
        '{"status":"success","result":42}')}]}


def test_a_refused_key_ends_the_run_failed_with_a_clear_error(server, make_agent) -> None:
    srv = server([Reply.failure(401)])
    agent = make_agent()
    adder(agent)
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)
    result = agent.run("add 1 and 2")
    assert result.stop_reason == "failed"
    assert result.error == (f"{NAME}: the key in ANTHROPIC_API_KEY was refused by "
                            f"{srv.url}: 401 invalid x-api-key")
    assert result.records == []


def test_usage_totals_over_a_run(server, make_agent) -> None:
    srv = server([Reply(tool_calls=[("add", {"a": 1, "b": 2})],
                        usage={"input_tokens": 100, "output_tokens": 10}),
                  Reply(text="3", usage={"input_tokens": 150, "output_tokens": 2})])
    agent = make_agent()
    adder(agent)
    responses = []
    agent.events.subscribe(lambda e: responses.append(e.payload), "model.response")
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)
    result = agent.run("add")
    assert result.usage == {"input_tokens": 250, "output_tokens": 12, "requests": 2}
    assert [(r["input_tokens"], r["output_tokens"]) for r in responses] == [(100, 10), (150, 2)]
    assert [r.decision.usage for r in result.rounds] == [
        {"input_tokens": 100, "output_tokens": 10}, {"input_tokens": 150, "output_tokens": 2}]
    assert [r.decision.model for r in result.rounds] == ["stand-in", "stand-in"]


def test_the_key_never_leaks_from_a_run(server, make_agent, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = os.environ["ANTHROPIC_API_KEY"]
    srv = server([Reply(tool_calls=[ToolCall("read_setting", {}, "toolu_0")]),
                  Reply(text="the setting is read")])
    agent = make_agent()

    @agent.action_func
    def read_setting() -> str:
        """Read a setting (this one leaks the key, as a careless action might)."""
        return f"key={os.environ['ANTHROPIC_API_KEY']}"

    agent.use_actions([read_setting])
    events = []
    agent.events.subscribe(events.append)
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)
    result = agent.run("read the setting")
    assert result.stop_reason == "response"
    assert srv.requests[0].headers["authorization"] == f"Bearer {key}"  # it was used ...
    assert result.records[0].result == "key=***"  # ... the action's output is masked ...
    assert tool_results(srv.requests[1].json)["toolu_0"]["content"] == \
        '{"status":"success","result":"key=***"}'
    for request in srv.requests:  # ... never sent in a body ...
        assert key not in request.body.decode()
    texts = [result.model_dump_json(), caplog.text, repr(agent._planner),
             json.dumps([e.model_dump(mode="json") for e in events])]
    for text in texts:  # ... nor anywhere else
        assert key not in text
    assert {e.type for e in events} >= {"model.request", "model.delta", "model.response",
                                        "action.completed"}


def test_configured_by_planner_options(server, make_agent) -> None:
    srv = server([Reply(text="configured")])
    agent = make_agent(planner=NAME, planner_options={"model": "from-config",
                                                      "base_url": srv.url, "stream": False,
                                                      "max_tokens": 512})
    result = agent.run("hello")
    assert result.response == "configured"
    body = srv.last_request.json
    assert body["model"] == "from-config" and body["max_tokens"] == 512
    assert "stream" not in body


def test_cancelling_a_run_cancels_its_request(server, make_agent) -> None:
    srv = server([Reply(text="word " * 200, chunk_chars=2, chunk_delay=0.02)])
    agent = make_agent()
    adder(agent)
    deltas = []
    agent.events.subscribe(deltas.append, "model.delta")
    agent.set_planner(NAME, model="stand-in", base_url=srv.url)

    async def main() -> None:
        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(agent.async_run, "talk for a long time")
            with anyio.fail_after(5):
                while not deltas:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
        assert time.monotonic() - started < 3
        with anyio.fail_after(5):
            while not srv.aborted:  # the server sees its client go away
                await anyio.sleep(0.01)

    anyio.run(main)
    assert srv.aborted == [1] and len(deltas) < 100


class Summary(BaseModel):
    title: str
    words: int


@pytest.mark.parametrize("stream", [True, False])
def test_auto_func_end_to_end(stream, server, make_agent) -> None:
    srv = server([Reply(text="Here it is: {\"title\": \"Hello\", \"words\": \"two\"}"),
                  Reply(text='{"title": "Hello", "words": 2}')])
    agent = make_agent()
    agent.set_planner(NAME, model="stand-in", base_url=srv.url, stream=stream)

    @agent.auto_func
    def summarize(text: str) -> Summary:
        """Give {text} a title and count its words."""

    assert summarize("hello world") == Summary(title="Hello", words=2)
    first, second = (r.json for r in srv.requests)
    assert "Give hello world a title and count its words." in first["messages"][0]["content"]
    assert '"words":{"type":"integer"' in first["messages"][0]["content"]
    assert second["messages"][1] == {"role": "assistant",
                                     "content": 'Here it is: {"title": "Hello", "words": "two"}'}
    assert "valid integer" in second["messages"][2]["content"]
