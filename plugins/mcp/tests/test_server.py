"""``agently-core serve-mcp`` driven by the official MCP SDK client, over stdio and
Streamable HTTP, as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_mcp.server_testing import (
    CLI,
    HttpServe,
    clean_env,
    descendants,
    sdk_session,
    workdir,
)
from agently_core_mcp.testing import gone
from mcp import Client, ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import ElicitResult

from agently_core.models import ActionSpec

APPROVAL_POLICY = '[policy]\napproval_mode = "always"\n'


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    served = HttpServe(workdir(tmp_path_factory.mktemp("serve")), "examples")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def approval_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    """The host did not opt into client approval: the default."""
    served = HttpServe(workdir(tmp_path_factory.mktemp("approval"), APPROVAL_POLICY),
                       "examples")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client_approval_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    """The host opted in: ``--client-approval``."""
    served = HttpServe(workdir(tmp_path_factory.mktemp("client-approval"), APPROVAL_POLICY),
                       "examples", args=["--client-approval"])
    yield served
    served.stop()


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


# -- stdio -----------------------------------------------------------------------------------
def test_stdio_list_and_call_with_the_sdk_client(tmp_path: Path) -> None:
    params = StdioServerParameters(command=CLI[0], args=[*CLI[1:], "--enable", "examples,python"],
                                   env=clean_env(), cwd=str(workdir(tmp_path)))

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert set(tools) == {"add", "multiply", "word_count", "echo", "run_python"}
            assert set(tools["add"].input_schema["required"]) == {"a", "b"}
            assert tools["run_python"].input_schema["properties"]["python_code"]["type"] == "string"
            result = await session.call_tool("add", {"a": 2, "b": 3})
            assert not result.is_error and result.structured_content == {"result": 5.0}
            assert result.content[0].text == "5.0"
            result = await session.call_tool("run_python", {"python_code": "print(6 * 7)"})
            assert not result.is_error and result.structured_content["stdout"] == "42\n"
            result = await session.call_tool("run_python", {"python_code": "y = 6"})
            result = await session.call_tool("run_python", {"python_code": "print(y * 7)"})
            assert result.structured_content["stdout"] == "42\n"  # the one client's sandbox
            result = await session.call_tool("run_python", {"python_code": "1 / 0"})
            assert result.is_error and "ZeroDivisionError" in result.content[0].text
            assert result.structured_content["status"] == "failed"
            result = await session.call_tool("add", {"a": "two"})
            assert result.is_error and "ArgumentsError" in result.content[0].text
            with pytest.raises(MCPError, match="Unknown tool: nope"):
                await session.call_tool("nope", {})

    run(main)


# -- Streamable HTTP ---------------------------------------------------------------------------
def test_http_list_and_call_with_both_protocol_eras(http_server: HttpServe) -> None:
    async def main() -> None:
        async with create_mcp_http_client(headers=http_server.headers) as http, Client(
                streamable_http_client(http_server.url, http_client=http)) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}  # newest era
            assert names == {"add", "multiply", "word_count", "echo"}
            result = await client.call_tool("word_count", {"text": "one two three"})
            assert result.structured_content == {"words": 3, "characters": 13}
        async with sdk_session(http_server.url, http_server.headers) as session:  # handshake
            result = await session.call_tool("echo", {"message": "hi", "repeat": 2})
            assert result.structured_content == {"result": "hi hi"}
            with pytest.raises(MCPError, match="Unknown tool"):
                await session.call_tool("missing", {})

    run(main)


async def _approval_call(served: HttpServe, answer: Any) -> Any:
    """Call ``add`` with a client that answers elicitations with ``answer`` (None: a client
    without elicitation support)."""
    asked: list[str] = []

    async def elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return answer

    async with sdk_session(served.url, served.headers,
                           elicit=elicit if answer is not None else None) as session:
        return await session.call_tool("add", {"a": 20, "b": 22}), asked


def test_an_action_needing_approval_is_not_run_silently(approval_server: HttpServe) -> None:
    result, asked = run(_approval_call, approval_server, None)
    assert result.is_error and not asked
    text = result.content[0].text
    assert "approval required" in text and "NOT run" in text
    assert result.structured_content["status"] == "approval_required"


def test_a_client_cannot_approve_its_own_call_unless_the_host_opted_in(
        approval_server: HttpServe) -> None:
    """Without --client-approval the server never asks the client: a client ready to
    answer "accept" gets no question, and the call does not run."""
    result, asked = run(_approval_call, approval_server,
                        ElicitResult(action="accept", content={"approve": True}))
    assert not asked
    assert result.is_error and result.structured_content["status"] == "approval_required"
    text = result.content[0].text
    assert "NOT run" in text and "--client-approval" in text
    assert "result" not in result.structured_content


def test_approval_through_elicitation_when_the_host_opted_in(
        client_approval_server: HttpServe) -> None:
    served = client_approval_server
    result, asked = run(_approval_call, served,
                        ElicitResult(action="accept", content={"approve": True}))
    assert asked and "'add'" in asked[0] and '"a": 20' in asked[0]
    assert not result.is_error and result.structured_content == {"result": 42.0}
    result, asked = run(_approval_call, served, ElicitResult(action="decline"))
    assert asked and result.is_error
    assert "denied" in result.content[0].text and "approval" in result.content[0].text
    assert result.structured_content["status"] == "blocked"
    result, asked = run(_approval_call, served, None)  # a client that cannot be asked
    assert not asked and result.structured_content["status"] == "approval_required"


def test_sigterm_stops_the_server_and_its_sandboxes(tmp_path: Path) -> None:
    served = HttpServe(workdir(tmp_path), "python")
    found: list[int] = []

    async def main() -> None:
        async with sdk_session(served.url, served.headers, terminate_on_close=False) as session:
            result = await session.call_tool("run_python", {"python_code": "x = 1\nprint(x)"})
            assert result.structured_content["stdout"] == "1\n"
            found.extend(descendants(served.process.pid))  # the session's warm sandbox

    run(main)
    assert found
    assert served.stop() == 0
    assert all(gone(pid) for pid in found)


# -- agently-core on both ends -----------------------------------------------------------------
def test_agently_client_on_agently_server(agent: Any, tmp_path: Path) -> None:
    names = agent.use_mcp([*CLI, "--enable", "python"], name="agently", cwd=workdir(tmp_path))
    assert names == ["run_python"]
    spec = agent.registry.get("run_python").spec
    assert spec.meta["instruction"] == "python_code"  # a code argument: records get a digest
    record = agent.action.execute_action("run_python", {"python_code": "print('hi')"})
    assert record.status == "success", record.error
    assert record.result["structured_content"]["stdout"] == "hi\n"
    assert record.digest is not None and record.digest["action"] == "run_python"
    assert len(record.artifact_refs) == 2  # the instruction and the whole result
    # a JSON-RPC error from the server (a tool it does not have) is a failed record too
    agent.action.register_action(ActionSpec(
        name="ghost", kind="mcp", execution_environments=spec.execution_environments,
        meta={"mcp_tool": "ghost", "mcp_server": "agently"}))
    record = agent.action.execute_action("ghost", {})
    assert record.status == "failed" and "Unknown tool: ghost" in record.error
    assert record.result["code"] == -32602
