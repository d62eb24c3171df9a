"""``openai_responses``: a planner on the Responses API (``client.responses.create``).

Stateless like ``openai_compatible``: every round sends the whole conversation as input
items (the request, then each earlier round's output items, replayed without their
server-side ids, each ``function_call`` followed by its ``function_call_output`` with the
same ``call_id``), with the system prompt as ``instructions``. Nothing depends on the
server keeping responses (``store`` is sent only when the option sets it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio

from agently_core.planning import (
    ModelError,
    RoundEvents,
    ToolNames,
    Transcript,
    Turn,
    failure_message,
    mask,
    one_of,
    openai_responses_tools,
    optional_bool,
    output_system_prompt,
    output_turns,
    plan_schema,
    results_message,
)

from .base import OpenAIPlannerBase, unique_id, usage_of
from .chat import decision


class OpenAIResponsesPlanner(OpenAIPlannerBase):
    """Plans with ``client.responses.create``.

    Options: the common ones and ``structured_output`` (``json_schema``, the default,
    sends the plan's schema as ``text.format``; ``none``: instructions and tolerant
    parsing only), ``parallel_tool_calls`` and ``store`` (sent when set).
    """

    name = "openai_responses"
    extra_options = {
        "structured_output": (one_of("json_schema", "none"), "json_schema"),
        "parallel_tool_calls": (optional_bool, None),
        "store": (optional_bool, None),
    }

    async def _round(self, context: Mapping[str, Any], request: Mapping[str, Any],
                     events: RoundEvents, state: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        given = self.round_input(context, request)
        protocol, action_list, names = given.protocol, given.action_list, given.names
        items: list[dict[str, Any]] = [{"role": "user", "content": given.user}]
        items += replay(given.turns, protocol, names)
        body: dict[str, Any] = {"model": settings.model, "instructions": given.prompt,
                                "input": items}
        tools: list[dict[str, Any]] = []
        if protocol == "native_tool_calls":
            if action_list:
                tools = openai_responses_tools(action_list, names)
                body["tools"] = tools
                if settings.extra["parallel_tool_calls"] is not None:
                    body["parallel_tool_calls"] = settings.extra["parallel_tool_calls"]
        elif settings.extra["structured_output"] == "json_schema":
            body["text"] = {"format": {"type": "json_schema", "name": "action_plan",
                                       "schema": plan_schema(action_list), "strict": False}}
        text, calls, model, usage, _ = await self._send(body, events, state, len(tools))
        raw = decision(text, calls, model or settings.model, usage, protocol, names)
        if raw.get("model_message") is not None:
            raw["model_message"] = output_items(text, calls)
        return raw

    async def _generate(self, context: Mapping[str, Any], request: Mapping[str, Any],
                        events: RoundEvents, state: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        prompt = output_system_prompt(agent_name=context.get("agent_name"),
                                      env_state=context.get("env_state"),
                                      instructions=settings.instructions)
        items = [{"role": role, "content": text} for role, text in output_turns(
            context, request, max_result_chars=settings.max_result_chars,
            max_context_chars=settings.max_context_chars)]
        body: dict[str, Any] = {"model": settings.model, "instructions": prompt, "input": items}
        schema = request.get("output_schema")
        if (isinstance(schema, Mapping) and schema.get("type") == "object"
                and settings.extra["structured_output"] == "json_schema"):
            body["text"] = {"format": {"type": "json_schema", "name": "output",
                                       "schema": dict(schema), "strict": False}}
        text, _, model, usage, _ = await self._send(body, events, state, 0)
        return {"text": text or "", "model": model or settings.model, "usage": usage}

    async def _send(self, body: dict[str, Any], events: RoundEvents, state: dict[str, Any],
                    tools: int) -> tuple[Any, ...]:
        """One request with the common options; ``(text, calls, model, usage, finish)``."""
        settings = self.settings
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            body["max_output_tokens"] = settings.max_tokens
        if settings.extra["store"] is not None:
            body["store"] = settings.extra["store"]
        client = self.client()
        await events.request(messages=len(body["input"]), tools=tools, stream=settings.stream)
        if settings.stream:
            response, assembled = await self._streamed(client, body, events, state)
        else:
            response = await client.responses.create(**body, **self.request_options())
            assembled = []
        answer = self._read(response, assembled)
        _, calls, model, usage, finish = answer
        await events.response(model=model, usage=usage, tool_calls=len(calls),
                              finish_reason=finish)
        return answer

    def _read(self, response: Any, assembled: list[Any]) -> tuple[Any, ...]:
        """Text, calls ``(call_id, name, arguments)``, model, usage and status of a
        finished response (its output, or the items assembled from the stream when the
        server left the final output empty)."""
        if getattr(response, "status", None) == "failed":
            raise self._failed(response)
        text: list[str] = []
        calls: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for item in response.output or assembled:
            kind = getattr(item, "type", None)
            if kind == "message":
                for part in item.content or ():
                    if getattr(part, "type", None) == "output_text" and part.text:
                        text.append(part.text)
            elif kind == "function_call":
                calls.append((unique_id(item.call_id, seen), item.name or "",
                              item.arguments or ""))
        usage = response.usage
        finish = getattr(response, "status", None)
        details = getattr(response, "incomplete_details", None)
        if finish == "incomplete" and details is not None and getattr(details, "reason", None):
            finish = f"incomplete: {details.reason}"
        return ("".join(text) or None, calls, response.model,
                usage_of(usage.input_tokens, usage.output_tokens) if usage else None, finish)

    def _failed(self, response: Any) -> ModelError:
        error = getattr(response, "error", None)
        detail = f"{getattr(error, 'code', '')}: {getattr(error, 'message', '')}".strip(": ")
        message = failure_message(self.settings, kind="stream", base_url=self.base_url,
                                  detail=detail or "the response failed")
        return ModelError(mask(message, self._key), planner=self.name)

    async def _streamed(self, client: Any, body: dict[str, Any], events: RoundEvents,
                        state: dict[str, Any]) -> tuple[Any, list[Any]]:
        """Run the stream: text deltas become ``model.delta`` events, output items are
        assembled from their deltas. Returns the final response and the assembled items."""
        stream = await client.responses.create(**body, stream=True, **self.request_options())
        state["streaming"] = True
        live = events.active
        final = None
        items: dict[int, dict[str, Any]] = {}  # output_index -> assembled item
        try:
            async for event in stream:
                kind = event.type
                if kind == "response.output_text.delta":
                    item = items.setdefault(event.output_index, {"type": "message", "text": []})
                    item.setdefault("text", []).append(event.delta)
                    if live:
                        await events.delta(event.delta)
                elif kind == "response.function_call_arguments.delta":
                    item = items.setdefault(event.output_index, {"type": "function_call",
                                                                 "arguments": []})
                    item.setdefault("arguments", []).append(event.delta)
                elif kind in ("response.output_item.added", "response.output_item.done"):
                    done = event.item
                    if getattr(done, "type", None) == "function_call":
                        item = items.setdefault(event.output_index, {"arguments": []})
                        item.update(type="function_call", call_id=done.call_id, name=done.name)
                        if kind == "response.output_item.done" and done.arguments is not None:
                            item["arguments"] = [done.arguments]
                elif kind in ("response.completed", "response.incomplete", "response.failed"):
                    final = event.response
                elif kind == "error":
                    detail = f"{getattr(event, 'code', '') or ''}: {getattr(event, 'message', '')}"
                    raise ModelError(mask(failure_message(
                        self.settings, kind="stream", base_url=self.base_url,
                        detail=detail.strip(": ")), self._key), planner=self.name)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()
        if final is None:
            raise ModelError(failure_message(
                self.settings, kind="stream", base_url=self.base_url,
                detail="the stream ended before response.completed"), planner=self.name)
        return final, [_Item(items[i]) for i in sorted(items)]


class _Item:
    """An output item assembled from stream deltas (what ``_read`` reads)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.type = data.get("type")
        self.call_id = data.get("call_id")
        self.name = data.get("name")
        self.arguments = "".join(data.get("arguments") or ())
        self.content = [_Text("".join(data.get("text") or ()))]


class _Text:
    type = "output_text"

    def __init__(self, text: str) -> None:
        self.text = text


def output_items(text: str | None, calls: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """An answer as input items to replay: the text as an assistant message, each call as
    a ``function_call`` (arguments kept valid JSON; see
    :func:`agently_core_openai.base.arguments_json`)."""
    from .base import arguments_json

    items: list[dict[str, Any]] = []
    if text:
        items.append({"role": "assistant", "content": text})
    items += [{"type": "function_call", "call_id": call_id, "name": name,
               "arguments": arguments_json(arguments)} for call_id, name, arguments in calls]
    return items


def _output(turn: Turn, protocol: str, names: ToolNames) -> list[dict[str, Any]]:
    """An earlier round's output items: the planner's own, or rebuilt from its calls."""
    message = turn.model_message
    if isinstance(message, list) and all(isinstance(i, Mapping) for i in message):
        return [{k: v for k, v in item.items() if k not in ("id", "status")} for item in message]
    if protocol == "structured_plan" and turn.calls:
        return [{"role": "assistant", "content": json.dumps({
            "next_action": "execute",
            "action_calls": [{"action_id": c.get("action"), "action_input": c.get("kwargs")}
                             for c in turn.calls]})}]
    items: list[dict[str, Any]] = []
    if turn.response:
        items.append({"role": "assistant", "content": str(turn.response)})
    items += [{"type": "function_call", "call_id": c.get("id"),
               "name": names.tool(str(c.get("action"))),
               "arguments": json.dumps(c.get("kwargs") or {})} for c in turn.calls]
    return items


def replay(turns: Transcript, protocol: str, names: ToolNames) -> list[dict[str, Any]]:
    """Earlier rounds as Responses input items."""
    items: list[dict[str, Any]] = []
    for turn in turns.turns:
        answered: set[str] = set()
        for item in _output(turn, protocol, names):
            items.append(item)
            if item.get("type") == "function_call":
                call_id = item.get("call_id")
                answered.add(call_id)
                items.append({"type": "function_call_output", "call_id": call_id,
                              "output": turn.result_text(call_id)})
        rest = [r for r in turn.results if r.call_id not in answered]
        if rest:
            items.append({"role": "user", "content": results_message(turn.round_index, rest)})
    return items
