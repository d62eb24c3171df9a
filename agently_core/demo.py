"""``agently-core demo``: a short scripted action loop, printed round by round, then a
model-driven loop against a loopback stand-in model server and each installed sandbox
(Python, Bash, Node.js, MCP, SQLite) doing a few real calls.

:func:`run_demo` expects a plugin manager that serves what the demo needs (the command
checks that first and says what to install).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def _new_agent(pm: Any) -> Any:
    from .agent import create_agent

    return create_agent(plugins=pm)


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


def run_demo(pm: Any) -> int:
    """Run the demo with the plugins of ``pm`` and print it; returns the exit code."""
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


def _calls(agent: Any, action: str, argument: str, inputs: tuple[str, ...],
           shown: Callable[[dict[str, Any]], Any], *, cut: int | None = 70) -> None:
    """Run ``action`` once per input and print a row each: status, input, time, outcome."""
    for text in inputs:
        record = agent.action.execute_action(action, {argument: text})
        outcome = f"-> {shown(record.result or {})}" if record.status == "success" \
            else f"-> {record.error}"
        print(f"    {record.status:<8}{_short(text.splitlines()[-1], 40):<42}"
              f"{record.duration_ms:7.1f} ms  {outcome if cut is None else _short(outcome, cut)}")
    agent.close()


def _demo_sandboxes(pm: Any) -> None:
    """The sandboxed actions, each when its plugin is installed."""
    packages = pm.registrations("action_package")
    if "python" in packages:
        agent = _new_agent(pm)
        agent.enable_python()
        print()
        print("[python] run_python in an isolated, warm worker (state persists between calls):")
        _calls(agent, "run_python", "python_code",
               ("import platform\nsquares = [n * n for n in range(5)]\nprint(squares)",
                "sum(squares)", "open('/etc/shadow').read()"),
               lambda result: (result.get("stdout") or "").strip() or result.get("value"),
               cut=None)
    if "bash" in packages:
        agent = _new_agent(pm)
        agent.enable_shell(commands=["echo", "ls", "wc", "sort", "head", "cat"])
        print()
        print("[bash] run_bash in an isolated shell; every command checked against the allowlist:")
        _calls(agent, "run_bash", "cmd",
               ("echo 'pear apple plum' > fruit.txt && ls", "cat fruit.txt | wc -w",
                "cat fruit.txt; curl http://example.com", "echo $(rm -rf ~)"),
               lambda result: (result.get("stdout") or "").strip())
    if "nodejs" in packages:
        agent = _new_agent(pm)
        agent.enable_nodejs()
        print()
        print("[nodejs] run_nodejs in an isolated, warm Node.js worker:")
        _calls(agent, "run_nodejs", "js_code",
               ("globalThis.total = [1, 2, 3].reduce((a, b) => a + b)", "total * 2",
                "require('fs').readFileSync('/etc/shadow', 'utf8')"),
               lambda result: result.get("value"))
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
