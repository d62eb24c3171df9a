"""run_bash's bounded private workspace and its leftovers, in both real tiers.

* A scope's private files (its root, home and temporary files) share one bound
  (``disk_mb``, a tmpfs where the host is root): a write past it fails with ``ENOSPC``,
  stderr says which bound and which option raises it, and the next call works. Host
  directories given as ``root`` cannot be bounded: ``disk_mb`` with them is refused at
  mount, and so is a call whose ``max_workspace_bytes`` the sandbox cannot hold.
* A line that leaves children (``&``, a subshell's orphans) leaves no process of the
  sandbox's uid and no zombie once its call returns, and nothing after the release.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from agently_core_isolation import testing
from agently_core_isolation.testing import TIERS, Leftovers

MiB = 1 << 20
markers = pytest.fixture(testing.markers)
#: The workspace bound is a tmpfs the host mounts: root (CI fails without it).
needs_root = pytest.mark.usefixtures("agently_needs_root")


def run(agent: Any, cmd: str) -> Any:
    return agent.action.execute_action("run_bash", {"cmd": cmd})


def used(path: Path) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


@needs_root
@pytest.mark.parametrize("tier", TIERS)
def test_a_full_workspace_fails_with_enospc_and_a_note(bash_agent: Any, tier: str) -> None:
    agent = bash_agent(tier=tier, disk_mb=16, memory_mb=128)
    record = run(agent, "head -c 8000000 /dev/zero > $TMPDIR/fill; "
                        "head -c 40000000 /dev/zero > fill; wc -c < fill")
    assert record.status == "success", record.error
    result = record.result
    assert "No space left on device" in result["stderr"], result
    assert "at most 16 MiB" in result["stderr"] and "enable_shell(disk_mb=...)" in result["stderr"]
    assert int(result["stdout"]) < 16 * MiB
    sandbox = testing.only_resource(agent, "bash")
    assert sandbox.workspace_bytes == 16 * MiB and used(sandbox.workspace.root) <= 16 * MiB
    again = run(agent, ": > fill; : > $TMPDIR/fill; echo room")
    assert again.status == "success" and again.result["stdout"] == "room\n", again.result
    assert again.result["stderr"] == ""


def test_disk_mb_cannot_bound_host_roots(bash_agent: Any, shared_dir: Any) -> None:
    with pytest.raises(ValueError, match="host directories given as root cannot be bounded"):
        bash_agent(root=shared_dir(), disk_mb=16)
    with pytest.raises(ValueError, match="disk_mb must be a positive"):
        bash_agent(disk_mb=0)


@needs_root
def test_a_call_whose_bound_the_sandbox_cannot_hold_is_refused(bash_agent: Any,
                                                                shared_dir: Any) -> None:
    private = bash_agent(disk_mb=32)
    private.set_policy(max_workspace_bytes=1 * MiB)
    record = run(private, "touch ran")
    assert record.status == "failed" and "stricter than its Bash sandbox" in record.error
    assert "agent.enable_shell(disk_mb=1)" in record.error  # which option fixes it
    private.set_policy(max_workspace_bytes=None)
    assert run(private, "ls ran || echo none").result["stdout"] == "none\n"  # it never ran
    root = shared_dir()
    rooted = bash_agent(root=root)
    rooted.set_policy(max_workspace_bytes=1 * MiB)
    refused = run(rooted, "touch ran")
    assert refused.status == "failed" and "cannot be enforced" in refused.error
    assert not (root / "ran").exists()


@pytest.mark.parametrize("tier", TIERS)
def test_lines_that_leave_children_leave_nothing(bash_agent: Any, tier: str, markers: Any) -> None:
    watch = Leftovers()
    agent = bash_agent(tier=tier)
    uid = None
    for _ in range(4):
        nap = markers()
        record = run(agent, f"sleep {nap} & (sleep 0.05 &); (sleep 0.01 & sleep {nap} &); echo left")
        assert record.status == "success" and record.result["stdout"] == "left\n", record.error
        uid = testing.only_resource(agent, "bash").uid
        watch.check({uid} if uid is not None else set())  # right when the call returns
        assert not testing.running(nap)
    agent.close()
    watch.check({uid} if uid is not None else set())
