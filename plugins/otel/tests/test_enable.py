"""Enabled by installing the plugin and one setting (``otel``: ``AGENTLY_OTEL``, ``otel =
true`` in agently.toml, ``create_agent(config={"otel": True})``); off, no agent subscribes
its observer; OpenTelemetry is imported only when the observer is on and first used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agently_core_otel import attributes as attr
from agently_core_otel.diagnostics import check


def test_off_by_default_registers_no_observer(make_agent) -> None:
    agent = make_agent()
    try:
        info = next(p for p in agent.plugins.iter_plugins() if p.name == "otel")
        assert info.status == "loaded" and info.distribution == "agently-core-otel"
        registration = agent.plugins.registrations("event_observer")["otel"]
        assert registration.options["setting"] == "otel"  # registered for the setting
        assert not agent.events.active  # not subscribed: emitting an event costs one check
    finally:
        agent.close()
    assert check()[0]["ok"] and "off" in check()[0]["detail"]


def test_the_setting_turns_spans_on_for_every_agent(make_agent, global_exporter, read_tree,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLY_OTEL", "1")  # for the doctor row below
    agent = make_agent(otel=True)
    try:
        registration = agent.plugins.registrations("event_observer")["otel"]
        assert registration.options["events"]  # subscribed to its event types only
        assert agent.events.active

        @agent.action_func
        def add(a: int, b: int) -> int:
            """Add."""
            return a + b

        agent.use_actions(["add"])
        agent.set_planner([[("add", {"a": 1, "b": 2})], "3"])
        result = agent.run("add")
        from agently_core_otel.observer import default_observer

        default_observer.flush()
    finally:
        agent.close()
    tree = read_tree(global_exporter)
    run = tree.one("invoke_agent")
    assert run.attributes[attr.RUN_ID] == result.execution_id
    assert tree.run_of(tree.one("execute_tool add")) is run
    row = check()[0]
    assert row["ok"] and row["detail"].startswith("on")


def test_a_bad_value_is_a_configuration_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from agently_core.config import Config
    from agently_core.errors import ConfigError

    with pytest.raises(ConfigError, match="AGENTLY_OTEL"):
        Config.load(env={"AGENTLY_OTEL": "maybe"})
    monkeypatch.setenv("AGENTLY_OTEL", "maybe")
    row = check()[0]
    assert not row["ok"] and "AGENTLY_OTEL" in row["fix"]


def test_the_setting_in_code_or_in_agently_toml(make_agent, global_exporter, read_tree,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import agently_core

    agent = agently_core.create_agent(config={"otel": True})
    try:
        assert agent.events.active  # its own manager subscribed the observer
    finally:
        agent.close()
    off = agently_core.create_agent(config={"otel": False})
    try:
        assert not off.events.active
    finally:
        off.close()
    (tmp_path / "agently.toml").write_text("otel = true\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    from agently_core.config import Config

    assert Config.load().otel is True
    assert check()[0]["ok"] and check()[0]["detail"].startswith("on")


_PROBE = """
import json, sys
import agently_core
loaded = lambda: sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')
agent = agently_core.create_agent("probe")
after_discovery = loaded()

@agent.action_func
def add(a: int, b: int) -> int:
    '''Add.'''
    return a + b

agent.use_actions(["add"])
agent.set_planner([[("add", {"a": 1, "b": 2})], "3"])
assert agent.run("add").stop_reason == "response"
after_run = loaded()
agent.close()
print(json.dumps({"discovery": after_discovery, "run": after_run,
                  "observed": agent.manager.events.active}))
"""


@pytest.mark.parametrize("setting", ["", "1"])
def test_opentelemetry_is_imported_only_when_on_and_used(tmp_path: Path, setting: str) -> None:
    (tmp_path / "agently.toml").write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLY_", "OTEL_"))}
    env["AGENTLY_OTEL"] = setting
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["discovery"] == []  # discovery and agent creation import none of it
    if setting:
        assert found["observed"] is True
        assert "opentelemetry.trace" in found["run"]
        assert not any(m.startswith("opentelemetry.sdk") for m in found["run"])  # API only
    else:
        assert found["observed"] is False and found["run"] == []
        assert found["run"] == []
