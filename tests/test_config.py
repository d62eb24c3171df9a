"""Config.load: sources, precedence, table merging, environment variables, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agently_core import Config, ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory; an empty agently.toml one level up stops the upward search
    before it can reach any file outside the test."""
    write(tmp_path / "agently.toml", "")
    root = tmp_path / "project"
    root.mkdir()
    return root


def pyproject(root: Path, table: str) -> Path:
    return write(root / "pyproject.toml",
                 '[project]\nname = "demo"\nversion = "0"\n\n[tool.agently-core]\n' + table)


# -- sources and precedence ------------------------------------------------------------
def test_defaults_when_nothing_is_configured(tmp_path: Path) -> None:
    write(tmp_path / "agently.toml", "")
    config = Config.load(env={}, cwd=tmp_path)
    assert config.runtime is None and config.flow is None and config.planner is None
    assert config.executors == {} and config.providers == {}
    assert config.plugins_allow is None and config.plugins_block == ()
    assert config.autoload is True and config.show_deprecation_warnings is True
    assert config.sources == (str(tmp_path / "agently.toml"),)


def test_pyproject_table_is_read(project: Path) -> None:
    pyproject(project, 'runtime = "from-pyproject"\n[tool.agently-core.executors]\npython = "p1"\n')
    config = Config.load(env={}, cwd=project)
    assert config.runtime == "from-pyproject"
    assert config.executors == {"python": "p1"}
    assert config.sources == (f"{project / 'pyproject.toml'} [tool.agently-core]",)


def test_pyproject_without_the_table_is_not_a_source(project: Path) -> None:
    write(project / "pyproject.toml", '[project]\nname = "demo"\n')
    write(project.parent / "agently.toml", 'flow = "parent-flow"\n')
    config = Config.load(env={}, cwd=project)
    assert config.flow == "parent-flow"


def test_agently_toml_beats_pyproject_and_tables_merge_key_by_key(project: Path) -> None:
    pyproject(project, 'runtime = "py"\nflow = "py-flow"\n'
                       '[tool.agently-core.executors]\npython = "py-python"\nbash = "py-bash"\n')
    write(project / "agently.toml", 'runtime = "toml"\n[executors]\npython = "toml-python"\n')
    config = Config.load(env={}, cwd=project)
    assert config.runtime == "toml"
    assert config.flow == "py-flow"
    assert config.executors == {"python": "toml-python", "bash": "py-bash"}
    assert len(config.sources) == 2


def test_environment_beats_files_and_merges_tables(project: Path) -> None:
    write(project / "agently.toml",
          'runtime = "toml"\nplanner = "toml-planner"\n'
          '[executors]\npython = "toml-python"\nbash = "toml-bash"\n'
          '[providers]\nsqlite = "toml-sqlite"\n')
    env = {"AGENTLY_RUNTIME": "env", "AGENTLY_EXECUTOR_PYTHON": "env-python",
           "AGENTLY_PROVIDER_BROWSER": "env-browser"}
    config = Config.load(env=env, cwd=project)
    assert config.runtime == "env"
    assert config.planner == "toml-planner"
    assert config.executors == {"python": "env-python", "bash": "toml-bash"}
    assert config.providers == {"sqlite": "toml-sqlite", "browser": "env-browser"}
    assert config.sources[-1] == "environment"


def test_arguments_beat_environment(project: Path) -> None:
    write(project / "agently.toml", '[executors]\nnode = "toml-node"\n')
    env = {"AGENTLY_RUNTIME": "env", "AGENTLY_EXECUTOR_PYTHON": "env-python"}
    config = Config.load(env=env, cwd=project,
                         overrides={"runtime": "arg", "executors": {"python": "arg-python"}})
    assert config.runtime == "arg"
    assert config.executors == {"node": "toml-node", "python": "arg-python"}
    assert config.sources[-1] == "arguments"


def test_full_precedence_chain(project: Path) -> None:
    pyproject(project, 'runtime = "1"\nflow = "1"\nplanner = "1"\nworkspace_backend = "1"\n')
    write(project / "agently.toml", 'flow = "2"\nplanner = "2"\nworkspace_backend = "2"\n')
    env = {"AGENTLY_PLANNER": "3", "AGENTLY_WORKSPACE_BACKEND": "3"}
    config = Config.load(env=env, cwd=project, overrides={"workspace_backend": "4"})
    assert (config.runtime, config.flow, config.planner, config.workspace_backend) == (
        "1", "2", "3", "4")


def test_nearest_directory_with_a_config_file_wins(project: Path) -> None:
    write(project / "agently.toml", 'runtime = "outer"\n')
    inner = project / "sub" / "deeper"
    inner.mkdir(parents=True)
    assert Config.load(env={}, cwd=inner).runtime == "outer"
    pyproject(project / "sub", 'runtime = "inner"\n')
    assert Config.load(env={}, cwd=inner).runtime == "inner"


def test_env_argument_replaces_the_process_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLY_RUNTIME", "leaked")
    assert Config.load(env={}, cwd=project).runtime is None


def test_agently_config_names_the_file(project: Path, tmp_path: Path) -> None:
    write(project / "agently.toml", 'runtime = "local"\n')
    pyproject(project, 'flow = "local-flow"\n')
    chosen = write(tmp_path / "elsewhere" / "custom.toml", 'runtime = "chosen"\n')
    config = Config.load(env={"AGENTLY_CONFIG": str(chosen)}, cwd=project)
    assert config.runtime == "chosen"
    assert config.flow is None  # the explicit file replaces the file search
    assert config.sources == (str(chosen),)


def test_agently_config_pointing_to_a_missing_file(project: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "agently.toml"
    with pytest.raises(ConfigError, match="AGENTLY_CONFIG") as info:
        Config.load(env={"AGENTLY_CONFIG": str(missing)}, cwd=project)
    assert str(missing) in str(info.value)


def test_agently_config_pointing_to_a_directory(project: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file"):
        Config.load(env={"AGENTLY_CONFIG": str(tmp_path)}, cwd=project)


def test_invalid_toml_is_a_config_error(project: Path) -> None:
    bad = write(project / "agently.toml", "runtime = = 'x'\n")
    with pytest.raises(ConfigError, match="cannot read") as info:
        Config.load(env={}, cwd=project)
    assert str(bad) in str(info.value)


def test_config_is_immutable(project: Path) -> None:
    config = Config.load(env={}, cwd=project)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.runtime = "x"  # type: ignore[misc]


# -- executors, providers ----------------------------------------------------------------
def test_executor_and_provider_env_vars(project: Path) -> None:
    env = {
        "AGENTLY_EXECUTOR_PYTHON": "bubblewrap-python",
        "AGENTLY_EXECUTOR_NODE_JS": "node",
        "AGENTLY_PROVIDER_SQLITE": "sqlite-local",
        "AGENTLY_PROVIDER_MCP": "mcp-stdio",
        "AGENTLY_EXECUTOR_": "ignored: no kind",
    }
    config = Config.load(env=env, cwd=project)
    assert config.executors == {"python": "bubblewrap-python", "node_js": "node"}
    assert config.providers == {"sqlite": "sqlite-local", "mcp": "mcp-stdio"}


def test_kinds_in_files_are_normalised(project: Path) -> None:
    write(project / "agently.toml", '[executors]\n"Node-JS" = "node"\n[providers]\n" SQLite " = "x"\n')
    config = Config.load(env={}, cwd=project)
    assert config.executors == {"node_js": "node"}
    assert config.providers == {"sqlite": "x"}


def test_scalar_env_vars(project: Path) -> None:
    env = {"AGENTLY_FLOW": "f", "AGENTLY_PLANNER": "p", "AGENTLY_APPROVAL_HANDLER": "auto_approve",
           "AGENTLY_WORKSPACE_BACKEND": "local",
           "AGENTLY_RUNTIME_SHOW_DEPRECATION_WARNINGS": "off"}
    config = Config.load(env=env, cwd=project)
    assert config.flow == "f" and config.planner == "p"
    assert config.approval_handler == "auto_approve" and config.workspace_backend == "local"
    assert config.show_deprecation_warnings is False


def test_unrelated_environment_variables_are_ignored(project: Path) -> None:
    config = Config.load(env={"PATH": "/bin", "AGENTLYX_RUNTIME": "no", "HOME": "/"}, cwd=project)
    assert config.runtime is None
    assert "environment" not in config.sources


# -- plugin switches ---------------------------------------------------------------------
def test_plugin_allow_and_block_env_vars(project: Path) -> None:
    env = {"AGENTLY_PLUGINS_ALLOW": "runtime, function ,,", "AGENTLY_PLUGINS_BLOCK": "python"}
    config = Config.load(env=env, cwd=project)
    assert config.plugins_allow == ("runtime", "function")
    assert config.plugins_block == ("python",)


def test_plugin_lists_from_a_file(project: Path) -> None:
    write(project / "agently.toml", '[plugins]\nallow = ["a", "b"]\nblock = "c,d"\nautoload = false\n')
    config = Config.load(env={}, cwd=project)
    assert config.plugins_allow == ("a", "b")
    assert config.plugins_block == ("c", "d")
    assert config.autoload is False


def test_env_plugin_lists_override_the_file_lists(project: Path) -> None:
    write(project / "agently.toml", '[plugins]\nallow = ["a"]\nblock = ["b"]\n')
    config = Config.load(env={"AGENTLY_PLUGINS_BLOCK": "z"}, cwd=project)
    assert config.plugins_allow == ("a",)  # tables merge key by key
    assert config.plugins_block == ("z",)


@pytest.mark.parametrize(
    ("name", "value", "autoload"),
    [
        ("AGENTLY_PLUGINS_AUTOLOAD", "0", False),
        ("AGENTLY_PLUGINS_AUTOLOAD", "false", False),
        ("AGENTLY_PLUGINS_AUTOLOAD", "YES", True),
        ("AGENTLY_DISABLE_PLUGIN_AUTOLOAD", "1", False),
        ("AGENTLY_DISABLE_PLUGIN_AUTOLOAD", "no", True),
    ],
)
def test_autoload_env_vars(project: Path, name: str, value: str, autoload: bool) -> None:
    assert Config.load(env={name: value}, cwd=project).autoload is autoload


@pytest.mark.parametrize(
    "name", ["AGENTLY_PLUGINS_AUTOLOAD", "AGENTLY_DISABLE_PLUGIN_AUTOLOAD",
             "AGENTLY_RUNTIME_SHOW_DEPRECATION_WARNINGS"]
)
def test_boolean_env_vars_reject_nonsense(project: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.load(env={name: "maybe"}, cwd=project)


def test_no_allow_list_means_everything_is_allowed(project: Path) -> None:
    assert Config.load(env={}, cwd=project).plugins_allow is None


# -- unknown keys and bad types ----------------------------------------------------------
def test_unknown_top_level_key_in_a_file(project: Path) -> None:
    path = write(project / "agently.toml", 'runtime = "x"\nruntme = "typo"\n')
    with pytest.raises(ConfigError, match="runtme") as info:
        Config.load(env={}, cwd=project)
    assert str(path) in str(info.value)
    assert "runtime" in str(info.value)  # lists the known settings


def test_unknown_key_in_pyproject_table(project: Path) -> None:
    pyproject(project, 'colour = "blue"\n')
    with pytest.raises(ConfigError, match="colour"):
        Config.load(env={}, cwd=project)


def test_unknown_key_in_plugins_table(project: Path) -> None:
    write(project / "agently.toml", '[plugins]\nallowed = ["x"]\n')
    with pytest.raises(ConfigError, match=r"allowed.*known: allow, autoload, block"):
        Config.load(env={}, cwd=project)


def test_unknown_key_in_action_table(project: Path) -> None:
    write(project / "agently.toml", '[action]\nmax_round = 3\n')
    with pytest.raises(ConfigError, match="max_round"):
        Config.load(env={}, cwd=project)


def test_unknown_override_key(project: Path) -> None:
    with pytest.raises(ConfigError, match="arguments: unknown setting 'bogus'"):
        Config.load(env={}, cwd=project, overrides={"bogus": 1})


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("runtime = 5\n", "'runtime' must be a str"),
        ('[runtime]\nshow_deprecation_warnings = "yes"\n',
         "'runtime.show_deprecation_warnings' must be a bool"),
        ('deprecation_warnings = false\n', "unknown setting 'deprecation_warnings'"),
        ("[runtime]\nshow_deprecations = false\n",
         r"unknown key\(s\) in \[runtime\]: show_deprecations; known: name, "
         "show_deprecation_warnings"),
        ('executors = "python"\n', r"\[executors\] must be a table"),
        ("plugins = [1, 2]\n", r"\[plugins\] must be a table"),
    ],
)
def test_bad_types_in_a_file(project: Path, toml: str, needle: str) -> None:
    write(project / "agently.toml", toml)
    with pytest.raises(ConfigError, match=needle):
        Config.load(env={}, cwd=project)


def test_the_runtime_table(project: Path) -> None:
    """``runtime.show_deprecation_warnings`` is set in a ``[runtime]`` table (beside the
    ActionRuntime's ``name``, the same as ``runtime = "NAME"``), as a dotted key in code,
    or from AGENTLY_RUNTIME_SHOW_DEPRECATION_WARNINGS; layers override it like any
    setting and keep the runtime's name."""
    write(project / "agently.toml", '[runtime]\nname = "chosen"\nshow_deprecation_warnings = false\n')
    config = Config.load(env={}, cwd=project)
    assert (config.runtime, config.show_deprecation_warnings) == ("chosen", False)
    assert config.to_dict()["runtime.show_deprecation_warnings"] is False
    on = Config.load(env={}, cwd=project,
                     overrides={"runtime.show_deprecation_warnings": True})
    assert (on.runtime, on.show_deprecation_warnings) == ("chosen", True)
    nested = Config.load(env={"AGENTLY_RUNTIME": "env-runtime"}, cwd=project,
                         overrides={"runtime": {"show_deprecation_warnings": True}})
    assert (nested.runtime, nested.show_deprecation_warnings) == ("env-runtime", True)
    from_env = Config.load(env={"AGENTLY_RUNTIME_SHOW_DEPRECATION_WARNINGS": "1"}, cwd=project)
    assert from_env.show_deprecation_warnings is True and from_env.runtime == "chosen"
    with pytest.raises(ConfigError, match="set twice"):
        Config.load(env={}, cwd=project, overrides={
            "runtime": {"show_deprecation_warnings": True},
            "runtime.show_deprecation_warnings": False})
    with pytest.raises(ConfigError, match="'runtime' must be a str"):
        Config.load(env={}, cwd=project, overrides={"runtime": {"name": 3}})


def test_bad_type_in_overrides(project: Path) -> None:
    with pytest.raises(ConfigError, match="arguments: 'flow' must be a str"):
        Config.load(env={}, cwd=project, overrides={"flow": ["a"]})


def test_action_and_policy_tables(project: Path) -> None:
    write(project / "agently.toml",
          '[action]\nmax_rounds = 3\nconcurrency = 2\nplanning_protocol = "native_tool_calls"\n'
          '[policy]\ntimeout_seconds = 1.5\n')
    config = Config.load(env={}, cwd=project, overrides={"action": {"max_rounds": 4}})
    assert config.action == {"max_rounds": 4, "concurrency": 2,
                             "planning_protocol": "native_tool_calls"}
    assert config.policy == {"timeout_seconds": 1.5}


def test_plugins_autoload_must_be_a_boolean(project: Path) -> None:
    write(project / "agently.toml", '[plugins]\nautoload = "false"\n')
    with pytest.raises(ConfigError, match="autoload"):
        Config.load(env={}, cwd=project)


def test_plugins_allow_must_be_a_list_or_string(project: Path) -> None:
    write(project / "agently.toml", "[plugins]\nallow = 5\n")
    with pytest.raises(ConfigError, match="allow"):
        Config.load(env={}, cwd=project)


def test_executor_names_must_be_strings(project: Path) -> None:
    write(project / "agently.toml", "[executors]\npython = 5\n")
    with pytest.raises(ConfigError, match="python"):
        Config.load(env={}, cwd=project)


def test_action_settings_must_have_the_right_type(project: Path) -> None:
    write(project / "agently.toml", '[action]\nmax_rounds = "many"\n')
    with pytest.raises(ConfigError, match="max_rounds"):
        Config.load(env={}, cwd=project)


def test_unknown_policy_key_is_a_config_error(project: Path) -> None:
    write(project / "agently.toml", "[policy]\ntimeout = 3\n")
    with pytest.raises(ConfigError, match="timeout"):
        Config.load(env={}, cwd=project)


# -- approval timeout, empty variables -------------------------------------------------------
def test_approval_timeout(project: Path) -> None:
    assert Config.load(env={}, cwd=project).approval_timeout is None
    assert Config.load(env={"AGENTLY_APPROVAL_TIMEOUT": "2.5"}, cwd=project).approval_timeout == 2.5
    write(project / "agently.toml", "approval_timeout = 3\n")
    assert Config.load(env={}, cwd=project).approval_timeout == 3


@pytest.mark.parametrize("toml", [
    "approval_timeout = 0\n", "approval_timeout = -1\n",
    "approval_timeout = -1.0\n", 'approval_timeout = "soon"\n', "approval_timeout = true\n",
])
def test_approval_timeout_must_be_a_positive_number(project: Path, toml: str) -> None:
    write(project / "agently.toml", toml)
    with pytest.raises(ConfigError, match="approval_timeout"):
        Config.load(env={}, cwd=project)


def test_approval_timeout_env_must_be_a_number(project: Path) -> None:
    with pytest.raises(ConfigError, match="AGENTLY_APPROVAL_TIMEOUT"):
        Config.load(env={"AGENTLY_APPROVAL_TIMEOUT": "soon"}, cwd=project)


def test_empty_environment_variables_count_as_unset(project: Path) -> None:
    write(project / "agently.toml", 'runtime = "from-file"\n')
    config = Config.load(env={"AGENTLY_RUNTIME": "", "AGENTLY_PLUGINS_AUTOLOAD": " ",
                              "AGENTLY_PLUGINS_ALLOW": ""}, cwd=project)
    assert config.runtime == "from-file"
    assert config.autoload is True
    assert config.plugins_allow is None


def test_explicit_autoload_variable_wins_over_the_disable_switch(project: Path) -> None:
    env = {"AGENTLY_PLUGINS_AUTOLOAD": "1", "AGENTLY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert Config.load(env=env, cwd=project).autoload is True


@pytest.mark.parametrize(("text", "holds"), [
    ('[tool.agently-core]\nplanner = "x"\n', True),
    ('[tool."agently-core"]\nplanner = "x"\n', True),
    ("[ tool . 'agently-core' . policy ]\ntimeout_seconds = 3.0\n", True),
    ('[tool]\nagently-core = { planner = "x" }\n', True),
    ('tool = { agently-core = { planner = "x" } }\n', True),
    ('tool.agently-core.planner = "x"\n', True),
    ('[tool."agently\\u002Dcore"]\nplanner = "x"\n', True),
    ('[project]\nname = "agently-core"\n[tool.uv.sources]\nagently-core = { workspace = true }\n',
     False),
])
def test_a_pyproject_without_the_table_is_not_parsed(tmp_path, text: str, holds: bool) -> None:
    """Config.load skips tomllib for a pyproject.toml that cannot hold [tool.agently-core]
    (most projects), and still reads the table in every way TOML can spell it."""
    from agently_core.config import _may_hold_table

    (tmp_path / "pyproject.toml").write_text(text)
    assert _may_hold_table(tmp_path / "pyproject.toml") is holds
    config = Config.load(env={}, cwd=tmp_path)
    assert config.planner == ("x" if holds and "planner" in text else None)
