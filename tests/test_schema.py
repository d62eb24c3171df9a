"""function_schema and schema_validator: JSON schema and argument validation derived from
Python functions (types, defaults, required, docstring descriptions) and from bare schemas."""

from __future__ import annotations

import functools
from typing import Any, Literal, Optional

import pytest
from pydantic import BaseModel

from agently_core.schema import (
    ArgumentsError,
    function_schema,
    parse_docstring,
    schema_validator,
)


class Point(BaseModel):
    x: int
    y: int = 0


# -- sync, async, names ------------------------------------------------------------------
def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


async def fetch(url: str, retries: int = 3) -> str:
    """Fetch a URL.

    Args:
        url: Where to go.
        retries (int): How many times to retry.
    """
    return url


def test_sync_function_schema() -> None:
    schema = function_schema(add)
    assert schema.name == "add"
    assert schema.is_async is False
    assert schema.injects_context is False
    assert schema.description == "Add two integers."
    assert schema.input_schema == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "The first addend."},
            "b": {"type": "integer", "default": 2, "description": "The second addend."},
        },
        "required": ["a"],
        "additionalProperties": False,
    }


def test_async_function_schema() -> None:
    schema = function_schema(fetch)
    assert schema.is_async is True
    assert schema.input_schema["required"] == ["url"]
    assert schema.input_schema["properties"]["retries"] == {
        "type": "integer", "default": 3, "description": "How many times to retry."}


def test_decorated_async_function_is_still_async() -> None:
    @functools.wraps(fetch)
    async def wrapper(*args: Any, **kwargs: Any) -> str:
        return await fetch(*args, **kwargs)

    schema = function_schema(wrapper)
    assert schema.is_async is True
    assert set(schema.input_schema["properties"]) == {"url", "retries"}


def test_name_and_description_overrides() -> None:
    schema = function_schema(add, name="plus", description="Custom.")
    assert schema.name == "plus"
    assert schema.description == "Custom."


def test_no_docstring_no_annotations() -> None:
    def bare(x, y=None):
        return x

    schema = function_schema(bare)
    assert schema.description == ""
    assert schema.input_schema["properties"] == {"x": {}, "y": {"default": None}}
    assert schema.input_schema["required"] == ["x"]
    assert schema.validate({"x": [1, "anything"]}) == {"x": [1, "anything"], "y": None}


def test_no_titles_leak_into_the_schema() -> None:
    schema = function_schema(add).input_schema
    assert "title" not in schema
    assert all("title" not in prop for prop in schema["properties"].values())


def test_bound_method_skips_self() -> None:
    class Calculator:
        def double(self, n: int) -> int:
            return n * 2

    schema = function_schema(Calculator().double)
    assert list(schema.input_schema["properties"]) == ["n"]


# -- docstring styles ------------------------------------------------------------------
def google(path: str, mode: str = "r") -> None:
    """Open a file.

    Longer explanation that spans
    two lines.

    Args:
        path (str): The file to open.
            It must exist.
        mode: How to open it. Note: defaults to read.

    Returns:
        Nothing at all.

    Raises:
        OSError: when it cannot.
    """


def sphinx(path: str, mode: str = "r") -> None:
    """Open a file.

    :param path: The file to open.
        It must exist.
    :param str mode: How to open it.
    :type path: str
    :returns: nothing
    """


def numpy(path: str, mode: str = "r") -> None:
    """Open a file.

    Parameters
    ----------
    path : str
        The file to open.
        It must exist.
    mode : str, optional
        How to open it.

    Returns
    -------
    None
        Nothing at all.
    """


@pytest.mark.parametrize("fn", [google, sphinx, numpy], ids=["google", "sphinx", "numpy"])
def test_docstring_styles(fn) -> None:
    schema = function_schema(fn)
    props = schema.input_schema["properties"]
    assert props["path"]["description"] == "The file to open. It must exist."
    assert props["mode"]["description"].startswith("How to open it.")
    assert schema.description.startswith("Open a file.")


def test_google_summary_and_other_sections_are_kept_apart() -> None:
    parsed = parse_docstring(google.__doc__)
    assert parsed.summary == "Open a file.\n\nLonger explanation that spans\ntwo lines."
    assert parsed.params == {"path": "The file to open. It must exist.",
                             "mode": "How to open it. Note: defaults to read."}


def test_numpy_returns_section_is_not_a_parameter() -> None:
    parsed = parse_docstring(numpy.__doc__)
    assert set(parsed.params) == {"path", "mode"}
    assert "Nothing" not in parsed.summary


def test_sphinx_type_lines_do_not_leak_into_descriptions() -> None:
    parsed = parse_docstring(sphinx.__doc__)
    assert parsed.params["path"] == "The file to open. It must exist."
    assert parsed.summary == "Open a file."


def test_docstring_mentions_unknown_parameters_harmlessly() -> None:
    def f(a: int) -> int:
        """Summary.

        Args:
            a: Real.
            ghost: Not a parameter.
        """
        return a

    schema = function_schema(f)
    assert list(schema.input_schema["properties"]) == ["a"]


def test_empty_docstring() -> None:
    assert parse_docstring(None).summary == ""
    assert parse_docstring("").params == {}


# -- types -------------------------------------------------------------------------------
def typed(
    count: int,
    ratio: float = 0.5,
    name: Optional[str] = None,  # noqa: UP045 - Optional on purpose
    tags: list[str] | None = None,
    weights: dict[str, int] | None = None,
    mode: Literal["fast", "slow"] = "fast",
    point: Point | None = None,
    flag: bool = False,
) -> None:
    """Typed parameters."""


def test_types_in_the_schema() -> None:
    props = function_schema(typed).input_schema["properties"]
    assert props["count"] == {"type": "integer"}
    assert props["ratio"] == {"type": "number", "default": 0.5}
    assert props["name"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert {"type": "array", "items": {"type": "string"}} in props["tags"]["anyOf"]
    assert {"type": "object", "additionalProperties": {"type": "integer"}} in (
        props["weights"]["anyOf"])
    assert props["mode"]["enum"] == ["fast", "slow"]
    assert props["mode"]["default"] == "fast"
    assert props["flag"] == {"type": "boolean", "default": False}


def test_pydantic_model_parameter() -> None:
    schema = function_schema(typed)
    assert schema.input_schema["$defs"]["Point"]["required"] == ["x"]
    assert {"$ref": "#/$defs/Point"} in schema.input_schema["properties"]["point"]["anyOf"]
    values = schema.validate({"count": 1, "point": {"x": 3}})
    assert values["point"] == Point(x=3, y=0)
    with pytest.raises(ArgumentsError, match=r"point\.x"):
        schema.validate({"count": 1, "point": {"y": 3}})


def test_validation_fills_defaults_and_coerces() -> None:
    values = function_schema(typed).validate({"count": "7", "tags": ["a"]})
    assert values == {"count": 7, "ratio": 0.5, "name": None, "tags": ["a"], "weights": None,
                      "mode": "fast", "point": None, "flag": False}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "missing required argument 'count'"),
        ({"count": 1, "bogus": 2}, "unexpected argument 'bogus'"),
        ({"count": "many"}, "count: Input should be a valid integer"),
        ({"count": 1, "mode": "medium"}, "mode:"),
        ({"count": 1, "tags": "not-a-list"}, "tags"),
        ({"count": 1, "weights": {"a": "heavy"}}, "weights.a"),
    ],
)
def test_invalid_arguments(kwargs, needle) -> None:
    with pytest.raises(ArgumentsError) as info:
        function_schema(typed).validate(kwargs)
    assert needle in str(info.value)


def test_every_problem_is_listed() -> None:
    with pytest.raises(ArgumentsError) as info:
        function_schema(add).validate({"b": "x", "c": 1})
    message = str(info.value)
    assert "missing required argument 'a'" in message
    assert "unexpected argument 'c'" in message
    assert "b:" in message


def test_var_keyword_accepts_extra_arguments() -> None:
    def configure(name: str, **options: Any) -> dict:
        return options

    schema = function_schema(configure)
    assert schema.input_schema["additionalProperties"] is True
    assert "options" not in schema.input_schema["properties"]
    assert schema.validate({"name": "n", "colour": "red", "size": 2}) == {
        "name": "n", "colour": "red", "size": 2}


def test_var_positional_is_not_in_the_schema() -> None:
    def collect(first: int, *rest: int) -> int:
        return first

    schema = function_schema(collect)
    assert list(schema.input_schema["properties"]) == ["first"]


def test_positional_only_parameters_are_rejected() -> None:
    def pos_only(a: int, /, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="positional-only parameter 'a'"):
        function_schema(pos_only)


def test_keyword_only_parameters_are_fine() -> None:
    def kw_only(*, a: int, b: int = 1) -> int:
        return a + b

    schema = function_schema(kw_only)
    assert schema.input_schema["required"] == ["a"]


def test_action_context_is_injected_not_exposed() -> None:
    def aware(query: str, action_context: Any = None) -> str:
        return query

    schema = function_schema(aware)
    assert schema.injects_context is True
    assert list(schema.input_schema["properties"]) == ["query"]
    assert schema.input_schema["required"] == ["query"]
    with pytest.raises(ArgumentsError, match="unexpected argument 'action_context'"):
        schema.validate({"query": "q", "action_context": "forged"})


def test_defaults_containing_a_title_key_are_kept() -> None:
    def f(options: dict | None = None, page: dict = {"title": "Home", "n": 1}) -> None:  # noqa: B006
        pass

    assert function_schema(f).input_schema["properties"]["page"]["default"] == {
        "title": "Home", "n": 1}


def test_one_bad_annotation_does_not_disable_all_validation() -> None:
    def f(count: int, other: UndefinedType = None) -> None:  # type: ignore[name-defined] # noqa: F821
        pass

    with pytest.raises(ArgumentsError):
        function_schema(f).validate({"count": "not a number"})


class Doubler:
    def __call__(self, n: int) -> int:
        return n * 2


def test_callable_objects() -> None:
    schema = function_schema(Doubler())
    assert schema.input_schema["properties"]["n"] == {"type": "integer"}


# -- schema-only actions -----------------------------------------------------------------
SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["query"],
    "additionalProperties": False,
}


def test_schema_validator_accepts_valid_arguments() -> None:
    validate = schema_validator(SCHEMA)
    assert validate({"query": "q"}) == {"query": "q"}
    assert validate({"query": "q", "limit": 3}) == {"query": "q", "limit": 3}


def test_schema_validator_missing_required() -> None:
    with pytest.raises(ArgumentsError, match="query"):
        schema_validator(SCHEMA)({"limit": 3})


def test_schema_validator_unexpected_key_when_closed() -> None:
    with pytest.raises(ArgumentsError, match="surprise"):
        schema_validator(SCHEMA)({"query": "q", "surprise": 1})


def test_schema_validator_open_schema_allows_extra_keys() -> None:
    validate = schema_validator({"type": "object", "properties": {}, "required": []})
    assert validate({"anything": 1}) == {"anything": 1}


def test_schema_validator_empty_schema() -> None:
    assert schema_validator({})({"x": 1}) == {"x": 1}


def test_schema_validator_checks_types_and_nested_values() -> None:
    validate = schema_validator(SCHEMA)
    with pytest.raises(ArgumentsError, match="query"):
        validate({"query": 5})
    nested = schema_validator({"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "integer"}}}})
    with pytest.raises(ArgumentsError, match=r"items\.1"):
        nested({"items": [1, "two"]})
