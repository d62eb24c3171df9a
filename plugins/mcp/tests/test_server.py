"""``agently-core serve-mcp`` driven by the official MCP SDK client, over stdio and
Streamable HTTP, as a subprocess."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_mcp.testing import gone
from mcp import Client, ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitResult

from agently_core.models import ActionSpec

CLI = [sys.executable, "-m", "agently_core.cli", "serve-mcp"]


def workdir(tmp: Path, policy: str = "") -> Path:
    """A directory whose agently.toml is the served agent's whole configuration."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "agently.toml").write_text(policy, encoding="utf-8")
    return tmp


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}


class HttpServe:
    """``serve-mcp --transport http --port 0`` and the URL it announces."""

    def __init__(self, cwd: Path, *packages: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "--transport", "http", "--port", "0", "--enable", ",".join(packages)],
            cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []

        def pump() -> None:
            for line in self.process.stderr:  # type: ignore[union-attr]
                lines.put(line)

        self.pump = threading.Thread(target=pump, daemon=True)
        self.pump.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.lines.append(line)
            found = re.search(r"on (http://\S+/mcp)", line)
            if found:
                self.url = found.group(1)
                return
        self.stop()
        raise RuntimeError(f"serve-mcp did not start: {''.join(self.lines)}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.pump.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    served = HttpServe(workdir(tmp_path_factory.mktemp("serve")), "examples")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def approval_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    policy = '[policy]\napproval_mode = "always"\n'
    served = HttpServe(workdir(tmp_path_factory.mktemp("approval"), policy), "examples")
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
        async with Client(http_server.url) as client:  # negotiates the newest protocol
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == {"add", "multiply", "word_count", "echo"}
            result = await client.call_tool("word_count", {"text": "one two three"})
            assert result.structured_content == {"words": 3, "characters": 13}
        async with streamable_http_client(http_server.url) as (read, write), \
                ClientSession(read, write) as session:  # the initialize handshake
            await session.initialize()
            result = await session.call_tool("echo", {"message": "hi", "repeat": 2})
            assert result.structured_content == {"result": "hi hi"}
            with pytest.raises(MCPError, match="Unknown tool"):
                await session.call_tool("missing", {})

    run(main)


async def _approval_call(url: str, answer: Any) -> Any:
    """Call ``add`` on the approval server with a client that answers elicitations with
    ``answer`` (None: a client without elicitation support)."""
    asked: list[str] = []

    async def elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return answer

    async with streamable_http_client(url) as (read, write), ClientSession(
            read, write, elicitation_callback=elicit if answer is not None else None) as session:
        await session.initialize()
        return await session.call_tool("add", {"a": 20, "b": 22}), asked


def test_an_action_needing_approval_is_not_run_silently(approval_server: HttpServe) -> None:
    result, asked = run(_approval_call, approval_server.url, None)
    assert result.is_error and not asked
    text = result.content[0].text
    assert "approval required" in text and "NOT run" in text
    assert result.structured_content["status"] == "approval_required"


def test_approval_through_elicitation(approval_server: HttpServe) -> None:
    result, asked = run(_approval_call, approval_server.url,
                        ElicitResult(action="accept", content={"approve": True}))
    assert asked and "'add'" in asked[0] and '"a": 20' in asked[0]
    assert not result.is_error and result.structured_content == {"result": 42.0}
    result, asked = run(_approval_call, approval_server.url, ElicitResult(action="decline"))
    assert asked and result.is_error
    assert "denied" in result.content[0].text and "approval" in result.content[0].text
    assert result.structured_content["status"] == "blocked"


def test_sigterm_stops_the_server_and_its_sandboxes(tmp_path: Path) -> None:
    served = HttpServe(workdir(tmp_path), "python")

    async def main() -> None:
        async with Client(served.url) as client:
            result = await client.call_tool("run_python", {"python_code": "x = 1\nprint(x)"})
            assert result.structured_content["stdout"] == "1\n"

    run(main)
    descendants = _descendants(served.process.pid)
    assert descendants  # the warm Python sandbox
    assert served.stop() == 0
    assert all(gone(pid) for pid in descendants)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


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
    assert len(record.artifacts) == 2  # the instruction and the whole result
    # a JSON-RPC error from the server (a tool it does not have) is a failed record too
    agent.action.register_action(ActionSpec(
        name="ghost", kind="mcp", execution_environments=spec.execution_environments,
        meta={"mcp_tool": "ghost", "mcp_server": "agently"}))
    record = agent.action.execute_action("ghost", {})
    assert record.status == "failed" and "Unknown tool: ghost" in record.error
    assert record.result["code"] == -32602
