"""The Agent facade: mounting actions, visible schemas, the action context, settings from
configuration, the request loop entry points, and the deprecated tool surface."""

from __future__ import annotations

import types
import warnings
from typing import Any

import pytest

from agently_core import (
    ActionContext,
    ActionPackage,
    ActionSpec,
    ConfigError,
    Policy,
    create_agent,
)
from agently_core.errors import ActionNotFoundError


def multiply(x: int, y: int) -> int:
    """Multiply two integers.

    Args:
        x: Left.
        y: Right.
    """
    return x * y


def negate(x: int) -> int:
    """Negate an integer."""
    return -x


def names(agent) -> list[str]:
    return sorted(info["name"] for info in agent.action.get_action_info())


# -- registering and mounting ------------------------------------------------------------
def test_action_func_registers_but_does_not_mount(make_agent) -> None:
    agent = make_agent()

    @agent.action_func
    def secret(x: int) -> int:
        return x

    assert secret(3) == 3  # the decorator returns the function itself
    assert agent.action.get_action_info() == []
    hidden = agent.action.get_action_info(include_hidden=True)
    assert [info["name"] for info in hidden] == ["secret"]
    assert agent.action.execute_action("secret", {"x": 4}).result == 4  # the host may call it


def test_action_func_with_options(make_agent) -> None:
    agent = make_agent()

    @agent.action_func(name="times", description="Custom.", tags=["math"], timeout=3,
                       approval_required=True)
    def mult(a: int) -> int:
        return a

    entry = agent.registry.require("times")
    assert entry.spec.description == "Custom."
    assert entry.spec.tags == ["math"]
    assert entry.spec.policy == {"timeout_seconds": 3}
    assert entry.spec.approval_required is True
    assert entry.target is mult


def test_get_action_info_shape(make_agent) -> None:
    agent = make_agent()
    agent.use_actions(multiply)
    [info] = agent.action.get_action_info()
    assert info["name"] == "multiply"
    assert info["description"] == "Multiply two integers."
    assert info["kwargs"]["properties"]["x"] == {"type": "integer", "description": "Left."}
    assert info["kwargs"]["required"] == ["x", "y"]


def test_get_tool_info_is_get_action_info(make_agent) -> None:
    agent = make_agent()
    agent.use_actions([multiply, negate])
    agent.action_func(lambda: 1, name="hidden_one")
    assert agent.action.get_tool_info() == agent.action.get_action_info()
    assert [i["name"] for i in agent.action.get_tool_info()] == ["multiply", "negate"]
    assert [i["name"] for i in agent.action.get_tool_info(include_hidden=True)] == [
        "multiply", "negate", "hidden_one"]
    assert agent.action.get_tool_info(tags=["nothing"]) == []


def test_get_action_info_narrowed_by_tags(make_agent) -> None:
    agent = make_agent()

    @agent.action_func(tags=["math"])
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    agent.action.register_action(
        ActionSpec(name="shout", input_schema={"type": "object", "properties": {
            "text": {"type": "string"}}}, tags=["text"]),
        lambda text: text.upper(), tags=["loud", "text"])
    agent.use_actions([add, multiply])
    assert agent.registry.require("shout").spec.tags == ["text", "loud"]
    assert [i["name"] for i in agent.action.get_action_info()] == ["add", "shout", "multiply"]
    assert [i["name"] for i in agent.action.get_action_info(tags=["math"])] == ["add"]
    assert [i["name"] for i in agent.action.get_action_info(tags=["loud", "math"])] == [
        "add", "shout"]
    assert [i["name"] for i in agent.action.get_tool_info(tags=("text",))] == ["shout"]
    assert agent.action.get_action_info(tags=[]) == []


def test_packages_tag_their_actions_and_enable_adds_tags(make_agent) -> None:
    import importlib.util

    from agently_core.testing.requirements import require

    require(importlib.util.find_spec("agently_core_python") is not None,
            "agently-core-python (the python action package)")
    agent = make_agent()
    agent.enable_python(tags=["mine"])
    agent.use_actions(multiply)
    assert [i["name"] for i in agent.action.get_action_info(tags=["sandbox"])] == ["run_python"]
    assert [i["name"] for i in agent.action.get_action_info(tags=["mine"])] == ["run_python"]
    assert agent.registry.require("run_python").spec.tags == ["python", "sandbox", "mine"]


def test_bad_tags_are_a_clear_error(make_agent) -> None:
    agent = make_agent()
    with pytest.raises(TypeError, match="tags must be a list of strings"):
        agent.action_func(multiply, tags="math")
    with pytest.raises(TypeError, match="non-empty string"):
        agent.action_func(negate, tags=["ok", 3])
    with pytest.raises(TypeError, match="tags must be a list of strings"):
        agent.action.get_action_info(tags="math")
    with pytest.raises(TypeError, match="tags must be a list of strings"):
        agent.action.register_action(ActionSpec(name="x"), lambda: 1, tags="a")
    assert agent.registry.get("x") is None


def test_use_actions_with_a_function(make_agent) -> None:
    agent = make_agent()
    assert agent.use_actions(multiply) is agent
    assert names(agent) == ["multiply"]
    assert agent.action.execute_action("multiply", {"x": 3, "y": 4}).result == 12


def test_use_actions_mounts_an_already_registered_function(make_agent) -> None:
    agent = make_agent()
    agent.action_func(multiply, timeout=5)
    agent.use_actions(multiply)
    assert names(agent) == ["multiply"]
    assert agent.registry.require("multiply").spec.policy == {"timeout_seconds": 5}
    assert len(agent.registry) == 1


def test_use_actions_with_a_list(make_agent) -> None:
    agent = make_agent()
    agent.use_actions([multiply, negate])
    assert names(agent) == ["multiply", "negate"]


def test_use_actions_with_a_registered_name(make_agent) -> None:
    agent = make_agent()
    agent.action_func(negate)
    agent.use_actions("negate")
    assert names(agent) == ["negate"]


def test_use_actions_with_an_installed_package(make_agent) -> None:
    agent = make_agent()
    agent.use_actions("examples")
    assert names(agent) == ["add", "echo", "multiply", "word_count"]
    assert agent.action.execute_action("add", {"a": 2, "b": 0.5}).result == 2.5
    assert agent.action.execute_action("echo", {"message": "hi", "repeat": 2}).result == "hi hi"
    assert agent.action.execute_action("word_count", {"text": "a b c"}).result == {
        "words": 3, "characters": 5}


def test_use_actions_with_an_action_package(make_agent) -> None:
    agent = make_agent()
    package = ActionPackage("math", [multiply, negate], description="Maths.")
    agent.use_actions(package)
    assert names(agent) == ["multiply", "negate"]


def test_use_actions_with_a_module(make_agent) -> None:
    module = types.ModuleType("my_actions")
    module.multiply = multiply
    module.negate = negate
    module.__all__ = ["negate"]
    agent = make_agent()
    agent.use_actions(module)
    assert names(agent) == ["negate"]
    del module.__all__
    with pytest.raises(TypeError, match="__all__"):
        agent.use_actions(module)


def test_use_actions_with_a_name_mix(make_agent) -> None:
    agent = make_agent()
    agent.action_func(negate)
    agent.use_actions(["negate", multiply, "examples"])
    assert "negate" in names(agent) and "word_count" in names(agent)


def test_use_actions_unknown_name(make_agent) -> None:
    agent = make_agent()
    agent.action_func(negate)
    with pytest.raises(ActionNotFoundError) as info:
        agent.use_actions("no_such_thing")
    assert "no_such_thing" in str(info.value)
    assert "negate" in str(info.value) and "examples" in str(info.value)


def test_use_actions_rejects_other_things(make_agent) -> None:
    with pytest.raises(TypeError, match="cannot mount"):
        make_agent().use_actions(42)


def test_non_callables_are_rejected(make_agent) -> None:
    with pytest.raises(TypeError):
        make_agent().action_func(42)


def test_use_actions_mounts_a_renamed_action(make_agent) -> None:
    agent = make_agent(approval_handler="fail_closed")

    @agent.action_func(name="plus", approval_required=True)
    def add(a: int, b: int) -> int:
        return a + b

    agent.use_actions(add)
    assert names(agent) == ["plus"]
    assert agent.action.execute_action("add", {"a": 1, "b": 1}).status != "success"


def test_register_action_from_a_spec(make_agent) -> None:
    agent = make_agent()
    seen = []

    def target(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "ran"

    spec = agent.action.register_action({
        "name": "raw_tool",
        "description": "A schema-only action.",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}},
                         "required": ["q"], "additionalProperties": False},
    }, target)
    assert isinstance(spec, ActionSpec)
    assert names(agent) == ["raw_tool"]
    assert agent.action.execute_action("raw_tool", {"q": "x"}).result == "ran"
    record = agent.action.execute_action("raw_tool", {"r": "x"})
    assert record.status == "failed" and record.error_type == "ArgumentsError"
    assert seen == [{"q": "x"}]


def test_register_action_hidden_and_invalid_spec(make_agent) -> None:
    agent = make_agent()
    agent.action.register_action(ActionSpec(name="quiet"), lambda: 1, visible=False)
    assert names(agent) == []
    with pytest.raises(ValueError, match="name"):
        agent.action.register_action({"name": "has spaces"})


def test_action_context_is_injected(make_agent) -> None:
    agent = make_agent(policy={"timeout_seconds": 9})
    captured = {}

    @agent.action_func
    def aware(query: str, action_context: ActionContext) -> str:
        captured["context"] = action_context
        return query.upper()

    assert "action_context" not in agent.action.get_action_info(include_hidden=True)[0][
        "kwargs"]["properties"]
    record = agent.action.execute_action("aware", {"query": "q"})
    assert record.result == "Q"
    context = captured["context"]
    assert isinstance(context, ActionContext)
    assert context.call.id == record.call_id
    assert context.spec.name == "aware"
    assert context.agent is agent
    assert context.policy.timeout_seconds == 9
    assert record.kwargs == {"query": "q"}  # the live context is not in the record


# -- settings from configuration -----------------------------------------------------------
def test_loop_settings_and_policy_from_configuration(make_agent) -> None:
    agent = make_agent(action={"max_rounds": 2, "concurrency": 3,
                               "planning_protocol": "native_tool_calls"},
                       policy={"timeout_seconds": 4, "max_output_bytes": 1000})
    assert agent.loop_settings == {"max_rounds": 2, "concurrency": 3,
                                   "planning_protocol": "native_tool_calls"}
    assert agent.policy == Policy(timeout_seconds=4, max_output_bytes=1000)


def test_policy_argument_and_set_policy(make_plugins) -> None:
    agent = create_agent(plugins=make_plugins(policy={"timeout_seconds": 4}),
                         policy={"max_output_bytes": 10})
    assert agent.policy.timeout_seconds == 4 and agent.policy.max_output_bytes == 10
    assert agent.set_policy(timeout_seconds=1) is agent
    assert agent.policy.timeout_seconds == 1 and agent.policy.max_output_bytes == 10
    with pytest.raises(ValueError, match="unknown policy key"):
        agent.set_policy(sudo=True)


def test_set_action_loop_validates(make_agent) -> None:
    agent = make_agent()
    agent.set_action_loop(max_rounds=7, concurrency=1)
    assert agent.loop_settings["max_rounds"] == 7 and agent.loop_settings["concurrency"] == 1
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(ValueError, match="max_rounds"):
            agent.set_action_loop(max_rounds=bad)


def test_create_agent_with_a_settings_dict(monkeypatch, tmp_path) -> None:
    (tmp_path / "agently.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    agent = create_agent("helper", config={"approval_handler": "fail_closed",
                                           "action": {"max_rounds": 9}})
    assert agent.name == "helper"
    assert agent.approval.default == "fail_closed"
    assert agent.loop_settings["max_rounds"] == 9
    with pytest.raises(ConfigError, match="colour"):
        create_agent(config={"colour": "blue"})


def test_no_planner_configured_is_a_clear_error(make_agent) -> None:
    agent = make_agent()
    with pytest.raises(ConfigError, match="no planner"):
        agent.run("hello")


def test_set_planner_rejects_non_planners(make_agent) -> None:
    with pytest.raises(TypeError, match="not a planner"):
        make_agent().set_planner(42)


def test_planner_chosen_by_configuration(make_agent) -> None:
    agent = make_agent(planner="scripted")
    result = agent.run("hello")
    assert result.stop_reason == "response" and result.response == "done"


def test_input_then_get_action_result_runs_the_loop(make_agent) -> None:
    agent = make_agent()
    agent.use_actions(multiply)
    agent.set_planner([[("multiply", {"x": 2, "y": 21})]])
    assert agent.input("compute") is agent
    records = agent.get_action_result()
    assert [r.result for r in records] == [42]
    assert agent.last_run.request == "compute"
    assert agent.get_action_result() == records  # not run again


@pytest.mark.anyio
async def test_async_get_action_result_runs_the_loop(make_agent) -> None:
    agent = make_agent()
    agent.use_actions(negate)
    agent.set_planner([[("negate", {"x": 5})], [("negate", {"x": 6})]])
    agent.input("go")
    records = await agent.async_get_action_result()
    assert [r.result for r in records] == [-5, -6]


def test_context_managers(make_agent) -> None:
    with make_agent() as agent:
        assert not agent.closed
    assert agent.closed


@pytest.mark.anyio
async def test_async_context_manager(make_agent) -> None:
    async with make_agent() as agent:
        pass
    assert agent.closed


# -- deprecated tool surface -----------------------------------------------------------------
OFF = {"runtime.show_deprecation_warnings": False}


@pytest.fixture
def fresh_warnings(monkeypatch):
    import agently_core.deprecation as deprecation

    monkeypatch.setattr(deprecation, "_WARNED", set())
    return deprecation


def _deprecations(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]


def test_deprecated_apis_map_onto_actions_and_warn_once(make_agent, fresh_warnings) -> None:
    agent = make_agent()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        agent.tool_func(multiply)
        agent.tool_func(negate)
        assert names(agent) == []  # tool_func registers like action_func
        agent.use_tool(multiply)
        agent.use_tool("negate")
        assert names(agent) == ["multiply", "negate"]
        agent.use_tools([negate, "multiply"])
        agent.action.execute_action("multiply", {"x": 2, "y": 3})
        logs = agent.tool_logs
        _ = agent.tool_logs
    assert logs == agent.action_logs == [agent.get_action_result()[0].model_dump(mode="json")]
    assert logs[0]["result"] == 6
    messages = _deprecations(record)
    assert messages == [
        "agent.tool_func is deprecated; use agent.action_func",
        "agent.use_tool is deprecated; use agent.use_actions",
        "agent.use_tools is deprecated; use agent.use_actions",
        "agent.tool_logs is deprecated; use agent.action_logs",
    ]
    assert all(w.filename == __file__ for w in record)  # points at the caller
    # once per API per process: a second agent does not warn again
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        other = make_agent()
        other.tool_func(multiply)
        other.use_tool(multiply)
        _ = other.tool_logs
    assert _deprecations(again) == []


def test_tool_func_as_a_decorator_with_options(make_agent, fresh_warnings) -> None:
    agent = make_agent()
    with pytest.warns(DeprecationWarning, match="tool_func"):
        @agent.tool_func(name="old_style")
        def legacy() -> str:
            return "still works"

    assert agent.action.execute_action("old_style").result == "still works"


def test_no_deprecation_warnings_when_switched_off(make_agent, fresh_warnings) -> None:
    agent = make_agent(**OFF)
    assert agent.config.show_deprecation_warnings is False
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        agent.tool_func(multiply)
        agent.use_tool(multiply)
        agent.use_tools([negate])
        _ = agent.tool_logs
    assert _deprecations(record) == []
    assert not fresh_warnings._WARNED
    assert names(agent) == ["multiply", "negate"]


def test_deprecation_switch_from_the_environment(make_agent, fresh_warnings) -> None:
    agent = make_agent(env={"AGENTLY_RUNTIME_SHOW_DEPRECATION_WARNINGS": "0"})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        agent.use_tool(multiply)
    assert _deprecations(record) == []


def test_the_old_setting_name_is_refused(make_agent) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'deprecation_warnings'"):
        make_agent(deprecation_warnings=False)


def _python_package() -> None:
    import importlib.util

    from agently_core.testing.requirements import require

    require(importlib.util.find_spec("agently_core_python") is not None,
            "agently-core-python (the python action package)")


def test_use_sandbox_mounts_the_managed_action_and_warns_once(make_agent,
                                                              fresh_warnings) -> None:
    _python_package()
    agent = make_agent()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert agent.use_sandbox("python", timeout=7) is agent
        make_agent().use_sandbox()  # python is the default
    assert names(agent) == ["run_python"]
    assert agent.registry.require("run_python").spec.policy["timeout_seconds"] == 7
    assert _deprecations(record) == [
        "agent.use_sandbox is deprecated; use agent.enable_python(...), "
        "agent.enable_shell(...) or agent.enable_nodejs(...)"]
    assert all(w.filename == __file__ for w in record)
    quiet = make_agent(**OFF)
    with warnings.catch_warnings(record=True) as none:
        warnings.simplefilter("always")
        fresh_warnings._WARNED.clear()
        quiet.use_sandbox("python")
    assert _deprecations(none) == [] and names(quiet) == ["run_python"]


def test_use_sandbox_maps_bash_and_nodejs_onto_their_helpers(make_agent) -> None:
    import importlib.util

    from agently_core.testing.requirements import require

    for module in ("agently_core_bash", "agently_core_nodejs"):
        require(importlib.util.find_spec(module) is not None, module)
    agent = make_agent(**OFF)
    agent.use_sandbox("bash")
    agent.use_sandbox("nodejs")
    assert names(agent) == ["run_bash", "run_nodejs"]
    assert agent.registry.require("run_bash").spec.kind == "bash"


def test_use_sandbox_refuses_an_unknown_sandbox(make_agent, fresh_warnings) -> None:
    agent = make_agent(**OFF)
    with pytest.raises(ValueError, match="one of 'python', 'bash', 'nodejs', got 'ruby'"):
        agent.use_sandbox("ruby")
    with pytest.raises(ValueError, match="got None"):
        agent.use_sandbox(None)
    assert names(agent) == []


def test_action_logs_of_a_run_and_tool_logs_on_the_older_surface(make_agent,
                                                                 fresh_warnings) -> None:
    agent = make_agent()
    agent.use_actions([multiply, negate])
    agent.set_planner("scripted", steps=[
        [{"action": "multiply", "kwargs": {"x": 2, "y": 5}, "purpose": "double"}],
        [{"action": "negate", "kwargs": {"x": 10}}], "minus ten"])
    result = agent.run("go")
    assert result.response == "minus ten"
    logs = result.action_logs
    assert [(e["action"], e["status"], e["result"], e["round_index"]) for e in logs] == [
        ("multiply", "success", 10, 0), ("negate", "success", -10, 1)]
    assert logs[0]["purpose"] == "double" and logs[0]["kwargs"] == {"x": 2, "y": 5}
    assert logs == agent.action_logs  # the agent's are its last request's
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert result.tool_logs == logs
        assert result.tool_logs == logs
    assert _deprecations(record) == [
        "FlowResult.tool_logs is deprecated; use FlowResult.action_logs"]
    assert record[0].filename == __file__
    fresh_warnings._WARNED.clear()
    quiet = make_agent(**OFF)
    quiet.use_actions(negate)
    quiet.set_planner("scripted", steps=[[{"action": "negate", "kwargs": {"x": 1}}], "ok"])
    with warnings.catch_warnings(record=True) as none:
        warnings.simplefilter("always")
        assert [e["result"] for e in quiet.run("go").tool_logs] == [-1]
    assert _deprecations(none) == []
