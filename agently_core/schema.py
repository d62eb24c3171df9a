"""Derive an action's JSON schema and argument validator from a Python function.

Types, defaults and required parameters come from the signature; the summary and
per-parameter descriptions come from the docstring (Google, Sphinx or NumPy style).
Validation uses a pydantic model built once per function.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

#: Parameter names that the dispatcher fills in and a model never sees.
INJECTED_PARAMETERS = frozenset({"action_context"})

# Pattern strings, compiled on first use by re's own cache (keeps import cheap).
_SECTION = (
    r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Returns?|Yields?|Raises|Examples?|"
    r"Notes?|See Also|Attributes)\s*:?\s*$"
)
_GOOGLE_PARAM = r"^\s*\**(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$"
_SPHINX_PARAM = r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$"
_NUMPY_PARAM = r"^\s*(\w+)\s*(?::\s*(.*))?$"


@dataclass(frozen=True)
class ParsedDocstring:
    summary: str
    params: dict[str, str]


def parse_docstring(doc: str | None) -> ParsedDocstring:
    """Split a docstring into its description and per-parameter descriptions."""
    if not doc:
        return ParsedDocstring("", {})
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None  # None (summary) | params | numpy | sphinx | other
    current: str | None = None
    param_indent: int | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        heading = re.match(_SECTION, line)
        sphinx = re.match(_SPHINX_PARAM, line)
        if sphinx:
            current, section = sphinx.group(1), "sphinx"
            params[current] = sphinx.group(2).strip()
        elif stripped.startswith(":") and section == "sphinx":
            current = None  # :type x:, :returns: and friends
        elif heading:
            is_params = heading.group(1).lower() in _PARAM_SECTIONS
            section, current, param_indent = ("params" if is_params else "other"), None, None
            if index + 1 < len(lines) and set(lines[index + 1].strip()) == {"-"}:
                index += 1  # NumPy underline
                section = "numpy" if is_params else "other"
        elif not stripped:
            pass
        elif section == "params":
            match = re.match(_GOOGLE_PARAM, line)
            if match and (param_indent is None or indent <= param_indent):
                current, param_indent = match.group(1), indent
                params[current] = match.group(3).strip()
            elif current:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "numpy":
            match = re.match(_NUMPY_PARAM, line)
            if indent == 0 and match:
                current = match.group(1)
                params[current] = ""
            elif current:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "sphinx" and current:
            params[current] = f"{params[current]} {stripped}".strip()
        if section is None and not sphinx:
            summary.append(line)
        index += 1
    return ParsedDocstring("\n".join(summary).strip(), params)


_PARAM_SECTIONS = frozenset({"args", "arguments", "parameters", "params", "keyword args"})


@dataclass(frozen=True)
class FunctionSchema:
    """What :func:`function_schema` derives from one function."""

    name: str
    description: str
    input_schema: dict[str, Any]
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    is_async: bool
    injects_context: bool


class ArgumentsError(ValueError):
    """Arguments did not match an action's schema; the message lists every problem."""


def function_schema(fn: Callable[..., Any], *, name: str | None = None,
                    description: str | None = None) -> FunctionSchema:
    """Build the schema and validator for ``fn``."""
    from pydantic import ConfigDict, Field, ValidationError, create_model

    target = inspect.unwrap(fn)
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        hinted: Any = type(target).__call__  # a callable object: its __call__ has the types
        default_name = type(target).__name__
    else:
        hinted, default_name = target, getattr(target, "__name__", type(target).__name__)
    signature = inspect.signature(target)
    hints = _type_hints(hinted, signature)
    doc = parse_docstring(inspect.getdoc(target))
    fields: dict[str, Any] = {}
    accepts_extra = False
    injects_context = False
    for param in signature.parameters.values():
        if param.name in INJECTED_PARAMETERS:
            injects_context = True
            continue
        if param.kind is param.VAR_KEYWORD:
            accepts_extra = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(
                f"{default_name}: positional-only parameter {param.name!r} cannot be "
                "passed by keyword; actions take keyword arguments"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            annotation,
            Field(default, description=doc.params.get(param.name) or None),
        )
    action_name = name or default_name
    model = create_model(  # type: ignore[call-overload]
        f"{action_name}_kwargs",
        __config__=ConfigDict(extra="allow" if accepts_extra else "forbid",
                              arbitrary_types_allowed=True),
        **fields,
    )
    schema = _clean(model.model_json_schema())
    if accepts_extra:
        schema["additionalProperties"] = True
    else:
        schema["additionalProperties"] = False
    validator = model.__pydantic_validator__
    field_names = tuple(fields)

    def validate(kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            instance = validator.validate_python(kwargs)
        except ValidationError as exc:
            raise ArgumentsError(_explain(exc)) from None
        values = {key: getattr(instance, key) for key in field_names}
        if accepts_extra and instance.__pydantic_extra__:
            values.update(instance.__pydantic_extra__)
        return values

    return FunctionSchema(
        name=action_name,
        description=description if description is not None else doc.summary,
        input_schema=schema,
        validate=validate,
        is_async=inspect.iscoroutinefunction(target),
        injects_context=injects_context,
    )


def _type_hints(fn: Any, signature: inspect.Signature) -> dict[str, Any]:
    """Resolve annotations one parameter at a time, so one unresolvable annotation costs
    only that parameter its type check, not every parameter."""
    try:
        return get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    namespace = getattr(fn, "__globals__", {})
    hints: dict[str, Any] = {}
    for param in signature.parameters.values():
        annotation = param.annotation
        if annotation is param.empty:
            continue
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)  # what get_type_hints does
            except Exception:
                continue
        hints[param.name] = annotation
    return hints


_LITERAL_KEYS = frozenset({"default", "const", "enum", "examples"})


def _clean(schema: Any) -> Any:
    """Drop pydantic's generated titles from schema nodes; literal values stay untouched."""
    if isinstance(schema, dict):
        return {
            key: value if key in _LITERAL_KEYS else _clean(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_clean(item) for item in schema]
    return schema


def _explain(exc: Any) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        if error["type"] == "missing":
            problems.append(f"missing required argument {where!r}")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unexpected argument {where!r}")
        else:
            problems.append(f"{where}: {error['msg']} (got {error.get('input')!r:.80})")
    return "; ".join(problems)


def schema_validator(schema: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A validator for actions that only have a JSON schema (MCP tools, plugin actions),
    using the ``jsonschema`` library (imported on first use)."""
    import jsonschema

    checker = jsonschema.validators.validator_for(schema)(schema)

    def validate(kwargs: dict[str, Any]) -> dict[str, Any]:
        problems = [
            f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
            for e in checker.iter_errors(kwargs)
        ]
        if problems:
            raise ArgumentsError("; ".join(sorted(problems)))
        return kwargs

    return validate
