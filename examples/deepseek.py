"""DeepSeek through its OpenAI-compatible API, with the structured JSON plan protocol.

    export DEEPSEEK_API_KEY=sk-...
    python examples/deepseek.py "Add 12 and 30, then multiply the result by 2."

Settings (environment): AGENTLY_PLANNER_OPTION_MODEL (default deepseek-chat),
AGENTLY_PLANNER_OPTION_BASE_URL (default https://api.deepseek.com). Needs
agently-core-openai and agently-core-function (its `examples` actions).
"""

import os
import sys

import agently_core

question = " ".join(sys.argv[1:]) or "Add 12 and 30, then multiply the result by 2."

agent = agently_core.create_agent("deepseek")
agent.use_actions("examples")  # add, multiply, word_count, echo: plain functions
agent.set_planner(
    "openai_compatible",
    model=os.environ.get("AGENTLY_PLANNER_OPTION_MODEL", "deepseek-chat"),
    base_url=os.environ.get("AGENTLY_PLANNER_OPTION_BASE_URL", "https://api.deepseek.com"),
    api_key_env="DEEPSEEK_API_KEY",
    planning_protocol="structured_plan",  # the plan as JSON instead of native tool calls
)

result = agent.run(question, max_rounds=5)
for record in result.records:
    print(f"{record.action}({record.kwargs}) -> {record.result}")
print(result.response if result.stop_reason == "response" else f"stopped: {result.error}")
agent.close()
sys.exit(0 if result.stop_reason == "response" else 1)
