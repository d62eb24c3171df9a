"""``agently-core run PROMPT``: a model-driven action loop, printed as it happens.

The planner is the ``planner`` setting or ``--planner``; its options come from the
configuration (``[planner_options]``, ``AGENTLY_PLANNER_OPTION_*``), with ``--model`` and
``--base-url`` on top. The model's text streams as it comes (``model.delta`` events); each
round's calls are printed when the model asks for them and their outcome (status, time, a
preview of the result) when the next round starts or the loop ends. ``--json`` prints only
the ``FlowResult``. Exit 0 when the loop ends with a response, 1 when it ends otherwise,
2 for usage or configuration errors (raised as such, for the caller to report).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

#: Width of a result preview.
PREVIEW = 72


def _short(value: Any, width: int = PREVIEW) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=repr)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


class LivePrinter:
    """Prints a run while it happens: streamed model text, calls, outcomes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.shown: set[str] = set()  # call ids whose outcome is printed
        self.streaming = False  # inside a line of streamed model text

    def _line(self, text: str) -> None:
        if self.streaming:
            self.out.write("\n")
            self.streaming = False
        self.out.write(text + "\n")
        self.out.flush()

    def delta(self, event: Any) -> None:
        text = event.payload.get("text")
        if isinstance(text, str) and text:
            if not self.streaming:
                self.out.write("model: ")
                self.streaming = True
            self.out.write(text)
            self.out.flush()

    def calls(self, raw: Any) -> None:
        """The calls a planner returned, before they run."""
        if not isinstance(raw, dict):
            return
        for item in raw.get("tool_calls") or raw.get("action_calls") or ():
            if not isinstance(item, dict):
                continue
            function = item.get("function") if isinstance(item.get("function"), dict) else item
            name = function.get("name") or item.get("action_id") or item.get("action")
            arguments = function.get("arguments", item.get("action_input", item.get("kwargs")))
            self._line(f"-> {name}({_short(arguments, PREVIEW)})")

    def outcome(self, record: Any) -> None:
        call_id = _field(record, "call_id")
        if call_id in self.shown:
            return
        self.shown.add(call_id)
        status = _field(record, "status")
        duration = _field(record, "duration_ms")
        digest = _field(record, "digest") or {}
        if digest:  # an instruction-heavy call (code, a shell line): its compact form
            detail = _short(digest.get("result_preview") or _field(record, "error"))
        elif status == "success":
            detail = _short(_field(record, "result"))
        else:
            detail = f"{_field(record, 'error_type')}: {_short(_field(record, 'error'))}"
        took = "" if duration is None else f"  {duration:.0f} ms"
        self._line(f"   {status:<8} {_field(record, 'action')}{took}  {detail}")

    def finish(self, result: Any) -> None:
        for record in result.records:
            self.outcome(record)
        usage = getattr(result, "usage", None) or {}
        tokens = ""
        if usage.get("input_tokens") is not None:
            tokens = (f"; tokens in {usage.get('input_tokens', 0)}, out "
                      f"{usage.get('output_tokens', 0)}")
        if result.stop_reason == "response":
            self._line(f"answer: {result.response}")
        else:
            self._line(f"stopped: {result.stop_reason}"
                       + (f": {result.error}" if result.error else ""))
        rounds, calls = len(result.rounds), len(result.records)
        self._line(f"({rounds} round{'s' if rounds != 1 else ''}, {calls} "
                   f"call{'s' if calls != 1 else ''}{tokens})")


class _Watched:
    """The agent's planner, with the calls it returns and the outcomes of the last round
    shown as they happen. Everything else goes to the planner itself."""

    def __init__(self, inner: Any, printer: LivePrinter) -> None:
        self._inner = inner
        self._printer = printer

    async def plan(self, context: Any, request: Any) -> Any:
        for record in context.get("last_round_records") or ():
            self._printer.outcome(record)
        raw = await self._inner.plan(context, request)
        self._printer.calls(raw)
        return raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def run(agent: Any, prompt: str, *, planner: str | None, options: dict[str, Any],
        max_rounds: int | None, as_json: bool, out: TextIO | None = None) -> int:
    """Run ``prompt`` on ``agent`` (its action packages mounted) and print it."""
    out = out or sys.stdout
    from .errors import ConfigError, NotInstalledError

    name = planner or agent.config.planner
    if name is None:
        raise ConfigError("no planner: pass --planner NAME (for example openai_compatible) "
                          "or set planner = \"NAME\" in agently.toml or AGENTLY_PLANNER")
    try:
        agent.set_planner(name, **options)
    except NotInstalledError as exc:  # a planner name that nothing provides: a usage error
        raise ConfigError(str(exc)) from None
    run_options: dict[str, Any] = {}
    if max_rounds is not None:
        run_options["max_rounds"] = max_rounds
    if as_json:
        result = agent.run(prompt, **run_options)
        out.write(result.model_dump_json(indent=2) + "\n")
        return 0 if result.stop_reason == "response" else 1
    printer = LivePrinter(out)
    agent.events.subscribe(printer.delta, "model.delta")
    agent._planner = _Watched(agent._planner, printer)
    result = agent.run(prompt, **run_options)
    printer.finish(result)
    return 0 if result.stop_reason == "response" else 1
