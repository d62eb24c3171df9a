"""Quickstart: a model writes and runs Python in a sandbox to answer a question.

    export OPENAI_API_KEY=sk-...                      # your key
    export AGENTLY_PLANNER_OPTION_MODEL=gpt-4.1-mini  # optional (this is the default)
    python examples/quickstart.py "What is the 30th Fibonacci number?"

Any Chat Completions server works: set AGENTLY_PLANNER_OPTION_BASE_URL (and the model it
serves). Needs agently-core, agently-core-runtime, agently-core-openai and
agently-core-python installed.
"""

import os
import sys

import agently_core

question = " ".join(sys.argv[1:]) or "What is the 30th Fibonacci number? Compute it."

agent = agently_core.create_agent("quickstart")
agent.enable_python(timeout=20)  # run_python: an isolated worker, no network
agent.use_actions(["run_python"])
agent.set_planner("openai_compatible",
                  model=os.environ.get("AGENTLY_PLANNER_OPTION_MODEL", "gpt-4.1-mini"))

result = agent.run(question, max_rounds=6)
for record in result.records:
    print(f"{record.action}: {record.status}")
print(result.response if result.stop_reason == "response" else f"stopped: {result.error}")
agent.close()
sys.exit(0 if result.stop_reason == "response" else 1)
