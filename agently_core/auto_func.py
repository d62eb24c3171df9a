"""``@agent.auto_func``: a typed function with a docstring whose result a model produces.

Calling the function renders its docstring with the arguments (``{name}`` placeholders),
runs the agent's action loop on it first when the agent has visible actions (so the model
can use them; ``use_actions=False`` skips it), then asks the planner for the return value
with ``await planner.generate(context, request)`` (see
:class:`~agently_core.protocols.OutputPlanner`). The answer is validated against the
return type (pydantic) or a Schema-as-Prompt ``output``; a failed validation asks again
with the error, at most ``attempts`` times in all, and then raises
:class:`~agently_core.errors.AutoFuncError`.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import AutoFuncError, ConfigError
from .models import new_id
from .output_schema import OutputInvalid, OutputSpec, extract_json, output_spec

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: How much of a rejected answer goes back to the model with its error.
_FEEDBACK_CHARS = 2000


def make_auto_func(agent: Any, func: Callable[..., Any], *, output: Any = None,
                   ensure_keys: Iterable[str] = (), attempts: int = 3,
                   use_actions: bool | None = None,
                   localns: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """Wrap ``func`` (see the module's docstring). ``output`` (a type, a pydantic model
    or a Schema-as-Prompt dict) replaces the return annotation; ``ensure_keys`` lists
    paths that must be present (``resources[*].url``); ``localns`` resolves a string
    annotation that names a local class."""
    if not callable(func):
        raise TypeError(f"auto_func needs a function, got {func!r}")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise ValueError(f"attempts must be an integer >= 1, got {attempts!r}")
    signature = inspect.signature(func)
    name = getattr(func, "__name__", "auto_func")
    if output is None:
        output = _return_annotation(func, signature, localns)
        if output is None:
            raise TypeError(f"auto_func {name}: give the function a return annotation "
                            "(a type, a pydantic model or a Schema-as-Prompt dict) or "
                            "output=...")
    spec = output_spec(output, ensure_keys)
    doc = inspect.getdoc(func) or ""

    async def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return await _produce(agent, name, doc, dict(bound.arguments), spec, attempts,
                              use_actions)

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await call(args, kwargs)

        wrapper: Any = async_wrapper
    else:
        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            from ._sync import run_sync

            return run_sync(call, args, kwargs)

        wrapper = sync_wrapper
    wrapper.output_schema = spec.json_schema
    return wrapper


def render(doc: str, name: str, arguments: Mapping[str, Any]) -> str:
    """The instruction: the docstring with ``{argument}`` placeholders filled in (other
    braces stay as they are), or the call itself when there is no docstring."""
    if not doc:
        shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        return f"{name}({shown})"
    return _PLACEHOLDER.sub(
        lambda m: str(arguments[m.group(1)]) if m.group(1) in arguments else m.group(0), doc)


async def _produce(agent: Any, name: str, doc: str, arguments: dict[str, Any],
                   spec: OutputSpec, attempts: int, use_actions: bool | None) -> Any:
    from pydantic_core import to_jsonable_python

    planner = agent._get_planner()
    generate = getattr(planner, "generate", None)
    if not callable(generate):
        raise ConfigError(f"auto_func {name}: planner {type(planner).__name__} cannot produce "
                          "values (it has no generate(context, request)); use a model "
                          "planner or the scripted planner with outputs=[...]")
    instruction = render(doc, name, arguments)
    plain_arguments = to_jsonable_python(arguments, fallback=repr)
    history: list[dict[str, Any]] = []
    run_id = new_id("autofunc_")
    if use_actions if use_actions is not None else bool(agent.dispatcher.action_list()):
        history, run_id = await _use_actions(agent, name, instruction, plain_arguments)
    feedback: list[dict[str, Any]] = []
    for attempt in range(attempts):
        context = {"agent_name": agent.name, "run_id": run_id, "history": history,
                   "env_state": await agent._current_env_state(), "events": agent.events}
        request = {"instruction": instruction, "function": name, "input": plain_arguments,
                   "output_schema": spec.json_schema, "attempt": attempt,
                   "feedback": list(feedback)}
        answer = await generate(context, request)
        try:
            return spec.validate(_answer_value(answer))
        except (OutputInvalid, ValueError) as exc:
            feedback.append({"output": _shown(answer), "error": str(exc)})
    last = feedback[-1]["error"] if feedback else "no answer"
    raise AutoFuncError(f"auto_func {name}: the planner gave no valid result in {attempts} "
                        f"attempt(s); last error: {last}", attempts=feedback)


async def _use_actions(agent: Any, name: str, instruction: str,
                       arguments: Any) -> tuple[list[dict[str, Any]], str]:
    """Run the action loop on the instruction; its history goes to ``generate``."""
    from .run_history import history_of

    result = await agent.async_run({"instruction": instruction, "input": arguments})
    if result.stop_reason == "failed":
        raise AutoFuncError(f"auto_func {name}: the action loop failed: {result.error}")
    if result.stop_reason == "approval_required":
        raise AutoFuncError(f"auto_func {name}: a call waits for approval (execution "
                            f"{result.execution_id}); resume it with agent.last_execution."
                            "async_continue_with(...) and call the function again")
    return history_of(result), result.execution_id or new_id("autofunc_")


def _answer_value(answer: Any) -> Any:
    """The value in a ``generate`` answer: ``output`` as given, else the JSON in ``text``."""
    if not isinstance(answer, Mapping) or not ({"output", "text"} & set(answer)):
        raise TypeError("generate() must return a mapping with 'output' (the value) or "
                        f"'text' (the model's text), got {type(answer).__name__}")
    if "output" in answer:
        return answer["output"]
    text = answer["text"]
    if not isinstance(text, str):
        raise TypeError(f"generate() gave 'text' that is not a string: {type(text).__name__}")
    return extract_json(text)


def _shown(answer: Any) -> Any:
    """What an attempt answered, short enough to send back with its error."""
    value = answer.get("output", answer.get("text")) if isinstance(answer, Mapping) else answer
    if isinstance(value, str):
        return value[:_FEEDBACK_CHARS]
    from pydantic_core import to_json

    text = to_json(value, fallback=repr).decode()
    return value if len(text) <= _FEEDBACK_CHARS else text[:_FEEDBACK_CHARS]


def _return_annotation(func: Callable[..., Any], signature: inspect.Signature,
                       localns: Mapping[str, Any] | None = None) -> Any:
    """The return annotation, resolved (a Schema-as-Prompt dict written as the annotation
    is allowed, even under ``from __future__ import annotations``)."""
    annotation = signature.return_annotation
    if annotation is inspect.Signature.empty:
        return None
    if isinstance(annotation, str):
        from typing import get_type_hints

        namespace = dict(localns or {})
        try:
            return get_type_hints(func, localns=namespace).get("return")
        except Exception:
            try:  # what get_type_hints does, for a value that is not a type (a dict)
                return eval(annotation, getattr(func, "__globals__", {}), namespace)
            except Exception as exc:
                raise TypeError(f"cannot resolve the return annotation {annotation!r}: "
                                f"{exc}") from None
    return annotation


__all__ = ["make_auto_func", "render"]
