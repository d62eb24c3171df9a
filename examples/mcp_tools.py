"""A model using an MCP server's tools (here the time server from PyPI, mcp-server-time).

    pip install mcp-server-time
    export OPENAI_API_KEY=sk-...
    python examples/mcp_tools.py "What time is it in Tokyo?"

Settings (environment): AGENTLY_PLANNER_OPTION_MODEL (default gpt-4.1-mini),
AGENTLY_PLANNER_OPTION_BASE_URL. Needs agently-core-openai and agently-core-mcp.
"""

import os
import shutil
import sys

import agently_core

question = " ".join(sys.argv[1:]) or "What time is it in Tokyo right now?"

server = shutil.which("mcp-server-time") or os.path.join(os.path.dirname(sys.executable),
                                                         "mcp-server-time")
agent = agently_core.create_agent("mcp")
tools = agent.use_mcp([server, "--local-timezone", "UTC"])  # get_current_time, convert_time
agent.use_actions(tools)
agent.set_planner("openai_compatible",
                  model=os.environ.get("AGENTLY_PLANNER_OPTION_MODEL", "gpt-4.1-mini"))

result = agent.run(question, max_rounds=4)
for record in result.records:
    print(f"{record.action}: {record.status}")
print(result.response if result.stop_reason == "response" else f"stopped: {result.error}")
agent.close()
sys.exit(0 if result.stop_reason == "response" else 1)
