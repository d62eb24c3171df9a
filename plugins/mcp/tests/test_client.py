"""agent.use_mcp against real MCP servers: the everything server (npm; stdio, Streamable
HTTP, SSE) and mcp-server-time (PyPI). No mocks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import sys
import time
from typing import Any

import agently_core_mcp
import pytest
from agently_core_mcp.testing import connection, gone, server_pids, state

from agently_core.errors import ConfigError, EnvironmentStartError

SECRET = "s3cr3t-value-4242"


def call(agent: Any, name: str, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    return agent.action.execute_action(name, kwargs or {}, **options)


# -- mounting --------------------------------------------------------------------------------
def test_tools_become_actions_with_their_input_schemas(agent: Any, everything: list[str]) -> None:
    names = agent.use_mcp(everything)
    assert {"echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"} <= set(names)
    info = {item["name"]: item for item in agent.action.get_action_info()}
    assert info["echo"]["description"] == "Echoes back the input string"
    assert info["echo"]["kwargs"]["properties"]["message"]["type"] == "string"
    assert info["echo"]["kwargs"]["required"] == ["message"]
    assert set(info["get-sum"]["kwargs"]["required"]) == {"a", "b"}
    spec = agent.registry.get("echo").spec
    assert spec.kind == "mcp" and spec.meta["mcp_tool"] == "echo"
    assert spec.meta["mcp_server"] == "everything"  # from the server's own name
    assert "mcp" in spec.tags and "mcp:everything" in spec.tags
    assert spec.output_schema is None and agent.registry.get(
        "get-structured-content").spec.output_schema["type"] == "object"


def test_stdio_calls_on_the_everything_and_time_servers(agent: Any, everything: list[str],
                                                         time_server: list[str]) -> None:
    agent.use_mcp(everything)
    # a command line string; the bare program is found beside the running Python
    assert agent.use_mcp("mcp-server-time --local-timezone UTC") == ["get_current_time",
                                                                     "convert_time"]
    record = call(agent, "echo", {"message": "hello"})
    assert record.status == "success", record.error
    assert record.result["text"] == "Echo: hello"
    assert record.result["content"] == [{"type": "text", "text": "Echo: hello"}]
    assert record.result["is_error"] is False
    assert call(agent, "get-sum", {"a": 2, "b": 40}).result["text"] == "The sum of 2 and 40 is 42."
    record = call(agent, "get_current_time", {"timezone": "Europe/Paris"})
    assert record.status == "success", record.error
    assert json.loads(record.result["text"])["timezone"] == "Europe/Paris"
    record = call(agent, "convert_time", {"source_timezone": "UTC", "time": "12:00",
                                          "target_timezone": "Asia/Tokyo"})
    assert record.status == "success", record.error
    assert json.loads(record.result["text"])["target"]["datetime"].endswith("21:00:00+09:00")


def test_streamable_http_with_secret_headers(agent: Any, everything_http: str) -> None:
    events: list[Any] = []
    agent.events.subscribe(events.append)
    names = agent.use_mcp(everything_http, headers={"Authorization": f"Bearer {SECRET}",
                                                    "X-Api-Key": SECRET})
    assert "echo" in names
    assert agent.registry.get("echo").spec.execution_environments[0].config["transport"] == "http"
    record = call(agent, "echo", {"message": f"the key is {SECRET}"})
    assert record.status == "success", record.error
    assert record.result["text"] == "Echo: the key is ***"  # header values are secrets
    assert SECRET not in record.model_dump_json()
    assert events and all(SECRET not in event.model_dump_json() for event in events)


def test_an_http_server_going_away_and_coming_back(agent: Any, everything_peer: Any) -> None:
    peer = everything_peer()
    agent.use_mcp(f"http://127.0.0.1:{peer.port}/mcp", tools=["echo"], start_timeout=5)
    assert call(agent, "echo", {"message": "up"}).status == "success"
    peer.close()
    for _ in range(2):  # the call that finds it gone, then a start that cannot connect
        started = time.monotonic()
        record = call(agent, "echo", {"message": "down"})
        assert record.status == "failed" and time.monotonic() - started < 10
        assert "MCP server" in record.error, record.error
    everything_peer(port=peer.port)
    record = call(agent, "echo", {"message": "back"})
    assert record.status == "success", record.error
    assert record.result["text"] == "Echo: back"


def test_legacy_sse_url(agent: Any, everything_sse: str) -> None:
    names = agent.use_mcp(everything_sse)
    assert "echo" in names
    assert agent.registry.get("echo").spec.execution_environments[0].config["transport"] == "sse"
    for word in ("one", "two"):
        record = call(agent, "echo", {"message": word})
        assert record.status == "success", record.error
        assert record.result["text"] == f"Echo: {word}"


def test_config_with_several_servers_and_a_clash(agent: Any, everything: list[str],
                                                 everything_http: str) -> None:
    config = {"mcpServers": {
        "local": {"command": everything[0], "args": everything[1:]},
        "remote": {"type": "streamable-http", "url": everything_http},
        "off": {"command": "never-started", "disabled": True},
    }}
    names = agent.use_mcp(config)
    # every tool name is offered by both servers: each gets its server's prefix
    assert "local__echo" in names and "remote__echo" in names and "echo" not in names
    assert call(agent, "local__echo", {"message": "a"}).result["text"] == "Echo: a"
    assert call(agent, "remote__echo", {"message": "b"}).result["text"] == "Echo: b"
    # a name already taken by another action is prefixed too; a free one is not
    agent.action_func(lambda: "mine", name="get_current_time")
    assert agent.use_mcp("mcp-server-time --local-timezone UTC", name="time") == [
        "time__get_current_time", "convert_time"]


def test_prefix_options(agent: Any, everything: list[str]) -> None:
    assert "ev_echo" in agent.use_mcp(everything, name="ev", prefix="{server}_")
    assert "everything__get-sum" in agent.use_mcp(everything, prefix=True)
    with pytest.raises(ConfigError, match="prefix"):
        agent.use_mcp({"mcpServers": {"a": {"command": everything[0], "args": everything[1:]},
                                      "b": {"command": everything[0], "args": everything[1:]}}},
                      prefix=False)
    assert agent.use_mcp(everything, tools=["echo"], prefix="x.") == ["x.echo"]
    with pytest.raises(ConfigError, match="no tool"):
        agent.use_mcp(everything, tools=["nonexistent"])


# -- the session as a managed environment ----------------------------------------------------
def test_one_session_reused_by_every_call(agent: Any, everything: list[str]) -> None:
    before = set(server_pids())
    agent.use_mcp(everything)
    started = set(server_pids()) - before
    assert len(started) == 1  # the mount's session is the agent scope's session
    for index in range(20):
        assert call(agent, "get-sum", {"a": index, "b": 1}).status == "success"
    assert set(server_pids()) - before == started
    conn = connection(agent, "echo")
    assert conn.pid == next(iter(started)) and conn.sessions_started == 1
    records = agent.action.execute_actions(
        [{"action": "echo", "kwargs": {"message": str(i)}} for i in range(30)], concurrency=10)
    assert all(r.status == "success" for r in records)
    assert set(server_pids()) - before == started


def test_ping_health_check(agent: Any, everything: list[str]) -> None:
    agent.use_mcp(everything, ping_interval=0.05)
    assert call(agent, "echo", {"message": "x"}).status == "success"
    conn = connection(agent, "echo")
    session = conn._active
    assert asyncio.run(conn.ping()) is True  # a real MCP ping, forwarded to the session's loop
    seen = session.last_ok
    time.sleep(0.1)  # idle longer than ping_interval: the next reuse pings first
    assert call(agent, "echo", {"message": "y"}).status == "success"
    assert session.last_ok > seen and conn._active is session


def test_a_killed_server_is_replaced_before_the_next_call(agent: Any, everything: list[str]) -> None:
    agent.use_mcp(everything)
    assert call(agent, "echo", {"message": "before"}).status == "success"
    old = connection(agent, "echo").pid
    os.kill(old, signal.SIGKILL)
    assert gone(old)  # exited (every thread) and reaped: no zombie left
    record = call(agent, "echo", {"message": "after"})
    assert record.status == "success", record.error
    new = connection(agent, "echo").pid
    assert new != old and state(new) not in (None, "Z")


def test_a_slow_call_times_out_without_harming_the_session_or_other_servers(
        agent: Any, everything: list[str], time_server: list[str]) -> None:
    agent.use_mcp(everything)
    agent.use_mcp(time_server)
    pid = connection(agent, "echo").pid
    # once used by a call, sessions stay on the loop of agently-core's sync API
    assert call(agent, "echo", {"message": "used"}).status == "success"
    assert call(agent, "get_current_time", {"timezone": "UTC"}).status == "success"

    async def both() -> list[Any]:
        slow = agent.action.async_execute_action(
            "trigger-long-running-operation", {"duration": 30, "steps": 3}, timeout=1.0)
        quick = agent.action.async_execute_action("get_current_time", {"timezone": "UTC"})
        started = time.monotonic()
        records = await asyncio.gather(slow, quick)
        return [*records, time.monotonic() - started]

    slow, quick, took = asyncio.run(both())
    assert slow.status == "failed" and slow.error_type == "TimeoutError"
    assert "timed out after 1s" in slow.error
    assert quick.status == "success" and quick.duration_ms < 900  # not held up by the slow one
    assert took < 5
    record = call(agent, "echo", {"message": "still here"})
    assert record.status == "success" and connection(agent, "echo").pid == pid


def test_a_hung_server_never_hangs_the_agent(agent: Any, everything: list[str]) -> None:
    agent.use_mcp(everything, ping_timeout=0.5)
    old = connection(agent, "echo").pid
    os.kill(old, signal.SIGSTOP)  # alive but answering nothing
    started = time.monotonic()
    record = call(agent, "echo", {"message": "lost"}, timeout=0.5)
    assert record.status == "failed" and record.error_type == "TimeoutError"
    record = call(agent, "echo", {"message": "found"})  # the ping fails: a new session
    assert record.status == "success", record.error
    assert time.monotonic() - started < 8
    assert connection(agent, "echo").pid != old
    assert gone(old)


def test_release_with_the_scope_leaves_no_process(agently_agent_factory: Any,
                                                  everything: list[str]) -> None:
    agent = agently_agent_factory()
    before = set(server_pids())
    agent.use_mcp(everything)
    assert call(agent, "echo", {"message": "x"}).status == "success"
    pids = set(server_pids()) - before
    assert len(pids) == 1
    agent.close()
    assert all(gone(pid) for pid in pids)
    assert agent.manager.list(kind="mcp") == []


def test_action_call_scope_starts_and_stops_a_server_per_call(agent: Any,
                                                              everything: list[str]) -> None:
    before = set(server_pids())
    agent.use_mcp(everything, scope="action_call", tools=["echo"])
    assert set(server_pids()) == before  # the listing session is closed after the mount
    record = call(agent, "echo", {"message": "once"})
    assert record.status == "success", record.error
    assert all(gone(pid) for pid in set(server_pids()) - before)


# -- results ---------------------------------------------------------------------------------
def test_structured_image_and_resource_content(agent: Any, everything: list[str]) -> None:
    agent.use_mcp(everything)
    record = call(agent, "get-structured-content", {"location": "Chicago"})
    assert record.status == "success", record.error
    structured = record.result["structured_content"]
    assert set(structured) == {"temperature", "conditions", "humidity"}
    assert json.loads(record.result["text"]) == structured
    image = call(agent, "get-tiny-image").result["content"]
    picture = next(block for block in image if block["type"] == "image")
    assert picture["mime_type"] == "image/png"
    assert base64.b64decode(picture["data"]).startswith(b"\x89PNG")
    blocks = call(agent, "get-resource-reference", {"resourceType": "Text", "resourceId": 2}
                  ).result["content"]
    embedded = next(block for block in blocks if block["type"] == "resource")
    assert embedded["resource"]["uri"] == "demo://resource/dynamic/text/2"
    assert embedded["resource"]["text"].startswith("Resource 2")
    links = call(agent, "get-resource-links", {"count": 2}).result["content"]
    assert [b["type"] for b in links].count("resource_link") == 2
    annotated = call(agent, "get-annotated-message", {"messageType": "error"}).result
    assert annotated["content"][0]["annotations"]["priority"] == 1.0


def test_tool_errors_become_failed_records_with_the_text(agent: Any, time_server: list[str]
                                                         ) -> None:
    agent.use_mcp(time_server)
    record = call(agent, "convert_time", {"source_timezone": "UTC", "time": "25:99",
                                          "target_timezone": "Europe/Paris"})
    assert record.status == "failed" and record.error_type == "ActionError"
    assert "Invalid time format" in record.error
    assert record.result["is_error"] is True and "Invalid time format" in record.result["text"]
    record = call(agent, "get_current_time", {"timezone": "Mars/Olympus_Mons"})
    assert record.status == "failed" and "Mars/Olympus_Mons" in record.error


def test_a_large_result_is_kept_as_an_artifact_with_a_digest(agent: Any,
                                                             everything: list[str]) -> None:
    agent.use_mcp(everything, max_output_bytes=2000)
    record = call(agent, "get-tiny-image")
    assert record.status == "success", record.error
    result = record.result
    assert result["truncated"] is True
    image = next(block for block in result["content"] if block["type"] == "image")
    assert image["data"] is None and image["omitted_characters"] > 2000
    assert len(json.dumps(result)) <= 2000
    assert len(record.artifact_refs) == 1
    artifact = agent.action.read_action_artifact(record.artifact_refs[0]["artifact_id"],
                                                 action_call_id=record.call_id)
    assert artifact["media_type"] == "application/json" and artifact["kind"] == "result"
    full = artifact["content"]
    text = full if isinstance(full, str) else json.dumps(full)
    assert hashlib.sha256(text.encode()).hexdigest() == result["full_result"]["sha256"]
    whole = json.loads(text)
    picture = next(block for block in whole["content"] if block["type"] == "image")
    assert base64.b64decode(picture["data"]).startswith(b"\x89PNG")
    small = call(agent, "echo", {"message": "short"})
    assert small.artifact_refs == [] and "truncated" not in small.result


# -- secrets ---------------------------------------------------------------------------------
def test_env_secrets_are_masked_in_records_events_and_errors(agent: Any,
                                                             everything: list[str]) -> None:
    events: list[Any] = []
    agent.events.subscribe(events.append)
    agent.use_mcp(everything, env={"SERVICE_TOKEN": SECRET})
    agent.use_mcp([*everything, "--api-key", "other-secret-77"], prefix="x_", tools=["echo"])
    record = call(agent, "x_echo", {"message": "other-secret-77"})
    assert record.result["text"] == "Echo: ***"  # a secret option on the command line
    record = call(agent, "get-env")
    assert record.status == "success", record.error
    assert '"SERVICE_TOKEN": "***"' in record.result["text"]  # the server saw it, we mask it
    record = call(agent, "echo", {"message": SECRET})
    assert record.result["text"] == "Echo: ***" and SECRET not in record.model_dump_json()
    with pytest.raises(EnvironmentStartError) as failed:
        agent.use_mcp(["/nonexistent/mcp-server"], env={"TOKEN": SECRET})
    assert "not found" in str(failed.value) and SECRET not in str(failed.value)
    with pytest.raises(EnvironmentStartError) as failed:
        agent.use_mcp(f"http://127.0.0.1:9/mcp?token={SECRET}",
                      headers={"Authorization": f"Bearer {SECRET}"}, start_timeout=5)
    assert "cannot connect" in str(failed.value) and SECRET not in str(failed.value)
    assert events and all(SECRET not in event.model_dump_json() for event in events)
    assert SECRET not in json.dumps(agent.action.get_action_info())


# -- bad inputs ------------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors_and_the_agent_keeps_working(agent: Any,
                                                                  everything: list[str]) -> None:
    agent.use_mcp(everything, tools=["echo", "get-sum"])
    record = call(agent, "no_such_tool")
    assert record.status == "failed" and record.error_type == "ActionNotFoundError"
    record = call(agent, "get-sum", {"a": "one", "b": 2})
    assert record.status == "failed" and record.error_type == "ArgumentsError"
    assert "'one' is not of type 'number'" in record.error
    with pytest.raises(EnvironmentStartError, match="command 'no-such-mcp-server' not found"):
        agent.use_mcp("no-such-mcp-server --flag")
    with pytest.raises(EnvironmentStartError, match="cannot connect to MCP server"):
        agent.use_mcp("http://127.0.0.1:9/mcp", start_timeout=5)
    with pytest.raises(ConfigError, match="not an http"):
        agent.use_mcp("ftp://example.invalid/mcp")
    with pytest.raises(ConfigError, match="unknown option"):
        agent.use_mcp(everything, colour="blue")
    with pytest.raises(ConfigError, match="needs a command"):
        agent.use_mcp({"mcpServers": {"x": {"args": ["--nothing"]}}})
    crash = [sys.executable, "-c", "import sys; sys.stderr.write('boom: bad config'); sys.exit(3)"]
    with pytest.raises(EnvironmentStartError, match=r"exited before completing the MCP handshake"
                       r".*boom: bad config"):
        agent.use_mcp(crash)
    assert call(agent, "echo", {"message": "fine"}).result["text"] == "Echo: fine"


# -- event loops -----------------------------------------------------------------------------
def test_async_use_and_the_sync_api_from_a_coroutine(agent: Any, everything: list[str]) -> None:
    async def main() -> None:
        names = await agently_core_mcp.async_use_mcp(agent, everything, tools=["echo"])
        assert names == ["echo"]
        conn = connection(agent, "echo")
        assert conn._active.loop is asyncio.get_running_loop()  # no thread hop on calls
        for word in ("a", "b"):
            record = await agent.action.async_execute_action("echo", {"message": word})
            assert record.result["text"] == f"Echo: {word}"
        # the sync API from this coroutine blocks this loop: the session moves, no deadlock
        started = time.monotonic()
        assert call(agent, "echo", {"message": "sync"}, timeout=10).status == "success"
        assert time.monotonic() - started < 5
        assert conn.sessions_started == 2
        # the session it left is closed on this loop as soon as the loop runs again
        await asyncio.wait_for(asyncio.wrap_future(conn._retired[-1].done), 10)
        # ... and async calls now go to it on the shared loop
        record = await agent.action.async_execute_action("echo", {"message": "c"})
        assert record.result["text"] == "Echo: c" and conn.sessions_started == 2

    before = set(server_pids())
    asyncio.run(main())
    agent.close()
    assert all(gone(pid) for pid in set(server_pids()) - before)
    assert not set(server_pids()) - before


def test_a_sync_mount_moves_to_the_loop_of_the_first_async_call(agent: Any,
                                                                everything: list[str]) -> None:
    agent.use_mcp(everything, tools=["echo"])
    conn = connection(agent, "echo")
    first = conn.pid

    async def main() -> None:
        for _ in range(3):
            record = await agent.action.async_execute_action("echo", {"message": "x"})
            assert record.status == "success", record.error
        assert conn._active.loop is asyncio.get_running_loop()

    asyncio.run(main())
    assert conn.sessions_started == 2 and gone(first)


def test_tools_can_require_approval(agently_agent_factory: Any, everything: list[str]) -> None:
    agent = agently_agent_factory(approval_handler="fail_closed")
    try:
        agent.use_mcp(everything, tools=["echo", "get-sum"], approval_required=["echo"])
        record = call(agent, "echo", {"message": "x"})
        assert record.status == "approval_required" and record.approval_request_id
        assert call(agent, "get-sum", {"a": 1, "b": 2}).status == "success"
    finally:
        agent.close()


def test_a_cut_never_leaves_part_of_a_secret_in_the_record(agent: Any,
                                                           everything: list[str]) -> None:
    """A long result is cut for the record before the dispatcher redacts it: the cut must
    not leave the first characters of a secret behind (issue 10, point 7)."""
    secret = "tok-" + "9f8e7d6c5b4a3210" * 2
    agent.add_secrets(secret)
    agent.set_policy(max_output_bytes=1000)  # the record keeps 250 characters of each text
    agent.use_mcp(everything)
    for offset in range(240, 252):  # the cut falls inside the secret, at every position
        message = "x" * (offset - len("Echo: ")) + secret + "y" * 3000
        record = call(agent, "echo", {"message": message}, timeout=30)
        assert record.status == "success", record.error
        assert record.result["truncated"] is True
        text = json.dumps(record.result)
        assert secret[:3] not in text, (offset, record.result["text"][230:300])
        if offset <= 247:  # three or more of its characters fell before the cut
            assert "***" in text, (offset, record.result["text"][230:300])
