"""Agent environments (``agently_core.env``): the interface, BaseEnv, the ``env`` setting,
the ``register_envs`` hook, and what the agent does with an Env (build before the first
round, state every round, tools mounted, cleanup on close).

ShellLocalEnv's own behaviour (its workspace and run_bash) is tested with the Bash plugin,
in plugins/bash/tests/test_bash_env.py; here it is only selected by configuration.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from agently_core import Config, ConfigError, PluginManager, create_agent
from agently_core.env import BaseEnv, Env, ShellLocalEnv, get_env
from agently_core.hookspecs import hookimpl

SEEN: list[str] = []


class RoundCounterEnv(Env):
    """A third-party Env: its state counts the times it was asked; one tool."""

    def __init__(self, *, label: str = "counter") -> None:
        self.label = label
        self.asked = 0

    def build(self) -> None:
        SEEN.append("build")

    def get_state(self) -> str:
        self.asked += 1
        SEEN.append(f"state {self.asked}")
        return f"{self.label}: asked {self.asked} times"

    def get_tools(self) -> list[Any]:
        def bump(by: int) -> int:
            """Add ``by`` to the counter's count."""
            SEEN.append(f"bump {by}")
            return self.asked + by

        return [bump]

    def cleanup(self) -> None:
        SEEN.append("cleanup")


class NotAnEnv:
    pass


class CounterPlugin:
    @hookimpl
    def register_envs(self, register):
        register("round_counter", RoundCounterEnv)
        register("not_an_env", NotAnEnv)


@pytest.fixture
def plugins(tmp_path: Path) -> PluginManager:
    SEEN.clear()
    manager = PluginManager(Config.load(env={}, cwd=tmp_path)).load()
    info = manager.register(CounterPlugin(), name="counter", distribution="agently-core-counter",
                            version="1.0")
    assert info.status == "loaded", info.error
    return manager


# -- the interface and BaseEnv --------------------------------------------------------
@pytest.mark.anyio
async def test_base_env_has_no_state_and_no_tools() -> None:
    env = BaseEnv()
    assert env.get_state() == "" and env.get_tools() == []
    await env.async_build()
    assert await env.async_get_state() == ""
    await env.async_cleanup()
    assert isinstance(env, Env)


def test_base_env_mounts_nothing_and_says_nothing() -> None:
    seen: list[Any] = []

    def planner(context, request):
        seen.append((context.get("env_state"), [a["name"] for a in request["action_list"]]))
        return {"next_action": "response", "response": "ok"}

    with create_agent(config={"env": {"name": "base"}}) as agent:
        assert isinstance(agent.env, BaseEnv)
        agent.register_action_planning_handler(planner)
        assert agent.run("hello").stop_reason == "response"
    assert seen == [("", [])]


def test_import_stays_light() -> None:
    import subprocess

    code = ("import sys, agently_core; agently_core.env; "
            "print(sorted(m for m in sys.modules if m.startswith('agently_core') "
            "or m in ('pluggy', 'pydantic')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['agently_core', 'agently_core.env', 'agently_core.errors']"


# -- the env setting ------------------------------------------------------------------
def test_the_env_setting_from_toml_env_var_and_arguments(tmp_path: Path) -> None:
    (tmp_path / "agently.toml").write_text('[env]\nname = "shell_local"\nbase_dir = "/srv"\n',
                                           encoding="utf-8")
    from_file = Config.load(env={}, cwd=tmp_path)
    assert (from_file.env_name, dict(from_file.env_options)) == ("shell_local", {"base_dir": "/srv"})
    from_var = Config.load(env={"AGENTLY_ENV_NAME": "base"}, cwd=tmp_path)
    assert (from_var.env_name, dict(from_var.env_options)) == ("base", {})  # another env
    options = Config.load(env={"AGENTLY_ENV_OPTION_TIMEOUT": "5"}, cwd=tmp_path)
    assert dict(options.env_options) == {"base_dir": "/srv", "timeout": 5}
    given = Config.load(env={"AGENTLY_ENV_NAME": "base"}, cwd=tmp_path,
                        overrides={"env": {"name": "shell_local"}})
    assert given.env_name == "shell_local"
    assert Config.load(env={}, cwd=tmp_path, overrides={"env": "base"}).env_name == "base"
    assert given.to_dict()["env"]["name"] == "shell_local"


def test_the_env_setting_selects_the_agents_env(tmp_path: Path, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("AGENTLY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "agently.toml").write_text('[env]\nname = "shell_local"\n', encoding="utf-8")
    with create_agent(config={"runtime": "agently"}) as agent:
        assert isinstance(agent.env, ShellLocalEnv)
    monkeypatch.setenv("AGENTLY_ENV_NAME", "base")
    with create_agent(config={"runtime": "agently"}) as agent:
        assert type(agent.env) is BaseEnv
    with create_agent(config={"env": {"name": "shell_local", "timeout": 3}}) as agent:
        assert isinstance(agent.env, ShellLocalEnv)
        assert agent.env.shell_options == {"timeout": 3}
    assert type(get_env(Config.load(env={}, cwd=tmp_path.parent))) is BaseEnv  # none set


@pytest.mark.parametrize(("settings", "words"), [
    ({"env": {"name": 3}}, "'[env] name' must be a str, got 3"),
    ({"env": {"name": ""}}, "'[env] name' must not be empty"),
    ({"env": ["shell_local"]}, "[env] must be a table"),
    ({"env": {"name": "base", "bad key": 1}}, "[env] key 'bad key' is not an option name"),
])
def test_bad_env_settings_are_config_errors(settings, words, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failed:
        Config.load(env={}, cwd=tmp_path, overrides=settings)
    assert words in str(failed.value)


def test_an_unknown_name_in_the_env_variable_is_a_config_error(tmp_path: Path) -> None:
    config = Config.load(env={"AGENTLY_ENV_NAME": "nope"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"^env 'nope': Env 'nope' is not installed\. "
                                          r"Installed: base \(agently-core"):
        get_env(config)


def test_an_unknown_env_name_lists_what_is_installed(plugins: PluginManager) -> None:
    with pytest.raises(ConfigError) as failed:
        get_env({"name": "moon_base"}, plugins=plugins)
    text = str(failed.value)
    assert text.startswith("env 'moon_base': Env 'moon_base' is not installed.")
    assert "base (agently-core" in text and "round_counter (agently-core-counter 1.0)" in text
    with pytest.raises(ConfigError, match="Env 'nope' is not installed"):
        create_agent(config={"env": {"name": "nope"}})


def test_bad_env_options_and_bad_factories_are_config_errors(plugins: PluginManager) -> None:
    with pytest.raises(ConfigError, match=r"env 'round_counter' from agently-core-counter 1.0: "
                                          r"bad options \{'colour': 'red'\}: .*colour"):
        get_env({"name": "round_counter", "colour": "red"}, plugins=plugins)
    with pytest.raises(ConfigError, match="has no get_state\\(\\) and get_tools\\(\\): not an Env"):
        get_env("not_an_env", plugins=plugins)
    with pytest.raises(ConfigError, match="env options \\['base_dir'\\] given without an env"):
        get_env({"base_dir": "/tmp"})
    with pytest.raises(TypeError, match="get_env\\(\\) takes a Config, a mapping or a name"):
        get_env(42)
    with pytest.raises(TypeError, match="ShellLocalEnv roots the shell in its own workspace"):
        ShellLocalEnv(root="/x")
    with pytest.raises(TypeError, match="use_env\\(\\) takes an Env"):
        create_agent(plugins=plugins).use_env(NotAnEnv())


# -- a third-party Env through the hook, driven by an agent ----------------------------
def test_a_registered_env_is_built_asked_every_round_mounted_and_cleaned_up(
        plugins: PluginManager) -> None:
    contexts: list[Any] = []

    def planner(context, request):
        contexts.append((context["env_state"], [a["name"] for a in request["action_list"]]))
        if context["round_index"] < 2:
            return {"next_action": "execute",
                    "calls": [{"action": "bump", "kwargs": {"by": 10}}]}
        return {"next_action": "response", "response": "done"}

    agent = create_agent(plugins=plugins)
    agent.use_env("round_counter")
    assert isinstance(agent.env, RoundCounterEnv) and SEEN == []
    agent.register_action_planning_handler(planner)
    result = agent.run("count", max_rounds=5)
    assert result.stop_reason == "response"
    assert [c[0] for c in contexts] == ["counter: asked 1 times", "counter: asked 2 times",
                                        "counter: asked 3 times"]
    assert all(c[1] == ["bump"] for c in contexts)
    assert [r.result for r in result.records] == [11, 12]
    assert SEEN[:2] == ["build", "state 1"]  # built before the first round's state
    with pytest.raises(ConfigError, match="already built"):
        agent.use_env(BaseEnv())
    agent.close()
    assert SEEN[-1] == "cleanup" and SEEN.count("cleanup") == 1


@pytest.mark.anyio
async def test_a_failing_build_ends_the_run_as_failed(plugins: PluginManager) -> None:
    class Broken(Env):
        async def async_build(self) -> None:
            raise OSError("no room for the workspace")

    async with create_agent(plugins=plugins) as agent:
        agent.use_env(Broken())
        agent.register_action_planning_handler(lambda c, r: "never asked")
        result = await agent.async_run("x")
    assert result.stop_reason == "failed"
    assert result.error == ("the agent's env could not be built: OSError: no room for the "
                            "workspace")


# -- a model planner gets the state in its system prompt --------------------------------
def _system_and_tools(planner: str, body: dict[str, Any]) -> tuple[str, list[str]]:
    if planner == "openai_compatible":
        assert body["messages"][0]["role"] == "system"
        return body["messages"][0]["content"], [t["function"]["name"] for t in body["tools"]]
    system = body["instructions"] if planner == "openai_responses" else body["system"]
    if isinstance(system, list):  # Anthropic content blocks
        system = "".join(block["text"] for block in system)
    return system, [t["name"] for t in body["tools"]]


@pytest.mark.parametrize("planner", ["openai_compatible", "openai_responses",
                                     "anthropic_compatible"])
def test_a_model_planner_puts_the_shell_state_in_its_system_prompt(planner: str,
                                                                   monkeypatch) -> None:
    from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-test-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-loopback-test-key")
    replies = [Reply(tool_calls=[ToolCall("run_bash", {"cmd": "pwd"})]), Reply(text="done")]
    with LoopbackModelServer(replies) as server:
        agent = create_agent(config={
            "env": {"name": "shell_local"}, "planner": planner,
            "planner_options": {"model": "stand-in", "base_url": server.base_url}})
        with agent:
            result = agent.run("where am I?")
            workspace = agent.env.workspace
            assert result.stop_reason == "response", result
            assert result.records[0].result["stdout"] == f"{workspace}\n"
            bodies = [r.json for r in server.requests]
        assert not os.path.exists(workspace)
    assert len(bodies) == 2
    for body in bodies:
        system, tools = _system_and_tools(planner, body)
        state = system.split("Environment state:\n", 1)[1].split("\n\n")[0]
        time_line, where, rule = state.split("\n")
        assert time_line.startswith("Current time: 20")
        assert where == f"Workspace: {workspace}" and os.path.isabs(workspace)
        assert rule == "You can only run bash commands in your workspace!!!"
        assert tools == ["run_bash"]


def test_auto_func_without_a_run_builds_the_env_and_gets_its_state(
        plugins: PluginManager) -> None:
    from agently_core_runtime.planners import ScriptedPlanner

    seen: list[Any] = []

    def answer(context, request):
        seen.append(context["env_state"])
        return {"output": 3}

    with create_agent(plugins=plugins) as agent:
        agent.use_env("round_counter")
        agent.set_planner(ScriptedPlanner(outputs=answer))

        @agent.auto_func
        def count() -> int:
            """How many?"""

        assert count() == 3
        assert SEEN[:2] == ["build", "state 1"] and seen == ["counter: asked 1 times"]
    assert SEEN[-1] == "cleanup"


@pytest.mark.anyio
async def test_concurrent_runs_build_the_env_once(plugins: PluginManager) -> None:
    import anyio

    builds: list[int] = []

    class SlowEnv(Env):
        async def async_build(self) -> None:
            builds.append(1)
            await anyio.sleep(0.05)

        def get_tools(self) -> list[Any]:
            def ping() -> str:
                """Answer pong."""
                return "pong"

            return [ping]

    results: list[Any] = []
    async with create_agent(plugins=plugins) as agent:
        agent.use_env(SlowEnv())
        agent.register_action_planning_handler(lambda c, r: "ok")

        async def one() -> None:
            results.append(await agent.async_run("x"))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(one)
    assert builds == [1]
    assert [r.stop_reason for r in results] == ["response"] * 3
