"""The Messages conversation of a round, and the raw decision of an answer.

Each round rebuilds the conversation from the run's history (stateless across rounds and
processes): the user's request, then for every earlier round the assistant message (its
content blocks replayed as the model wrote them) and one user message holding a
``tool_result`` block per ``tool_use`` block, with the matching ``tool_use_id`` and the
record as :func:`agently_core.planning.record_text` puts it (``is_error`` unless it
succeeded). Records that answer no ``tool_use`` (an invalid structured call, an empty
answer's ``skipped`` record) follow as a text block. Consecutive messages of one role
are merged, so the roles alternate as the Messages API wants.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agently_core.planning import (
    ToolNames,
    Transcript,
    Turn,
    parse_plan,
    request_text,
    results_message,
)

from .answer import Answer

#: How much of a malformed tool input is kept to replay it.
_KEPT_INPUT = 4000


def tool_input(text: str) -> dict[str, Any]:
    """A tool_use block's input to replay: the model's object when its text parses to
    one, else an object holding the text (the API takes only objects; the call's error
    in its tool_result tells the model what went wrong)."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"invalid_input": text[:_KEPT_INPUT]}


def decision(answer: Answer, protocol: str, names: ToolNames, model: str) -> dict[str, Any]:
    """The raw decision of one answer, with its ``model_message`` (the assistant message
    to replay: ``{"role": "assistant", "content": [blocks]}``)."""
    text, calls = answer.text, answer.calls
    common = {"model": answer.model or model, "usage": answer.usage}
    if not calls and not text:
        return {"tool_calls": [], "content": None, **common, "model_message": None}
    if protocol == "structured_plan" and not calls:
        plan = parse_plan(text)
        return {"next_action": plan.get("next_action"),
                "action_calls": plan.get("action_calls") or [],
                "response": plan.get("response"), **common,
                "model_message": {"role": "assistant",
                                  "content": [{"type": "text", "text": text}]}}
    content: list[dict[str, Any]] = []
    for block in answer.blocks:
        if block[0] == "text":
            content.append({"type": "text", "text": block[1]})
        else:
            content.append({"type": "tool_use", "id": block[1], "name": block[2],
                            "input": tool_input(block[3])})
    return {
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": names.action(name), "arguments": arguments}}
                       for call_id, name, arguments in calls],
        "content": text, **common,
        "model_message": {"role": "assistant", "content": content},
    }


# -- replay ----------------------------------------------------------------------------------
def _own_blocks(message: Any) -> list[dict[str, Any]] | None:
    """The content blocks of a ``model_message`` this planner wrote, checked (``None``
    when it is not one)."""
    if not (isinstance(message, Mapping) and message.get("role") == "assistant"
            and isinstance(message.get("content"), list)):
        return None
    blocks: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            if block["text"]:
                blocks.append({"type": "text", "text": block["text"]})
        elif block.get("type") == "tool_use" and isinstance(block.get("id"), str):
            value = block.get("input")
            blocks.append({"type": "tool_use", "id": block["id"], "name": str(block.get("name")),
                           "input": dict(value) if isinstance(value, Mapping)
                           else tool_input(str(value))})
    return blocks


def assistant_blocks(turn: Turn, protocol: str, names: ToolNames) -> list[dict[str, Any]]:
    """An earlier round's assistant content: the planner's own blocks, or blocks rebuilt
    from the round's response and calls (history another planner wrote)."""
    own = _own_blocks(turn.model_message)
    if own is not None:
        return own
    if protocol == "structured_plan" and turn.calls:
        plan = {"next_action": "execute",
                "action_calls": [{"action_id": c.get("action"), "action_input": c.get("kwargs")}
                                 for c in turn.calls]}
        return [{"type": "text", "text": json.dumps(plan)}]
    blocks: list[dict[str, Any]] = []
    if isinstance(turn.response, str) and turn.response:
        blocks.append({"type": "text", "text": turn.response})
    blocks += [{"type": "tool_use", "id": str(c.get("id")),
                "name": names.tool(str(c.get("action"))),
                "input": dict(c.get("kwargs") or {})} for c in turn.calls]
    return blocks


def _add(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Append a message, merged into the last one when it has the same role."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        last = messages[-1]
        if isinstance(last["content"], str):
            last["content"] = [{"type": "text", "text": last["content"]}]
        last["content"] = [*last["content"], *blocks]
        return
    messages.append({"role": role, "content": blocks})


def _as_text(block: dict[str, Any]) -> dict[str, Any]:
    """A tool_use block told in words (for a request that declares no tools)."""
    if block["type"] != "tool_use":
        return block
    arguments = json.dumps(block["input"], ensure_ascii=False, separators=(",", ":"))
    return {"type": "text", "text": f"[called {block['name']} (call {block['id']}) with "
                                    f"{arguments}]"}


def conversation(request: Any, turns: Transcript, protocol: str, names: ToolNames, *,
                 tools: bool = True) -> list[dict[str, Any]]:
    """The round's messages: the request, then every earlier round (see the module).
    ``tools=False`` (a request that declares none, which the API then refuses
    ``tool_use`` and ``tool_result`` blocks in) tells earlier calls and results in text."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": request_text(request)}]
    for turn in turns.turns:
        blocks = assistant_blocks(turn, protocol, names)
        if not tools:
            blocks = [_as_text(b) for b in blocks]
        _add(messages, "assistant", blocks)
        answered: set[str] = set()
        results: list[dict[str, Any]] = []
        for block in blocks:
            if block["type"] != "tool_use":
                continue
            answered.add(block["id"])
            result = turn.result_for(block["id"])
            results.append({"type": "tool_result", "tool_use_id": block["id"],
                            "content": turn.result_text(block["id"]),
                            **({} if result is not None and result.status == "success"
                               else {"is_error": True})})
        rest = [r for r in turn.results if r.call_id not in answered]
        if rest:
            results.append({"type": "text", "text": results_message(turn.round_index, rest)})
        _add(messages, "user", results)
    if messages[-1]["role"] == "assistant":  # a round that left no record: ask on
        _add(messages, "user", [{"type": "text", "text": "No action ran in that round. "
                                                         "Go on with the request."}])
    return messages


# -- auto_func -------------------------------------------------------------------------------
def output_messages(turns: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """``generate``'s ``(role, text)`` turns as messages (an empty earlier answer is
    named: the API refuses empty text)."""
    return [{"role": role, "content": text or "(an empty answer)"} for role, text in turns]
