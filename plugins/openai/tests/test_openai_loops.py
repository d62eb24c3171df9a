"""Whole action loops on the OpenAI planners: an agent, real actions (run_python in its
sandbox, plain functions), the real SDK, and a loopback server that checks what the
planner sent every round."""

from __future__ import annotations

import json
import logging
import os

import pytest

from agently_core.testing.model_servers import Reply, ToolCall

PLANNERS = ["openai_compatible", "openai_responses"]


def adder(agent) -> None:
    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    agent.use_actions([add])


@pytest.mark.parametrize("name", PLANNERS)
def test_run_python_end_to_end(name, server, make_agent) -> None:
    srv = server([Reply(text="Let me compute it.",
                        tool_calls=[ToolCall("run_python", {"python_code": "print(6 * 7)"})]),
                  Reply(text="6 * 7 = 42")])
    agent = make_agent()
    agent.enable_python()
    agent.set_planner(name, model="stand-in", base_url=srv.base_url)
    records = agent.input("What is 6 * 7? Use Python.").get_action_result()
    assert [(r.action, r.status) for r in records] == [("run_python", "success")]
    assert records[0].result["stdout"] == "42\n"
    assert agent.last_run.stop_reason == "response"
    assert agent.last_run.response == "6 * 7 = 42"
    # round 2 sent the call's digest back under its call id
    [result] = _tool_results(name, srv.requests[1].json).values()
    sent = json.loads(result)
    assert sent["status"] == "success" and "42" in sent["digest"]["result_preview"]
    assert sent["digest"]["instruction_preview"] == "print(6 * 7)"


@pytest.mark.parametrize("name", PLANNERS)
def test_history_replayed_over_three_rounds(name, server, make_agent) -> None:
    srv = server([
        Reply(text="First the small sum.", tool_calls=[ToolCall("add", {"a": 1, "b": 2}, "c0")]),
        Reply(tool_calls=[ToolCall("add", {"a": 3, "b": 4}, "c1"),
                          ToolCall("add", {"a": 5, "b": 6}, "c2")]),
        Reply(text="3, 7 and 11"),
    ])
    agent = make_agent()
    adder(agent)
    agent.set_planner(name, model="stand-in", base_url=srv.base_url)
    result = agent.run("Add 1+2, then 3+4 and 5+6.")
    assert result.stop_reason == "response" and result.response == "3, 7 and 11"
    assert [r.result for r in result.records] == [3, 7, 11]
    third = srv.requests[2].json
    ok = '{{"status":"success","result":{}}}'.format
    call = {"c0": '{"a":1,"b":2}', "c1": '{"a":3,"b":4}', "c2": '{"a":5,"b":6}'}
    if name == "openai_compatible":
        def tool_call(i):
            return {"id": i, "type": "function", "function": {"name": "add", "arguments": call[i]}}

        assert third["messages"][1:] == [
            {"role": "user", "content": "Add 1+2, then 3+4 and 5+6."},
            {"role": "assistant", "content": "First the small sum.", "tool_calls": [tool_call("c0")]},
            {"role": "tool", "tool_call_id": "c0", "content": ok(3)},
            {"role": "assistant", "content": None, "tool_calls": [tool_call("c1"), tool_call("c2")]},
            {"role": "tool", "tool_call_id": "c1", "content": ok(7)},
            {"role": "tool", "tool_call_id": "c2", "content": ok(11)},
        ]
        assert third["messages"][0]["role"] == "system"
    else:
        def function_call(i):
            return {"type": "function_call", "call_id": i, "name": "add", "arguments": call[i]}

        def output(i, value):
            return {"type": "function_call_output", "call_id": i, "output": ok(value)}

        assert third["input"] == [
            {"role": "user", "content": "Add 1+2, then 3+4 and 5+6."},
            {"role": "assistant", "content": "First the small sum."},
            function_call("c0"), output("c0", 3),
            function_call("c1"), output("c1", 7), function_call("c2"), output("c2", 11),
        ]
        assert third["instructions"].startswith("You are ")


@pytest.mark.parametrize("name", PLANNERS)
def test_malformed_arguments_fail_that_call_and_the_model_sees_why(name, server,
                                                                   make_agent) -> None:
    srv = server([Reply(tool_calls=[ToolCall("add", '{"a": 1, "b": ', "bad"),
                                    ToolCall("add", {"a": 2, "b": 2}, "good"),
                                    ToolCall("subtract", {"a": 2}, "unknown")]),
                  Reply(text="2 + 2 = 4; the first call was broken")])
    agent = make_agent()
    adder(agent)
    agent.set_planner(name, model="stand-in", base_url=srv.base_url)
    result = agent.run("add things")
    assert result.stop_reason == "response"
    by_id = {r.call_id: r for r in result.records}
    assert by_id["bad"].status == "failed" and by_id["bad"].error_type == "InvalidCall"
    assert "not valid JSON" in by_id["bad"].error
    assert by_id["good"].status == "success" and by_id["good"].result == 4
    assert by_id["unknown"].status == "failed"
    sent = {k: json.loads(v) for k, v in _tool_results(name, srv.requests[1].json).items()}
    assert set(sent) == {"bad", "good", "unknown"}
    assert sent["bad"]["status"] == "failed" and "not valid JSON" in sent["bad"]["error"]
    assert sent["good"] == {"status": "success", "result": 4}
    assert "subtract" in sent["unknown"]["error"]


@pytest.mark.parametrize("name", PLANNERS)
def test_an_empty_answer_is_skipped_and_the_loop_goes_on(name, server, make_agent) -> None:
    srv = server([Reply(), Reply(text="done now")])
    agent = make_agent()
    adder(agent)
    agent.set_planner(name, model="stand-in", base_url=srv.base_url)
    result = agent.run("anything")
    assert result.stop_reason == "response" and result.response == "done now"
    [skipped] = result.records
    assert skipped.status == "skipped"
    assert skipped.meta["diagnostic_code"] == "action_runtime.native_tool_calls.empty"
    second = json.dumps(srv.requests[1].json)
    assert "neither tool calls nor text" in second


@pytest.mark.parametrize("name", PLANNERS)
def test_a_refused_key_ends_the_run_failed_with_a_clear_error(name, server,
                                                              make_agent) -> None:
    srv = server([Reply.failure(401)])
    agent = make_agent()
    adder(agent)
    agent.set_planner(name, model="stand-in", base_url=srv.base_url)
    result = agent.run("add 1 and 2")
    assert result.stop_reason == "failed"
    assert result.error == (f"{name}: the key in OPENAI_API_KEY was refused by "
                            f"{srv.base_url}: 401 Incorrect API key provided.")
    assert result.records == []


@pytest.mark.parametrize("name", PLANNERS)
def test_usage_totals_over_a_run(name, server, make_agent) -> None:
    srv = server([Reply(tool_calls=[("add", {"a": 1, "b": 2})],
                        usage={"input_tokens": 100, "output_tokens": 10}),
                  Reply(text="3", usage={"input_tokens": 150, "output_tokens": 2})])
    agent = make_agent()
    adder(agent)
    responses = []
    agent.events.subscribe(lambda e: responses.append(e.payload), "model.response")
    agent.set_planner(name, model="stand-in", base_url=srv.base_url)
    result = agent.run("add")
    assert result.usage == {"input_tokens": 250, "output_tokens": 12, "requests": 2}
    assert [(r["input_tokens"], r["output_tokens"]) for r in responses] == [(100, 10), (150, 2)]
    assert [r.decision.usage for r in result.rounds] == [
        {"input_tokens": 100, "output_tokens": 10}, {"input_tokens": 150, "output_tokens": 2}]
    assert [r.decision.model for r in result.rounds] == ["stand-in", "stand-in"]


@pytest.mark.parametrize("name", PLANNERS)
def test_the_key_never_leaks_from_a_run(name, server, make_agent, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = os.environ["OPENAI_API_KEY"]
    srv = server([Reply(tool_calls=[ToolCall("read_setting", {}, "c0")]),
                  Reply(text="the setting is read")])
    agent = make_agent()

    @agent.action_func
    def read_setting() -> str:
        """Read a setting (this one leaks the key, as a careless action might)."""
        return f"key={os.environ['OPENAI_API_KEY']}"

    agent.use_actions([read_setting])
    events = []
    agent.events.subscribe(events.append)
    agent.set_planner(name, model="stand-in", base_url=srv.base_url)
    result = agent.run("read the setting")
    assert result.stop_reason == "response"
    assert srv.requests[0].headers["authorization"] == f"Bearer {key}"  # it was used ...
    assert result.records[0].result == "key=***"  # ... the action's output is masked ...
    assert _tool_results(name, srv.requests[1].json)["c0"] == \
        '{"status":"success","result":"key=***"}'
    for request in srv.requests:  # ... never sent in a body ...
        assert key not in request.body.decode()
    texts = [result.model_dump_json(), caplog.text, repr(agent._planner),
             json.dumps([e.model_dump(mode="json") for e in events])]
    for text in texts:  # ... nor anywhere else
        assert key not in text
    assert {e.type for e in events} >= {"model.request", "model.response", "action.completed"}


def test_configured_by_planner_options(server, make_agent) -> None:
    srv = server([Reply(text="configured")])
    agent = make_agent(planner="openai_compatible",
                       planner_options={"model": "from-config", "base_url": srv.base_url,
                                        "stream": False})
    result = agent.run("hello")
    assert result.response == "configured"
    assert srv.last_request.json["model"] == "from-config"
    assert "stream" not in srv.last_request.json


def _tool_results(name: str, body: dict) -> dict[str, str]:
    if name == "openai_compatible":
        return {m["tool_call_id"]: m["content"] for m in body["messages"] if m["role"] == "tool"}
    return {i["call_id"]: i["output"] for i in body["input"]
            if i.get("type") == "function_call_output"}
