"""The attribute allowlist: which span attributes this plugin sets, and from which payload
fields.

Spans never copy a payload wholesale. Every attribute below is built from one named field
of a (redacted) event payload, checked for its type and cut to a bounded length, so a
field a planner or plugin adds later (a prompt, arguments, a result, an error message)
never reaches a span. Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# -- GenAI semantic conventions ------------------------------------------------------------
OPERATION = "gen_ai.operation.name"
AGENT_NAME = "gen_ai.agent.name"
AGENT_ID = "gen_ai.agent.id"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"

# -- agently-core's own ----------------------------------------------------------------------
RUN_ID = "agently.run.id"
RUN_RESUMED = "agently.run.resumed"
STOP_REASON = "agently.run.stop_reason"
MAX_ROUNDS = "agently.run.max_rounds"
PLANNING_PROTOCOL = "agently.run.planning_protocol"
ROUNDS = "agently.run.rounds"
RECORDS = "agently.run.records"
MODEL_REQUESTS = "agently.run.model_requests"
ROUND_INDEX = "agently.round.index"
NEXT_ACTION = "agently.round.next_action"
ROUND_CALLS = "agently.round.calls"
ROUND_INVALID = "agently.round.invalid_calls"
PLANNER = "agently.planner"
MESSAGES = "agently.model.messages"
TOOLS = "agently.model.tools"
TOOL_CALLS = "agently.model.tool_calls"
LATENCY_MS = "agently.model.latency_ms"
DELTAS = "agently.model.deltas"
ACTION_STATUS = "agently.action.status"
APPROVAL_REQUEST_ID = "agently.approval.request_id"
APPROVAL_DECISION = "agently.approval.decision"
ENVIRONMENT_KIND = "agently.environment.kind"
INCOMPLETE = "agently.span.incomplete"

#: Every attribute name a span or span event of this plugin may carry.
ALLOWED = frozenset({
    OPERATION, AGENT_NAME, AGENT_ID, PROVIDER, REQUEST_MODEL, REQUEST_STREAM, RESPONSE_MODEL,
    FINISH_REASONS, TIME_TO_FIRST_CHUNK, INPUT_TOKENS, OUTPUT_TOKENS, TOOL_NAME, TOOL_CALL_ID,
    ERROR_TYPE, RUN_ID, RUN_RESUMED, STOP_REASON, MAX_ROUNDS, PLANNING_PROTOCOL, ROUNDS,
    RECORDS, MODEL_REQUESTS, ROUND_INDEX, NEXT_ACTION, ROUND_CALLS, ROUND_INVALID, PLANNER,
    MESSAGES, TOOLS, TOOL_CALLS, LATENCY_MS, DELTAS, ACTION_STATUS, APPROVAL_REQUEST_ID,
    APPROVAL_DECISION, ENVIRONMENT_KIND, INCOMPLETE,
})

#: ``gen_ai.provider.name`` of the planners whose wire protocol names a provider.
PROVIDERS = {"openai_compatible": "openai", "openai_responses": "openai",
             "anthropic_compatible": "anthropic"}

#: Longest string value an attribute gets (names, ids, model names).
MAX_TEXT = 256
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
_ERROR_NAME = re.compile(r"\b([A-Z][A-Za-z0-9_]*(?:Error|Exception|Exceeded|Denied|Timeout))\b")


def text(value: Any) -> str | None:
    """A non-empty string, cut to :data:`MAX_TEXT` characters; anything else is dropped."""
    if isinstance(value, str) and value:
        return value[:MAX_TEXT]
    return None


def count(value: Any) -> int | None:
    """A non-negative integer (not a bool); anything else is dropped."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def number(value: Any) -> float | None:
    """A finite non-negative number (not a bool); anything else is dropped."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        if math.isfinite(value) and value >= 0:
            return value
    return None


def flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def identifier(value: Any) -> str | None:
    """A short identifier (an error class name, a status): letters, digits, ``_`` and
    ``.`` only. A free-form message is dropped, never cut into an attribute."""
    if isinstance(value, str) and _IDENTIFIER.fullmatch(value):
        return value
    return None


def error_name(message: Any) -> str | None:
    """The first error class name in a message (``"planner failed in round 0: ModelError:
    ..."`` gives ``"ModelError"``): only the name is kept, never the message."""
    if isinstance(message, str):
        found = _ERROR_NAME.search(message)
        if found:
            return found.group(1)
    return None


def pick(payload: Mapping[str, Any], fields: Mapping[str, tuple[str, Any]]) -> dict[str, Any]:
    """Attributes from ``payload``: ``fields`` maps a payload key to ``(attribute name,
    sanitizer)``; a missing or ill-typed value sets no attribute."""
    found: dict[str, Any] = {}
    for key, (name, clean) in fields.items():
        value = clean(payload.get(key))
        if value is not None:
            found[name] = value
    return found


RUN_FIELDS = {
    "run_id": (RUN_ID, text), "agent_name": (AGENT_NAME, text), "agent_id": (AGENT_ID, text),
    "planner": (PLANNER, text), "max_rounds": (MAX_ROUNDS, count),
    "planning_protocol": (PLANNING_PROTOCOL, identifier), "resumed": (RUN_RESUMED, flag),
}
RUN_END_FIELDS = {
    "stop_reason": (STOP_REASON, identifier), "rounds": (ROUNDS, count),
    "records": (RECORDS, count),
    "input_tokens": (INPUT_TOKENS, count), "output_tokens": (OUTPUT_TOKENS, count),
    "requests": (MODEL_REQUESTS, count),
}
ROUND_END_FIELDS = {
    "next_action": (NEXT_ACTION, identifier), "calls": (ROUND_CALLS, count),
    "invalid": (ROUND_INVALID, count),
}
MODEL_REQUEST_FIELDS = {
    "model": (REQUEST_MODEL, text), "planner": (PLANNER, text), "stream": (REQUEST_STREAM, flag),
    "messages": (MESSAGES, count), "tools": (TOOLS, count), "round_index": (ROUND_INDEX, count),
}
MODEL_RESPONSE_FIELDS = {
    "model": (RESPONSE_MODEL, text), "input_tokens": (INPUT_TOKENS, count),
    "output_tokens": (OUTPUT_TOKENS, count), "tool_calls": (TOOL_CALLS, count),
    "latency_ms": (LATENCY_MS, number),
}
TOOL_FIELDS = {"action": (TOOL_NAME, text), "call_id": (TOOL_CALL_ID, text)}
