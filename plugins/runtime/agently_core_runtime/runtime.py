"""The ``agently`` ActionRuntime: both planning protocols, one normalised decision.

A planner may answer with a structured JSON plan or with a chat model's native tool
calls; either way the flow receives an :class:`ActionDecision` whose calls are marked as
coming from the model, so they may only narrow policy and only reach visible actions.
What the model request cost (``usage``), the model's name (``model``) and the planner's
own message (``model_message``, replayed in later rounds) are kept from a mapping answer.

An answer with neither calls nor a response (no tool calls and no text; a plan with no
calls and no response) is an ``execute`` decision without calls whose ``diagnostics``
carry ``action_runtime.native_tool_calls.empty`` (or ``action_runtime.structured_plan.
empty``): the flow records it as a ``skipped`` call and asks again in the next round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from agently_core.models import ActionCall, ActionDecision, new_id

PROTOCOLS = ("structured_plan", "native_tool_calls")
_NAME_KEYS = ("action_id", "action", "name", "tool_name")
_KWARGS_KEYS = ("action_input", "kwargs", "arguments", "input", "args")
_CALL_LIST_KEYS = ("action_calls", "execution_commands", "calls")


class AgentlyActionRuntime:
    """Asks a planner for one round and normalises the answer."""

    name = "agently"
    planning_protocols = PROTOCOLS

    async def plan(self, planner: Any, context: Mapping[str, Any],
                   request: Mapping[str, Any]) -> ActionDecision:
        protocol = request.get("planning_protocol") or "structured_plan"
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown planning protocol {protocol!r}; use one of {PROTOCOLS}")
        raw = await planner.plan(context, request)
        return self.normalize(raw, protocol=protocol, round_index=context.get("round_index"))

    def normalize(self, raw: Any, *, protocol: str = "structured_plan",
                  round_index: int | None = None) -> ActionDecision:
        """Turn whatever a planner returned into a decision. Never raises for bad input:
        malformed calls are listed in ``decision.invalid``."""
        if isinstance(raw, ActionDecision):
            return raw
        decision = self._normalize(raw, protocol, round_index)
        if (decision.next_action == "response" and not decision.invalid
                and _empty(decision.response)):
            return decision.model_copy(update={
                "next_action": "execute", "response": None,
                "diagnostics": [*decision.diagnostics, _empty_answer(decision.protocol)]})
        return decision

    def _normalize(self, raw: Any, protocol: str, round_index: int | None) -> ActionDecision:
        if isinstance(raw, str):
            text = raw.strip()
            if not text.startswith(("{", "[")):  # a plain answer, even "42", stays a string
                return ActionDecision(next_action="response", response=raw, protocol=protocol)
            try:
                raw = json.loads(text)
            except ValueError:
                return ActionDecision(next_action="response", response=raw, protocol=protocol)
        if raw is None:
            return ActionDecision(next_action="response", protocol=protocol)
        if isinstance(raw, ActionCall):
            raw = [raw]
        if isinstance(raw, list):
            items, response, explicit = raw, None, None
        elif isinstance(raw, Mapping):
            extras = _extras(raw)
            if extras:
                decision = self._normalize({k: v for k, v in raw.items() if k not in extras},
                                           protocol, round_index)
                return decision.model_copy(update=extras)
            if "tool_calls" in raw or "function" in raw:
                protocol = "native_tool_calls"
                items = raw.get("tool_calls") or ([raw] if "function" in raw else [])
                response = raw.get("content")
                explicit = None
            else:
                key = next((k for k in _CALL_LIST_KEYS if k in raw), None)
                if key is not None:
                    items = raw.get(key) or []
                elif any(k in raw for k in _NAME_KEYS):
                    items = [raw]
                else:
                    items = []
                response = raw.get("response", raw.get("final_answer", raw.get("content")))
                explicit = raw.get("next_action")
        else:
            return ActionDecision(next_action="response", response=raw, protocol=protocol)
        if explicit is not None and explicit not in ("execute", "response"):
            return ActionDecision(
                next_action="response", protocol=protocol, response=response,
                invalid=[{"call_id": new_id("call_"), "action": None,
                          "error": f"next_action must be 'execute' or 'response', got {explicit!r}"}],
            )
        if explicit == "response":
            return ActionDecision(next_action="response", response=response, protocol=protocol)
        if not isinstance(items, list):
            items = [items]
        calls: list[ActionCall] = []
        invalid: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            call, problem = _to_call(item, round_index)
            if call is not None:
                calls.append(call)
            else:
                invalid.append({**problem, "index": index})
        if not calls and not invalid:
            return ActionDecision(next_action="response", response=response, protocol=protocol)
        return ActionDecision(next_action="execute", calls=calls, response=response,
                              protocol=protocol, invalid=invalid)


def _extras(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``usage``, ``model`` and ``model_message`` of a mapping answer, when well formed."""
    extras: dict[str, Any] = {}
    usage = raw.get("usage")
    if isinstance(usage, Mapping):
        extras["usage"] = {str(k): v for k, v in usage.items()}
    model = raw.get("model")
    if isinstance(model, str) and model:
        extras["model"] = model
    if raw.get("model_message") is not None:
        extras["model_message"] = raw["model_message"]
    return extras


def _empty(response: Any) -> bool:
    return response is None or (isinstance(response, str) and not response.strip())


_EMPTY_MESSAGES = {
    "native_tool_calls": "the answer had neither tool calls nor text, so nothing ran; "
                         "call a tool or give the final answer",
    "structured_plan": "the plan named no action and gave no response, so nothing ran; "
                       "call an action or give the final response",
}


def _empty_answer(protocol: str) -> dict[str, Any]:
    return {"code": f"action_runtime.{protocol}.empty",
            "message": _EMPTY_MESSAGES.get(protocol, _EMPTY_MESSAGES["structured_plan"])}


def _to_call(item: Any, round_index: int | None) -> tuple[ActionCall | None, dict[str, Any]]:
    if isinstance(item, ActionCall):
        return item.model_copy(update={"source": "model", "round_index": round_index}), {}
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
        item = {"action": item[0], "kwargs": item[1]}
    if not isinstance(item, Mapping):
        return None, {"call_id": new_id("call_"), "action": None,
                      "error": f"a call must be an object, got {type(item).__name__}"}
    call_id = str(item.get("id") or item.get("call_id") or new_id("call_"))
    function = item.get("function")
    if isinstance(function, Mapping):  # native tool call
        name, kwargs = function.get("name"), function.get("arguments")
    else:
        name = next((item[k] for k in _NAME_KEYS if k in item), None)
        kwargs = next((item[k] for k in _KWARGS_KEYS if k in item), None)
    if not isinstance(name, str) or not name:
        return None, {"call_id": call_id, "action": None, "error": "the call names no action"}
    if kwargs is None or kwargs == "":
        kwargs = {}
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except ValueError as exc:
            return None, {"call_id": call_id, "action": name,
                          "error": f"arguments are not valid JSON: {exc}"}
    if not isinstance(kwargs, Mapping):
        return None, {"call_id": call_id, "action": name,
                      "error": f"arguments must be an object, got {type(kwargs).__name__}"}
    policy = item.get("policy") or {}
    try:
        call = ActionCall(
            id=call_id, action=name, kwargs=dict(kwargs), source="model", round_index=round_index,
            purpose=str(item.get("purpose") or ""),
            todo_suggestion=str(item.get("todo_suggestion") or ""),
            policy=dict(policy) if isinstance(policy, Mapping) else {},
        )
    except ValidationError as exc:
        return None, {"call_id": call_id, "action": name, "error": f"invalid call: {exc}"}
    return call, {}
