"""A local model through Ollama's OpenAI-compatible endpoint (no key needed).

    ollama pull qwen2.5:7b && ollama serve
    python examples/ollama.py "How many files are in my workspace? Use the shell."

Settings (environment): AGENTLY_PLANNER_OPTION_MODEL (default qwen2.5:7b) and
AGENTLY_PLANNER_OPTION_BASE_URL (default http://localhost:11434/v1). Needs
agently-core-openai and agently-core-bash.
"""

import os
import sys

import agently_core

question = " ".join(sys.argv[1:]) or "List the files in your workspace, then say how many."

agent = agently_core.create_agent("local")
agent.enable_shell(timeout=10)  # run_bash with the default read-only allowlist
agent.use_actions(["run_bash"])
agent.set_planner(
    "openai_compatible",
    model=os.environ.get("AGENTLY_PLANNER_OPTION_MODEL", "qwen2.5:7b"),
    base_url=os.environ.get("AGENTLY_PLANNER_OPTION_BASE_URL", "http://localhost:11434/v1"),
    temperature=0,
)

result = agent.run(question, max_rounds=5)
print(result.response if result.stop_reason == "response" else f"stopped: {result.error}")
agent.close()
sys.exit(0 if result.stop_reason == "response" else 1)
