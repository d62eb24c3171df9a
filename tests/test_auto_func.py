"""Issue 11, point 6: ``@agent.auto_func``: a typed function with a docstring whose result
the planner produces (``planner.generate``), validated with pydantic or a Schema-as-Prompt
schema (required leaves, ensure keys with ``[*]``), asked again with the error a bounded
number of times, then a clear error. Runs on the scripted planner, offline."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agently_core_runtime.planners import ScriptedPlanner
from pydantic import BaseModel

from agently_core.errors import AutoFuncError, ConfigError, ModelError
from agently_core.output_schema import (
    OutputInvalid,
    extract_json,
    missing_paths,
    output_spec,
    parse_path,
)


class Recorder:
    """``outputs`` item for ScriptedPlanner: keeps every (context, request), answers from
    ``answers`` (the last repeated)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = answers
        self.seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def __call__(self, context: Any, request: Any) -> Any:
        self.seen.append((dict(context), dict(request)))
        return self.answers[min(len(self.seen), len(self.answers)) - 1]

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [request for _, request in self.seen]


@pytest.fixture
def agent(make_agent):
    agent = make_agent()
    yield agent
    agent.close()


def scripted(agent: Any, *answers: Any) -> Recorder:
    recorder = Recorder(*answers)
    agent.set_planner(ScriptedPlanner(outputs=recorder))
    return recorder


# -- the basics ------------------------------------------------------------------------------
def test_a_typed_function_gets_its_value_from_the_planner(agent) -> None:
    recorder = scripted(agent, {"output": {"result": 9999}})

    @agent.auto_func
    def calculate(formula: str, precision: int = 0) -> int:
        """Compute {formula} to {precision} places. Use {braces} as they are."""

    assert calculate("3333+6666=?") == 9999
    assert calculate.__name__ == "calculate" and calculate.__doc__.startswith("Compute")
    [(context, request)] = recorder.seen
    assert request["instruction"] == ("Compute 3333+6666=? to 0 places. Use {braces} as "
                                      "they are.")
    assert request["function"] == "calculate"
    assert request["input"] == {"formula": "3333+6666=?", "precision": 0}
    assert request["output_schema"] == {
        "type": "object", "properties": {"result": {"type": "integer"}},
        "required": ["result"], "additionalProperties": False}
    assert request["attempt"] == 0 and request["feedback"] == []
    assert context["agent_name"] == agent.name and context["history"] == []
    assert context["run_id"].startswith("autofunc_") and context["events"] is agent.events
    assert context["env_state"] is None


def test_plain_values_from_the_scripted_planner(agent) -> None:
    agent.set_planner(ScriptedPlanner(outputs=[7, {"result": 8}]))

    @agent.auto_func
    def pick() -> int:
        """Pick a number."""

    assert pick() == 7 and pick() == 8 and pick() == 8  # the last output repeats


@pytest.mark.anyio
async def test_an_async_function_stays_async(agent) -> None:
    scripted(agent, {"text": 'Sure! ```json\n{"result": ["a", "b"]}\n```'})

    @agent.auto_func
    async def letters(count: int) -> list[str]:
        """Give {count} letters."""

    assert await letters(2) == ["a", "b"]


def test_a_pydantic_model_is_returned_typed(agent) -> None:
    class City(BaseModel):
        name: str
        population: int

    scripted(agent, {"text": 'Here you go: {"name": "Lyon", "population": "522000"} '
                             "(2021 census)"})

    @agent.auto_func
    def city(country: str) -> City:
        """The second city of {country}."""

    value = city("France")
    assert isinstance(value, City) and value == City(name="Lyon", population=522000)
    assert city.output_schema["required"] == ["name", "population"]


def test_env_state_reaches_generate(agent) -> None:
    recorder = scripted(agent, {"output": 1})
    agent.set_env_state("cwd=/w")

    @agent.auto_func
    def one() -> int:
        """One."""

    one()
    assert recorder.seen[0][0]["env_state"] == "cwd=/w"


# -- retries ---------------------------------------------------------------------------------
def test_an_invalid_answer_is_asked_again_with_its_error(agent) -> None:
    recorder = scripted(agent, {"output": {"result": "many"}}, {"text": "no JSON here"},
                        {"output": {"result": 3}})

    @agent.auto_func
    def count() -> int:
        """Count."""

    assert count() == 3
    first, second, third = recorder.requests
    assert [r["attempt"] for r in recorder.requests] == [0, 1, 2]
    assert first["feedback"] == []
    [problem] = second["feedback"]
    assert problem["output"] == {"result": "many"}
    assert "valid integer" in problem["error"] and "many" in problem["error"]
    assert [f["output"] for f in third["feedback"]] == [{"result": "many"}, "no JSON here"]
    assert "no JSON" in third["feedback"][1]["error"]


def test_attempts_are_bounded_and_the_error_is_clear(agent) -> None:
    recorder = scripted(agent, {"output": "not a number"})

    @agent.auto_func(attempts=2)
    def count() -> int:
        """Count."""

    with pytest.raises(AutoFuncError, match=r"auto_func count: .* in 2 attempt\(s\); last "
                                            r"error: .*valid integer") as caught:
        count()
    assert len(recorder.seen) == 2
    assert [a["output"] for a in caught.value.attempts] == ["not a number"] * 2


def test_a_malformed_generate_answer_is_a_planner_bug_not_a_retry(agent) -> None:
    recorder = scripted(agent, ["not a mapping"])

    @agent.auto_func
    def count() -> int:
        """Count."""

    with pytest.raises(TypeError, match=r"'output'.*or 'text'"):
        count()
    assert len(recorder.seen) == 1


def test_a_model_error_is_raised_as_it_is(agent) -> None:
    agent.set_planner(ScriptedPlanner(outputs=[ModelError("scripted: 401 refused")]))

    @agent.auto_func
    def count() -> int:
        """Count."""

    with pytest.raises(ModelError, match="401 refused"):
        count()


def test_a_planner_without_generate_is_a_config_error(agent) -> None:
    agent.set_planner(lambda context, request: "text")

    @agent.auto_func
    def count() -> int:
        """Count."""

    with pytest.raises(ConfigError, match="cannot produce values"):
        count()


def test_no_planner_at_all_is_a_config_error(agent) -> None:
    @agent.auto_func
    def count() -> int:
        """Count."""

    with pytest.raises(ConfigError, match="no planner"):
        count()


def test_bad_declarations_fail_at_decoration(agent) -> None:
    with pytest.raises(TypeError, match="return annotation"):
        @agent.auto_func
        def nothing():
            """No type."""

    with pytest.raises(TypeError, match="unknown type name 'colour'"):
        @agent.auto_func(output={"a": ("colour", "x")})
        def bad() -> dict:
            """Bad."""

    with pytest.raises(ValueError, match="not a path"):
        @agent.auto_func(output={"a": (str, "x")}, ensure_keys=["a[x"])
        def worse() -> dict:
            """Worse."""

    with pytest.raises(ValueError, match="attempts"):
        agent.auto_func(attempts=0)(lambda: None)


# -- Schema-as-Prompt ------------------------------------------------------------------------
RESOURCES = {
    "title": (str, "a short title", True),
    "resources": [{"url": (str, "where it is"), "note": ("str", "why it matters")}],
    "score": ("number", "how good"),
}


def test_schema_as_prompt_as_the_annotation_with_ensure_keys(agent) -> None:
    recorder = scripted(
        agent,
        {"output": {"title": "t", "resources": [{"url": "https://a"}, {"note": "no url"}]}},
        {"output": {"resources": [{"url": "https://a"}]}},
        {"output": {"title": "t", "resources": [{"url": "https://a"}, {"url": "https://b",
                                                                        "note": "n"}]}})

    @agent.auto_func(ensure_keys=["resources[*].url"])
    def find(topic: str) -> RESOURCES:  # type: ignore[valid-type]
        """Find resources about {topic}."""

    value = find("durable executions")
    assert value == {"title": "t", "resources": [{"url": "https://a"},
                                                 {"url": "https://b", "note": "n"}]}
    errors = [f["error"] for f in recorder.requests[2]["feedback"]]
    assert "resources[1].url" in errors[0]
    assert "title" in errors[1]
    schema = recorder.requests[0]["output_schema"]
    assert schema["required"] == ["title", "resources"]
    assert schema["properties"]["title"] == {"description": "a short title", "type": "string"}
    item = schema["$defs"]["resources"]
    assert item["required"] == ["url"]  # made required by the ensure key
    assert item["properties"]["note"]["description"] == "why it matters"
    json.dumps(schema)


def test_schema_as_prompt_through_output(agent) -> None:
    scripted(agent, {"output": {"answer": 42, "steps": ["a", "b"]}})

    @agent.auto_func(output={"answer": (int, "the answer", True),
                             "steps": [(str, "one step")]})
    def solve(question: str) -> dict:
        """Solve {question}."""

    assert solve("q") == {"answer": 42, "steps": ["a", "b"]}


def test_output_spec_paths_and_values() -> None:
    assert parse_path("resources[*].url") == ["resources", "*", "url"]
    assert parse_path("a.b[2][*].c") == ["a", "b", 2, "*", "c"]
    for bad in ("", "[0].a", "a[", "a..b[x]"):
        with pytest.raises(ValueError):
            parse_path(bad)
    value = {"a": [{"b": 1}, {"b": None}, {}], "c": 3}
    assert missing_paths(value, ["a", "*", "b"]) == ["a[1].b", "a[2].b"]
    assert missing_paths(value, ["c", "*"]) == ["c (not a list)"]
    assert missing_paths(value, ["a", 5]) == ["a[5]"]
    assert missing_paths({"a": []}, ["a", "*", "b"]) == []
    spec = output_spec({"a": [{"b": (int, "b", True)}]})
    with pytest.raises(OutputInvalid, match=r"a\[0\]\.b"):
        spec.validate({"a": [{}]})
    assert spec.validate({"a": [{"b": "2"}]}) == {"a": [{"b": 2}]}
    assert output_spec(list[int]).validate({"result": ["1", 2]}) == [1, 2]
    assert output_spec(list[int]).validate([3]) == [3]


def test_extract_json_from_chatty_text() -> None:
    assert extract_json(' {"a": 1} ') == {"a": 1}
    assert extract_json("```json\n[1, 2]\n```") == [1, 2]
    assert extract_json('I think {"x": {"y": [1]}} is right; {"z": 2}') == {"x": {"y": [1]}}
    assert extract_json("broken { then [3]") == [3]
    with pytest.raises(ValueError, match="no JSON"):
        extract_json("nothing to see")
    with pytest.raises(ValueError):
        extract_json("{" * 10_000)


# -- with actions ----------------------------------------------------------------------------
def test_the_action_loop_runs_first_when_actions_are_visible(agent) -> None:
    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    agent.use_actions(add)
    recorder = Recorder({"output": 9999})
    agent.set_planner(ScriptedPlanner([[("add", {"a": 3333, "b": 6666})]],
                                      response="it is 9999", outputs=recorder))

    @agent.auto_func
    def calculate(formula: str) -> int:
        """Compute {formula}. Use available actions."""

    assert calculate("3333+6666=?") == 9999
    assert agent.last_run.request == {"instruction": "Compute 3333+6666=?. Use available "
                                                     "actions.",
                                      "input": {"formula": "3333+6666=?"}}
    [(context, _)] = recorder.seen
    assert context["run_id"] == agent.last_run.execution_id
    first, last = context["history"]
    assert first["records"][0]["result"] == 9999
    assert last["response"] == "it is 9999"

    @agent.auto_func(use_actions=False)
    def direct(formula: str) -> int:
        """Compute {formula}."""

    runs = agent.last_run
    assert direct("1+1") == 9999
    assert agent.last_run is runs and recorder.seen[-1][0]["history"] == []


def test_a_failed_action_loop_is_an_auto_func_error(agent) -> None:
    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    agent.use_actions(add)

    def broken(context, request):
        raise RuntimeError("planner down")

    agent.set_planner(ScriptedPlanner(broken, outputs=[1]))

    @agent.auto_func
    def calculate() -> int:
        """Compute."""

    with pytest.raises(AutoFuncError, match="the action loop failed: planner failed in "
                                            "round 0: RuntimeError: planner down"):
        calculate()
