"""What every model planner shares, whatever its provider or SDK.

A model planner (``openai_compatible``, ``openai_responses``, ``anthropic_compatible``, or
a third party's) turns one planning round into one model request and the model's answer
into a raw decision (see :mod:`agently_core.hookspecs`, ``register_planners``). This module
holds the provider-neutral parts, so every planner behaves the same:

* :func:`validate_options`: the common options, checked, with the exact
  :class:`~agently_core.errors.ConfigError` wording for a missing model or an unknown
  option; :func:`read_api_key` reads the key from the environment variable named by
  ``api_key_env``, never from an option; :func:`optional_bool` and :func:`one_of` check a
  planner's own options the same way;
* tool definitions from action schemas (:func:`openai_chat_tools`,
  :func:`openai_responses_tools`, :func:`anthropic_tools`) with :class:`ToolNames` for
  action names a provider does not accept as tool names;
* the transcript: :func:`record_text` (a record as the model sees it: its digest when it
  has one, else its result or error as compact JSON, cut to a size), :func:`transcript`
  (history rounds as :class:`Turn` objects within ``max_context_chars``: oldest results
  first shrink to their digest and artifact ids, then the oldest rounds are left out with
  a note; :data:`NOT_RUN_TEXT` answers a tool call that has no record,
  :meth:`Turn.result_text`);
* the structured plan: :func:`plan_schema`, :func:`plan_instructions` and the tolerant
  :func:`parse_plan` (fenced ```json blocks, chatty text around one object);
* :func:`system_prompt`, :class:`RoundEvents` (``model.*`` events) and
  :func:`failure_message` (HTTP and transport failures in words a person can act on).

No SDK is imported here.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, ModelError

__all__ = [
    "COMMON_OPTIONS",
    "NOT_RUN_TEXT",
    "ModelError",
    "ModelPlanner",
    "PlannerSettings",
    "RoundEvents",
    "RoundInput",
    "ToolNames",
    "Transcript",
    "Turn",
    "TurnResult",
    "anthropic_tools",
    "compact_record_text",
    "failure_message",
    "mask",
    "one_of",
    "openai_chat_tools",
    "openai_responses_tools",
    "optional_bool",
    "output_system_prompt",
    "output_turns",
    "parse_plan",
    "plan_instructions",
    "plan_schema",
    "read_api_key",
    "record_text",
    "request_text",
    "results_message",
    "system_prompt",
    "transcript",
    "validate_options",
]

PROTOCOLS = ("native_tool_calls", "structured_plan")
#: Per-result cap (characters of a tool result's text) unless ``max_result_chars`` says.
DEFAULT_MAX_RESULT_CHARS = 16_000
#: Transcript budget (characters) unless ``max_context_chars`` says.
DEFAULT_MAX_CONTEXT_CHARS = 200_000
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- options -----------------------------------------------------------------------------------
def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _url(value: Any) -> str:
    text = _string(value)
    if not text.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return text.rstrip("/")


def _number(low: float, high: float | None = None, *, integer: bool = False,
            above: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                raise ValueError(f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {type(value).__name__}")
        if integer and value != int(value):
            raise ValueError(f"must be a whole number, got {value!r}")
        if (value <= low) if above else (value < low):
            raise ValueError(f"must be {'above' if above else 'at least'} {low:g}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high:g}, got {value!r}")
        return int(value) if integer else float(value)
    return check


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"must be true or false, got {value!r}")


def optional_bool(value: Any) -> bool | None:
    """Option check: ``None`` (not set), ``True`` or ``False``; anything else is a
    ValueError saying so (``option NAME must be true or false``)."""
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"must be true or false, got {value!r}")


def one_of(*choices: str) -> Callable[[Any], str]:
    """Option check: one of ``choices`` (a ValueError listing them otherwise)."""
    if not choices:
        raise ValueError("one_of() needs at least one choice")

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return value
    return check


def _env_name(value: Any) -> str:
    text = _string(value)
    if not _ENV_NAME.match(text):
        raise ValueError("must be the name of an environment variable (letters, digits, _)")
    return text


def _headers(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("must be a table of header names to values") from None
    if not isinstance(value, Mapping):
        raise ValueError("must be a table of header names to values")
    headers: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or not isinstance(item, (str, int, float)) \
                or isinstance(item, bool):
            raise ValueError(f"header {key!r} must have a text value")
        if any(c in f"{key}{item}" for c in "\r\n"):
            raise ValueError(f"header {key!r} must not hold a line break")
        headers[key] = str(item)
    return headers


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        return None if value is None else check(value)
    return optional


#: The options every model planner accepts: name -> (check, default).
COMMON_OPTIONS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "model": (_string, None),
    "base_url": (_optional(_url), None),
    "api_key_env": (_env_name, None),
    "temperature": (_optional(_number(0, 2)), None),
    "max_tokens": (_optional(_number(1, integer=True)), None),
    "timeout": (_number(0, above=True), 120.0),
    "max_retries": (_number(0, 20, integer=True), 2),
    "stream": (_boolean, True),
    "extra_headers": (_headers, None),
    "planning_protocol": (one_of(*PROTOCOLS), "native_tool_calls"),
    "max_context_chars": (_number(1000, integer=True), DEFAULT_MAX_CONTEXT_CHARS),
    "max_result_chars": (_number(200, integer=True), DEFAULT_MAX_RESULT_CHARS),
    "instructions": (_optional(_string), None),
}


@dataclass(frozen=True)
class PlannerSettings:
    """A planner's checked options. ``extra`` holds the planner's own options."""

    planner: str
    model: str
    base_url: str | None
    api_key_env: str
    temperature: float | None
    max_tokens: int | None
    timeout: float
    max_retries: int
    stream: bool
    extra_headers: Mapping[str, str]
    planning_protocol: str
    max_context_chars: int
    max_result_chars: int
    instructions: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # header values may be secrets: names only
        return (f"PlannerSettings(planner={self.planner!r}, model={self.model!r}, "
                f"base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
                f"stream={self.stream}, planning_protocol={self.planning_protocol!r}, "
                f"extra_headers={sorted(self.extra_headers)})")


def validate_options(planner: str, options: Mapping[str, Any], *, api_key_env: str,
                     extra: Mapping[str, tuple[Callable[[Any], Any], Any]] | None = None,
                     ) -> PlannerSettings:
    """Check ``options`` against :data:`COMMON_OPTIONS` (plus the planner's ``extra``
    ones); ``api_key_env`` is the default variable of the key. Raises
    :class:`~agently_core.errors.ConfigError` naming the planner and the setting; a
    message never repeats an option's value (it may be a secret given by mistake)."""
    known = {**COMMON_OPTIONS, **(extra or {})}
    if "api_key" in options:
        named = options.get("api_key_env")
        env = named if isinstance(named, str) and _ENV_NAME.match(named) else api_key_env
        raise ConfigError(f"{planner}: the API key is not an option; put it in the "
                          f"environment variable {env} (choose another one with api_key_env=...)")
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        raise ConfigError(f"{planner}: unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}; known options: {', '.join(sorted(known))}")
    if options.get("model") in (None, ""):
        raise ConfigError(f"{planner}: no model; set planner_options.model, "
                          "AGENTLY_PLANNER_OPTION_MODEL or set_planner(..., model=...)")
    values: dict[str, Any] = {}
    for name, (check, default) in known.items():
        if name not in options:
            values[name] = default
            continue
        try:
            values[name] = check(options[name])
        except ValueError as exc:
            raise ConfigError(f"{planner}: option {name} {exc}") from None
    common = {name: values.pop(name) for name in COMMON_OPTIONS}
    common["api_key_env"] = common["api_key_env"] or api_key_env
    common["extra_headers"] = common["extra_headers"] or {}
    return PlannerSettings(planner=planner, extra=values, **common)


def read_api_key(settings: PlannerSettings) -> str | None:
    """The key from the environment variable ``settings.api_key_env`` (``None`` when it is
    unset or blank)."""
    value = os.environ.get(settings.api_key_env, "").strip()
    return value or None


def mask(text: str, *secrets: str | None) -> str:
    """``text`` with every one of ``secrets`` (4 characters or more) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "***")
    return text


# -- tools -----------------------------------------------------------------------------------
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolNames:
    """Action names as tool names: the same when a provider accepts them (letters,
    digits, ``_`` and ``-``, at most 64), else a close, unique, valid stand-in; and back."""

    def __init__(self, actions: Iterable[str]) -> None:
        self.to_tool: dict[str, str] = {}
        self.to_action: dict[str, str] = {}
        names = list(actions)
        taken = {n for n in names if _TOOL_NAME.match(n)}
        for name in names:
            tool = name
            if not _TOOL_NAME.match(name):
                base = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:60] or "action"
                tool, n = base, 1
                while tool in taken:
                    n += 1
                    tool = f"{base[:60 - len(str(n))]}_{n}"
                taken.add(tool)
            self.to_tool[name] = tool
            self.to_action[tool] = name

    def tool(self, action: str) -> str:
        return self.to_tool.get(action, action)

    def action(self, tool: str) -> str:
        return self.to_action.get(tool, tool)


def tool_parameters(schema: Any) -> dict[str, Any]:
    """An action's argument schema as a tool's parameters (always an object schema)."""
    if not isinstance(schema, Mapping):
        return {"type": "object", "properties": {}}
    params = dict(schema)
    params.setdefault("type", "object")
    if params.get("type") == "object":
        params.setdefault("properties", {})
    return params


def _description(info: Mapping[str, Any]) -> str:
    return str(info.get("description") or "")[:1024]


def openai_chat_tools(action_list: Sequence[Mapping[str, Any]], names: ToolNames
                      ) -> list[dict[str, Any]]:
    """Chat Completions function tools."""
    return [{"type": "function", "function": {
        "name": names.tool(a["name"]), "description": _description(a),
        "parameters": tool_parameters(a.get("kwargs"))}} for a in action_list]


def openai_responses_tools(action_list: Sequence[Mapping[str, Any]], names: ToolNames
                           ) -> list[dict[str, Any]]:
    """Responses API function tools (not strict: action schemas allow optional keys)."""
    return [{"type": "function", "name": names.tool(a["name"]), "description": _description(a),
             "parameters": tool_parameters(a.get("kwargs")), "strict": False}
            for a in action_list]


def anthropic_tools(action_list: Sequence[Mapping[str, Any]], names: ToolNames
                    ) -> list[dict[str, Any]]:
    """Anthropic Messages tools."""
    return [{"name": names.tool(a["name"]), "description": _description(a),
             "input_schema": tool_parameters(a.get("kwargs"))} for a in action_list]


# -- records as the model sees them --------------------------------------------------------
def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _cut(text: str, limit: int, artifacts: Sequence[str] = ()) -> str:
    if len(text) <= limit:
        return text
    where = f"; the full result is in artifacts {', '.join(artifacts)}" if artifacts else ""
    marker = f"...[cut: {len(text)} characters in all{where}]"
    return text[:max(0, limit - len(marker))] + marker


def _artifact_ids(record: Mapping[str, Any]) -> list[str]:
    """The ids of a record's ``artifact_refs``."""
    return [ref["artifact_id"] for ref in record.get("artifact_refs") or ()]


def record_text(record: Mapping[str, Any], max_chars: int = DEFAULT_MAX_RESULT_CHARS) -> str:
    """One action record as a tool result's text: compact JSON of its status and its
    digest when it has one, else its result (success) or error, cut to ``max_chars``."""
    status = record.get("status")
    payload: dict[str, Any] = {"status": status}
    if record.get("digest") is not None:
        payload["digest"] = record["digest"]
        if status != "success" and record.get("error"):
            payload["error"] = record["error"]
    elif status == "success":
        payload["result"] = record.get("result")
    else:
        if record.get("error_type"):
            payload["error_type"] = record["error_type"]
        payload["error"] = record.get("error")
        if record.get("result") is not None:
            payload["result"] = record["result"]
    artifacts = _artifact_ids(record)
    if artifacts and record.get("digest") is None:
        payload["artifacts"] = artifacts
    return _cut(_dumps(payload), max_chars, artifacts)


def compact_record_text(record: Mapping[str, Any], max_chars: int = 600) -> str:
    """The short form of a record once the transcript outgrows its budget: its status,
    the first line of its error, its artifact ids (and its digest when the full form was
    the raw result)."""
    payload: dict[str, Any] = {"status": record.get("status"),
                               "note": "left out to fit the context budget"}
    if record.get("error"):
        payload["error"] = str(record["error"]).splitlines()[0][:200]
    artifacts = _artifact_ids(record)
    if artifacts:
        payload["artifacts"] = artifacts
    return _cut(_dumps(payload), max_chars)


def request_text(request: Any) -> str:
    """The user's request as text."""
    if isinstance(request, str):
        return request
    return _dumps(request)


# -- the transcript --------------------------------------------------------------------------
#: The tool result of a call the model made that has no record (it never ran): every
#: provider needs an answer to each of its tool calls.
NOT_RUN_TEXT = '{"status":"skipped","error":"this call did not run"}'


@dataclass
class TurnResult:
    """One record of a round, as its tool result (full, or compact once shrunk)."""

    call_id: str
    action: str
    status: str
    full: str
    record: Mapping[str, Any] = field(default_factory=dict, repr=False)
    shrunk: bool = False
    _compact: str | None = field(default=None, repr=False)

    @property
    def compact(self) -> str:
        """The short form (made when first needed: most transcripts fit their budget)."""
        if self._compact is None:
            self._compact = compact_record_text(self.record)
        return self._compact

    @property
    def text(self) -> str:
        return self.compact if self.shrunk else self.full


@dataclass
class Turn:
    """One earlier round: what the planner said (its ``model_message``, or ``response``
    and ``calls`` to rebuild one) and the results of its calls, in call order."""

    round_index: int
    model_message: Any
    response: str | None
    calls: list[dict[str, Any]]
    results: list[TurnResult]
    message_chars: int = 0

    @property
    def chars(self) -> int:
        return self.message_chars + sum(len(r.text) for r in self.results)

    def result_for(self, call_id: str) -> TurnResult | None:
        for result in self.results:
            if result.call_id == call_id:
                return result
        return None

    def result_text(self, call_id: str) -> str:
        """The text the model gets back for tool call ``call_id``: its result, or
        :data:`NOT_RUN_TEXT` when the round has no record of it."""
        result = self.result_for(call_id)
        return result.text if result is not None else NOT_RUN_TEXT


@dataclass
class Transcript:
    """The rounds to replay and how many older ones were left out."""

    turns: list[Turn]
    dropped: int = 0
    shrunk: int = 0


def transcript(history: Sequence[Mapping[str, Any]] | None, *, max_result_chars: int,
               max_context_chars: int, fixed_chars: int = 0) -> Transcript:
    """``history`` (the planning context's, oldest first) as turns within
    ``max_context_chars`` (``fixed_chars``: what the system prompt and request take).

    Past the budget, results shrink to :func:`compact_record_text` oldest first (the
    latest round's last), then the oldest rounds are left out (never the latest)."""
    turns: list[Turn] = []
    for entry in history or ():
        message = entry.get("model_message")
        calls = [dict(c) for c in entry.get("calls") or ()]
        results = [TurnResult(call_id=str(r.get("call_id") or ""), action=str(r.get("action") or ""),
                              status=str(r.get("status") or ""),
                              full=record_text(r, max_result_chars), record=r)
                   for r in entry.get("records") or ()]
        turn = Turn(round_index=int(entry.get("round_index") or 0), model_message=message,
                    response=entry.get("response"), calls=calls, results=results)
        turn.message_chars = len(_dumps(message if message is not None else
                                        {"response": turn.response, "calls": calls}))
        turns.append(turn)
    result = Transcript(turns)
    total = fixed_chars + sum(t.chars for t in turns)
    if total <= max_context_chars:
        return result
    ordered = [r for t in turns[:-1] for r in t.results] + (turns[-1].results if turns else [])
    latest = set(map(id, turns[-1].results)) if turns else set()
    for item in ordered:  # 1. shrink the older rounds' results, oldest first
        if total <= max_context_chars:
            return result
        if id(item) in latest:
            break
        if len(item.compact) < len(item.full):
            total -= len(item.full) - len(item.compact)
            item.shrunk = True
            result.shrunk += 1
    while total > max_context_chars and len(result.turns) > 1:  # 2. leave out the oldest
        total -= result.turns.pop(0).chars
        result.dropped += 1
    for item in turns[-1].results if turns else ():  # 3. the latest round's results
        if total <= max_context_chars:
            break
        if len(item.compact) < len(item.full):
            total -= len(item.full) - len(item.compact)
            item.shrunk = True
            result.shrunk += 1
    return result


def results_message(round_index: int, results: Iterable[TurnResult]) -> str:
    """A round's results as one text (the structured plan's way of sending them back,
    and how records that answer no tool call reach the model)."""
    lines = [f"Results of your action calls in round {round_index}:"]
    for item in results:
        lines.append(f"- {item.action} (call {item.call_id}): {item.text}")
    if len(lines) == 1:
        lines.append("- (no call ran)")
    return "\n".join(lines)


# -- the structured plan -----------------------------------------------------------------------
def plan_schema(action_list: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON schema of a structured plan."""
    names = [a["name"] for a in action_list]
    action_id: dict[str, Any] = {"type": "string", "description": "the action to call"}
    if names:
        action_id["enum"] = names
    return {
        "type": "object",
        "properties": {
            "next_action": {"type": "string", "enum": ["execute", "response"],
                            "description": "execute: run action_calls now; response: answer"},
            "action_calls": {"type": "array", "items": {
                "type": "object",
                "properties": {"action_id": action_id,
                               "action_input": {"type": "object",
                                                "description": "the action's arguments"},
                               "purpose": {"type": "string"}},
                "required": ["action_id", "action_input"]}},
            "response": {"type": ["string", "null"],
                         "description": "the final answer when next_action is response"},
        },
        "required": ["next_action"],
    }


def plan_instructions(action_list: Sequence[Mapping[str, Any]]) -> str:
    """The system prompt's part that asks for a structured plan and lists the actions."""
    lines = [
        "Answer every turn with one JSON object and nothing else, matching this schema:",
        _dumps(plan_schema(action_list)),
        'To run actions: {"next_action": "execute", "action_calls": [{"action_id": NAME, '
        '"action_input": {ARGUMENTS}, "purpose": WHY}]} (several calls run together). '
        "Their results come back in the next message.",
        'To answer: {"next_action": "response", "response": "<the final answer>"}.',
        "Actions (name: description; arguments as JSON schema):",
    ]
    for action in action_list:
        lines.append(f"- {action['name']}: {_description(action)} "
                     f"{_dumps(tool_parameters(action.get('kwargs')))}")
    if not action_list:
        lines.append("- (none: answer directly)")
    return "\n".join(lines)


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_PLAN_KEYS = ("next_action", "action_calls")


def _is_plan(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in _PLAN_KEYS)


def parse_plan(text: str | None) -> dict[str, Any]:
    """The plan in a model's text: the whole text as JSON, a fenced ```json block, or the
    first JSON object in chatty text that looks like a plan (has ``next_action`` or
    ``action_calls``). Text without one is the answer: ``{"next_action": "response",
    "response": text}``."""
    if not text or not text.strip():
        return {"next_action": "response", "response": text or None}
    stripped = text.strip()
    candidates = [stripped, *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if _is_plan(value):
            return value
    decoder = json.JSONDecoder()
    start, tries = stripped.find("{"), 0
    while start != -1 and tries < 64:
        tries += 1
        try:
            value, _ = decoder.raw_decode(stripped, start)
        except ValueError:
            value = None
        if _is_plan(value):
            return value
        start = stripped.find("{", start + 1)
    return {"next_action": "response", "response": text}


# -- prompts --------------------------------------------------------------------------------
def system_prompt(*, agent_name: str | None, protocol: str,
                  action_list: Sequence[Mapping[str, Any]] = (), env_state: str | None = None,
                  instructions: str | None = None, dropped_rounds: int = 0) -> str:
    """The system prompt of one round: who the agent is, how to act (tools, or the
    structured plan with its schema and the actions), the environment's state when the
    context has one, a note when older rounds were left out, and the host's
    ``instructions``."""
    who = f"You are {agent_name}, an agent" if agent_name else "You are an agent"
    parts = [f"{who} that completes the user's request by calling the actions available "
             "to you and reading their results."]
    if protocol == "structured_plan":
        parts.append(plan_instructions(action_list))
    else:
        parts.append("Call the tools you need (several at once when they do not depend on "
                     "each other); each result comes back to you. When you have the answer, "
                     "reply with it as plain text and call no tool.")
    if env_state:
        parts.append(f"Environment state:\n{env_state}")
    if dropped_rounds:
        parts.append(f"{dropped_rounds} earlier round(s) of this run were left out to fit the "
                     "context budget; their results are in the run's records.")
    if instructions:
        parts.append(instructions)
    return "\n\n".join(parts)


def output_system_prompt(*, agent_name: str | None, env_state: str | None = None,
                         instructions: str | None = None) -> str:
    """The system prompt of ``generate`` (``@agent.auto_func``): produce a value as JSON."""
    who = f"You are {agent_name}, an agent" if agent_name else "You are an agent"
    parts = [f"{who} that computes the result of a function from its instruction and "
             "input. Answer with the result as one JSON value and nothing else."]
    if env_state:
        parts.append(f"Environment state:\n{env_state}")
    if instructions:
        parts.append(instructions)
    return "\n\n".join(parts)


def output_turns(context: Mapping[str, Any], request: Mapping[str, Any], *,
                 max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
                 max_context_chars: int = DEFAULT_MAX_CONTEXT_CHARS) -> list[tuple[str, str]]:
    """The conversation of one ``generate`` request as ``(role, text)`` turns (``user`` and
    ``assistant``, starting and ending with ``user``): the task (instruction, input, the
    output's JSON schema), what the action loop that ran first did (as text: its calls
    and their results), then each earlier attempt and what was wrong with it."""
    function = request.get("function")
    task = [f"Compute the result of the function {function}." if function
            else "Compute the result.", "Instruction:", str(request.get("instruction") or "")]
    if request.get("input") not in (None, {}, []):
        task.append(f"Input (JSON): {_dumps(request.get('input'))}")
    ask = ("Answer with one JSON value matching this JSON schema, and nothing else: "
           f"{_dumps(request.get('output_schema') or {})}")
    turns = transcript(context.get("history"), max_result_chars=max_result_chars,
                       max_context_chars=max_context_chars, fixed_chars=len("\n".join(task)))
    done = []
    for turn in turns.turns:
        calls = {c.get("id"): c for c in turn.calls}
        for result in turn.results:
            call = calls.get(result.call_id) or {}
            done.append(f"- {result.action}({_dumps(call.get('kwargs', {}))}): {result.text}")
    if done:
        task.append("Actions already run for this (calls and results):\n" + "\n".join(done))
    task.append(ask)
    conversation = [("user", "\n".join(task))]
    for item in request.get("feedback") or ():
        output = item.get("output") if isinstance(item, Mapping) else item
        error = item.get("error") if isinstance(item, Mapping) else ""
        conversation.append(("assistant", output if isinstance(output, str) else _dumps(output)))
        conversation.append(("user", f"That answer is not valid: {error}\n{ask}"))
    return conversation


# -- the shared part of a model planner -------------------------------------------------------
@dataclass(frozen=True)
class RoundInput:
    """What a round asks the model, before it is put in a provider's shape: the protocol,
    the visible actions and their tool names, the user's request, the system prompt and
    the transcript of the earlier rounds (within the context budget)."""

    protocol: str
    action_list: list[dict[str, Any]]
    names: ToolNames
    user: str
    prompt: str
    turns: Transcript


class ModelPlanner:
    """What every SDK-backed model planner shares: its options (:func:`validate_options`),
    the key read from ``api_key_env`` only, :meth:`bind` (the key and the extra headers'
    values registered with the agent's redactor), one SDK client per event loop (made on
    first use by :meth:`new_client`), the planning protocol, and a round's input
    (:meth:`round_input`). Subclasses set the class attributes and implement
    :meth:`new_client` and ``plan``."""

    name = "model"
    #: The variable the key is read from unless ``api_key_env`` says.
    default_key_env = ""
    #: Where requests go unless ``base_url`` says.
    default_base_url = ""
    #: Who issues the key (for the error without one), and servers that need none.
    provider = "the provider's"
    keyless_servers = ""
    #: The planner's own options besides :data:`COMMON_OPTIONS`.
    extra_options: dict[str, tuple[Any, Any]] = {}

    def __init__(self, **options: Any) -> None:
        self.settings: PlannerSettings = validate_options(
            self.name, options, api_key_env=self.default_key_env, extra=self.extra_options)
        self.planning_protocol = self.settings.planning_protocol
        self._key = read_api_key(self.settings)
        if self._key is None and self.settings.base_url is None:
            raise ConfigError(
                f"{self.name}: no API key: {self.settings.api_key_env} is not set; put your "
                f"{self.provider} key there, or set base_url for a server that needs none"
                f"{self.keyless_servers}")
        self.base_url = self.settings.base_url or self.default_base_url
        self._client: Any = None
        self._client_loop: Any = None
        self._events: Any = None
        self._request_headers: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.settings.model!r}, base_url={self.base_url!r})"

    def bind(self, agent: Any) -> None:
        """Register the key (and the extra headers' values) with the agent's redactor, so
        they are masked in every record, event, digest and log; keep the agent's events."""
        redactor = getattr(agent, "redactor", None)
        if redactor is not None:
            if self._key:
                redactor.add(self._key)
            if self.settings.extra_headers:
                redactor.add_mapping(self.settings.extra_headers, all_values=True)
        self._events = getattr(agent, "events", None)

    # -- the SDK client ------------------------------------------------------------------------
    def new_client(self) -> tuple[Any, dict[str, Any] | None]:
        """A new SDK client with the settings, and the per-request headers that drop
        ``Authorization`` when there is no key (``None`` when there is one)."""
        raise NotImplementedError

    def client(self) -> Any:
        """The SDK client of the running event loop (made on first use)."""
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): one client
            loop = None
        if self._client is None or self._client_loop is not loop:
            self._client, self._request_headers = self.new_client()
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client (its connections) if one was made on this loop."""
        import asyncio

        client, self._client = self._client, None
        if client is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is self._client_loop:
                await client.close()

    def request_options(self) -> dict[str, Any]:
        """Per-request SDK options (``extra_headers`` dropping Authorization without a key)."""
        return {"extra_headers": self._request_headers} if self._request_headers else {}

    # -- a round -------------------------------------------------------------------------------
    def protocol(self, request: Mapping[str, Any]) -> str:
        """The planning protocol of this round: the planner's ``planning_protocol`` option
        (default ``native_tool_calls``). The request's ``planning_protocol`` (the agent's
        loop setting, ``structured_plan`` unless set) does not override it: a model planner
        is configured through its options."""
        return self.planning_protocol

    def round_input(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> RoundInput:
        """The round's protocol, actions, the user's request (``context["prompt"]``),
        system prompt and transcript (the prompt says how many early rounds the context
        budget left out)."""
        settings = self.settings
        protocol = self.protocol(request)
        action_list = list(request.get("action_list") or ())
        user = request_text(context.get("prompt"))
        prompt_args = {"agent_name": context.get("agent_name"), "protocol": protocol,
                       "action_list": action_list, "env_state": context.get("env_state"),
                       "instructions": settings.instructions}
        prompt = system_prompt(**prompt_args)
        turns = transcript(context.get("history"), max_result_chars=settings.max_result_chars,
                           max_context_chars=settings.max_context_chars,
                           fixed_chars=len(prompt) + len(user))
        if turns.dropped:
            prompt = system_prompt(**prompt_args, dropped_rounds=turns.dropped)
        return RoundInput(protocol, action_list, ToolNames(a["name"] for a in action_list),
                          user, prompt, turns)


# -- events ---------------------------------------------------------------------------------
class RoundEvents:
    """Emits one round's ``model.*`` events on the context's ``events`` (or the agent's):
    ``model.request``, ``model.delta``, ``model.response``, ``model.failed``. Costs one
    check per event when nobody observes."""

    __slots__ = ("_common", "_events", "active", "model", "planner", "started")

    def __init__(self, planner: str, model: str, context: Mapping[str, Any],
                 fallback: Any = None) -> None:
        events = context.get("events") or fallback
        self._events = events
        self.active = bool(events is not None and getattr(events, "active", True))
        self.planner = planner
        self.model = model
        self._common = {"run_id": context.get("run_id") or context.get("execution_id"),
                        "round_index": context.get("round_index")}
        self.started = time.perf_counter()

    async def request(self, *, messages: int, tools: int, stream: bool) -> None:
        self.started = time.perf_counter()
        if self.active:
            await self._events.emit("model.request", "planner", planner=self.planner,
                                    model=self.model, messages=messages, tools=tools,
                                    stream=stream, **self._common)

    async def delta(self, text: str) -> None:
        if self.active and text:
            await self._events.emit("model.delta", "planner", planner=self.planner, text=text,
                                    **self._common)

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    async def response(self, *, model: str | None, usage: Mapping[str, int] | None,
                       tool_calls: int, finish_reason: str | None) -> None:
        if self.active:
            await self._events.emit(
                "model.response", "planner", planner=self.planner, model=model or self.model,
                latency_ms=self.latency_ms(),
                input_tokens=(usage or {}).get("input_tokens"),
                output_tokens=(usage or {}).get("output_tokens"),
                tool_calls=tool_calls, finish_reason=finish_reason, **self._common)

    async def failed(self, error: str) -> None:
        if self.active:
            await self._events.emit("model.failed", "planner", planner=self.planner,
                                    model=self.model, error=error, **self._common)


# -- failures ------------------------------------------------------------------------------
def failure_message(settings: PlannerSettings, *, kind: str, base_url: str,
                    status: int | None = None, detail: str = "", key_set: bool = True,
                    retries: int = 0) -> str:
    """What a failed model request means and what to do, for a person. ``kind``:
    ``status`` (an HTTP error), ``timeout``, ``connection``, ``stream`` (an answer that
    broke off or made no sense). ``retries``: how many times the SDK tried again."""
    name, env, model = settings.planner, settings.api_key_env, settings.model
    detail = " ".join(str(detail).split())[:300]
    tail = f": {status} {detail}".rstrip() if status else (f": {detail}" if detail else "")
    again = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
    if kind == "timeout":
        return (f"{name}: no answer from {base_url} within {settings.timeout:g} s{again}; "
                "check that the server runs and answers, or raise the timeout option")
    if kind == "connection":
        return (f"{name}: could not reach {base_url}{again}{': ' + detail if detail else ''}; "
                "check base_url and that the server runs")
    if kind == "stream":
        return f"{name}: the answer from {base_url} broke off or could not be read{tail}"
    if status == 401:
        if not key_set:
            return (f"{name}: {base_url} wants an API key and {env} is not set; put your key "
                    f"in {env} (or name another variable with api_key_env){tail}")
        return f"{name}: the key in {env} was refused by {base_url}{tail}"
    if status == 403:
        return f"{name}: the key in {env} may not use model {model!r} at {base_url}{tail}"
    if status == 404:
        return (f"{name}: {base_url} has no model {model!r} or no such endpoint; check the "
                f"model and base_url options{tail}")
    if status == 413:
        return (f"{name}: {base_url} found the request too large; lower max_context_chars "
                f"or max_result_chars{tail}")
    if status == 429:
        return (f"{name}: {base_url} kept limiting the rate of requests{again}; wait, or raise "
                f"max_retries{tail}")
    if status is not None and status >= 500:
        return f"{name}: {base_url} failed{again}{tail}"
    return f"{name}: {base_url} rejected the request for model {model!r}{tail}"
