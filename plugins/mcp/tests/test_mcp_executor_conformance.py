"""The MCP executor passes the executor conformance suite with its real provider: the
agent's environment manager opens the sessions the tools declare, to real peers nobody
here wrote, and the suite checks the executor's contract through their tools. No code is
run: ``echo`` is the everything server's ``echo`` tool, ``raises`` asks mcp-server-time
for a time zone named by the message (the tool's error carries it), ``slow`` is the
everything server's long-running operation. The tools are mounted once, by
``agent.use_mcp`` on a real agent, exactly as users get them; the ``concurrent`` scenario
has no tool that returns a given text after a wait, and is left out."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from agently_core_mcp.executor import McpExecutor
from agently_core_mcp.provider import McpSessionProvider
from agently_core_mcp.testing import everything_path, node_path, time_server_path

import agently_core
from agently_core.models import ActionSpec
from agently_core.testing import ExecutorConformance, require

TOOLS = {"echo": "echo", "raises": "get_current_time", "slow": "trigger-long-running-operation"}


@cache
def mounted_tools() -> dict[str, ActionSpec]:
    """The specs ``use_mcp`` registers for the two peers' tools, by tool name."""
    agent = agently_core.create_agent(config={})
    try:
        agent.use_mcp(server=[str(node_path()), str(everything_path()), "stdio"])
        agent.use_mcp(server=[str(time_server_path()), "--local-timezone", "UTC"])
        return {tool: agent.registry.get(tool).spec for tool in TOOLS.values()}
    finally:
        agent.close()


class TestMcpExecutorConformance(ExecutorConformance):
    kind = "mcp"
    scenarios = ("echo", "raises", "slow")
    deadline_grace = 2.0

    def make_executor(self) -> McpExecutor:
        return McpExecutor()

    def make_provider(self) -> McpSessionProvider:
        return McpSessionProvider()

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        for path, what in ((node_path(), "node"), (everything_path(), "server-everything"),
                           (time_server_path(), "mcp-server-time")):
            require(Path(path).exists(), f"{what} is not installed at {path}; run ./dev setup")
        return mounted_tools()[TOOLS[scenario]], None

    def make_kwargs(self, scenario: str, **values: Any) -> dict[str, Any]:
        if scenario == "raises":
            return {"timezone": values["message"]}
        if scenario == "slow":
            return {"duration": values["seconds"], "steps": 2}
        return dict(values)

    def result_value(self, scenario: str, result: Any) -> Any:
        text = result["text"]
        return text.removeprefix("Echo: ")
