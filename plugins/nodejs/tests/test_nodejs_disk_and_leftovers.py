"""run_nodejs's bounded workspace and its leftovers, in both real tiers (as for Python):
a full workspace fails with ``ENOSPC`` and a note naming the bound and ``disk_mb``, the
next call works; children a call leaves behind are reaped while the worker runs and gone,
with every process of its uid, once it is released."""

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
var fs = require('fs'), os = require('os'), path = require('path');
var chunk = Buffer.alloc(1 << 20, 120);
fs.writeFileSync(path.join(os.tmpdir(), 'fill'), Buffer.alloc(10 << 20, 120));
var fd = fs.openSync('fill', 'w');
for (let i = 0; i < 400; i++) fs.writeSync(fd, chunk);
"""
LEAVE = """
var cp = require('child_process');
cp.spawn('sleep', ['{nap}'], {{detached: true, stdio: 'ignore'}}).unref();
cp.spawnSync('sh', ['-c', 'sleep 0.05 & sleep 0.05 & exit 0']);
'left'
"""


def call(agent: Any, code: str) -> Any:
    return agent.action.execute_action("run_nodejs", {"js_code": code})


def used(path: Any) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


@needs_root
@pytest.mark.parametrize("tier", TIERS)
def test_a_full_workspace_fails_with_enospc_and_a_note(node_agent: Any, tier: str) -> None:
    agent = node_agent(tier=tier, memory_mb=128, disk_mb=16)
    record = call(agent, FILL)
    assert record.status == "failed", record.result
    assert "ENOSPC" in record.error, record.error
    stderr = record.result["stderr"]
    assert "at most 16 MiB" in stderr and "enable_nodejs(disk_mb=...)" in stderr, stderr
    worker = testing.only_resource(agent, "node")
    assert worker.workspace_bytes == 16 * MiB
    assert used(worker.workspace.root) <= 16 * MiB
    cleaned = call(agent, "var fs = require('fs'), os = require('os');\n"
                          "fs.rmSync('fill'); fs.rmSync(os.tmpdir() + '/fill'); 6 * 7")
    assert cleaned.status == "success" and cleaned.result["value"] == "42", cleaned.error


@pytest.mark.parametrize("tier", TIERS)
def test_calls_that_leave_children_leave_nothing(node_agent: Any, tier: str, markers: Any) -> None:
    watch = Leftovers()
    agent = node_agent(tier=tier)
    naps = [markers() for _ in range(3)]
    for nap in naps:
        record = call(agent, LEAVE.format(nap=nap))
        assert record.status == "success" and record.result["value"] == "'left'", record.error
    uid = testing.only_resource(agent, "node").uid
    time.sleep(0.3)  # the orphans have ended: their zombies must be reaped already
    assert not watch.new_zombies({uid}), watch.new_zombies({uid})
    assert all(testing.running(nap) for nap in naps)
    agent.close()  # releases the worker (closing again at teardown does nothing)
    watch.check({uid} if uid is not None else set())
    assert not any(testing.running(nap) for nap in naps)
