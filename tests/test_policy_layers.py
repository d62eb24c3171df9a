"""Policy layers only narrow: host configuration -> agent -> action package -> call.

Allowlists and roots intersect, deny lists unite, limits take the minimum, network=False,
read_only=True and allow_*=False win, the stricter approval mode wins, and only a package's
own option widens that package's default. The end-to-end cases run the real Bash sandbox.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import agently_core
from agently_core.models import Policy


def meet(*layers: dict[str, Any]) -> Policy:
    policy = Policy()
    for layer in layers:
        policy = policy.merge(layer)
    return policy


# -- the rules, one field kind at a time -------------------------------------------------------
@pytest.mark.parametrize("field", ["timeout_seconds", "max_output_bytes", "max_memory_bytes",
                                   "max_cpu_seconds", "max_processes", "max_file_bytes",
                                   "max_workspace_bytes"])
def test_limits_take_the_minimum_in_every_order(field: str) -> None:
    assert getattr(meet({field: 5}, {field: 50}), field) == 5
    assert getattr(meet({field: 50}, {field: 5}), field) == 5
    assert getattr(meet({field: 50}, {}), field) == 50


def test_command_allowlists_intersect_by_program() -> None:
    package = ["/usr/bin/ls", "/usr/bin/cat", "/usr/bin/grep"]
    assert meet({"command_allowlist": ["echo"]},
                {"command_allowlist": package}).command_allowlist == []
    assert meet({"command_allowlist": ["ls", "grep", "rm"]},
                {"command_allowlist": package}).command_allowlist == ["/usr/bin/ls",
                                                                      "/usr/bin/grep"]
    assert meet({"command_allowlist": package},
                {"command_allowlist": ["cat"]}).command_allowlist == ["/usr/bin/cat"]
    # the same program under another spelling of its directory (/bin -> usr/bin)
    if os.path.realpath("/bin/ls") == os.path.realpath("/usr/bin/ls"):
        assert meet({"command_allowlist": ["/bin/ls"]},
                    {"command_allowlist": package}).command_allowlist == ["/bin/ls"]
    # another name of the same file is another program (multi-call binaries)
    assert meet({"command_allowlist": ["/usr/bin/ls"]},
                {"command_allowlist": ["/usr/bin/dir"]}).command_allowlist == []


def test_workspace_roots_intersect_as_trees(tmp_path) -> None:
    a, b, inner = tmp_path / "a", tmp_path / "b", tmp_path / "a" / "inner"
    inner.mkdir(parents=True)
    b.mkdir()
    assert meet({"workspace_roots": [str(a)]},
                {"workspace_roots": [str(b)]}).workspace_roots == []
    assert meet({"workspace_roots": [str(a)]},
                {"workspace_roots": [str(inner), str(b)]}).workspace_roots == [str(inner)]
    assert meet({"workspace_roots": [str(inner)]},
                {"workspace_roots": [str(tmp_path)]}).workspace_roots == [str(inner)]
    link = tmp_path / "link"
    link.symlink_to(b)
    assert meet({"workspace_roots": [str(link)]},
                {"workspace_roots": [str(b)]}).workspace_roots == [str(b)]


def test_env_passthrough_intersects_and_path_deny_unites() -> None:
    assert meet({"env_passthrough": ["HOME", "LANG"]},
                {"env_passthrough": ["LANG", "API_KEY"]}).env_passthrough == ["LANG"]
    assert meet({"path_deny": ["*.key"]}, {"path_deny": ["*.pem", "*.key"]}).path_deny == [
        "*.key", "*.pem"]


def test_path_allow_groups_must_all_match() -> None:
    policy = meet({"path_allow": ["docs/*", "src/*"]}, {"path_allow": ["*.md"]})
    assert policy.path_allow == [["docs/*", "src/*"], ["*.md"]]
    assert policy.path_allowed("docs/guide.md")
    assert not policy.path_allowed("docs/guide.py")  # the second layer's group
    assert not policy.path_allowed("notes/todo.md")  # the first layer's group
    assert meet({"path_allow": ["*.md"]}, {"path_allow": ["*.md"]}).path_allow == ["*.md"]


def test_path_allowed_covers_parents_and_denies_first() -> None:
    policy = Policy(path_allow=["docs"], path_deny=["*secret*"])
    assert policy.path_allowed("docs/a/b.txt")  # under an allowed directory
    assert not policy.path_allowed("src/a.txt")
    assert not policy.path_allowed("docs/secret/b.txt")  # a denied parent
    assert not policy.path_allowed("docs/my-secret.txt")
    assert Policy().path_allowed("anything/at/all")
    assert Policy(path_allow=[]).path_allowed("x") is False  # an empty allowlist allows nothing


@pytest.mark.parametrize(("field", "strict"), [("network", False), ("read_only", True),
                                               ("allow_create", False), ("allow_update", False),
                                               ("allow_delete", False)])
def test_restrictive_booleans_win_and_only_a_package_grants(field: str, strict: bool) -> None:
    loose = not strict
    assert getattr(meet({field: strict}, {field: loose}), field) is strict
    assert getattr(meet({field: loose}, {field: strict}), field) is strict
    # from a host layer (grants=False) a permissive value widens nothing
    assert getattr(Policy().merge({field: loose}, grants=False), field) is None
    # a package's own layer widens its executor's default where nothing restricts it
    assert getattr(Policy().merge({field: loose}, grants=False).merge({field: loose}),
                   field) is loose
    assert getattr(Policy(**{field: strict}).merge({field: loose}), field) is strict


@pytest.mark.parametrize(("first", "second", "expected"), [
    ("auto", "always", "always"), ("always", "auto", "always"), ("auto", "never", "never"),
    ("always", "never", "deny"), ("never", "always", "deny"), ("deny", "auto", "deny"),
    ("never", "never", "never"),
])
def test_the_stricter_approval_mode_wins(first: str, second: str, expected: str) -> None:
    assert meet({"approval_mode": first}, {"approval_mode": second}).approval_mode == expected


def test_deny_blocks_every_call_even_an_approved_one() -> None:
    agent = agently_core.create_agent(config={"policy": {"approval_mode": "always"}})

    @agent.action_func(policy={"approval_mode": "never"})
    def ping() -> str:
        return "pong"

    record = agent.action.execute_action("ping")
    assert record.status == "blocked" and "'deny'" in record.error
    agent.close()


def test_set_policy_replaces_within_the_agent_layer_and_never_widens_configuration() -> None:
    agent = agently_core.create_agent(config={"policy": {"timeout_seconds": 10}})
    agent.set_policy(timeout_seconds=3)
    assert agent.policy.timeout_seconds == 3
    agent.set_policy(timeout_seconds=60)  # the agent's own earlier value may be replaced
    assert agent.policy.timeout_seconds == 10  # the configuration's still bounds it
    with pytest.raises(ValueError):
        agent.set_policy(max_processes=0)
    assert agent.policy.timeout_seconds == 10  # a bad update changes nothing
    agent.close()


# -- end to end: the Bash package's own list cannot replace the agent's -------------------------
@pytest.fixture
def shell_agent():
    agents = []

    def make(**options: Any) -> Any:
        agent = agently_core.create_agent()
        agents.append(agent)
        agent.enable_shell(**options)
        return agent

    yield make
    for agent in agents:
        agent.close()


def test_agent_allowlist_narrows_the_bash_package_list(shell_agent) -> None:
    agent = shell_agent()
    agent.set_policy(command_allowlist=["echo"])
    record = agent.action.execute_action("run_bash", {"cmd": "ls /"})
    assert record.status == "failed" and "not an allowed command" in record.error, record
    record = agent.action.execute_action("run_bash", {"cmd": "echo still here"})
    assert record.status == "success" and record.result["stdout"] == "still here\n"
    agent.set_policy(command_allowlist=["ls", "rm"])  # rm is not in the package's list
    assert agent.action.execute_action("run_bash", {"cmd": "ls /"}).status == "success"
    record = agent.action.execute_action("run_bash", {"cmd": "rm -rf x"})
    assert record.status == "failed" and "not an allowed command" in record.error


def test_agent_workspace_roots_narrow_the_bash_roots(shell_agent) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="agently-layers-", dir="/tmp"))  # sandbox-reachable
    os.chmod(base, 0o755)
    outside, inside = base / "outside", base / "inside"
    for folder in (outside, inside):
        folder.mkdir()
        os.chmod(folder, 0o777)
    try:
        _roots_case(shell_agent, outside, inside)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _roots_case(shell_agent, outside, inside) -> None:
    agent = shell_agent(root=[str(outside), str(inside)], commands=["ls", "touch"])
    agent.set_policy(workspace_roots=[str(inside)])
    record = agent.action.execute_action("run_bash", {"cmd": "touch x", "workdir": str(outside)})
    assert record.status == "failed" and "outside the roots" in record.error, record
    assert not (outside / "x").exists()
    record = agent.action.execute_action("run_bash", {"cmd": "touch y", "workdir": str(inside)})
    assert record.status == "success", record.error
    assert (inside / "y").exists()


def test_agent_network_true_does_not_open_the_bash_sandbox(shell_agent) -> None:
    agent = shell_agent()
    agent.set_policy(network=True)
    entry = agent.registry.get("run_bash")
    record = agent.action.execute_action("run_bash", {"cmd": "echo ok"})
    assert record.status == "success", record.error
    assert entry.policy.network is False  # the package's default, not widened
