"""``openai_compatible``: a planner on Chat Completions (OpenAI and every compatible server).

Each round rebuilds the conversation from the run's history (stateless across rounds and
processes): the system prompt, the user's request, then every earlier round's assistant
message (replayed as the model said it) followed by one ``tool`` message per call, with
the call's id, holding the record as :func:`agently_core.planning.record_text` puts it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio

from agently_core.planning import (
    RoundEvents,
    ToolNames,
    Transcript,
    Turn,
    one_of,
    openai_chat_tools,
    optional_bool,
    output_system_prompt,
    output_turns,
    parse_plan,
    plan_schema,
    results_message,
)

from .base import OpenAIPlannerBase, arguments_json, unique_id, usage_of


class OpenAICompatiblePlanner(OpenAIPlannerBase):
    """Plans with ``client.chat.completions.create``.

    Options: the common ones (see :data:`agently_core.planning.COMMON_OPTIONS`) and
    ``structured_output`` (for the structured plan: ``json_schema``, the default, sends the
    plan's schema as ``response_format``; ``json_object`` asks for any JSON object;
    ``none`` relies on the instructions and tolerant parsing alone),
    ``parallel_tool_calls`` (sent when set) and ``stream_usage`` (default true: ask for
    the usage chunk in streams; turn off for servers that refuse ``stream_options``).
    """

    name = "openai_compatible"
    extra_options = {
        "structured_output": (one_of("json_schema", "json_object", "none"), "json_schema"),
        "parallel_tool_calls": (optional_bool, None),
        "stream_usage": (optional_bool, True),
    }

    async def _round(self, context: Mapping[str, Any], request: Mapping[str, Any],
                     events: RoundEvents, state: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        given = self.round_input(context, request)
        protocol, action_list, names = given.protocol, given.action_list, given.names
        messages: list[dict[str, Any]] = [{"role": "system", "content": given.prompt},
                                          {"role": "user", "content": given.user}]
        messages += replay(given.turns, protocol, names)
        body: dict[str, Any] = {"model": settings.model, "messages": messages}
        tools: list[dict[str, Any]] = []
        if protocol == "native_tool_calls":
            if action_list:
                tools = openai_chat_tools(action_list, names)
                body["tools"] = tools
                if settings.extra["parallel_tool_calls"] is not None:
                    body["parallel_tool_calls"] = settings.extra["parallel_tool_calls"]
        else:
            mode = settings.extra["structured_output"]
            if mode == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "action_plan", "schema": plan_schema(action_list), "strict": False}}
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object"}
        text, calls, model, usage, _ = await self._send(body, events, state, len(tools))
        return decision(text, calls, model or settings.model, usage, protocol, names)

    async def _generate(self, context: Mapping[str, Any], request: Mapping[str, Any],
                        events: RoundEvents, state: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        prompt = output_system_prompt(agent_name=context.get("agent_name"),
                                      env_state=context.get("env_state"),
                                      instructions=settings.instructions)
        messages = [{"role": "system", "content": prompt}]
        messages += [{"role": role, "content": text} for role, text in output_turns(
            context, request, max_result_chars=settings.max_result_chars,
            max_context_chars=settings.max_context_chars)]
        body: dict[str, Any] = {"model": settings.model, "messages": messages}
        schema = request.get("output_schema")
        mode = settings.extra["structured_output"]
        if isinstance(schema, Mapping) and schema.get("type") == "object" and mode != "none":
            body["response_format"] = (
                {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(schema),
                                                        "strict": False}}
                if mode == "json_schema" else {"type": "json_object"})
        text, _, model, usage, _ = await self._send(body, events, state, 0)
        return {"text": text or "", "model": model or settings.model, "usage": usage}

    async def _send(self, body: dict[str, Any], events: RoundEvents, state: dict[str, Any],
                    tools: int) -> tuple[Any, ...]:
        """One request with the common options; ``(text, calls, model, usage, finish)``."""
        settings = self.settings
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            # OpenAI itself wants max_completion_tokens (its reasoning models refuse
            # max_tokens); compatible servers know max_tokens.
            key = "max_tokens" if settings.base_url else "max_completion_tokens"
            body[key] = settings.max_tokens
        client = self.client()
        await events.request(messages=len(body["messages"]), tools=tools,
                             stream=settings.stream)
        if settings.stream:
            if settings.extra["stream_usage"]:
                body["stream_options"] = {"include_usage": True}
            answer = await self._streamed(client, body, events, state)
        else:
            answer = await self._whole(client, body)
        _, calls, model, usage, finish = answer
        await events.response(model=model, usage=usage, tool_calls=len(calls),
                              finish_reason=finish)
        return answer

    async def _whole(self, client: Any, body: dict[str, Any]) -> tuple[Any, ...]:
        completion = await client.chat.completions.create(**body, **self.request_options())
        choice = completion.choices[0] if completion.choices else None
        message = choice.message if choice is not None else None
        seen: set[str] = set()
        calls = [(unique_id(tc.id, seen), tc.function.name or "", tc.function.arguments or "")
                 for tc in (message.tool_calls or ()) if getattr(tc, "function", None)
                 ] if message is not None else []
        usage = completion.usage
        return (message.content if message is not None else None, calls, completion.model,
                usage_of(usage.prompt_tokens, usage.completion_tokens) if usage else None,
                choice.finish_reason if choice is not None else None)

    async def _streamed(self, client: Any, body: dict[str, Any], events: RoundEvents,
                        state: dict[str, Any]) -> tuple[Any, ...]:
        stream = await client.chat.completions.create(**body, stream=True,
                                                      **self.request_options())
        state["streaming"] = True
        text: list[str] = []
        slots: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        model = usage = finish = None
        live = events.active
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                if model is None:
                    model = chunk.model
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                if delta is not None:
                    if delta.content:
                        text.append(delta.content)
                        if live:
                            await events.delta(delta.content)
                    for piece in delta.tool_calls or ():
                        index = piece.index
                        if index is None:  # a server that numbers no call: a new id opens one
                            index = len(slots) if piece.id or not slots else max(slots)
                        slot = slots.get(index)
                        if slot is None:
                            slot = slots[index] = [None, "", []]
                        if piece.id:
                            slot[0] = piece.id
                        function = piece.function
                        if function is not None:
                            if function.name and function.name != slot[1]:
                                slot[1] += function.name
                            if function.arguments:
                                slot[2].append(function.arguments)
                if choice.finish_reason:
                    finish = choice.finish_reason
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()
        seen: set[str] = set()
        calls = [(unique_id(slot[0], seen), slot[1], "".join(slot[2]))
                 for _, slot in sorted(slots.items())]
        return ("".join(text) or None, calls, model,
                usage_of(usage.prompt_tokens, usage.completion_tokens) if usage else None,
                finish)


def decision(text: str | None, calls: list[tuple[str, str, str]], model: str,
             usage: dict[str, int] | None, protocol: str, names: ToolNames) -> dict[str, Any]:
    """The raw decision of one answer (``calls``: ``(id, tool name, arguments text)``)."""
    if not calls and not text:
        return {"tool_calls": [], "content": None, "model": model, "usage": usage,
                "model_message": None}
    if protocol == "structured_plan" and not calls:
        plan = parse_plan(text)
        return {"next_action": plan.get("next_action"),
                "action_calls": plan.get("action_calls") or [],
                "response": plan.get("response"), "model": model, "usage": usage,
                "model_message": {"role": "assistant", "content": text}}
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": arguments_json(arguments)}}
            for call_id, name, arguments in calls]
    return {
        "tool_calls": [{"id": call_id, "type": "function",
                        "function": {"name": names.action(name), "arguments": arguments}}
                       for call_id, name, arguments in calls],
        "content": text, "model": model, "usage": usage, "model_message": message,
    }


def _assistant(turn: Turn, protocol: str, names: ToolNames) -> dict[str, Any] | None:
    """The assistant message of an earlier round: the planner's own, or one rebuilt from
    the round's calls (history written by another planner)."""
    message = turn.model_message
    if isinstance(message, Mapping) and message.get("role") == "assistant" and (
            isinstance(message.get("tool_calls"), list) or "content" in message):
        found = dict(message)
    elif protocol == "structured_plan" and turn.calls:
        found = {"role": "assistant", "content": json.dumps({
            "next_action": "execute",
            "action_calls": [{"action_id": c.get("action"), "action_input": c.get("kwargs")}
                             for c in turn.calls]})}
    else:
        found = {"role": "assistant", "content": turn.response}
        if turn.calls:
            found["tool_calls"] = [
                {"id": c.get("id"), "type": "function",
                 "function": {"name": names.tool(str(c.get("action"))),
                              "arguments": json.dumps(c.get("kwargs") or {})}}
                for c in turn.calls]
    if not found.get("tool_calls"):
        found.pop("tool_calls", None)
        if not found.get("content"):
            return None  # an empty answer is not replayable; its record says what happened
    return found


def replay(turns: Transcript, protocol: str, names: ToolNames) -> list[dict[str, Any]]:
    """Earlier rounds as Chat Completions messages."""
    messages: list[dict[str, Any]] = []
    for turn in turns.turns:
        assistant = _assistant(turn, protocol, names)
        answered: set[str] = set()
        if assistant is not None:
            messages.append(assistant)
            for call in assistant.get("tool_calls") or ():
                call_id = call.get("id")
                answered.add(call_id)
                messages.append({"role": "tool", "tool_call_id": call_id,
                                 "content": turn.result_text(call_id)})
        rest = [r for r in turn.results if r.call_id not in answered]
        if rest:
            messages.append({"role": "user", "content": results_message(turn.round_index, rest)})
    return messages
