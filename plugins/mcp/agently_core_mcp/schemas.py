"""What agently-core accepts of a server's tool definitions, and how it checks arguments
and structured results against a server's JSON schemas.

Limits (``use_mcp`` options, per tool): the description (``max_description_bytes``), the
input and output schemas' serialised size (``max_schema_bytes``) and their nesting depth
(``max_schema_depth``). They are checked before anything walks a schema (the depth without
recursion), so no server schema can exhaust the stack or the memory of the host.

Regexes: a server's ``pattern`` and ``patternProperties`` are **not** evaluated here.
Python's ``re`` backtracks and holds the GIL, so a pattern such as ``^(a+)+$`` would freeze
the whole process; the server checks its own patterns when it gets the call. Everything
else of the schema is checked (types, required, enums, ranges, lengths...); where
``additionalProperties`` or ``unevaluatedProperties`` depend on ``patternProperties``
they are left to the server too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from agently_core.schema import ArgumentsError

DEFAULT_MAX_DESCRIPTION_BYTES = 16 * 1024
DEFAULT_MAX_SCHEMA_BYTES = 256 * 1024
DEFAULT_MAX_SCHEMA_DEPTH = 64
#: Tool names longer than this are refused (MCP asks for at most 128 characters).
MAX_NAME_CHARS = 1024


class ToolRefused(ValueError):
    """A tool's definition is over a limit (the message names tool, limit and option)."""


def depth(value: Any, limit: int) -> int:
    """The nesting depth of a JSON value (a scalar is 0), counted without recursion and
    given up past ``limit`` (then ``limit + 1``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level) for child in children)
    return deepest


def check_tool(tool: Any, *, max_description_bytes: int, max_schema_bytes: int,
               max_schema_depth: int) -> None:
    """Raise :class:`ToolRefused` when ``tool`` is over a limit."""
    name = str(tool.name)
    if len(name) > MAX_NAME_CHARS:
        raise ToolRefused(f"a tool name of {len(name)} characters is over {MAX_NAME_CHARS}")
    for field in ("description", "title"):
        text = getattr(tool, field, None)
        if isinstance(text, str) and len(text.encode(errors="replace")) > max_description_bytes:
            raise ToolRefused(f"its {field} is over {max_description_bytes} bytes "
                              "(max_description_bytes)")
    for field in ("input_schema", "output_schema"):
        schema = getattr(tool, field, None)
        if schema is None:
            continue
        found = depth(schema, max_schema_depth)
        if found > max_schema_depth:
            raise ToolRefused(f"its {field.replace('_', ' ')} is nested more than "
                              f"{max_schema_depth} levels (max_schema_depth)")
        size = len(json.dumps(schema, ensure_ascii=False, default=repr).encode())
        if size > max_schema_bytes:
            raise ToolRefused(f"its {field.replace('_', ' ')} is {size} bytes, over "
                              f"{max_schema_bytes} (max_schema_bytes)")


# -- validation without the server's regexes -------------------------------------------------
def _uses(schema: Any, keyword: str) -> bool:
    """Does ``keyword`` appear as a key anywhere in ``schema`` (depth already bounded)?"""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if keyword in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def regex_free_checker(schema: Mapping[str, Any]) -> Any | None:
    """A ``jsonschema`` validator for ``schema`` that evaluates none of its regexes, or
    None when ``schema`` is not valid JSON Schema (the server still validates)."""
    import jsonschema
    from referencing import Registry

    base = jsonschema.validators.validator_for(schema)
    try:  # without format checks: they would compile the server's patterns here
        base.check_schema(schema, format_checker=None)
    except Exception:
        return None
    keywords = dict(base.VALIDATORS)

    def skip(validator: Any, value: Any, instance: Any, schema: Any) -> None:
        return None

    def additional(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        if "patternProperties" in schema:
            return None  # which properties are additional depends on the patterns
        return keywords["additionalProperties"](validator, value, instance, schema)

    replaced: dict[str, Callable[..., Any]] = {"pattern": skip, "patternProperties": skip}
    if "additionalProperties" in keywords:
        replaced["additionalProperties"] = additional
    if "unevaluatedProperties" in keywords and _uses(schema, "patternProperties"):
        replaced["unevaluatedProperties"] = skip
    checker = jsonschema.validators.extend(base, replaced)
    # an explicit empty registry: $refs resolve within the schema, never over the network
    return checker(schema, registry=Registry())


def arguments_validator(schema: Mapping[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """How the dispatcher checks a call's arguments against an MCP tool's input schema
    (errors worded like agently-core's ``schema_validator``)."""
    checker = regex_free_checker(schema)
    if checker is None:
        return _accept

    def validate(kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            problems = [f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}"
                        for e in checker.iter_errors(kwargs)]
        except RecursionError:
            raise ArgumentsError("the arguments are nested too deeply to check") from None
        except Exception:  # an unresolvable $ref and the like: the server decides
            return kwargs
        if problems:
            raise ArgumentsError("; ".join(sorted(problems)))
        return kwargs

    return validate


def _accept(kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs


_OUTPUT_CHECKERS: dict[int, tuple[Any, Any]] = {}


def output_problem(schema: Mapping[str, Any], structured: Any, present: bool) -> str | None:
    """What is wrong with a tool's structured result under its output schema, or None
    (the check the SDK makes, without the server's regexes)."""
    if not present:
        return "the tool has an output schema but returned no structured content"
    entry = _OUTPUT_CHECKERS.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_OUTPUT_CHECKERS) > 512:
            _OUTPUT_CHECKERS.clear()
        entry = _OUTPUT_CHECKERS[id(schema)] = (schema, regex_free_checker(schema))
    checker = entry[1]
    if checker is None:
        return None
    import jsonschema

    try:
        error = jsonschema.exceptions.best_match(checker.iter_errors(structured))
    except Exception:
        return None
    return None if error is None else str(error.message)
