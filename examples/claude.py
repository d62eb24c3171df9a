"""Claude through the Anthropic Messages API, with sandboxed Python and streamed text.

    export ANTHROPIC_API_KEY=sk-ant-...
    python examples/claude.py "Which weekday was 2000-01-01? Check with Python."

Settings (environment): AGENTLY_PLANNER_OPTION_MODEL (default claude-sonnet-4-5),
AGENTLY_PLANNER_OPTION_BASE_URL (for a Messages-compatible server). Needs
agently-core-anthropic and agently-core-python.
"""

import os
import sys

import agently_core

question = " ".join(sys.argv[1:]) or "Which weekday was 2000-01-01? Check with Python."

agent = agently_core.create_agent("claude")
agent.enable_python(timeout=20)
agent.use_actions(["run_python"])
agent.set_planner("anthropic_compatible",
                  model=os.environ.get("AGENTLY_PLANNER_OPTION_MODEL", "claude-sonnet-4-5"),
                  max_tokens=1024)
# the model's text as it streams
agent.events.subscribe(lambda event: print(event.payload.get("text", ""), end="", flush=True),
                       "model.delta")

result = agent.run(question, max_rounds=6)
print()
print(result.response if result.stop_reason == "response" else f"stopped: {result.error}")
print(f"tokens: {result.usage}")
agent.close()
sys.exit(0 if result.stop_reason == "response" else 1)
