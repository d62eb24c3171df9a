"""Issue 12: ``agently_core.builtins.actions`` (the reference's ``agently.builtins.actions``).

The installed action packages are importable there by class name and mount with
``agent.use_actions(...)``; the reference's ``Search`` and ``Browse`` come from
agently-core-web and, without it, say so when imported; importing the module (and
``agently_core.types.plugins``) loads no plugin and no pydantic.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agently_core.errors import NotInstalledError


@pytest.mark.parametrize(("name", "package"), [("Search", "search"), ("Browse", "browse")])
def test_the_reference_packages_say_what_is_missing_without_agently_core_web(
        name, package, monkeypatch) -> None:
    from agently_core.plugins import reset_plugin_manager

    monkeypatch.setenv("AGENTLY_PLUGINS_BLOCK", "agently-core-web")
    reset_plugin_manager()
    try:
        with pytest.raises(ImportError) as failed:
            exec(f"from agently_core.builtins.actions import {name}", {})
    finally:
        reset_plugin_manager()
    assert isinstance(failed.value, NotInstalledError)
    message = str(failed.value)
    assert message.startswith(f"agently_core.builtins.actions.{name} is not installed: no "
                              f"installed plugin provides the action package {package!r} "
                              f"(install agently-core-web for the built-in {name} package)")
    assert "installed built-in packages: " in message and "Python" in message


@pytest.mark.parametrize(("name", "package"), [("Search", "search"), ("Browse", "browse")])
def test_the_reference_packages_come_from_agently_core_web(name, package) -> None:
    from agently_core.builtins import actions

    cls = getattr(actions, name)
    assert issubclass(cls, actions.BuiltinPackage) and cls.action_package == package
    assert "agently-core-web" in cls.__doc__


def test_an_unknown_name_is_an_import_error_naming_what_is_there() -> None:
    with pytest.raises(ImportError, match="cannot import name 'Teleport'"):
        exec("from agently_core.builtins.actions import Teleport", {})
    import agently_core.builtins.actions as actions

    with pytest.raises(AttributeError, match=r"installed built-in packages: .*Sqlite"):
        actions.Teleport  # noqa: B018


def test_every_installed_package_is_there_by_class_name() -> None:
    from agently_core.builtins import actions
    from agently_core.plugins import get_plugin_manager

    installed = get_plugin_manager().registrations("action_package")
    assert {"Python", "Bash", "Nodejs", "Sqlite", "Mcp", "WorkspaceFiles",
            "Examples"} <= set(dir(actions))
    for name in installed:
        cls = getattr(actions, actions.class_name(name))
        assert issubclass(cls, actions.BuiltinPackage) and cls.action_package == name
    assert actions.class_name("workspace_files") == "WorkspaceFiles"
    assert actions.Python is actions.Python  # one class per package


def test_use_actions_mounts_a_builtin_package_with_its_options(agently_agent_factory,
                                                                tmp_path: Path) -> None:
    from agently_core.builtins.actions import Examples, Sqlite

    database = tmp_path / "app.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table t (x integer)")
        connection.execute("insert into t values (41)")
    agent = agently_agent_factory()
    package = Sqlite(database=str(database), read_only=False)
    assert repr(package) == f"Sqlite(database={str(database)!r}, read_only=False)"
    assert agent.use_actions([Examples, package]) is agent
    visible = {info["name"] for info in agent.action.get_action_info()}
    assert {"add", "multiply", "query_sqlite", "execute_sqlite"} <= visible
    record = agent.action.execute_action("query_sqlite", {"query": "select x + 1 as y from t"})
    assert record.status == "success", record.error
    assert "42" in str(record.result)
    with pytest.raises(TypeError):
        package.options["read_only"] = True  # type: ignore[index]


def test_importing_the_reference_modules_loads_no_plugin_and_no_pydantic() -> None:
    code = ("import sys, agently_core.builtins.actions, agently_core.types.plugins\n"
            "from agently_core.types.plugins import ActionFlow, ActionPlanningHandler\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', "
            "'pluggy') or m == 'agently_core.plugins'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
