"""The ``agently-core`` command line.

Commands::

    agently-core plugins [--json]                 every discovered plugin and its status
    agently-core actions [--json] [--enable P,..] installed action packages and their schemas
    agently-core call NAME --kwargs JSON [--enable P,..] [--timeout S]
                                                  run one action, print its ActionRecord
    agently-core doctor [--json]                  what is installed, what is missing
    agently-core demo                             a short scripted action loop

Exit codes: 0 success; 1 a failed action (``call``), an unusable installation
(``doctor``) or a plugin error; 2 a usage or configuration error.

Only :mod:`argparse` and :mod:`json` load at start-up; everything else is imported by the
command that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

PROG = "agently-core"

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
    """A bad command line that argparse could not catch (bad JSON, unknown package...)."""


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
    """A fresh manager for this invocation, from the configuration of the working
    directory and the environment (never the process-wide cached one)."""
    from .config import Config
    from .plugins import PluginManager

    return PluginManager(Config.load()).load()


def _core_version() -> str:
    from . import __version__

    return __version__


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


def _mount(agent: Any, pm: Any, names: list[str] | None) -> list[dict[str, Any]]:
    """Mount the named action packages (all installed ones when ``names`` is None).

    An unknown name given on the command line is a usage error; a package that fails to
    mount is an error when named explicitly, and a warning otherwise."""
    from .errors import ActionNotFoundError, ConfigError

    packages = pm.registrations("action_package")
    problems: list[dict[str, Any]] = []
    explicit = names is not None
    if not explicit and not packages:
        print(f"{PROG}: warning: no action packages are installed "
              "(pip install agently-core-function provides 'examples')", file=sys.stderr)
    for name in names if explicit else list(packages):
        if explicit and name not in packages and agent.registry.get(name) is None:
            known = ", ".join(sorted(packages)) or "none installed"
            raise UsageError(f"unknown action package {name!r} in --enable; known: {known}")
        try:
            agent.use_actions(name)
        except ActionNotFoundError as exc:
            raise UsageError(str(exc)) from exc
        except ConfigError as exc:  # the package needs options (a database, a root...)
            if explicit:
                raise
            problems.append({"package": name, "error": f"needs options: {exc}"})
        except Exception as exc:
            if explicit:
                raise _mount_error(name, exc) from exc
            problems.append({"package": name, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{PROG}: warning: action package {name!r} could not be mounted: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return problems


def _mount_error(name: str, exc: BaseException) -> Exception:
    from .errors import AgentlyError, PluginError

    if isinstance(exc, AgentlyError):
        return exc
    return PluginError(f"action package {name!r} could not be mounted: "
                       f"{type(exc).__name__}: {exc}")


# -- plugins ------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    pm = _plugin_manager()
    rows = _report(pm)
    conflicts = _conflicts(pm)
    if args.json:
        _print_json({"plugins": rows, "conflicts": conflicts})
        return 0
    if not rows:
        print("no plugins found")
    for row in rows:
        source = f"{row['distribution'] or '-'} {row['version'] or ''}".strip()
        print(f"{row['name']:<16} {source:<32} {row['status']}")
        for role, names in row["roles"].items():
            print(f"    {role}: {', '.join(names)}")
        if row["error"]:
            print(f"    error: {row['error']}")
    if conflicts:
        print("conflicts:")
        for conflict in conflicts:
            print(f"    {conflict['message']}")
    return 0


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
    pm = _plugin_manager()
    agent = _new_agent(pm)
    try:
        _mount(agent, pm, names)
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
    names = _split_names(args.enable)
    pm = _plugin_manager()
    agent = _new_agent(pm)
    try:
        _mount(agent, pm, names)
        agent.use_actions(list(agent.registry.names()))  # the model may call every one
        return run(agent, args.prompt, planner=args.planner, options=options,
                   max_rounds=args.max_rounds, as_json=args.json)
    finally:
        agent.close()


# -- serve-mcp ----------------------------------------------------------------------------
def cmd_serve_mcp(args: argparse.Namespace) -> int:
    """Serve the agent's actions as MCP tools (the server lives in agently-core-mcp)."""
    try:
        from agently_core_mcp.server import serve
    except ImportError as exc:
        from .errors import ConfigError

        raise ConfigError("serve-mcp needs the MCP plugin; install it with: pip install "
                          f"agently-core-mcp ({exc})") from None
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    names = _split_names(args.enable)
    pm = _plugin_manager()
    agent = _new_agent(pm)
    try:
        _mount(agent, pm, names)
        return int(serve(agent, transport=args.transport, host=args.host, port=args.port,
                         auth=not args.no_auth, allow_remote=args.allow_remote,
                         allowed_hosts=args.allowed_host or (),
                         client_approval=args.client_approval, max_sessions=args.max_sessions,
                         idle_timeout=args.idle_timeout) or 0)
    finally:
        agent.close()


# -- doctor -------------------------------------------------------------------------------
def _check(pm: Any, role: str, kind: str | None, default: str, title: str,
           exact: bool = False) -> dict[str, Any]:
    """Can ``role`` be served the way an agent would select it (``exact``: by that name)?"""
    from .errors import AgentlyError
    from .plugins import KNOWN_DISTRIBUTIONS

    name = default if exact else pm.configured_name(role, kind)
    if name is None and kind is None and default in pm.registrations(role):
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
    """Plugins that failed, plus registrations whose lazy factory cannot be imported."""
    from .errors import AgentlyError
    from .plugins import ROLES

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
                dist = registration.distribution
                problems.append({
                    "plugin": registration.plugin, "distribution": dist,
                    "error": str(exc),
                    "fix": _missing_module_hint(exc)
                    or (f"pip install --force-reinstall {dist}" if dist else "fix the plugin"),
                })
    return problems


def _missing_module_hint(exc: BaseException) -> str | None:
    cause = exc.__cause__
    if isinstance(cause, ModuleNotFoundError) and cause.name:
        top = cause.name.split(".")[0]
        return f"install the distribution that provides module {top!r} (pip install {top}?)"
    return None


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
class _Recording:
    """Wraps a planner and keeps what it returned in round 0, to show the raw protocol."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.first: Any = None

    async def plan(self, context: Any, request: Any) -> Any:
        raw = await self.inner.plan(context, request)
        if self.first is None:
            self.first = raw
        return raw


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=repr)
    return text if len(text) <= width else text[: width - 3] + "..."


def _call_text(action: str, kwargs: dict[str, Any]) -> str:
    return f"{action}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


#: Error types of records that were stopped before they ran.
_GATE_ERRORS = frozenset({"ActionNotFoundError", "ArgumentsError", "PolicyError", "InvalidCall",
                          "ApprovalDenied", "ApprovalRequired"})


def _print_run(result: Any) -> None:
    by_id = {record.call_id: record for record in result.records}
    for round_ in result.rounds:
        decision = round_.decision
        if decision.next_action == "response":
            print(f"  round {round_.round_index}: final response: {_short(decision.response, 80)}")
            continue
        records = [by_id[call_id] for call_id in round_.record_ids]
        ran = sum(1 for r in records if r.error_type not in _GATE_ERRORS)
        count = len(records)
        how = f", {ran} dispatched in parallel" if ran > 1 else ""
        print(f"  round {round_.round_index}: {count} call{'s' if count != 1 else ''}{how}")
        calls = [_call_text(r.action, r.kwargs) for r in records]
        width = max(map(len, calls), default=0)
        for record, text in zip(records, calls, strict=True):
            outcome = f"-> {_short(record.result, 40)}" if record.status == "success" else ""
            print(f"    {record.status:<8}{text:<{width}}  {record.duration_ms:5.1f} ms  "
                  f"{outcome}".rstrip())
            if record.status != "success":
                print(f"            {record.error_type}: {record.error}")
    statuses: dict[str, int] = {}
    for record in result.records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in statuses.items()) or "no records"
    print(f"  stop: {result.stop_reason}; {len(result.records)} records ({summary})")


def cmd_demo(args: argparse.Namespace) -> int:
    from .errors import NotInstalledError

    pm = _plugin_manager()
    missing = [c for c in (*(_check(pm, *s) for s in _REQUIRED),
                           *(_check(pm, *s) for s in _OPTIONAL)) if not c["ok"]]
    if missing:
        needs = "; ".join(f"{c['title']}: {c['install'] or c['error']}" for c in missing)
        raise NotInstalledError(f"the demo needs: {needs}")
    agent = _new_agent(pm)
    agent.use_actions("examples")

    def final(context: Any, request: Any) -> str:
        done = context["done_plans"]
        ok = sum(1 for p in done if p["status"] == "success")
        return f"{ok} of {len(done)} calls succeeded; the invalid call became a failed record"

    def second(context: Any, request: Any) -> list[dict[str, Any]]:
        # Uses round 0's results: the planner sees every record of the last round.
        total, product = (r["result"] for r in context["last_round_records"])
        return [{"action": "add", "kwargs": {"a": total, "b": product}},
                {"action": "add", "kwargs": {"a": "two", "b": 3}}]

    script = [
        [{"action": "add", "kwargs": {"a": 2, "b": 3}},
         {"action": "multiply", "kwargs": {"a": 4, "b": 5}}],
        second,
        final,
    ]
    print("agently-core demo: a scripted planner drives the action loop "
          "(actions from package 'examples')")
    shown = {"structured_plan": "", "native_tool_calls": ""}
    for protocol in shown:
        planner = pm.create("planner", "scripted",
                            steps=script if protocol == "structured_plan" else [
                                [{"action": "echo", "kwargs": {"message": "hi", "repeat": 2}},
                                 {"action": "word_count", "kwargs": {"text": "one two three"}}],
                                "both tool calls answered",
                            ])
        recording = _Recording(planner)
        agent.set_planner(recording)
        request = ("compute (2+3) + (4*5), then try a bad call"
                   if protocol == "structured_plan" else "echo and count words")
        result = agent.run(request, planning_protocol=protocol, max_rounds=4)
        print()
        print(f"[{protocol}] the planner's first answer:")
        print(f"  {_short(recording.first, 100)}")
        _print_run(result)
        if result.error:
            print(f"  error: {result.error}")
    records = agent.get_action_result()
    print()
    print(f"agent.get_action_result() returns the {len(records)} records of the last request.")
    _demo_model(pm)
    _demo_sandboxes(pm)
    agent.close()
    print()
    print("Next: agently-core actions | agently-core call add --kwargs '{\"a\": 1, \"b\": 2}'")
    return 0


def _demo_model(pm: Any) -> None:
    """A model-driven loop through the real OpenAI SDK, against a loopback stand-in of a
    Chat Completions server that scripts the model's side (no network, no key)."""
    if "openai_compatible" not in pm.registrations("planner"):
        return
    from .cli_run import LivePrinter, _Watched
    from .testing.model_servers import LoopbackModelServer, Reply, ToolCall

    print()
    print("[model] openai_compatible drives the loop through the openai SDK, against a "
          "STAND-IN server on 127.0.0.1 that scripts the model's answers:")
    replies = [Reply(text="I will add them. ", tool_calls=[ToolCall("add", {"a": 19, "b": 23})],
                     chunk_chars=4),
               Reply(text="19 + 23 = 42.", chunk_chars=4)]
    with LoopbackModelServer(replies) as server:
        agent = _new_agent(pm)
        agent.use_actions("examples")
        agent.set_planner("openai_compatible", model="stand-in", base_url=server.base_url)
        printer = LivePrinter()
        agent.events.subscribe(printer.delta, "model.delta")
        agent._planner = _Watched(agent._planner, printer)
        try:
            printer.finish(agent.run("What is 19 + 23?", max_rounds=3))
        finally:
            agent.close()
    print("  (a real model: agently-core run \"...\" --planner openai_compatible --model M)")


def _demo_sandboxes(pm: Any) -> None:
    """The sandboxed actions, each when its plugin is installed."""
    packages = pm.registrations("action_package")
    if "python" in packages:
        agent = _new_agent(pm)
        agent.enable_python()
        print()
        print("[python] run_python in an isolated, warm worker (state persists between calls):")
        for code in ("import platform\nsquares = [n * n for n in range(5)]\nprint(squares)",
                     "sum(squares)",
                     "open('/etc/shadow').read()"):
            record = agent.action.execute_action("run_python", {"python_code": code})
            result = record.result or {}
            shown = (result.get("stdout") or "").strip() or result.get("value")
            outcome = f"-> {shown}" if record.status == "success" else f"-> {record.error}"
            print(f"    {record.status:<8}{_short(code.splitlines()[-1], 40):<42}"
                  f"{record.duration_ms:7.1f} ms  {outcome}")
        agent.close()
    if "bash" in packages:
        agent = _new_agent(pm)
        agent.enable_shell(commands=["echo", "ls", "wc", "sort", "head", "cat"])
        print()
        print("[bash] run_bash in an isolated shell; every command checked against the allowlist:")
        for line in ("echo 'pear apple plum' > fruit.txt && ls",
                     "cat fruit.txt | wc -w",
                     "cat fruit.txt; curl http://example.com",
                     "echo $(rm -rf ~)"):
            record = agent.action.execute_action("run_bash", {"cmd": line})
            result = record.result or {}
            outcome = (f"-> {(result.get('stdout') or '').strip()}" if record.status == "success"
                       else f"-> {record.error}")
            print(f"    {record.status:<8}{_short(line, 40):<42}"
                  f"{record.duration_ms:7.1f} ms  {_short(outcome, 70)}")
        agent.close()
    if "nodejs" in packages:
        agent = _new_agent(pm)
        agent.enable_nodejs()
        print()
        print("[nodejs] run_nodejs in an isolated, warm Node.js worker:")
        for code in ("globalThis.total = [1, 2, 3].reduce((a, b) => a + b)",
                     "total * 2",
                     "require('fs').readFileSync('/etc/shadow', 'utf8')"):
            record = agent.action.execute_action("run_nodejs", {"js_code": code})
            result = record.result or {}
            outcome = (f"-> {result.get('value')}" if record.status == "success"
                       else f"-> {record.error}")
            print(f"    {record.status:<8}{_short(code, 40):<42}"
                  f"{record.duration_ms:7.1f} ms  {_short(outcome, 70)}")
        agent.close()
    if "mcp" in packages:
        _demo_mcp(pm)
    if "sqlite" in packages:
        import sqlite3
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as folder:
            database = Path(folder) / "demo.db"
            with sqlite3.connect(database) as connection:
                connection.execute("CREATE TABLE fruit (name TEXT, price REAL)")
                connection.executemany("INSERT INTO fruit VALUES (?, ?)",
                                       [("apple", 1.2), ("pear", 0.8), ("plum", 2.5)])
            connection.close()
            agent = _new_agent(pm)
            agent.enable_sqlite(database=str(database))
            print()
            print("[sqlite] query_sqlite on a read-only database:")
            for query in ("SELECT name, price FROM fruit WHERE price > ? ORDER BY price",
                          "WITH x AS (SELECT 1) DELETE FROM fruit"):
                params = [1.0] if "?" in query else None
                record = agent.action.execute_action("query_sqlite",
                                                     {"query": query, "params": params})
                outcome = (f"-> {record.result['rows']}" if record.status == "success"
                           else f"-> {record.error}")
                print(f"    {record.status:<8}{_short(query, 40):<42}"
                      f"{record.duration_ms:7.1f} ms  {_short(outcome, 70)}")
            agent.close()


def _demo_mcp(pm: Any) -> None:
    """A tool of a real MCP server (mcp-server-time from PyPI), when one is installed."""
    import shutil
    from pathlib import Path

    server = shutil.which("mcp-server-time") or str(Path(sys.executable).with_name("mcp-server-time"))
    if not Path(server).exists():
        print()
        print("[mcp] no MCP server to show: pip install mcp-server-time")
        return
    agent = _new_agent(pm)
    try:
        names = agent.use_mcp([server, "--local-timezone", "UTC"])
        print()
        print(f"[mcp] use_mcp(mcp-server-time): one managed session, tools {', '.join(names)}:")
        for kwargs in ({"timezone": "Europe/Paris"}, {"timezone": "Mars/Olympus"}):
            record = agent.action.execute_action("get_current_time", kwargs)
            result = record.result or {}
            shown = result.get("structured_content") or result.get("text")
            outcome = f"-> {shown}" if record.status == "success" else f"-> {record.error}"
            print(f"    {record.status:<8}{_short(f'get_current_time({kwargs})', 40):<42}"
                  f"{record.duration_ms:7.1f} ms  {_short(str(outcome), 70)}")
    finally:
        agent.close()


# -- entry point --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect agently-core plugins and run actions.",
        epilog="Exit codes: 0 ok; 1 failed action, unusable installation or plugin error; "
        "2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_core_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list every discovered plugin, its status and error")
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
    p.add_argument("--enable", action="append", metavar="PACKAGE,...",
                   help="mount these action packages (default: every installed one)")
    p.add_argument("--timeout", type=float, metavar="S", help="per-call timeout in seconds")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("run", help="run a model-driven action loop and print it as it happens")
    p.add_argument("prompt", metavar="PROMPT", help="what to ask the model")
    p.add_argument("--planner", metavar="NAME",
                   help="the planner (default: the planner setting), e.g. openai_compatible")
    p.add_argument("--model", metavar="M", help="the model (planner option model)")
    p.add_argument("--base-url", metavar="URL", help="the model server (planner option base_url)")
    p.add_argument("--enable", action="append", metavar="PACKAGE,...",
                   help="mount these action packages (default: every installed one)")
    p.add_argument("--max-rounds", type=int, metavar="N", help="planning rounds at most")
    p.add_argument("--json", action="store_true", help="print only the FlowResult as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve-mcp", help="serve the actions as MCP tools (stdio or HTTP)")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP: the address to listen on")
    p.add_argument("--port", type=int, default=None, help="HTTP: the port (default 8000)")
    p.add_argument("--enable", action="append", metavar="PACKAGE,...",
                   help="serve these action packages (default: every installed one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="HTTP: allow a non-loopback --host (0.0.0.0, ::, a LAN address)")
    p.add_argument("--allowed-host", action="append", metavar="NAME[:PORT]",
                   help="HTTP: another Host header value to accept (repeatable)")
    p.add_argument("--no-auth", action="store_true",
                   help="HTTP, loopback only: require no bearer token (any local process "
                   "can then call the actions)")
    p.add_argument("--client-approval", action="store_true",
                   help="let the MCP client approve calls that need approval (elicitation)")
    p.add_argument("--max-sessions", type=int, metavar="N",
                   help="HTTP: open sessions at most (default 100)")
    p.add_argument("--idle-timeout", type=float, metavar="S",
                   help="HTTP: close a session idle this many seconds (default 900)")
    p.set_defaults(func=cmd_serve_mcp)

    p = sub.add_parser("doctor", help="what is installed, what is missing and how to get it")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", help="run a short scripted action loop and show what happened")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    from .errors import ActionNotFoundError, AgentlyError, ConfigError

    try:
        return int(args.func(args))
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


def _fail(parser: argparse.ArgumentParser, message: str, code: int) -> int:
    first = " ".join(message.split())
    print(f"{PROG}: error: {first}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
