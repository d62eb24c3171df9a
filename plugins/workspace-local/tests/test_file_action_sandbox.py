"""End to end, in both isolation tiers: a real Bash sandbox (its own dedicated uid) and the
workspace file actions share one root. The sandbox marks a file of its own setuid and a
directory setgid; the model then has ``write_file`` (the host, as root) put a program's
bytes there. What it writes is no setuid-root program, belongs to the sandbox, and the
sandbox keeps working with it."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from agently_core_isolation import testing
from agently_core_isolation.testing import TIERS, dump

from agently_core.testing import require_root

SPECIAL = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def shared(agently_agent_factory, shared_root):
    agents = []

    def make(tier: str):
        agent = agently_agent_factory()
        agent.enable_shell(root=shared_root, tier=tier, timeout=20,
                           commands=["touch", "chmod", "mkdir", "stat", "cat"])
        agent.enable_workspace_file_actions(root=shared_root, write=True)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def bash(agent, cmd: str) -> str:
    record = agent.action.execute_action("run_bash", {"cmd": cmd})
    assert record.status == "success" and record.result["exit_code"] == 0, dump(record)
    return record.result["stdout"]


@pytest.mark.parametrize("tier", TIERS)
def test_write_file_over_a_sandbox_setuid_program(shared, shared_root: Path, tier: str,
                                                  run_as_nobody) -> None:
    require_root("run the attack as the host's root")
    agent = shared(tier)
    made = bash(agent, "touch tool && chmod 4755 tool && mkdir drop && chmod 2777 drop && "
                       "stat -c '%u %a' tool drop").split()
    sandbox_uid = int(made[0])
    assert made == [str(sandbox_uid), "4755", str(sandbox_uid), "2777"]
    assert sandbox_uid != 0 and sandbox_uid == testing.only_resource(agent, "bash").uid

    program = base64.b64encode(Path("/usr/bin/id").read_bytes()).decode()
    for path in ("tool", "drop/tool", "drop/made/inner.txt"):
        content = "text\n" if path.endswith(".txt") else program
        record = agent.action.execute_action("write_file", {
            "path": path, "content": content,
            "encoding": "utf-8" if path.endswith(".txt") else "base64"})
        assert record.status == "success", dump(record)

    for path in ("tool", "drop/tool", "drop/made", "drop/made/inner.txt"):
        found = os.stat(shared_root / path)
        assert found.st_mode & SPECIAL == 0, (path, oct(found.st_mode))
        assert found.st_uid == sandbox_uid, (path, found.st_uid)
    ran = run_as_nobody(shared_root / "tool")
    assert ran.returncode == 0 and "uid=65534" in ran.stdout, ran
    assert "euid=" not in ran.stdout, ran.stdout  # before the fix: euid=0(root)
    # the sandbox still owns and uses what the host wrote for it
    assert bash(agent, "cat drop/made/inner.txt && chmod 600 drop/made/inner.txt") == "text\n"


@pytest.mark.parametrize("tier", TIERS)
def test_a_sandbox_nests_three_thousand_directories(shared, shared_root: Path,
                                                    tier: str) -> None:
    """The sandbox makes a tree 3,000 directories deep in the shared root (a path far past
    PATH_MAX): listing, searching and writing (its quota walk goes all the way down) work,
    and the shared root is removed afterwards (the fixture's remove_tree)."""
    agent = shared(tier)
    chunk = "/".join(["d"] * 1500)
    bash(agent, f"mkdir -p {chunk} && cd {chunk} && mkdir -p {chunk} && echo needle > top.txt")
    listed = agent.action.execute_action("list_files", {"recursive": True})
    assert listed.status == "success", dump(listed)
    assert listed.result["too_deep"] == ["/".join(["d"] * 64)]
    found = agent.action.execute_action("search_files", {"query": "needle"})
    assert found.status == "success" and found.result["matches"] == [], dump(found)
    written = agent.action.execute_action("write_file", {"path": "after.txt", "content": "x"})
    assert written.status == "success", dump(written)
    depth, fd = 0, os.open(shared_root, os.O_RDONLY | os.O_DIRECTORY)
    try:  # the tree really is 3,000 deep
        while "d" in os.listdir(fd):
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd, depth = child, depth + 1
    finally:
        os.close(fd)
    assert depth == 3000
