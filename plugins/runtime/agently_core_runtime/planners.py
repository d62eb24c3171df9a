"""The deterministic scripted planner, for tests and demos."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agently_core.models import ActionCall


class ScriptedPlanner:
    """Plays back a fixed script, one step per round.

    ``steps`` is a list (round ``i`` uses ``steps[i]``) or a callable ``(context, request)``
    used for every round. A step is a list of calls (dicts such as ``{"action": "add",
    "kwargs": {...}}``, ``(name, kwargs)`` pairs or :class:`ActionCall`), a full decision
    dict, a callable ``(context, request)`` returning either, or a string, which ends the
    loop as the response. After the last step the planner answers with ``response``.

    With ``protocol="native_tool_calls"`` (or ``planning_protocol=``, the option's name
    for model planners) the calls are emitted as a chat model's native tool calls, so both
    planning protocols can be exercised without a model.

    ``outputs`` scripts :meth:`generate` (what ``@agent.auto_func`` asks for): one item per
    call, in order (the last one repeated); an item is the value itself, a callable
    ``(context, request)`` returning the whole answer (``{"output": ...}`` or ``{"text":
    ...}``), or an exception instance, which is raised.
    """

    def __init__(self, steps: Sequence[Any] | Callable[..., Any] = (), *,
                 response: Any = "done", protocol: str | None = None,
                 outputs: Sequence[Any] | Callable[..., Any] = (),
                 planning_protocol: str | None = None) -> None:
        self.steps = steps if callable(steps) else list(steps)
        self.response = response
        self.protocol = protocol or planning_protocol
        self.outputs = outputs if callable(outputs) else list(outputs)
        self.generated = 0

    async def generate(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        """The next scripted output (see the class's docstring)."""
        index = self.generated
        self.generated += 1
        if callable(self.outputs):
            item: Any = self.outputs
        elif not self.outputs:
            raise RuntimeError("the scripted planner has no outputs to generate; "
                               "give it outputs=[...]")
        else:
            item = self.outputs[min(index, len(self.outputs) - 1)]
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            answer = item(context, request)
            return await answer if inspect.isawaitable(answer) else answer
        return {"output": item, "model": "scripted"}

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        index = int(context.get("round_index", 0))
        if callable(self.steps):
            step: Any = self.steps
        elif index < len(self.steps):
            step = self.steps[index]
        else:
            return {"next_action": "response", "response": self.response}
        if callable(step):
            step = step(context, request)
            if inspect.isawaitable(step):
                step = await step
        if isinstance(step, str):
            return {"next_action": "response", "response": step}
        if isinstance(step, (list, tuple)) and not _is_pair(step):
            calls = [_as_dict(item) for item in step]
        elif isinstance(step, (ActionCall, tuple)):
            calls = [_as_dict(step)]
        else:
            return step
        protocol = self.protocol or request.get("planning_protocol", "structured_plan")
        if protocol == "native_tool_calls":
            import json

            return {"tool_calls": [
                {"id": call.get("id") or f"tc_{index}_{n}", "type": "function",
                 "function": {"name": call["action"], "arguments": json.dumps(call["kwargs"])}}
                for n, call in enumerate(calls)
            ]}
        return {"next_action": "execute", "action_calls": [
            {"action_id": c["action"], "action_input": c["kwargs"], "purpose": c.get("purpose", ""),
             **({"id": c["id"]} if c.get("id") else {}),
             **({"policy": c["policy"]} if c.get("policy") else {})}
            for c in calls
        ]}


def _is_pair(step: Any) -> bool:
    return isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str)


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, ActionCall):
        return {"action": item.action, "kwargs": item.kwargs, "purpose": item.purpose,
                "id": item.id}
    if isinstance(item, tuple):
        return {"action": item[0], "kwargs": dict(item[1])}
    if isinstance(item, Mapping):
        name = item.get("action") or item.get("action_id") or item.get("name")
        kwargs = item.get("kwargs", item.get("action_input", item.get("arguments", {})))
        return {"action": name, "kwargs": kwargs, "purpose": item.get("purpose", ""),
                "id": item.get("id"), "policy": item.get("policy")}
    raise TypeError(f"a scripted call must be a dict, a (name, kwargs) pair or ActionCall, "
                    f"got {item!r}")
