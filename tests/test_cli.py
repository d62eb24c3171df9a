"""The ``agently-core`` command line, run in-process through ``main([...])``, plus one run
of the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agently_core.cli import main

BROKEN_PLUGIN = """
raise ImportError("cli test plugin is broken on purpose")
"""

TWIN_PLUGIN = """
from agently_core.hookspecs import hookimpl


@hookimpl
def register_planners(register):
    register("scripted", "cli_twin_plugin.plugin:Planner")


class Planner:
    async def plan(self, context, request):
        return "twin"
"""

NAP_PLUGIN = """
from agently_core.hookspecs import hookimpl


async def nap(seconds: float) -> str:
    \"\"\"Sleep, then say so.

    Args:
        seconds: How long to sleep.
    \"\"\"
    import anyio

    await anyio.sleep(seconds)
    return "rested"


def mount(agent, **options):
    return [nap]


@hookimpl
def register_action_packages(register):
    register("napping", "cli_nap_plugin.plugin:mount", description="Sleeps.")
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No agently.toml/pyproject.toml from the repository, no AGENTLY_* from the shell."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "agently.toml").write_text("", encoding="utf-8")  # the file search stops here
    monkeypatch.chdir(work)
    for name in list(os.environ):
        if name.startswith("AGENTLY_"):
            monkeypatch.delenv(name)
    return work


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- plugins --------------------------------------------------------------------------
def test_plugins_json_lists_core_and_builtin_plugins(capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    data = json.loads(out)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert {"agently-core", "runtime", "function"} <= set(plugins)
    assert data["conflicts"] == []
    runtime = plugins["runtime"]
    assert runtime["distribution"] == "agently-core-runtime"
    assert runtime["version"]
    assert runtime["status"] == "loaded"
    assert runtime["error"] is None
    assert runtime["roles"]["action_runtime"] == ["agently"]
    assert "register_action_runtimes" in runtime["hooks"]
    assert plugins["function"]["roles"]["action_executor"] == ["function"]
    assert plugins["agently-core"]["version"]  # the core's own entry carries its version


def test_plugins_human_output(capsys):
    code, out, _ = run(capsys, "plugins")
    assert code == 0
    assert "agently-core-runtime" in out
    assert "action_executor: function" in out
    assert "loaded" in out
    # a provider that serves further kinds when chosen says so
    assert "environment_provider: docker (also python, node, bash, when chosen)" in out


def test_plugins_report_failures_and_conflicts(capsys, fake_distributions):
    fake_distributions("agently-core-clibroken", entry_points={"clibroken": "cli_broken_plugin"},
                       modules={"cli_broken_plugin": BROKEN_PLUGIN})
    fake_distributions("agently-core-clitwin", entry_points={"clitwin": "cli_twin_plugin.plugin"},
                       modules={"cli_twin_plugin.plugin": TWIN_PLUGIN})
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 1  # the README: 1 for a plugin error
    data = json.loads(out)
    plugins = {p["name"]: p for p in data["plugins"]}
    broken = plugins["clibroken"]
    assert broken["status"] == "failed"
    assert broken["distribution"] == "agently-core-clibroken"
    assert "broken on purpose" in broken["error"]
    assert plugins["runtime"]["status"] == "loaded"
    assert plugins["function"]["status"] == "loaded"
    [conflict] = data["conflicts"]
    assert (conflict["role"], conflict["name"]) == ("planner", "scripted")
    assert set(conflict["registered_by"]) == {"agently-core-runtime", "agently-core-clitwin"}

    code, out, _ = run(capsys, "plugins")
    assert code == 1
    assert "failed" in out and "broken on purpose" in out
    assert "conflicts:" in out and "agently-core-clitwin" in out


@pytest.mark.parametrize("which", ["failed", "conflict"])
def test_plugins_exits_1_for_a_failed_or_colliding_plugin(capsys, fake_distributions, which):
    if which == "failed":
        fake_distributions("agently-core-clibroken",
                           entry_points={"clibroken": "cli_broken_plugin"},
                           modules={"cli_broken_plugin": BROKEN_PLUGIN})
    else:
        fake_distributions("agently-core-clitwin",
                           entry_points={"clitwin": "cli_twin_plugin.plugin"},
                           modules={"cli_twin_plugin.plugin": TWIN_PLUGIN})
    assert run(capsys, "plugins")[0] == 1
    assert run(capsys, "plugins", "--json")[0] == 1


def test_plugins_blocked_by_environment(capsys, monkeypatch):
    monkeypatch.setenv("AGENTLY_PLUGINS_BLOCK", "function")
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["function"]["status"] == "blocked"
    assert plugins["function"]["roles"] == {}


# -- actions --------------------------------------------------------------------------
def test_actions_json_lists_packages_and_schemas(capsys):
    code, out, _ = run(capsys, "actions", "--json")
    assert code == 0
    packages = {p["name"]: p for p in json.loads(out)["packages"]}
    examples = packages["examples"]
    assert examples["distribution"] == "agently-core-function"
    assert examples["error"] is None
    actions = {a["name"]: a for a in examples["actions"]}
    assert {"add", "multiply", "word_count", "echo"} <= set(actions)
    add = actions["add"]["kwargs"]
    assert add["required"] == ["a", "b"]
    assert add["properties"]["a"]["type"] == "number"
    assert add["properties"]["a"]["description"] == "The first addend."


def test_actions_enable_and_human_output(capsys, fake_distributions):
    fake_distributions("agently-core-clinap", entry_points={"clinap": "cli_nap_plugin.plugin"},
                       modules={"cli_nap_plugin.plugin": NAP_PLUGIN})
    code, out, _ = run(capsys, "actions", "--json", "--enable", "napping")
    assert code == 0
    [package] = json.loads(out)["packages"]
    assert package["name"] == "napping"
    assert [a["name"] for a in package["actions"]] == ["nap"]

    code, out, _ = run(capsys, "actions")
    assert code == 0
    assert "examples (agently-core-function" in out
    assert "add(a: number, b: number)" in out
    assert "napping" in out and "nap(seconds: number)" in out


def test_actions_unknown_enable_is_a_usage_error(capsys):
    code, out, err = run(capsys, "actions", "--enable", "nope")
    assert code == 2
    assert out == ""
    assert err.startswith("agently-core: error:") and "nope" in err and "examples" in err
    assert err.count("\n") == 1


# -- call -----------------------------------------------------------------------------
def test_call_success_prints_record_and_exits_0(capsys):
    code, out, _ = run(capsys, "call", "add", "--kwargs", '{"a": 1, "b": 2}')
    assert code == 0
    record = json.loads(out)
    assert record["status"] == "success"
    assert record["action"] == "add"
    assert record["result"] == 3
    assert record["kwargs"] == {"a": 1, "b": 2}


def test_call_with_enable(capsys):
    code, out, _ = run(capsys, "call", "echo", "--kwargs", '{"message": "hi", "repeat": 2}',
                       "--enable", "examples")
    assert code == 0
    assert json.loads(out)["result"] == "hi hi"


def test_call_invalid_arguments_exits_1_with_failed_record(capsys):
    code, out, _ = run(capsys, "call", "add", "--kwargs", '{"a": "one"}')
    assert code == 1
    record = json.loads(out)
    assert record["status"] == "failed"
    assert record["error_type"] == "ArgumentsError"
    assert "invalid arguments for 'add'" in record["error"]


def test_call_unknown_action_exits_1(capsys):
    code, out, _ = run(capsys, "call", "no_such_action")
    assert code == 1
    record = json.loads(out)
    assert record["status"] == "failed"
    assert "unknown action 'no_such_action'" in record["error"]


def test_call_without_enable_does_not_warn_about_packages_that_need_options(capsys):
    # sqlite needs a database and workspace_files a file root: neither is a problem here
    from agently_core import Config, PluginManager

    installed = set(PluginManager(Config.load()).registrations("action_package"))
    assert {"sqlite", "workspace_files"} <= installed
    code, out, err = run(capsys, "call", "add", "--kwargs", '{"a": 1, "b": 2}')
    assert code == 0 and json.loads(out)["result"] == 3
    assert err == ""


def test_call_query_sqlite_without_a_database_says_what_to_pass(capsys, monkeypatch, isolated):
    monkeypatch.delenv("AGENTLY_SQLITE_DATABASE", raising=False)
    code, out, err = run(capsys, "call", "query_sqlite", "--kwargs", '{"query": "SELECT 1"}')
    assert code == 2 and out == ""
    assert "unknown action" not in err
    assert "action 'query_sqlite' is in action package 'sqlite'" in err
    assert "needs database=PATH" in err and "--option sqlite.KEY=VALUE" in err
    # the same with --enable sqlite
    code, _, err = run(capsys, "call", "query_sqlite", "--enable", "sqlite")
    assert code == 2 and "needs database=PATH" in err and "--option sqlite.KEY=VALUE" in err

    import sqlite3

    database = isolated / "shop.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE fruit (name TEXT)")
        connection.execute("INSERT INTO fruit VALUES ('pear')")
    connection.close()
    code, out, err = run(capsys, "call", "query_sqlite", "--kwargs",
                         '{"query": "SELECT name FROM fruit"}',
                         "--option", f"sqlite.database={database}")
    assert code == 0, err
    assert json.loads(out)["result"]["rows"] == [["pear"]]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--option", "sqlite"], "must look like PACKAGE.KEY=VALUE"),
    (["--option", "database=x.db"], "must look like PACKAGE.KEY=VALUE"),
    (["--option", "sqlite.2x=1"], "must look like PACKAGE.KEY=VALUE"),
    (["--enable", "examples", "--option", "sqlite.database=x.db"],
     "--option names action package(s) sqlite, which are not among --enable: examples"),
    (["--enable", "examples,sqlite", "--option", "sqlite.colour=1"],
     "action package 'sqlite' could not be mounted with these options: TypeError"),
])
def test_call_bad_options_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, "call", "add", "--kwargs", '{"a": 1, "b": 2}', *argv)
    assert code == 2 and out == ""
    assert needle in err


def test_call_timeout_holds(capsys, fake_distributions):
    fake_distributions("agently-core-clinap", entry_points={"clinap": "cli_nap_plugin.plugin"},
                       modules={"cli_nap_plugin.plugin": NAP_PLUGIN})
    code, out, _ = run(capsys, "call", "nap", "--kwargs", '{"seconds": 0.01}', "--enable",
                       "napping")
    assert code == 0 and json.loads(out)["result"] == "rested"
    code, out, _ = run(capsys, "call", "nap", "--kwargs", '{"seconds": 30}',
                       "--enable", "napping,examples", "--timeout", "0.2")
    assert code == 1
    record = json.loads(out)
    assert record["error_type"] == "TimeoutError"
    assert record["duration_ms"] < 5000


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["call", "add", "--kwargs", "{not json"], "not valid JSON"),
        (["call", "add", "--kwargs", "[1, 2]"], "must be a JSON object"),
        (["call", "add", "--kwargs", "{}", "--enable", "nope"], "unknown action package 'nope'"),
        (["call", "add", "--enable", ","], "--enable needs"),
        (["call", "add", "--timeout", "0"], "--timeout must be a positive"),
    ],
)
def test_call_usage_errors_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("agently-core: error:")
    assert needle in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["call"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["call", "add", "--timeout", "soon"])
    assert exc.value.code == 2
    assert main([]) == 2


def test_config_error_exits_2(capsys, isolated):
    (isolated / "agently.toml").write_text('bogus_setting = "x"\n', encoding="utf-8")
    code, _, err = run(capsys, "plugins")
    assert code == 2
    assert err.startswith("agently-core: error:") and "bogus_setting" in err


def test_selection_error_exits_1(capsys, isolated):
    (isolated / "agently.toml").write_text('runtime = "nonexistent"\n', encoding="utf-8")
    code, _, err = run(capsys, "demo")
    assert code == 1
    assert err.startswith("agently-core: error:") and "nonexistent" in err


# -- doctor ---------------------------------------------------------------------------
def test_doctor_reports_a_usable_installation(capsys):
    code, out, _ = run(capsys, "doctor")
    assert code == 0
    assert out.startswith("agently-core ") and " on Python " in out.splitlines()[0]
    assert "result: usable" in out
    assert "agently-core-runtime" in out and "agently-core-function" in out

    code, out, _ = run(capsys, "doctor", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["usable"] is True
    assert data["core"]["version"]
    assert all(check["ok"] for check in data["required"])
    assert {p["name"] for p in data["plugins"]} >= {"agently-core", "runtime", "function"}
    assert data["roles"]["action_runtime"]["installed"][0]["name"] == "agently"
    assert data["problems"] == []


def test_doctor_says_what_is_missing_and_how_to_get_it(capsys, monkeypatch):
    monkeypatch.setenv("AGENTLY_PLUGINS_BLOCK", "function")
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert "pip install agently-core-function" in out
    assert "NOT usable" in out
    code, out, _ = run(capsys, "doctor", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["usable"] is False
    [missing] = [c for c in data["required"] if not c["ok"]]
    assert missing["role"] == "action_executor"
    assert missing["install"] == "pip install agently-core-function"
    assert {"name": "examples", "distribution": "agently-core-function",
            "install": "pip install agently-core-function"} in (
        data["roles"]["action_package"]["missing"])


def test_doctor_never_prints_an_empty_name(capsys, monkeypatch):
    monkeypatch.setenv("AGENTLY_PLUGINS_BLOCK", "runtime")
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert "''" not in out
    assert "ActionRuntime 'agently' is not installed" in out
    code, out, _ = run(capsys, "doctor", "--json")
    checks = {c["role"]: c for c in json.loads(out)["required"]}
    assert checks["action_runtime"]["name"] == "agently"
    assert "''" not in checks["action_flow"]["error"]


def test_selecting_from_an_empty_role_names_no_empty_name(tmp_path):
    from agently_core import Config, PluginManager
    from agently_core.errors import NotInstalledError

    pm = PluginManager(Config.load(env={}, cwd=tmp_path), autoload=False, builtins=False)
    with pytest.raises(NotInstalledError) as exc:
        pm.select("action_runtime")
    assert str(exc.value).startswith("no ActionRuntime is installed. Installed: none")


TYPO_PLUGIN = """
from agently_core.hookspecs import hookimpl


class Planner:
    async def plan(self, context, request):
        return "done"


@hookimpl
def register_planners(register):
    register("typo-attr", "cli_typo_plugin.plugin:Plannr")
    register("typo-module", "cli_typo_plugin.plugn:Planner")
    register("typo-nested", "cli_typo_plugin.plugin:Planner.plam")
    register("no-dependency", "cli_typo_missing_dependency:Planner")
"""


def test_doctor_names_a_misspelt_lazy_factory(capsys, fake_distributions):
    fake_distributions("agently-core-clitypo", entry_points={"clitypo": "cli_typo_plugin.plugin"},
                       modules={"cli_typo_plugin.plugin": TYPO_PLUGIN})
    code, out, _ = run(capsys, "doctor", "--json")
    assert code == 0
    fixes = {p["error"].split("'")[1]: p["fix"] for p in json.loads(out)["problems"]}
    assert fixes["typo-attr"] == ("correct the misspelt name 'Plannr' in the "
                                  "register('typo-attr', 'cli_typo_plugin.plugin:Plannr') call "
                                  "of plugin 'clitypo' (did you mean 'Planner'?)")
    assert "misspelt module 'plugn'" in fixes["typo-module"]
    assert "did you mean 'plugin'?" in fixes["typo-module"]
    assert "misspelt name 'plam'" in fixes["typo-nested"]
    assert "did you mean 'plan'?" in fixes["typo-nested"]
    assert "pip install cli_typo_missing_dependency?" in fixes["no-dependency"]
    assert not any("--force-reinstall" in fix for fix in fixes.values())
    code, out, _ = run(capsys, "doctor")
    assert "fix: correct the misspelt name 'Plannr'" in out


def test_doctor_lists_plugins_that_failed(capsys, fake_distributions):
    fake_distributions("agently-core-clibroken", entry_points={"clibroken": "cli_broken_plugin"},
                       modules={"cli_broken_plugin": BROKEN_PLUGIN})
    code, out, _ = run(capsys, "doctor")
    assert code == 0  # a broken extra plugin does not make the core unusable
    assert "clibroken" in out and "broken on purpose" in out
    code, out, _ = run(capsys, "doctor", "--json")
    [problem] = json.loads(out)["problems"]
    assert problem["distribution"] == "agently-core-clibroken"
    assert "broken on purpose" in problem["error"]


# -- demo -----------------------------------------------------------------------------
def test_demo_runs_and_shows_records(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) < 70  # short: a screen or two
    assert "records" in out
    assert "structured_plan" in out and "native_tool_calls" in out
    assert "success" in out and "failed" in out
    assert "ArgumentsError" in out  # the invalid call shows a clear failed record
    assert "final response" in out
    assert "ms" in out


def test_demo_without_plugins_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setenv("AGENTLY_PLUGINS_BLOCK", "runtime,function")
    code, _, err = run(capsys, "demo")
    assert code == 1
    assert "pip install agently-core-runtime" in err
    assert "pip install agently-core-function" in err


# -- the console script ---------------------------------------------------------------
def test_console_script_runs(isolated):
    script = Path(sys.executable).with_name("agently-core")
    assert script.exists(), f"console script missing next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    proc = subprocess.run([str(script), "call", "add", "--kwargs", '{"a": 1, "b": 2}'],
                          capture_output=True, text=True, cwd=isolated, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "success" and record["result"] == 3


def test_demo_runs_every_installed_sandbox() -> None:
    """The main job, as a user runs it: the real command with every plugin installed."""
    import subprocess
    import sys
    from pathlib import Path

    command = Path(sys.executable).with_name("agently-core")
    done = subprocess.run([str(command), "demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for section in ("[model]", "[python]", "[bash]", "[nodejs]", "[mcp]", "[sqlite]"):
        assert section in out, out
    # a model-driven loop through the openai SDK, against a loopback stand-in, labelled so
    assert "STAND-IN server on 127.0.0.1" in out
    assert '-> add({"a":19,"b":23})' in out and "answer: 19 + 23 = 42." in out
    assert "-> [0, 1, 4, 9, 16]" in out  # run_python
    assert "-> fruit.txt" in out and "'curl' is not an allowed command" in out  # run_bash
    assert "'rm' is not an allowed command" in out  # inside a command substitution
    assert "-> 12" in out  # run_nodejs kept its state
    assert "not allowed in read-only mode" in out  # query_sqlite
    assert "get_current_time" in out and "Europe/Paris" in out  # a real MCP server's tool
