"""What records say: Action.to_action_results (digests for instruction-heavy calls) and
summarize_records (statuses, failures, commands, validation runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import agently_core
from agently_core.agent import Action
from agently_core.models import ActionSpec
from agently_core.records import summarize_records, to_action_results

SHELL_SCHEMA = {"type": "object", "required": ["command"],
                "properties": {"command": {"type": "string"}}}


def shell(command: str) -> dict[str, Any]:
    """A stand-in shell: ``fail`` in the command exits 1, ``crash`` raises."""
    if "crash" in command:
        raise RuntimeError("the shell crashed")
    return {"exit_code": 1 if "fail" in command else 0, "stdout": f"$ {command}\n" * 50}


@pytest.fixture
def agent(build_agent: Callable[..., Any]) -> Any:
    made = build_agent()
    made.action.register_action(
        ActionSpec(name="sh", description="Run a command.", input_schema=SHELL_SCHEMA,
                   meta={"instruction": "command"}), shell)

    @made.action_func
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return made


def test_to_action_results_gives_the_digest_or_the_plain_result(agent: Any) -> None:
    records = agent.action.execute_actions([
        {"action": "sh", "kwargs": {"command": "echo hi"}, "purpose": "greet"},
        {"action": "add", "kwargs": {"a": 2, "b": 3}},
        {"action": "add", "kwargs": {"a": "x", "b": 3}},
    ])
    results = Action.to_action_results(records)
    assert results == agent.action.to_action_results(records)  # static and bound alike
    heavy, plain, failed = results
    assert heavy["digest"] == records[0].digest and "result" not in heavy
    assert "$ echo hi" * 2 not in str(heavy)  # the full output stays an artifact
    assert heavy["digest"]["artifact_refs"][0]["action_call_id"] == records[0].call_id
    assert plain == {"call_id": records[1].call_id, "action": "add", "purpose": "",
                     "status": "success", "kwargs": {"a": 2, "b": 3}, "result": 5}
    assert failed["status"] == "failed" and failed["error_type"] == "ArgumentsError"
    # dicts work as well as records (a FlowResult's action_logs, a saved run)
    assert to_action_results([r.model_dump() for r in records]) == results


def test_to_action_results_refuses_what_is_not_records() -> None:
    with pytest.raises(TypeError, match="list of action records"):
        to_action_results("records")
    with pytest.raises(TypeError, match=r"records\[1\] is not an action record"):
        to_action_results([{"action": "a", "status": "success"}, 42])
    with pytest.raises(TypeError, match="needs 'action' and 'status'"):
        to_action_results([{"result": 1}])


def test_summarize_records_reports_failures_commands_and_the_latest_validation(
        agent: Any) -> None:
    agent.action.execute_actions([
        {"action": "sh", "kwargs": {"command": "ls"}},
        {"action": "sh", "kwargs": {"command": "python -m pytest -q tests/ fail"}},
        {"action": "add", "kwargs": {"a": 1, "b": 1}},
        {"action": "sh", "kwargs": {"command": "crash now"}},
        {"action": "missing", "kwargs": {}},
        {"action": "sh", "kwargs": {"command": "ruff check ."}},
        {"action": "sh", "kwargs": {"command": "cat pytest_plugins.py"}},
    ], concurrency=1)
    summary = agent.action.summarize_records(
        validation_command_markers=["pytest", "ruff", "npm test"])
    assert summary["total"] == 7
    assert summary["statuses"] == {"success": 5, "failed": 2}
    assert summary["actions"] == {"sh": 5, "add": 1, "missing": 1}
    assert [(f["action"], f["error_type"]) for f in summary["failed"]] == [
        ("sh", "RuntimeError"), ("missing", "ActionNotFoundError")]
    assert [c["command"] for c in summary["commands"]] == [
        "ls", "python -m pytest -q tests/ fail", "crash now", "ruff check .",
        "cat pytest_plugins.py"]
    assert summary["commands_attempted"] == 5 and summary["commands_run"] == 5
    assert [c["command"] for c in summary["validation_runs"]] == [
        "python -m pytest -q tests/ fail", "ruff check ."]  # not pytest_plugins.py
    pytest_run = summary["validation_runs"][0]
    assert pytest_run["exit_code"] == 1 and pytest_run["status"] == "success"
    latest = summary["latest_validation"]
    assert latest["command"] == "ruff check ." and latest["passed"] is True


def test_a_failing_latest_validation_is_not_passed(agent: Any) -> None:
    agent.action.execute_action("sh", {"command": "npm   test -- fail"})
    summary = agent.action.summarize_records(validation_command_markers=["npm test"])
    assert summary["latest_validation"]["passed"] is False
    assert summary["latest_validation"]["exit_code"] == 1
    none = agent.action.summarize_records(validation_command_markers=["pytest"])
    assert none["validation_runs"] == [] and none["latest_validation"] is None


def test_without_the_registry_the_digest_gives_the_command(agent: Any) -> None:
    record = agent.action.execute_action("sh", {"command": "pytest -x"})
    summary = agently_core.summarize_records([record.model_dump()],
                                             validation_command_markers=["pytest"])
    assert summary["commands"][0]["command"] == "pytest -x"
    assert summary["latest_validation"]["passed"] is True


def test_bad_markers_are_a_clear_error(agent: Any) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        summarize_records([], validation_command_markers="pytest")
    with pytest.raises(ValueError, match="non-empty string"):
        summarize_records([], validation_command_markers=["pytest", " "])
    with pytest.raises(TypeError, match="list of action records"):
        agent.action.summarize_records(5)
