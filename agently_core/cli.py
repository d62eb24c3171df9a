"""The ``agently-core`` command line.

Commands::

    agently-core plugins [--json]                 every discovered plugin and its status
    agently-core actions [--json] [--enable P,..] installed action packages and their schemas
    agently-core call NAME --kwargs JSON [--enable P,..] [--option P.KEY=VALUE] [--timeout S]
                                                  run one action, print its ActionRecord
    agently-core run PROMPT [...]                 a model-driven action loop (cli_run.py)
    agently-core doctor [--json]                  what is installed, what is missing
    agently-core demo                             a short scripted action loop (demo.py)

Plugins add commands with the ``register_commands`` hook (``serve-mcp`` comes from
agently-core-mcp that way; see :mod:`agently_core.cli_commands`); this module imports no
plugin. A command's handler gets an agent with :func:`open_agent` and reports a bad
command line with :class:`UsageError`.

Exit codes: 0 success; 1 a failed action (``call``), an unusable installation
(``doctor``), a plugin that failed or collides (``plugins``) or a plugin error; 2 a usage
or configuration error.

Only :mod:`argparse` and :mod:`json` load at start-up, plus the plugin manager to find
the plugins' commands; everything else is imported by the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PROG = "agently-core"

#: The commands of the core itself; a plugin command cannot take these names.
BUILTIN_COMMANDS = ("plugins", "actions", "call", "run", "doctor", "demo")

#: What the core needs to run an action loop: (role, kind, default name, title).
_REQUIRED = (
    ("action_runtime", None, "agently", "ActionRuntime"),
    ("action_flow", None, "agently", "ActionFlow"),
    ("action_executor", "function", "function", "ActionExecutor for kind 'function'"),
)
#: Nice to have: what ``agently-core demo`` and the scripted tests use.
_OPTIONAL = (
    ("planner", None, "scripted", "Planner 'scripted' (used by the demo)", True),
    ("action_package", None, "examples", "action package 'examples' (used by the demo)", True),
)


class UsageError(Exception):
    """A bad command line that argparse could not catch (bad JSON, unknown package...);
    the command exits 2 with its message."""

#: The plugin manager of the running ``main()`` call, shared by its commands.
_invocation: Any = None


# -- helpers ------------------------------------------------------------------------------
def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=repr))


def _split_names(values: Sequence[str] | None) -> list[str] | None:
    """``--enable a,b --enable c`` -> ``["a", "b", "c"]``; ``None`` when not given."""
    if values is None:
        return None
    names: list[str] = []
    for value in values:
        names.extend(part.strip() for part in value.split(",") if part.strip())
    if not names:
        raise UsageError("--enable needs at least one package name")
    return names


def _plugin_manager() -> Any:
    """The manager of this invocation (``main`` made it to find the plugins' commands), or
    a fresh one from the configuration of the working directory and the environment
    (never the process-wide cached one)."""
    if _invocation is not None:
        return _invocation
    from .config import Config
    from .plugins import PluginManager

    return PluginManager(Config.load()).load()


def _parse_options(values: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``--option sqlite.database=x.db`` -> ``{"sqlite": {"database": "x.db"}}``; a value
    that is JSON (``5``, ``true``, ``[1]``) is decoded, anything else stays a string."""
    options: dict[str, dict[str, Any]] = {}
    for item in values or ():
        target, equals, text = item.partition("=")
        package, dot, key = target.strip().partition(".")
        if not equals or not dot or not package or not key.isidentifier():
            raise UsageError(f"--option {item!r} must look like PACKAGE.KEY=VALUE, "
                             "for example --option sqlite.database=shop.db")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        options.setdefault(package, {})[key] = value
    return options


@contextmanager
def open_agent(enable: Sequence[str] | None = None,
               options: Sequence[str] | None = None) -> Iterator[Any]:
    """An agent for a command, closed when the ``with`` block ends: the plugins of this
    invocation, and the action packages of ``enable`` (the raw ``--enable`` values) mounted
    with the ``--option PACKAGE.KEY=VALUE`` values of ``options``; without ``enable`` every
    installed package that mounts (one that needs options and has none is left out)."""
    names = _split_names(enable)
    package_options = _parse_options(options)
    pm = _plugin_manager()
    agent = _new_agent(pm)
    try:
        _mount(agent, pm, names, package_options)
        yield agent
    finally:
        agent.close()  # sandboxes and other environments go with the command


def _core_version() -> str:
    from . import __version__

    return __version__


def _with_also(pm: Any, role: str, name: str) -> str:
    """``name``, and the kinds it serves when chosen (``docker (also python, node)``)."""
    found = pm.registrations(role).get(name)
    also = found.kinds[1:] if found is not None else ()
    return f"{name} (also {', '.join(also)}, when chosen)" if also else name


def _report(pm: Any) -> list[dict[str, Any]]:
    return pm.report()


def _conflicts(pm: Any) -> list[dict[str, Any]]:
    from .plugins import ROLES, conflict_message

    return [
        {
            "role": role,
            "name": name,
            "registered_by": [r.distribution or r.plugin for r in regs],
            "message": conflict_message(role, name, regs),
        }
        for (role, name), regs in sorted(pm.conflicts().items())
        if role in ROLES
    ]


def _new_agent(pm: Any) -> Any:
    from .agent import create_agent

    return create_agent(plugins=pm)


#: What a package that needs options raises when mounted without them.
_NEEDS_OPTIONS = (ValueError, TypeError)


def _mount(agent: Any, pm: Any, names: list[str] | None,
           options: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Mount the named action packages (all installed ones when ``names`` is None), each
    with its ``options``; returns the packages left out, with why.

    An unknown name given on the command line is a usage error; a package that fails to
    mount is an error when named explicitly. Otherwise a package that needs options it was
    not given is left out quietly, and any other failure is a warning."""
    from .errors import ActionNotFoundError, ConfigError

    packages = pm.registrations("action_package")
    options = options or {}
    problems: list[dict[str, Any]] = []
    explicit = names is not None
    if not explicit and not packages:
        print(f"{PROG}: warning: no action packages are installed "
              "(pip install agently-core-function provides 'examples')", file=sys.stderr)
    chosen = names if explicit else list(packages)
    stray = sorted(set(options) - set(chosen))
    if stray:
        where = "--enable" if explicit else "the installed action packages"
        raise UsageError(f"--option names action package(s) {', '.join(stray)}, which are "
                         f"not among {where}: {', '.join(chosen) or 'none'}")
    for name in chosen:
        if explicit and name not in packages and agent.registry.get(name) is None:
            known = ", ".join(sorted(packages)) or "none installed"
            raise UsageError(f"unknown action package {name!r} in --enable; known: {known}")
        try:
            agent.use_actions(name, **options.get(name, {}))
        except ActionNotFoundError as exc:
            raise UsageError(str(exc)) from exc
        except (ConfigError, *_NEEDS_OPTIONS) as exc:  # it needs options (a database, a root)
            if explicit or name in options:
                raise _options_error(name, exc) from exc
            problems.append({"package": name, "needs_options": True,
                             "error": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:
            if explicit:
                raise _mount_error(name, exc) from exc
            problems.append({"package": name, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{PROG}: warning: action package {name!r} could not be mounted: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return problems


def _options_error(name: str, exc: BaseException) -> Exception:
    from .errors import ConfigError

    if isinstance(exc, ConfigError):
        return ConfigError(f"action package {name!r}: {exc}; pass its options with "
                           f"--option {name}.KEY=VALUE")
    return ConfigError(f"action package {name!r} could not be mounted with these options: "
                       f"{type(exc).__name__}: {exc}; pass its options with "
                       f"--option {name}.KEY=VALUE")


def _unmounted_action(name: str, pm: Any, left_out: list[dict[str, Any]]) -> Exception | None:
    """The error for ``call NAME`` when NAME is not mounted because the package that
    declares it (``register(..., actions=[...])``) was left out for want of options."""
    from .errors import ConfigError

    packages = pm.registrations("action_package")
    for problem in left_out:
        package = problem["package"]
        if problem.get("needs_options") and name in (
                packages[package].options.get("actions") or ()):
            return ConfigError(
                f"action {name!r} is in action package {package!r}, which needs options: "
                f"{problem['error']}; pass them with --option {package}.KEY=VALUE")
    return None


def _mount_error(name: str, exc: BaseException) -> Exception:
    from .errors import AgentlyError, PluginError

    if isinstance(exc, AgentlyError):
        return exc
    return PluginError(f"action package {name!r} could not be mounted: "
                       f"{type(exc).__name__}: {exc}")


# -- plugins ------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    """Exit 1 when a plugin failed to load, two collide, or a plugin's command is unusable."""
    pm = _plugin_manager()
    rows = _report(pm)
    conflicts = _conflicts(pm)
    commands = _command_problems(pm)
    healthy = not conflicts and not commands and all(r["status"] != "failed" for r in rows)
    code = 0 if healthy else 1
    if args.json:
        _print_json({"plugins": rows, "conflicts": conflicts, "command_problems": commands})
        return code
    if not rows:
        print("no plugins found")
    for row in rows:
        source = f"{row['distribution'] or '-'} {row['version'] or ''}".strip()
        print(f"{row['name']:<16} {source:<32} {row['status']}")
        for role, names in row["roles"].items():
            print(f"    {role}: {', '.join(_with_also(pm, role, name) for name in names)}")
        if row["error"]:
            print(f"    error: {row['error']}")
    if conflicts:
        print("conflicts:")
        for conflict in conflicts:
            print(f"    {conflict['message']}")
    if commands:
        print("commands left out:")
        for problem in commands:
            print(f"    {problem['error']}")
            print(f"        fix: {problem['fix']}")
    return code


def _command_problems(pm: Any) -> list[dict[str, Any]]:
    from .cli_commands import load_commands

    return load_commands(pm, BUILTIN_COMMANDS, PROG)[1]


# -- actions ------------------------------------------------------------------------------
def cmd_actions(args: argparse.Namespace) -> int:
    names = _split_names(args.enable)
    pm = _plugin_manager()
    packages = pm.registrations("action_package")
    if names is not None:
        unknown = [n for n in names if n not in packages]
        if unknown:
            known = ", ".join(sorted(packages)) or "none installed"
            raise UsageError(f"unknown action package(s) in --enable: {', '.join(unknown)}; "
                             f"known: {known}")
    out: list[dict[str, Any]] = []
    for name in names if names is not None else list(packages):
        registration = packages[name]
        entry: dict[str, Any] = {
            "name": name,
            "distribution": registration.distribution,
            "version": registration.version,
            "description": registration.options.get("description", ""),
            "actions": [],
            "error": None,
        }
        agent = _new_agent(pm)  # one agent per package, so each lists what it mounts
        try:
            agent.use_actions(name)
            entry["actions"] = agent.action.get_action_info()
        except Exception as exc:
            if names is not None:
                raise _mount_error(name, exc) from exc
            entry["error"] = f"{type(exc).__name__}: {exc}"
        out.append(entry)
    if args.json:
        _print_json({"packages": out})
        return 0
    if not out:
        print("no action packages installed (pip install agently-core-function provides "
              "'examples')")
    for entry in out:
        source = f"{entry['distribution'] or '-'} {entry['version'] or ''}".strip()
        print(f"{entry['name']} ({source})"
              + (f": {entry['description']}" if entry["description"] else ""))
        if entry["error"]:
            print(f"    error: {entry['error']}")
        for info in entry["actions"]:
            print(f"    {_signature(info)}  {info.get('description', '')}".rstrip())
    return 0


def _signature(info: dict[str, Any]) -> str:
    schema = info.get("kwargs") or {}
    required = set(schema.get("required", ()))
    params = []
    for pname, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type", "any") if isinstance(prop, dict) else "any"
        if isinstance(kind, list):
            kind = "|".join(kind)
        params.append(f"{pname}: {kind}" + ("" if pname in required else " = ..."))
    return f"{info['name']}({', '.join(params)})"


# -- call ---------------------------------------------------------------------------------
def cmd_call(args: argparse.Namespace) -> int:
    text = args.kwargs
    if text == "-":
        text = sys.stdin.read()
    try:
        kwargs = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--kwargs is not valid JSON: {exc}") from exc
    if not isinstance(kwargs, dict):
        raise UsageError(f"--kwargs must be a JSON object, got {type(kwargs).__name__}")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    names = _split_names(args.enable)
    options = _parse_options(args.option)
    pm = _plugin_manager()
    agent = _new_agent(pm)
    try:
        left_out = _mount(agent, pm, names, options)
        if agent.registry.get(args.name) is None:
            missing = _unmounted_action(args.name, pm, left_out)
            if missing is not None:
                raise missing
        record = agent.action.execute_action(args.name, kwargs, timeout=args.timeout)
    finally:
        agent.close()  # sandboxes and other environments go with the command
    print(record.model_dump_json(indent=2))
    return 0 if record.status == "success" else 1


# -- run ----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    """A model-driven action loop, printed as it happens (see :mod:`agently_core.cli_run`)."""
    from .cli_run import run

    if args.max_rounds is not None and args.max_rounds < 1:
        raise UsageError(f"--max-rounds must be 1 or more, got {args.max_rounds}")
    options = {key: value for key, value in (("model", args.model), ("base_url", args.base_url))
               if value is not None}
    with open_agent(args.enable, args.option) as agent:
        agent.use_actions(list(agent.registry.names()))  # the model may call every one
        return run(agent, args.prompt, planner=args.planner, options=options,
                   max_rounds=args.max_rounds, as_json=args.json)


# -- doctor -------------------------------------------------------------------------------
def _check(pm: Any, role: str, kind: str | None, default: str, title: str,
           exact: bool = False) -> dict[str, Any]:
    """Can ``role`` be served the way an agent would select it (``exact``: by that name)?"""
    from .errors import AgentlyError
    from .plugins import KNOWN_DISTRIBUTIONS

    name = default if exact else pm.configured_name(role, kind)
    if name is None and kind is None:
        installed = pm.registrations(role)
        if default in installed or not installed:
            name = default  # the rule of PluginManager.select_default
    check: dict[str, Any] = {"role": role, "kind": kind, "title": title, "name": name,
                             "ok": False, "provided_by": None, "error": None, "install": None}
    try:
        registration = pm.select(role, name, kind=kind)
        check["name"] = registration.name
        check["provided_by"] = registration.source
        registration.load()  # a lazy factory whose module cannot be imported is missing too
        check["ok"] = True
    except AgentlyError as exc:
        check["error"] = str(exc)
        dist = KNOWN_DISTRIBUTIONS.get((role, name or default))
        if dist is not None:
            check["install"] = f"pip install {dist}"
    return check


def _plugin_problems(pm: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plugins that failed, registrations whose lazy factory cannot be imported, and
    plugin commands left out of the command line."""
    from .errors import AgentlyError
    from .plugins import ROLES, load_fix

    problems: list[dict[str, Any]] = []
    for row in rows:
        dist = row.get("distribution")
        reinstall = f"pip install --force-reinstall {dist}" if dist else None
        if row["status"] == "failed":
            problems.append({"plugin": row["name"], "distribution": dist,
                             "error": row["error"], "fix": reinstall or "fix or remove it"})
    for role in ROLES:
        for registration in pm.registrations(role).values():
            try:
                registration.load()
            except AgentlyError as exc:
                problems.append({"plugin": registration.plugin,
                                 "distribution": registration.distribution,
                                 "error": str(exc), "fix": load_fix(registration, exc)})
    reported = {problem["error"] for problem in problems}
    for problem in _command_problems(pm):
        if problem["error"] not in reported:  # a factory that cannot load is listed above
            problems.append({key: problem[key]
                             for key in ("plugin", "distribution", "error", "fix")})
    return problems


def cmd_doctor(args: argparse.Namespace) -> int:
    import platform

    from .plugins import KNOWN_DISTRIBUTIONS, ROLES

    pm = _plugin_manager()
    rows = _report(pm)
    required = [_check(pm, *spec) for spec in _REQUIRED]
    optional = [_check(pm, *spec) for spec in _OPTIONAL]
    roles: dict[str, Any] = {}
    for key, role in ROLES.items():
        installed = pm.registrations(key)
        known = sorted({(n, d) for (r, n), d in KNOWN_DISTRIBUTIONS.items() if r == key})
        roles[key] = {
            "title": role.title,
            "installed": [{"name": n, "kind": r.kind, "provided_by": r.source}
                          for n, r in installed.items()],
            "missing": [{"name": n, "distribution": d, "install": f"pip install {d}"}
                        for n, d in known if n not in installed],
        }
    problems = _plugin_problems(pm, rows)
    conflicts = _conflicts(pm)
    diagnostics = _diagnostics(pm)
    usable = all(check["ok"] for check in required)
    config = pm.config
    report = {
        "core": {
            "version": _core_version(),
            "python": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "config": {
            "sources": list(config.sources),
            "runtime": config.runtime, "flow": config.flow, "planner": config.planner,
            "executors": dict(config.executors), "providers": dict(config.providers),
            "autoload": config.autoload,
            "plugins_allow": list(config.plugins_allow) if config.plugins_allow else None,
            "plugins_block": list(config.plugins_block),
        },
        "plugins": rows,
        "required": required,
        "optional": optional,
        "roles": roles,
        "problems": problems,
        "conflicts": conflicts,
        "diagnostics": diagnostics,
        "usable": usable,
    }
    if args.json:
        _print_json(report)
        return 0 if usable else 1
    core = report["core"]
    print(f"agently-core {core['version']} on Python {core['python']} ({core['executable']})")
    print(f"configuration: {', '.join(config.sources) or 'defaults (no file, no AGENTLY_* vars)'}")
    print("plugins:")
    if not rows:
        print("    none discovered")
    for row in rows:
        source = f"{row['distribution'] or '-'} {row['version'] or ''}".strip()
        line = f"    {row['status']:<11} {row['name']} ({source})"
        if row["error"]:
            line += f": {row['error']}"
        elif row["status"] in {"blocked", "not_allowed"}:
            line += ": switched off by configuration (AGENTLY_PLUGINS_BLOCK/_ALLOW, [plugins])"
        print(line)
    print("required:")
    for check in required:
        print("    " + _check_line(check))
    print("optional:")
    for check in optional:
        print("    " + _check_line(check))
    checked = {c["role"] for c in required + optional}
    for info in (info for key, info in roles.items() if info["missing"] and key not in checked):
        for item in info["missing"]:
            print(f"    missing     {info['title']} {item['name']!r}: {item['install']}")
    if diagnostics:
        print("checks:")
        for check in diagnostics:
            state = "ok" if check.get("ok") else "NO"
            print(f"    {state:<11} {check.get('name')}: {check.get('detail')}")
            if not check.get("ok") and check.get("fix"):
                print(f"        fix: {check['fix']}")
    if problems:
        print("problems:")
        for problem in problems:
            print(f"    {problem['plugin']}: {problem['error']}")
            print(f"        fix: {problem['fix']}")
    if conflicts:
        print("conflicts:")
        for conflict in conflicts:
            print(f"    {conflict['message']}")
    if usable:
        print("result: usable")
    else:
        print("result: NOT usable; install what is missing above "
              "(pip install agently-core[all] installs the built-in plugins)")
    return 0 if usable else 1


def _diagnostics(pm: Any) -> list[dict[str, Any]]:
    """Run every check plugins registered with ``register_diagnostics``; a check that
    fails to run is itself reported, never fatal."""
    found: list[dict[str, Any]] = []
    for name, registration in pm.registrations("diagnostic").items():
        try:
            for check in registration.load()() or ():
                found.append({"source": name, **dict(check)})
        except Exception as exc:
            found.append({"source": name, "name": name, "ok": False,
                          "detail": f"the check failed: {type(exc).__name__}: {exc}", "fix": None})
    return found


def _check_line(check: dict[str, Any]) -> str:
    if check["ok"]:
        return f"ok          {check['title']}: {check['name']} from {check['provided_by']}"
    fix = check["install"] or "see the error"
    first = (check["error"] or "").split(". Installed:")[0]
    return f"MISSING     {check['title']}: {fix} ({first})"


# -- demo ---------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """Say what to install when the demo cannot run; else run it (see :mod:`.demo`)."""
    from .errors import NotInstalledError

    pm = _plugin_manager()
    missing = [c for c in (*(_check(pm, *s) for s in _REQUIRED),
                           *(_check(pm, *s) for s in _OPTIONAL)) if not c["ok"]]
    if missing:
        needs = "; ".join(f"{c['title']}: {c['install'] or c['error']}" for c in missing)
        raise NotInstalledError(f"the demo needs: {needs}")
    from .demo import run_demo

    return run_demo(pm)


# -- entry point --------------------------------------------------------------------------
#: The help of ``--option``, for every command that mounts action packages.
OPTION_HELP = ("an option of an action package, PACKAGE.KEY=VALUE (VALUE is JSON or a "
               "string; repeatable), e.g. sqlite.database=shop.db")
#: The help of ``--enable`` for a command that mounts action packages.
ENABLE_HELP = "mount these action packages (comma-separated; default: every installed one)"


def build_parser(pm: Any = None) -> argparse.ArgumentParser:
    """The command line: the built-in commands, plus the commands the plugins of ``pm``
    register (none without a manager)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect agently-core plugins and run actions.",
        epilog="Exit codes: 0 ok; 1 failed action, unusable installation or plugin error; "
        "2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_core_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list every discovered plugin, its status and error "
                       "(exit 1 when one failed or two collide)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("actions", help="list installed action packages and their schemas")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--enable", action="append", metavar="PACKAGE,...",
                   help="only these action packages (comma-separated; repeatable)")
    p.set_defaults(func=cmd_actions)

    p = sub.add_parser("call", help="run one action and print its ActionRecord as JSON")
    p.add_argument("name", metavar="NAME", help="the action to run")
    p.add_argument("--kwargs", default="{}", metavar="JSON",
                   help="the arguments, a JSON object ('-' reads it from stdin; default {})")
    p.add_argument("--enable", action="append", metavar="PACKAGE,...", help=ENABLE_HELP)
    p.add_argument("--option", action="append", metavar="PACKAGE.KEY=VALUE", help=OPTION_HELP)
    p.add_argument("--timeout", type=float, metavar="S", help="per-call timeout in seconds")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("run", help="run a model-driven action loop and print it as it happens")
    p.add_argument("prompt", metavar="PROMPT", help="what to ask the model")
    p.add_argument("--planner", metavar="NAME",
                   help="the planner (default: the planner setting), e.g. openai_compatible")
    p.add_argument("--model", metavar="M", help="the model (planner option model)")
    p.add_argument("--base-url", metavar="URL", help="the model server (planner option base_url)")
    p.add_argument("--enable", action="append", metavar="PACKAGE,...", help=ENABLE_HELP)
    p.add_argument("--option", action="append", metavar="PACKAGE.KEY=VALUE", help=OPTION_HELP)
    p.add_argument("--max-rounds", type=int, metavar="N", help="planning rounds at most")
    p.add_argument("--json", action="store_true", help="print only the FlowResult as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("doctor", help="what is installed, what is missing and how to get it")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", help="run a short scripted action loop and show what happened")
    p.set_defaults(func=cmd_demo)

    if pm is not None:
        from .cli_commands import add_commands, load_commands

        add_commands(sub, load_commands(pm, BUILTIN_COMMANDS, PROG)[0])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    global _invocation
    from .errors import ActionNotFoundError, AgentlyError, ConfigError

    argv = sys.argv[1:] if argv is None else list(argv)
    config_error: ConfigError | None = None
    try:
        pm = _plugin_manager()
    except ConfigError as exc:
        pm, config_error = None, exc  # the built-in commands still parse and report it
    parser = build_parser(pm)
    missing = _missing_command(parser, argv, pm, config_error)
    if missing is not None:
        return _fail(parser, missing, 2)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    _invocation = pm
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        return _fail(parser, str(exc), 2)
    except (ConfigError, ActionNotFoundError) as exc:
        return _fail(parser, str(exc), 2)
    except AgentlyError as exc:
        return _fail(parser, str(exc), 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        _invocation = None


def _missing_command(parser: argparse.ArgumentParser, argv: list[str], pm: Any,
                     config_error: Exception | None) -> str | None:
    """Why the command ``argv`` names is not on the command line, when a plugin would
    provide it (not installed, blocked, colliding, left out) or the configuration is bad;
    ``None`` for anything argparse should judge itself."""
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if name is None or argv[0] != name:
        return None
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if name in sub.choices:
        return None
    if config_error is not None:
        return f"{name!r} may be a plugin's command, but the configuration is bad: {config_error}"
    from .errors import AgentlyError

    try:
        registration = pm.get("command", name)
    except AgentlyError as exc:  # not installed (with what provides it), blocked, colliding
        known = any(n == name for (r, n) in _known_commands())
        return str(exc) if known or pm.conflicts().get(("command", name)) else None
    from .cli_commands import load_commands

    for problem in load_commands(pm, BUILTIN_COMMANDS, PROG)[1]:
        if problem["command"] == registration.name:
            return f"{problem['error']} (fix: {problem['fix']})"
    return None


def _known_commands() -> list[tuple[str, str]]:
    from .plugins import KNOWN_DISTRIBUTIONS

    return [key for key in KNOWN_DISTRIBUTIONS if key[0] == "command"]


def _fail(parser: argparse.ArgumentParser, message: str, code: int) -> int:
    first = " ".join(message.split())
    print(f"{PROG}: error: {first}", file=sys.stderr)
    return code


if __name__ == "__main__":  # python -m agently_core.cli: run the module plugins import
    from agently_core.cli import main as _main

    sys.exit(_main())
