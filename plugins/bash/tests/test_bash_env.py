"""ShellLocalEnv (``[env] name = "shell_local"``, registered by this plugin): a workspace per
run session, its state string, and run_bash rooted in that workspace and nowhere else.

One agent (one sandbox) is shared by the cases that only call run_bash.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agently_core import Config, ConfigError, create_agent
from agently_core.env import SHELL_INSTRUCTION, ShellLocalEnv, get_env

STATE = re.compile(r"Current time: (?P<time>\S+)\nWorkspace: (?P<path>/\S+)\n"
                   r"You can only run bash commands in your workspace!!!")


def _config(tmp: Path, **settings: Any) -> Config:
    return Config.load(env={}, cwd=tmp, overrides=settings)


@pytest.fixture(scope="module")
def env_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An agent on ``[env] name = "shell_local"`` with its env built (run_bash mounted)."""
    agent = create_agent(config=_config(tmp_path_factory.mktemp("cfg"),
                                        env={"name": "shell_local"}))
    agent.build_env()
    yield agent
    agent.close()


def bash(agent: Any, cmd: str, **kwargs: Any) -> Any:
    return agent.action.execute_action("run_bash", {"cmd": cmd, **kwargs})


def test_shell_local_comes_from_the_bash_plugin(tmp_path: Path) -> None:
    from agently_core.plugins import PluginManager

    registration = PluginManager(_config(tmp_path)).load().get("env", "shell_local")
    assert registration.distribution == "agently-core-bash"
    assert isinstance(get_env(_config(tmp_path, env="shell_local")), ShellLocalEnv)


def test_the_state_is_the_time_the_workspace_and_the_instruction(env_agent: Any) -> None:
    env = env_agent.env
    state = env.get_state()
    match = STATE.fullmatch(state)
    assert match, state
    assert state.endswith("\n" + SHELL_INSTRUCTION)
    assert SHELL_INSTRUCTION == "You can only run bash commands in your workspace!!!"
    moment = datetime.fromisoformat(match["time"])
    assert moment.tzinfo is not None
    assert abs(datetime.now().astimezone() - moment) < timedelta(seconds=5)
    assert match["path"] == env.workspace == os.path.realpath(env.workspace)
    assert os.path.isdir(env.workspace)


def test_run_bash_runs_in_the_workspace_and_writes_there(env_agent: Any) -> None:
    workspace = env_agent.env.workspace
    record = bash(env_agent, "pwd; echo hello > note.txt; mkdir sub; ls")
    assert record.status == "success", record
    assert record.result["stdout"] == f"{workspace}\nnote.txt\nsub\n"
    assert Path(workspace, "note.txt").read_text() == "hello\n"


def test_run_bash_cannot_write_outside_the_workspace(env_agent: Any) -> None:
    outside = Path(tempfile.mkdtemp(prefix="agently-outside-", dir="/tmp"))
    os.chmod(outside, 0o777)  # writable by any uid: only the sandbox keeps it out
    try:
        record = bash(env_agent, f"touch {outside}/escaped; echo x > {outside}/escaped2; "
                                 f"ls {outside}")
        assert record.status == "success" and record.result["exit_code"] != 0, record
        assert list(outside.iterdir()) == []
        refused = bash(env_agent, "touch escaped", workdir=str(outside))
        assert refused.status != "success" or refused.result["exit_code"] != 0, refused
        assert list(outside.iterdir()) == []
    finally:
        for item in outside.iterdir():
            item.unlink()
        outside.rmdir()


def test_each_session_has_its_own_workspace_and_cleanup_removes_it(tmp_path: Path,
                                                                   shared_dir: Any) -> None:
    base = shared_dir()  # the sandbox's uid must reach it: not under pytest's 0700 tmp
    config = _config(tmp_path, env={"name": "shell_local", "base_dir": str(base)})
    first, second = create_agent(config=config), create_agent(config=config)
    try:
        assert first.env.workspace is None  # nothing is made before the build
        first.build_env()
        second.build_env()
        one, two = first.env.workspace, second.env.workspace
        assert one != two and Path(one).parent.parent == Path(two).parent.parent == base
        record = bash(first, "echo data > kept.txt; mkdir -p a/b; touch a/b/c")
        assert record.status == "success" and record.result["exit_code"] == 0, record
    finally:
        first.close()
        second.close()
    assert not os.path.exists(one) and not os.path.exists(two)
    assert list(base.iterdir()) == []
    first.env.cleanup()  # twice is harmless


def test_cleanup_removes_a_tree_deeper_than_rmtree_can(tmp_path: Path) -> None:
    env = ShellLocalEnv(base_dir=tmp_path)
    env.build()
    workspace = env.workspace
    folder = os.open(workspace, os.O_RDONLY)
    for _ in range(1200):  # shutil.rmtree recurses once per level and fails past ~1000
        os.mkdir("d", dir_fd=folder)
        inner = os.open("d", os.O_RDONLY, dir_fd=folder)
        os.close(folder)
        folder = inner
    os.close(folder)
    env.cleanup()
    assert not os.path.exists(workspace) and env.workspace is None


def test_tools_and_state_need_a_build_and_options_are_checked(tmp_path: Path) -> None:
    env = ShellLocalEnv()
    with pytest.raises(RuntimeError, match="build\\(\\) it first"):
        env.get_state()
    with pytest.raises(RuntimeError, match="build\\(\\) it first"):
        env.get_tools()
    with pytest.raises(ConfigError, match="base_dir '/no/such/dir' is not a directory"):
        ShellLocalEnv(base_dir="/no/such/dir").build()
    with pytest.raises(TypeError, match="base_dir must be a directory path"):
        ShellLocalEnv(base_dir=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="env 'shell_local' from agently-core-bash"):
        get_env(_config(tmp_path, env={"name": "shell_local", "root": "/srv"}))
    agent = create_agent(config=_config(tmp_path, env={"name": "shell_local",
                                                        "commands": ["no-such-program"]}))
    try:
        agent.register_action_planning_handler(lambda c, r: "never asked")
        result = agent.run("x")
        assert result.stop_reason == "failed"
        assert result.error.startswith("the agent's env could not be built: ValueError: ")
        assert "no-such-program" in result.error
    finally:
        agent.close()
    assert agent.env.workspace is None


def test_the_workspace_cannot_be_found_by_listing(tmp_path: Path) -> None:
    """The workspace must be writable by the sandbox's own uid, so by anyone who knows its
    path: its parent is private and unlistable, and its name cannot be guessed."""
    base = tmp_path / "base"
    base.mkdir()
    base.chmod(0o755)
    env = ShellLocalEnv(base_dir=base)
    env.build()
    try:
        workspace = Path(env.workspace)
        parent = workspace.parent
        assert parent.parent == base and parent.name.startswith("agently-env-")
        assert stat.S_IMODE(parent.stat().st_mode) == 0o711  # others may pass, not list
        assert stat.S_IMODE(workspace.stat().st_mode) == 0o777
        assert len(workspace.name) == 32 and int(workspace.name, 16) >= 0
    finally:
        env.cleanup()
    assert list(base.iterdir()) == []
