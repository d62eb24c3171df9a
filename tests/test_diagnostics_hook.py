"""register_diagnostics: plugin checks appear in `agently-core doctor`, failures included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agently_core import hookimpl
from agently_core.cli import main


def _good() -> list[dict[str, Any]]:
    return [{"name": "widget present", "ok": True, "detail": "widget 1.0", "fix": None},
            {"name": "gadget present", "ok": False, "detail": "no gadget",
             "fix": "apt-get install gadget"}]


def _broken() -> list[dict[str, Any]]:
    raise RuntimeError("probe exploded")


class DoctorPlugin:
    @hookimpl
    def register_diagnostics(self, register):
        register("widgets", _good)
        register("broken", _broken)


@pytest.fixture
def doctor_with_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Any:
    from agently_core import cli
    from agently_core.plugins import PluginManager

    (tmp_path / "agently.toml").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    real = cli._plugin_manager

    def manager() -> Any:
        pm: PluginManager = real()
        pm.register(DoctorPlugin(), name="doctor-plugin", distribution="doctor-plugin")
        return pm

    monkeypatch.setattr(cli, "_plugin_manager", manager)


def test_checks_are_listed_in_json(doctor_with_plugin, capsys) -> None:
    main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    by_name = {check["name"]: check for check in report["diagnostics"]}
    assert by_name["widget present"]["ok"] is True
    assert by_name["gadget present"] == {"source": "widgets", "name": "gadget present",
                                          "ok": False, "detail": "no gadget",
                                          "fix": "apt-get install gadget"}
    broken = by_name["broken"]
    assert broken["ok"] is False and "probe exploded" in broken["detail"]


def test_checks_are_printed(doctor_with_plugin, capsys) -> None:
    main(["doctor"])
    out = capsys.readouterr().out
    assert "checks:" in out
    assert "gadget present: no gadget" in out
    assert "fix: apt-get install gadget" in out


def test_isolation_tiers_are_reported(capsys, monkeypatch, tmp_path) -> None:
    (tmp_path / "agently.toml").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    main(["doctor", "--json"])
    names = {c["name"]: c for c in json.loads(capsys.readouterr().out)["diagnostics"]}
    assert names["isolation tier bubblewrap"]["ok"], names["isolation tier bubblewrap"]
    assert names["isolation tier landlock"]["ok"], names["isolation tier landlock"]
