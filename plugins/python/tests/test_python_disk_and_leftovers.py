"""run_python's bounded workspace and its leftovers, in both real tiers.

* The worker's workspace and temporary files share one bound (``disk_mb``, a tmpfs where
  the host is root): filling them fails inside with ``ENOSPC``, the record says which bound
  and which option raises it, the host's memory holds no more than the bound, and the next
  call works.
* Calls that leave children (a detached ``sleep``, orphans that exit at once) leave no
  zombie with the host's PID 1 while the worker runs (its supervisor reaps them), and
  nothing at all of the worker's uid once it is released. Before the supervisor, orphans of
  the Landlock tier went to PID 1, which reaps late here, and the bubblewrap tier's own
  processes did when the worker was killed.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from agently_core_isolation import testing
from agently_core_isolation.testing import TIERS, Leftovers

MiB = 1 << 20
markers = pytest.fixture(testing.markers)
#: The workspace bound is a tmpfs the host mounts: root (CI fails without it).
needs_root = pytest.mark.usefixtures("agently_needs_root")

FILL = """
import os, tempfile
chunk = b'x' * (1 << 20)
with open(os.path.join(tempfile.gettempdir(), 'fill'), 'wb') as handle:
    for _ in range(10):
        handle.write(chunk)
with open('fill', 'wb') as handle:
    for _ in range(400):
        handle.write(chunk)
        handle.flush()
"""
LEAVE = """
import subprocess
subprocess.Popen(['sleep', '{nap}'], start_new_session=True)
subprocess.run(['sh', '-c', 'sleep 0.05 & sleep 0.05 & exit 0'])
'left'
"""


def call(agent: Any, code: str) -> Any:
    return agent.action.execute_action("run_python", {"python_code": code})


def used(path: Any) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


@needs_root
@pytest.mark.parametrize("tier", TIERS)
def test_a_full_workspace_fails_with_enospc_and_a_note(python_agent: Any, tier: str) -> None:
    agent = python_agent(tier=tier, memory_mb=128, disk_mb=16)
    record = call(agent, FILL)
    assert record.status == "failed", record.result
    assert "No space left on device" in record.error
    stderr = record.result["stderr"]
    assert "at most 16 MiB" in stderr and "enable_python(disk_mb=...)" in stderr, stderr
    worker = testing.only_resource(agent, "python")
    assert worker.workspace_bytes == 16 * MiB
    assert used(worker.workspace.root) <= 16 * MiB  # what the host's memory holds for it
    cleaned = call(agent, "import os, tempfile\nos.remove('fill')\n"
                          "os.remove(os.path.join(tempfile.gettempdir(), 'fill'))\n6 * 7")
    assert cleaned.status == "success" and cleaned.result["value"] == "42", cleaned.error
    assert "MiB" not in cleaned.result["stderr"]


def test_disk_mb_must_be_a_positive_whole_number(python_agent: Any) -> None:
    for bad in (0, -1, 1.5, "16", True):
        with pytest.raises(ValueError, match="disk_mb"):
            python_agent(disk_mb=bad)


@pytest.mark.parametrize("tier", TIERS)
def test_calls_that_leave_children_leave_nothing(python_agent: Any, tier: str, markers: Any) -> None:
    watch = Leftovers()
    agent = python_agent(tier=tier)
    naps = [markers() for _ in range(3)]
    for nap in naps:
        record = call(agent, LEAVE.format(nap=nap))
        assert record.status == "success" and record.result["value"] == "'left'", record.error
    uid = testing.only_resource(agent, "python").uid
    time.sleep(0.3)  # the orphans have ended: their zombies must be reaped already
    assert not watch.new_zombies({uid}), watch.new_zombies({uid})
    assert all(testing.running(nap) for nap in naps)  # the detached sleeps outlive the calls
    agent.close()  # releases the worker (closing again at teardown does nothing)
    assert agent.manager.list(kind="python") == []
    watch.check({uid} if uid is not None else set())
    assert not any(testing.running(nap) for nap in naps)
