"""Output schemas for model-produced values (``@agent.auto_func``): a Python type or
pydantic model, or a Schema-as-Prompt dict, turned into a JSON schema to ask for and a
validator for what comes back.

Schema-as-Prompt: a dict whose leaves are ``(type, "description")`` or ``(type,
"description", True)`` tuples (``True``: the leaf is required), nested dicts for objects
and one-item lists for arrays::

    {"title": (str, "a short title", True),
     "resources": [{"url": (str, "where it is", True), "note": (str, "why it matters")}]}

``type`` is a Python type (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``, or any
type pydantic knows) or a type name (``"str"``, ``"integer"``, ``"number"``, ``"boolean"``,
...). Ensure keys name values that must be present and not null, with ``[*]`` for every
item of an array and ``[n]`` for one (``resources[*].url``); the required leaves are
ensure keys of their own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Where a value that is not a JSON object sits in the object schema a model is asked for.
WRAP_KEY = "result"

_TYPE_NAMES: dict[str, Any] = {
    "str": str, "string": str, "text": str, "int": int, "integer": int, "float": float,
    "number": float, "bool": bool, "boolean": bool, "list": list, "array": list,
    "dict": dict, "object": dict, "any": Any, "none": type(None), "null": type(None),
}
_PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(\*|\d+)\]")


class OutputInvalid(ValueError):
    """A value does not match its output schema; the message says where and why."""


def is_schema_as_prompt(spec: Any) -> bool:
    """Is ``spec`` a Schema-as-Prompt dict (rather than a Python type)?"""
    return isinstance(spec, dict)


def parse_path(path: str) -> list[str | int]:
    """``"resources[*].url"`` -> ``["resources", "*", "url"]``; ``[2]`` -> ``2``."""
    tokens: list[str | int] = []
    position = 0
    path = path.strip()
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if match is None or match.end() == position:
            raise ValueError(f"ensure key {path!r} is not a path such as a.b[*].c")
        key, index = match.groups()
        if key is not None:
            tokens.append(key.strip())
        else:
            tokens.append("*" if index == "*" else int(index))
        position = match.end()
    if not tokens or not isinstance(tokens[0], str):
        raise ValueError(f"ensure key {path!r} must start with a key name")
    return tokens


def path_text(tokens: Iterable[str | int]) -> str:
    text = ""
    for token in tokens:
        if isinstance(token, int) or token == "*":
            text += f"[{token}]"
        else:
            text += f".{token}" if text else token
    return text


def missing_paths(value: Any, path: list[str | int]) -> list[str]:
    """The concrete paths under ``path`` that are absent or null in ``value``."""
    found: list[str] = []

    def walk(node: Any, rest: list[str | int], done: list[str | int]) -> None:
        if not rest:
            if node is None:
                found.append(path_text(done))
            return
        token, tail = rest[0], rest[1:]
        if token == "*":
            if not isinstance(node, list):
                found.append(path_text(done) + " (not a list)")
                return
            for index, item in enumerate(node):
                walk(item, tail, [*done, index])
        elif isinstance(token, int):
            if not isinstance(node, list) or token >= len(node):
                found.append(path_text([*done, token]))
            else:
                walk(node[token], tail, [*done, token])
        elif not isinstance(node, Mapping) or node.get(token) is None:
            found.append(path_text([*done, token]))
        else:
            walk(node[token], tail, [*done, token])

    walk(value, path, [])
    return found


@dataclass(frozen=True)
class OutputSpec:
    """What to ask a model for and how to check its answer.

    ``json_schema`` is always an object schema (a value that is not an object is asked
    for under ``"result"``: ``wrapped``); :meth:`validate` takes the parsed answer and
    returns the value (typed for a Python type, a plain dict for Schema-as-Prompt) or
    raises :class:`OutputInvalid`."""

    json_schema: dict[str, Any]
    wrapped: bool
    adapter: Any
    ensure: tuple[tuple[str | int, ...], ...]
    plain: bool

    def unwrap(self, value: Any) -> Any:
        if self.wrapped and isinstance(value, Mapping) and set(value) == {WRAP_KEY}:
            return value[WRAP_KEY]
        return value

    def validate(self, value: Any) -> Any:
        from pydantic import ValidationError

        value = self.unwrap(value)
        try:
            typed = self.adapter.validate_python(value)
        except ValidationError as exc:
            raise OutputInvalid(_explain(exc)) from None
        data = self.adapter.dump_python(typed, mode="json", exclude_unset=self.plain)
        missing = [m for path in self.ensure for m in missing_paths(data, list(path))]
        if missing:
            raise OutputInvalid(f"missing required value(s): {', '.join(missing)}")
        return data if self.plain else typed


def output_spec(spec: Any, ensure_keys: Iterable[str] = ()) -> OutputSpec:
    """Build an :class:`OutputSpec` from a Python type / pydantic model or a
    Schema-as-Prompt dict, plus ensure keys. Raises TypeError for a schema it cannot
    read and ValueError for a malformed ensure key."""
    from pydantic import TypeAdapter

    from .schema import _clean

    ensure = [tuple(parse_path(key)) for key in ensure_keys]
    plain = is_schema_as_prompt(spec)
    if plain:
        required: list[tuple[str | int, ...]] = []
        annotation = _sap_type(spec, (), required, {_schema_path(p) for p in ensure})
        ensure = [*ensure, *(p for p in required if p not in ensure)]
    else:
        annotation = spec
    try:
        adapter = TypeAdapter(annotation)
        schema = _clean(adapter.json_schema())
    except Exception as exc:
        raise TypeError(f"cannot build an output schema from {spec!r}: {exc}") from None
    wrapped = schema.get("type") != "object"
    if wrapped:
        defs = schema.pop("$defs", None)
        schema = {"type": "object", "properties": {WRAP_KEY: schema}, "required": [WRAP_KEY],
                  "additionalProperties": False, **({"$defs": defs} if defs else {})}
    return OutputSpec(json_schema=schema, wrapped=wrapped, adapter=adapter,
                      ensure=tuple(ensure), plain=plain)


def _schema_path(path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """An ensure path as a schema position (every index becomes ``*``)."""
    return tuple("*" if isinstance(p, int) else p for p in path)


def _leaf_type(kind: Any) -> Any:
    if isinstance(kind, str):
        found = _TYPE_NAMES.get(kind.strip().lower())
        if found is None:
            raise TypeError(f"unknown type name {kind!r} in an output schema; use one of "
                            f"{', '.join(sorted(_TYPE_NAMES))} or a Python type")
        return found
    return kind


def _sap_type(node: Any, path: tuple[str | int, ...], required: list[tuple[str | int, ...]],
              ensured: set[tuple[str | int, ...]]) -> Any:
    """The pydantic type of a Schema-as-Prompt node; collects its required leaves."""
    from pydantic import ConfigDict, Field, create_model

    if isinstance(node, dict):
        fields: dict[str, Any] = {}
        for key, child in node.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"output schema keys must be names, got {key!r} at "
                                f"{path_text(path) or 'the top'}")
            child_path = (*path, key)
            before = len(required)
            annotation = _sap_type(child, child_path, required, ensured)
            description = child[1] if isinstance(child, tuple) and len(child) > 1 else None
            needed = (len(required) > before or _leaf_required(child)
                      or any(p[:len(child_path)] == child_path for p in ensured))
            fields[key] = ((annotation, Field(..., description=description)) if needed
                           else (annotation | None, Field(None, description=description)))
        name = "_".join(str(p) for p in path if p != "*") or "output"
        return create_model(name, __config__=ConfigDict(extra="ignore"), **fields)
    if isinstance(node, list):
        if len(node) > 1:
            raise TypeError(f"an array in an output schema holds one item schema, got "
                            f"{len(node)} at {path_text(path) or 'the top'}")
        item = _sap_type(node[0], (*path, "*"), required, ensured) if node else Any
        return list[item]
    if isinstance(node, tuple):
        if not node or len(node) > 3:
            raise TypeError(f"a leaf of an output schema is (type, description[, required]), "
                            f"got {node!r} at {path_text(path)}")
        if _leaf_required(node):
            required.append(path)
        kind = node[0]
        if isinstance(kind, (dict, list)):  # (nested schema, description)
            return _sap_type(kind, path, required, ensured)
        return _leaf_type(kind)
    return _leaf_type(node)


def _leaf_required(node: Any) -> bool:
    return isinstance(node, tuple) and len(node) == 3 and node[2] is True


def _explain(exc: Any) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = path_text(error["loc"]) or "the value"
        if error["type"] == "missing":
            problems.append(f"missing required value {where}")
        else:
            problems.append(f"{where}: {error['msg']} (got {error.get('input')!r:.80})")
    return "; ".join(problems)


# -- reading a model's text ----------------------------------------------------------------
#: How many places where JSON could start are tried in a chatty text.
_MAX_STARTS = 64
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a model's text: the whole text, a fenced block, or the first
    object or array inside chatty text. Raises ValueError when there is none."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block.strip())
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for tries, match in enumerate(re.finditer(r"[\[{]", text)):
        if tries >= _MAX_STARTS:
            break
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    raise ValueError("the answer holds no JSON value")


__all__ = ["WRAP_KEY", "OutputInvalid", "OutputSpec", "extract_json", "is_schema_as_prompt",
           "missing_paths", "output_spec", "parse_path"]
