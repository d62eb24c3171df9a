"""``agently-core run``: a planner-driven loop printed as it happens; exit codes.

The model-driven cases (each model planner against its loopback server) live beside the
planners' own tests; here the scripted planner and fake plugins pin the command itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agently_core.cli import main

SCRIPT_PLUGIN = """
from agently_core.hookspecs import hookimpl


class TwoRounds:
    def __init__(self, **options):
        self.options = options

    async def plan(self, context, request):
        if context["round_index"] == 0:
            return {"tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}},
                {"id": "c2", "type": "function",
                 "function": {"name": "nope", "arguments": "{}"}}]}
        return {"content": "the sum is 5 (model " + str(self.options.get("model")) + ")"}


@hookimpl
def register_planners(register):
    register("two_rounds", TwoRounds)
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "agently.toml").write_text("", encoding="utf-8")
    monkeypatch.chdir(work)
    for name in list(os.environ):
        if name.startswith("AGENTLY_"):
            monkeypatch.delenv(name)
    return work


@pytest.fixture
def two_rounds(fake_distributions) -> None:
    fake_distributions("agently-core-tworounds", entry_points={"tworounds": "cli_two_rounds"},
                       modules={"cli_two_rounds": SCRIPT_PLUGIN})


def test_a_run_prints_calls_outcomes_and_the_answer(capsys, two_rounds) -> None:
    code = main(["run", "add 2 and 3", "--planner", "two_rounds", "--model", "m-1",
                 "--enable", "examples"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == '-> add({"a": 2, "b": 3})'
    assert lines[1] == "-> nope({})"
    assert any(line.split()[:2] == ["success", "add"] and line.endswith(" 5.0") for line in lines)
    assert any(line.split()[:2] == ["failed", "nope"] and "ActionNotFoundError" in line
               for line in lines)
    assert "answer: the sum is 5 (model m-1)" in lines
    assert lines[-1].startswith("(2 rounds, 2 calls")


def test_json_prints_the_flow_result(capsys, two_rounds) -> None:
    code = main(["run", "add", "--planner", "two_rounds", "--enable", "examples", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    assert result["stop_reason"] == "response" and len(result["records"]) == 2


def test_a_loop_that_ends_without_a_response_exits_1(capsys, two_rounds) -> None:
    code = main(["run", "add", "--planner", "two_rounds", "--enable", "examples",
                 "--max-rounds", "1"])
    out, _ = capsys.readouterr()
    assert code == 1 and "stopped: max_rounds" in out


@pytest.mark.parametrize("argv", [
    ["run", "hi", "--enable", "examples"],  # no planner anywhere
    ["run", "hi", "--planner", "no_such_planner", "--enable", "examples"],
    ["run", "hi", "--planner", "scripted", "--max-rounds", "0"],
    ["run", "hi", "--planner", "scripted", "--enable", "no_such_package"],
])
def test_usage_and_configuration_errors_exit_2(capsys, argv) -> None:
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("planner", ["openai_compatible", "openai_responses",
                                     "anthropic_compatible"])
def test_each_model_planner_drives_run_python_through_the_command(planner, monkeypatch,
                                                                   tmp_path) -> None:
    """The issue's "done when": ``agently-core run`` drives run_python through each model
    planner against a loopback server and prints the model's final answer (the real
    command, the real SDKs, a real sandbox)."""
    import subprocess
    import sys

    from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

    replies = [Reply(text="Computing. ", tool_calls=[ToolCall(
                   "run_python", {"python_code": "print(sum(range(101)))"})]),
               Reply(text="The sum of 1..100 is 5050.")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    env.update({"OPENAI_API_KEY": "sk-cli-test-0000", "ANTHROPIC_API_KEY": "sk-cli-test-0000"})
    command = Path(sys.executable).with_name("agently-core")
    with LoopbackModelServer(replies) as server:
        done = subprocess.run(
            [str(command), "run", "Sum 1..100 with Python.", "--planner", planner,
             "--model", "stand-in", "--base-url", server.base_url, "--enable", "python"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
        sent = [request.json for request in server.requests]
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout
    assert "model: Computing." in out  # streamed text
    assert '-> run_python({"python_code":' in out
    assert "success  run_python" in out and "5050" in out  # the sandbox ran it
    assert "answer: The sum of 1..100 is 5050." in out
    assert len(sent) == 2 and all(body["model"] == "stand-in" for body in sent)
    assert "sk-cli-test-0000" not in out + done.stderr


def test_run_without_enable_is_quiet_about_packages_that_need_options(capsys, two_rounds):
    # every installed package is mounted; sqlite and workspace_files need options and are
    # left out without a word (they used to warn on every run)
    code = main(["run", "add", "--planner", "two_rounds"])
    out, err = capsys.readouterr()
    assert code == 0 and "answer: the sum is 5" in out
    assert err == ""


def test_run_passes_option_values_to_their_package(capsys, two_rounds, isolated):
    import sqlite3

    database = isolated / "shop.db"
    sqlite3.connect(database).close()
    code = main(["run", "add", "--planner", "two_rounds", "--enable", "examples,sqlite",
                 "--option", f"sqlite.database={database}", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["stop_reason"] == "response"
    code = main(["run", "add", "--planner", "two_rounds", "--enable", "examples,sqlite",
                 "--option", f"sqlite.database={isolated / 'missing.db'}"])
    err = capsys.readouterr().err
    assert code == 2 and "action package 'sqlite'" in err and "missing.db" in err
