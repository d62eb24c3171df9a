"""Every script in examples/ runs, as a user would run it, against a loopback stand-in of
its model server (the real SDKs on the real wire formats); the model's side is scripted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY = "sk-test-example-key-0123456789"


def plan(*steps: dict[str, Any]) -> list[Reply]:
    """Structured-plan replies (the model answers with the plan as JSON text)."""
    return [Reply(text=json.dumps(step)) for step in steps]


CASES: dict[str, dict[str, Any]] = {
    "quickstart.py": {
        "replies": [Reply(tool_calls=[ToolCall("run_python", {
            "python_code": "a, b = 0, 1\nfor _ in range(30):\n    a, b = b, a + b\na"})]),
                    Reply(text="The 30th Fibonacci number is 832040.")],
        "key": "OPENAI_API_KEY",
        "expect": ["run_python: success", "The 30th Fibonacci number is 832040."],
    },
    "ollama.py": {
        "replies": [Reply(tool_calls=[ToolCall("run_bash", {"cmd": "ls | wc -l"})]),
                    Reply(text="Your workspace has no files.")],
        "key": None,  # a local server needs none
        "expect": ["Your workspace has no files."],
    },
    "deepseek.py": {
        "replies": plan(
            {"next_action": "execute",
             "action_calls": [{"action_id": "add", "action_input": {"a": 12, "b": 30}}]},
            {"next_action": "execute",
             "action_calls": [{"action_id": "multiply", "action_input": {"a": 42, "b": 2}}]},
            {"next_action": "response", "response": "The result is 84."}),
        "key": "DEEPSEEK_API_KEY",
        "expect": ["add({'a': 12, 'b': 30}) -> 42", "multiply({'a': 42, 'b': 2}) -> 84",
                   "The result is 84."],
    },
    "claude.py": {
        "replies": [Reply(text="Let me check. ", tool_calls=[ToolCall("run_python", {
            "python_code": "import datetime\ndatetime.date(2000, 1, 1).strftime('%A')"})]),
                    Reply(text="It was a Saturday.")],
        "key": "ANTHROPIC_API_KEY",
        "expect": ["Let me check.", "It was a Saturday.", "tokens: {"],
    },
    "mcp_tools.py": {
        "replies": [Reply(tool_calls=[ToolCall("get_current_time",
                                               {"timezone": "Asia/Tokyo"})]),
                    Reply(text="It is morning in Tokyo.")],
        "key": "OPENAI_API_KEY",
        "expect": ["get_current_time: success", "It is morning in Tokyo."],
    },
    "approval.py": {
        "replies": [Reply(tool_calls=[ToolCall("delete_note", {"name": "draft"})]),
                    Reply(text="The draft note is deleted.")],
        "key": "OPENAI_API_KEY",
        "env": {"APPROVE": "yes"},
        "expect": ["waiting for approval: [('delete_note', {'name': 'draft'})]",
                   "The draft note is deleted.", "notes left: ['groceries']"],
    },
}


def test_every_example_has_a_case() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_example_runs_against_its_stand_in(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    with LoopbackModelServer(case["replies"]) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
        env.update({"AGENTLY_PLANNER_OPTION_BASE_URL": server.base_url,
                    "AGENTLY_PLANNER_OPTION_MODEL": "stand-in", **case.get("env", {})})
        for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DEEPSEEK_API_KEY"):
            env.pop(variable, None)
        if case["key"]:
            env[case["key"]] = KEY
        done = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        requests = list(server.requests)
    assert done.returncode == 0, (done.stdout, done.stderr)
    for text in case["expect"]:
        assert text in done.stdout, (text, done.stdout, done.stderr)
    assert requests and all(r.json.get("model") == "stand-in" for r in requests)
    assert KEY not in done.stdout + done.stderr  # the key went to the server, nowhere else
    if case["key"]:
        sent = " ".join(json.dumps(r.headers) for r in requests)
        assert KEY in sent
