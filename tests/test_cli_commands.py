"""Plugins add ``agently-core`` commands with ``register_commands``; a command that fails
or collides is reported by ``plugins`` and ``doctor`` and never breaks the command line.
The core's own modules import no plugin (``serve-mcp`` comes from agently-core-mcp)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agently_core import Config, PluginManager
from agently_core.cli import build_parser, main
from agently_core.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]

GREET_PLUGIN = """
from agently_core.hookspecs import hookimpl


def greet(parser):
    parser.add_argument("--name", required=True, help="who to greet")
    parser.add_argument("--add", nargs=2, type=int, metavar="N", help="two numbers to add")
    return run


def run(args):
    from agently_core.cli import UsageError, open_agent

    if args.name == "nobody":
        raise UsageError("greet: --name nobody is nobody")
    print(f"hello {args.name}")
    if args.add:
        with open_agent(["examples"]) as agent:
            record = agent.action.execute_action("add", {"a": args.add[0], "b": args.add[1]})
        print(f"sum {record.result:g}")
    return 3 if args.name == "three" else 0


@hookimpl
def register_commands(register):
    register("greet", "cli_greet_plugin.plugin:greet", help="say hello (a plugin command)")
"""

#: Registers a command whose factory name is misspelt, one whose factory raises, one that
#: takes a built-in name, one that returns no handler and one whose -h clashes with argparse.
FLAWED_PLUGIN = """
from agently_core.hookspecs import hookimpl


def wave(parser):
    parser.add_argument("--hand", help="which hand")
    return lambda args: 0


def broken(parser):
    raise RuntimeError("broken factory on purpose")


def nothing(parser):
    return None


def helpful(parser):
    parser.add_argument("-h", "--help", action="store_true", help="its own help flag")
    return lambda args: 0


@hookimpl
def register_commands(register):
    register("wave", "cli_flawed_plugin.plugin:wav", help="wave (misspelt factory)")
    register("explode", "cli_flawed_plugin.plugin:broken", help="raises")
    register("call", "cli_flawed_plugin.plugin:wave", help="takes a built-in name")
    register("shrug", "cli_flawed_plugin.plugin:nothing", help="returns no handler")
    register("clash", "cli_flawed_plugin.plugin:helpful", help="adds -h, which argparse has")
"""

TWIN_GREET = """
from agently_core.hookspecs import hookimpl


@hookimpl
def register_commands(register):
    register("greet", "cli_twin_greet.plugin:greet", help="another greet")


def greet(parser):
    return lambda args: 0
"""

RAISING_HOOK = """
from agently_core.hookspecs import hookimpl


@hookimpl
def register_commands(register):
    raise RuntimeError("command hook broken on purpose")
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


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def install(fake_distributions, name: str, source: str) -> None:
    module = f"cli_{name}.plugin"
    fake_distributions(f"agently-core-{name.replace('_', '-')}",
                       entry_points={name: module}, modules={module: source})


# -- a working plugin command -----------------------------------------------------------------
def test_a_plugin_command_runs_with_its_arguments(capsys, fake_distributions):
    install(fake_distributions, "greet_plugin", GREET_PLUGIN)
    code, out, _ = run(capsys, "greet", "--name", "Ada", "--add", "19", "23")
    assert (code, out) == (0, "hello Ada\nsum 42\n")  # a real action through open_agent
    assert run(capsys, "greet", "--name", "three")[0] == 3  # the handler's exit code
    code, out, err = run(capsys, "greet", "--name", "nobody")
    assert code == 2 and out == "" and "nobody is nobody" in err  # UsageError: exit 2
    with pytest.raises(SystemExit) as exc:  # its own arguments are parsed by argparse
        main(["greet"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "say hello (a plugin command)" in capsys.readouterr().out
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["greet_plugin"]["roles"] == {"command": ["greet"]}


# -- failing and colliding commands ---------------------------------------------------------------
def test_flawed_commands_are_left_out_and_reported(capsys, fake_distributions):
    install(fake_distributions, "flawed_plugin", FLAWED_PLUGIN)
    # the built-in 'call' is still the built-in one, and the CLI works
    code, out, _ = run(capsys, "call", "add", "--kwargs", '{"a": 1, "b": 2}')
    assert code == 0 and json.loads(out)["result"] == 3
    for name, needle in (("wave", "misspelt name 'wav'"), ("explode", "broken factory"),
                         ("shrug", "not a handler"), ("clash", "do not fit a command")):
        code, out, err = run(capsys, name)
        assert code == 2 and out == ""  # left out, and saying why
        assert err.startswith("agently-core: error: CLI command") and needle in err

    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 1
    problems = {p["command"]: p for p in json.loads(out)["command_problems"]}
    assert set(problems) == {"wave", "explode", "call", "shrug", "clash"}
    assert "misspelt name 'wav'" in problems["wave"]["fix"]
    assert "did you mean 'wave'?" in problems["wave"]["fix"]
    assert "broken factory on purpose" in problems["explode"]["error"]
    assert "built-in command" in problems["call"]["error"]
    assert "AGENTLY_PLUGINS_BLOCK=flawed_plugin" in problems["call"]["fix"]
    assert "not a handler" in problems["shrug"]["error"]
    assert "conflicting option strings: -h, --help" in problems["clash"]["error"]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "clash" not in capsys.readouterr().out  # no trace in the command list
    code, out, _ = run(capsys, "plugins")
    assert code == 1 and "commands left out:" in out and "broken factory" in out

    code, out, _ = run(capsys, "doctor", "--json")
    assert code == 0  # the core still runs an action loop
    errors = " | ".join(p["error"] for p in json.loads(out)["problems"])
    for needle in ("'wav'", "broken factory on purpose", "built-in command", "not a handler",
                   "do not fit a command"):
        assert needle in errors


def test_two_plugins_with_one_command_name_collide(capsys, fake_distributions):
    install(fake_distributions, "greet_plugin", GREET_PLUGIN)
    install(fake_distributions, "twin_greet", TWIN_GREET)
    code, out, err = run(capsys, "greet", "--name", "Ada")
    assert code == 2 and out == ""
    assert "CLI command 'greet' is registered by both" in err
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 1
    [conflict] = json.loads(out)["conflicts"]
    assert (conflict["role"], conflict["name"]) == ("command", "greet")
    assert set(conflict["registered_by"]) == {"agently-core-greet-plugin",
                                              "agently-core-twin-greet"}


def test_a_raising_command_hook_fails_its_plugin_only(capsys, fake_distributions):
    install(fake_distributions, "raising_hook", RAISING_HOOK)
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 1
    plugins = {p["name"]: p for p in json.loads(out)["plugins"]}
    assert plugins["raising_hook"]["status"] == "failed"
    assert "register_commands raised RuntimeError" in plugins["raising_hook"]["error"]
    assert run(capsys, "call", "add", "--kwargs", '{"a": 2, "b": 2}')[0] == 0


class BadRegistrations:
    def __init__(self, name: str, **options: object) -> None:
        self.name, self.options = name, options

    @hookimpl
    def register_commands(self, register):
        register(self.name, lambda parser: (lambda args: 0), **self.options)


@pytest.mark.parametrize(("name", "options", "needle"), [
    ("Serve MCP", {"help": "spaces"}, "lowercase words joined by '-'"),
    ("-x", {"help": "a flag"}, "lowercase words joined by '-'"),
    ("quiet", {}, "needs help="),
    ("quiet", {"help": "  "}, "needs help="),
    ("quiet", {"help": "ok", "hidden": True}, "unknown option(s) hidden"),
])
def test_bad_command_registrations_fail_the_plugin(name, options, needle, tmp_path):
    pm = PluginManager(Config.load(env={}, cwd=tmp_path), autoload=False)
    info = pm.register(BadRegistrations(name, **options), name="bad")
    assert info.status == "failed"
    assert needle in info.error
    assert pm.registrations("command") == {}


def test_a_command_registered_in_code_joins_the_parser(tmp_path, capsys):
    pm = PluginManager(Config.load(env={}, cwd=tmp_path), autoload=False)
    seen: list[argparse.Namespace] = []

    def hello(parser: argparse.ArgumentParser):
        parser.add_argument("word", help="the word to keep")
        return seen.append

    class Hello:
        @hookimpl
        def register_commands(self, register):
            register("hello", hello, help="keep a word")

    pm.register(Hello(), name="hello")
    args = build_parser(pm).parse_args(["hello", "hi"])
    assert args.func(args) is None and seen[0].word == "hi"
    assert "hello" not in build_parser().format_help()  # without a manager: built-ins only


def test_a_missing_plugin_command_says_what_provides_it(capsys, monkeypatch, isolated):
    monkeypatch.setenv("AGENTLY_PLUGINS_BLOCK", "mcp")
    code, out, err = run(capsys, "serve-mcp", "--transport", "http")
    assert code == 2 and out == ""
    assert "CLI command 'serve-mcp' is not installed" in err
    assert "pip install agently-core-mcp" in err and "blocked or not allowed: mcp" in err
    monkeypatch.delenv("AGENTLY_PLUGINS_BLOCK")
    with pytest.raises(SystemExit) as exc:  # an unknown word is argparse's to judge
        main(["no-such-command"])
    assert exc.value.code == 2
    (isolated / "agently.toml").write_text("bogus = 1\n", encoding="utf-8")
    code, _, err = run(capsys, "serve-mcp")
    assert code == 2 and "the configuration is bad" in err and "bogus" in err


# -- the core imports no plugin -------------------------------------------------------------------
def _plugin_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                  if n.split(".")[0].startswith("agently_core_")]
    return sorted(found)


def test_the_core_imports_no_plugin_module():
    """Not the CLI, not the testing kit (its planner suite loads the runtime and function
    plugins through their entry points): the core names no plugin module."""
    files = sorted((ROOT / "agently_core").rglob("*.py"))
    assert ROOT / "agently_core" / "cli.py" in files
    assert [hit for path in files for hit in _plugin_imports(path)] == []


def test_the_import_scan_sees_plugin_imports(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    sample = tmp_path / "sample.py"
    sample.write_text("import json\ndef f():\n    from agently_core_mcp.server import serve\n"
                      "import agently_core_python as p\nfrom . import agently_core_x\n",
                      encoding="utf-8")
    assert _plugin_imports(sample) == ["sample.py:3 agently_core_mcp.server",
                                       "sample.py:4 agently_core_python"]


def test_cli_module_loads_no_plugin_module():
    code = ("import sys, agently_core.cli as c; c.build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('agently_core_')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# -- every option has help ----------------------------------------------------------------------
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_command_has_help():
    parser = build_parser(PluginManager(Config.load(env={})).load())
    commands = _subparsers(parser)
    assert {"plugins", "actions", "call", "run", "doctor", "demo", "serve-mcp"} <= set(commands)
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, command in commands.items() for action in command._actions
               if not isinstance(action, argparse._HelpAction)
               and not (action.help or "").strip()]
    assert missing == []
