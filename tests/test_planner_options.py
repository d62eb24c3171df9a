"""Issue 11, point 2: planner options from configuration for every planner.

``[planner_options]`` in agently.toml / ``[tool.agently-core]`` merges key by key with
``AGENTLY_PLANNER_OPTION_<KEY>`` and ``create_agent(config=...)``; ``set_planner(name,
**options)`` wins over all of them; the configured planner is created with the merged
options and bound to the agent; a configuration dump never shows a secret-named option's
value; a planner that is not installed names its distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agently_core import Config, ConfigError, NotInstalledError, PluginManager, create_agent
from agently_core.testing import make_plugin, make_plugin_manager


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "agently.toml", "")
    root = tmp_path / "project"
    root.mkdir()
    return root


class RecordingPlanner:
    """A planner that keeps its options and the agents it was bound to."""

    made: list[RecordingPlanner] = []

    def __init__(self, *, model: str | None = None, temperature: float | None = None,
                 stream: bool = True, max_tokens: int | None = None,
                 base_url: str | None = None, extra_headers: dict[str, str] | None = None,
                 api_key_env: str = "RECORDING_KEY", answer: str = "done") -> None:
        self.options = {"model": model, "temperature": temperature, "stream": stream,
                        "max_tokens": max_tokens, "base_url": base_url,
                        "extra_headers": extra_headers, "api_key_env": api_key_env}
        self.answer = answer
        self.bound: list[Any] = []
        RecordingPlanner.made.append(self)

    def bind(self, agent: Any) -> None:
        self.bound.append(agent)

    async def plan(self, context: Any, request: Any) -> Any:
        return {"next_action": "response", "response": self.answer}


@pytest.fixture(autouse=True)
def _forget_planners() -> None:
    RecordingPlanner.made.clear()


def plugins(config: Config) -> PluginManager:
    import agently_core_function.plugin as function_plugin
    import agently_core_runtime.plugin as runtime_plugin

    return make_plugin_manager(function_plugin, runtime_plugin,
                               make_plugin(planner={"recording": RecordingPlanner,
                                                    "other": RecordingPlanner}),
                               config=config)


# -- Config ----------------------------------------------------------------------------------
def test_the_table_merges_key_by_key_across_every_source(project: Path) -> None:
    write(project / "pyproject.toml", '[project]\nname = "demo"\n\n[tool.agently-core]\n'
          'planner = "recording"\n[tool.agently-core.planner_options]\nmodel = "from-pyproject"\n'
          'temperature = 0.1\nbase-url = "http://pyproject"\n')
    write(project / "agently.toml", '[planner_options]\nmodel = "from-toml"\n')
    env = {"AGENTLY_PLANNER_OPTION_MAX_TOKENS": "256", "AGENTLY_PLANNER_OPTION_STREAM": "false",
           "AGENTLY_PLANNER_OPTION_EXTRA_HEADERS": '{"X-Title": "demo"}',
           "AGENTLY_PLANNER_OPTION_BASE_URL": "http://127.0.0.1:9/v1"}
    config = Config.load(env=env, cwd=project,
                         overrides={"planner_options": {"temperature": 0.5}})
    assert config.planner == "recording"
    assert config.planner_options == {
        "model": "from-toml",                 # agently.toml beats pyproject
        "temperature": 0.5,                   # arguments beat files
        "base_url": "http://127.0.0.1:9/v1",  # the environment beats files; base-url -> base_url
        "max_tokens": 256, "stream": False,   # JSON when it parses
        "extra_headers": {"X-Title": "demo"},
    }


def test_environment_values_are_json_when_they_parse_else_text(project: Path) -> None:
    env = {"AGENTLY_PLANNER_OPTION_MODEL": "gpt-4o-mini", "AGENTLY_PLANNER_OPTION_TIMEOUT": "2.5",
           "AGENTLY_PLANNER_OPTION_NOTE": "{not json", "AGENTLY_PLANNER_OPTION_EMPTY": "",
           "AGENTLY_PLANNER_OPTION_": "ignored"}
    config = Config.load(env=env, cwd=project)
    assert config.planner_options == {"model": "gpt-4o-mini", "timeout": 2.5,
                                      "note": "{not json"}


@pytest.mark.parametrize(("toml", "needle"), [
    ('planner_options = "model=x"\n', "[planner_options] must be a table"),
    ('[planner_options]\n"bad key" = 1\n', "'bad key' is not an option name"),
    ('[planner_options]\n"" = 1\n', "is not an option name"),
])
def test_bad_tables_are_config_errors(project: Path, toml: str, needle: str) -> None:
    write(project / "agently.toml", toml)
    with pytest.raises(ConfigError, match=__import__("re").escape(needle)):
        Config.load(env={}, cwd=project)


def test_bad_override_keys_are_config_errors(project: Path) -> None:
    with pytest.raises(ConfigError, match="is not an option name"):
        Config.load(env={}, cwd=project, overrides={"planner_options": {3: "x"}})


def test_a_dump_masks_secret_named_options(project: Path) -> None:
    """No value of a secret-named option shows in repr(config) or config.to_dict(): an
    Authorization header, a token, a nested secret; a variable's name (api_key_env) shows."""
    config = Config.load(env={}, cwd=project, overrides={"planner_options": {
        "model": "m", "api_key_env": "MY_KEY_VARIABLE",
        "extra_headers": {"Authorization": "Bearer sk-live-0123456789", "X-Title": "demo"},
        "access_token": "tok-abcdef123456", "nested": {"password": "hunter2-secret"}}})
    dumped = config.to_dict()["planner_options"]
    assert dumped == {"model": "m", "api_key_env": "MY_KEY_VARIABLE",
                      "extra_headers": {"Authorization": "***", "X-Title": "demo"},
                      "access_token": "***", "nested": {"password": "***"}}
    for text in (repr(config), str(config), repr(config.to_dict())):
        for secret in ("sk-live-0123456789", "tok-abcdef123456", "hunter2-secret"):
            assert secret not in text
        assert "MY_KEY_VARIABLE" in text
    assert config.planner_options["access_token"] == "tok-abcdef123456"  # the planner gets it


# -- the agent -------------------------------------------------------------------------------
def test_the_configured_planner_gets_the_merged_options_and_is_bound(project: Path) -> None:
    write(project / "agently.toml", 'planner = "recording"\n[planner_options]\n'
          'model = "from-toml"\ntemperature = 0.2\n')
    config = Config.load(env={"AGENTLY_PLANNER_OPTION_MAX_TOKENS": "64"}, cwd=project)
    agent = create_agent(plugins=plugins(config))
    assert RecordingPlanner.made == []  # created on first use, not with the agent
    result = agent.run("hi")
    assert result.response == "done"
    [planner] = RecordingPlanner.made
    assert planner.options["model"] == "from-toml" and planner.options["temperature"] == 0.2
    assert planner.options["max_tokens"] == 64
    assert planner.bound == [agent]
    agent.run("again")
    assert len(RecordingPlanner.made) == 1 and planner.bound == [agent]  # once
    agent.close()


def test_create_agent_config_dict(project: Path) -> None:
    import agently_core_function.plugin as function_plugin
    import agently_core_runtime.plugin as runtime_plugin

    manager = make_plugin_manager(function_plugin, runtime_plugin,
                                  make_plugin(planner={"recording": RecordingPlanner}),
                                  config=Config.load(env={}, cwd=project, overrides={
                                      "planner": "recording",
                                      "planner_options": {"model": "m1", "answer": "a1"}}))
    agent = create_agent(plugins=manager)
    assert agent.run("x").response == "a1"
    assert RecordingPlanner.made[0].options["model"] == "m1"
    agent.close()


def test_create_agent_config_dict_with_installed_plugins(project: Path, monkeypatch) -> None:
    """create_agent(config={...}) with the real scripted planner of agently-core-runtime."""
    monkeypatch.chdir(project)
    agent = create_agent(config={"planner": "scripted",
                                 "planner_options": {"response": "scripted by config"}})
    assert agent.run("x").response == "scripted by config"
    agent.close()


def test_set_planner_options_win_over_configuration(project: Path) -> None:
    config = Config.load(env={"AGENTLY_PLANNER_OPTION_MODEL": "from-env"}, cwd=project,
                         overrides={"planner": "recording",
                                    "planner_options": {"temperature": 0.3}})
    agent = create_agent(plugins=plugins(config))
    agent.set_planner("recording", model="explicit")
    [planner] = RecordingPlanner.made
    assert planner.options["model"] == "explicit" and planner.options["temperature"] == 0.3
    assert planner.bound == [agent]
    agent.close()


def test_options_belong_to_the_configured_planner(project: Path) -> None:
    """Configured options go to the configured planner (or any, when none is
    configured), never to another planner the code picks."""
    config = Config.load(env={}, cwd=project, overrides={
        "planner": "recording", "planner_options": {"model": "for-recording"}})
    agent = create_agent(plugins=plugins(config))
    agent.set_planner("other")
    assert RecordingPlanner.made[-1].options["model"] is None
    assert agent.planner_options("other") == {}
    assert agent.planner_options() == {"model": "for-recording"}
    unconfigured = create_agent(plugins=plugins(Config.load(
        env={"AGENTLY_PLANNER_OPTION_MODEL": "any"}, cwd=project)))
    unconfigured.set_planner("other")
    assert RecordingPlanner.made[-1].options["model"] == "any"
    agent.close()
    unconfigured.close()


def test_a_planner_object_is_bound_too(project: Path) -> None:
    agent = create_agent(plugins=plugins(Config.load(env={}, cwd=project)))
    planner = RecordingPlanner()
    agent.set_planner(planner)
    assert planner.bound == [agent]
    agent.close()


def test_an_unknown_option_is_a_config_error_naming_the_planner(project: Path) -> None:
    config = Config.load(env={"AGENTLY_PLANNER_OPTION_MODLE": "typo"}, cwd=project,
                         overrides={"planner": "recording"})
    agent = create_agent(plugins=plugins(config))
    with pytest.raises(ConfigError, match=r"planner 'recording' does not take.*modle"):
        agent.run("x")
    with pytest.raises(ConfigError, match="planner 'recording' does not take"):
        agent.set_planner("recording", colour="blue")
    agent.close()


def test_secret_named_options_are_registered_with_the_redactor(project: Path) -> None:
    config = Config.load(env={}, cwd=project, overrides={
        "planner": "recording", "planner_options": {
            "extra_headers": {"Authorization": "Bearer hdr-token-9f8e7d", "X-Title": "demo-app"},
            "api_key_env": "RECORDING_KEY"}})
    agent = create_agent(plugins=plugins(config))
    agent.run("x")
    assert agent.redactor.text("sent hdr-token-9f8e7d") == "sent ***"
    assert agent.redactor.text("Bearer hdr-token-9f8e7d") == "***"
    assert agent.redactor.text("demo-app RECORDING_KEY") == "demo-app RECORDING_KEY"
    agent.close()


@pytest.mark.parametrize(("name", "distribution"), [
    ("openai_compatible", "agently-core-openai"), ("openai_responses", "agently-core-openai"),
    ("anthropic_compatible", "agently-core-anthropic")])
def test_a_model_planner_that_is_not_installed_names_its_distribution(
        project: Path, name: str, distribution: str) -> None:
    agent = create_agent(plugins=plugins(Config.load(env={}, cwd=project)))
    with pytest.raises(NotInstalledError, match=f"pip install {distribution}"):
        agent.set_planner(name, model="m")
    configured = create_agent(plugins=plugins(Config.load(env={}, cwd=project,
                                                          overrides={"planner": name})))
    with pytest.raises(NotInstalledError, match=f"pip install {distribution}"):
        configured.run("x")
    agent.close()
    configured.close()
