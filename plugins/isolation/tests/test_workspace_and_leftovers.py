"""Bounded private workspaces and nothing left behind, in both real tiers.

* A private workspace (:mod:`agently_core_isolation.workspace`) is a tmpfs of its quota:
  the workspace and the temporary files together stop at it with ``ENOSPC``, observed
  from inside (the write's errno, the bytes that landed) and from the host (the mount's
  own usage). bubblewrap's private ``/tmp`` without a workspace is bounded by
  ``Limits.tmp_bytes`` (it was half the host's RAM: 300 MB held with 128 MB of memory).
  Mounts left by a host process that died are swept by the next one.
* Every one-shot run ends with nothing of it left: no process of its uid and no zombie
  handed to PID 1 (which does not reap here) or to the test process, also when the run
  leaves background children, orphans that exit at once, or is stopped by the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from agently_core_isolation import testing, workspace
from agently_core_isolation.sandbox import Limits
from agently_core_isolation.testing import PY, TIERS, Box, Leftovers
from agently_core_isolation.workspace import new_workspace, sweep_stale

box = pytest.fixture(testing.box)
MiB = 1 << 20
FILL = """
import errno, json, sys
written, error = {}, None
for target in sys.argv[1:-1]:
    written[target] = 0
    try:
        with open(target, 'wb') as handle:
            while written[target] < 400 * 2**20:
                handle.write(b'x' * 2**20)
                handle.flush()
                written[target] += 2**20
    except OSError as exc:
        error = errno.errorcode.get(exc.errno)
print(json.dumps({'written': sum(written.values()), 'error': error}))
"""

#: The workspace bound is a tmpfs the host mounts: root (CI fails without it).
needs_root = pytest.mark.usefixtures("agently_needs_root")


def used(path: Path) -> int:
    info = os.statvfs(path)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


@needs_root
@pytest.mark.parametrize("tier", TIERS)
def test_workspace_and_tmp_stop_together_at_the_quota(box: Box, tier: str) -> None:
    uid = box.uid()
    space = new_workspace(uid, 24 * MiB)
    try:
        tmp = "/tmp" if tier == "bubblewrap" else str(space["tmp"])
        ran = box.run(tier, [*PY, FILL, f"{tmp}/fill", "work-fill"], workdir=space["work"],
                      tmpdir=space["tmp"], uid=uid,
                      limits=Limits(wall_seconds=20, memory_bytes=128 * MiB, file_bytes=None))
        assert ran.result.exit_code == 0, ran.out
        report = json.loads(ran.result.stdout)
        assert report["error"] == "ENOSPC", ran.out
        assert 16 * MiB <= report["written"] <= 24 * MiB, report  # /tmp and /work together
        assert used(space.root) <= 24 * MiB  # the host's memory held: the quota at most
        assert space.full()
        (space["tmp"] / "fill").unlink()
        (space["work"] / "work-fill").unlink()
        again = box.sh(tier, "echo after > after.txt && cat after.txt", workdir=space["work"],
                       tmpdir=space["tmp"], uid=uid)
        assert again.result.stdout == "after\n", again.out
    finally:
        space.release()
    assert not space.root.exists()
    box.still_works(tier)


def test_bubblewrap_tmp_without_a_workspace_is_bounded(box: Box) -> None:
    ran = box.run("bubblewrap", [*PY, FILL, "/tmp/fill"],
                  limits=Limits(wall_seconds=20, memory_bytes=128 * MiB, file_bytes=None))
    assert ran.result.exit_code == 0, ran.out
    report = json.loads(ran.result.stdout)
    assert report["error"] == "ENOSPC", ran.out
    # 64 MiB (Limits.tmp_bytes), where it was half the host's RAM
    assert Limits.tmp_bytes - 4 * MiB <= report["written"] <= Limits.tmp_bytes, report
    box.still_works("bubblewrap")


@needs_root
def test_the_workspace_mount_is_noexec_private_and_released(box: Box) -> None:
    uid = box.uid()
    space = new_workspace(uid, 8 * MiB, ("work", "tmp", "home"))
    try:
        options = next(line.split()[5] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                       if line.split()[4] == str(space.root))
        assert {"noexec", "nosuid", "nodev"} <= set(options.split(",")), options
        assert space.root.stat().st_uid == 0 and oct(space.root.stat().st_mode)[-3:] == "711"
        for name in ("work", "tmp", "home"):
            info = space[name].stat()
            assert (info.st_uid, oct(info.st_mode)[-3:]) == (uid, "700")
        assert space.quota == 8 * MiB and space.free_bytes() > 7 * MiB
    finally:
        space.release()
        space.release()  # idempotent
    assert not os.path.ismount(space.root) and not space.root.exists()


@needs_root
def test_workspaces_of_a_dead_host_process_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "sandboxes"
    root.mkdir()
    os.chmod(root, 0o711)
    library = str(Path(workspace.__file__).resolve().parents[1])
    script = textwrap.dedent(f"""
        import os, sys, time
        os.environ['AGENTLY_SANDBOX_ROOT'] = {str(root)!r}
        sys.path.insert(0, {library!r})
        from agently_core_isolation.workspace import new_workspace
        space = new_workspace(None, 4 << 20)
        print(space.root, flush=True)
        time.sleep(300)
    """)
    dead = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    alive = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        dead_root, alive_root = dead.stdout.readline().strip(), alive.stdout.readline().strip()
        assert os.path.ismount(dead_root) and os.path.ismount(alive_root)
        dead.send_signal(signal.SIGKILL)  # a crash: nothing released its workspace
        dead.wait()
        assert os.path.ismount(dead_root)
        assert sweep_stale(root) == [dead_root]
        assert not os.path.exists(dead_root)
        assert os.path.ismount(alive_root)  # its process still runs: left alone
    finally:
        alive.kill()
        alive.wait()
        sweep_stale(root)
    assert list(root.iterdir()) == []


# == nothing left behind ======================================================================
LEAVE_CHILDREN = ("sleep {nap} & setsid sleep {nap} & (sh -c 'sleep 0.05' &) ; "
                  "sh -c 'sleep 0.05 & exit 0'; sleep 0.2; echo left")


@pytest.mark.parametrize("tier", TIERS)
def test_one_shot_runs_leave_no_process_and_no_zombie(box: Box, tier: str) -> None:
    watch = Leftovers()
    uids = set()
    for _ in range(4):
        nap = box.sleep_arg()
        ran = box.sh(tier, LEAVE_CHILDREN.format(nap=nap), limits=Limits(wall_seconds=10))
        assert ran.result.stdout == "left\n", ran.out
        uids.add(ran.uid)
        watch.check({ran.uid})
    stopped = box.sh(tier, f"sleep {box.sleep_arg()} & sleep {box.sleep_arg()}",
                     limits=Limits(wall_seconds=0.5))  # the host stops it at its wall clock
    assert stopped.result.timed_out
    flooded = box.sh(tier, f"sleep {box.sleep_arg()} & yes", limits=Limits(
        wall_seconds=10, output_bytes=1000, artifact_bytes=100_000))  # stopped by its output
    assert flooded.result.killed == "output limit"
    watch.check(uids | {stopped.uid, flooded.uid})
    assert testing.host_can_fork()


def test_the_supervisor_is_the_only_host_child_and_exits_with_the_run(box: Box) -> None:
    """A run's first process on the host is its supervisor; once ``run`` returns it is gone
    and reaped (no zombie of this process), whatever the sandbox left."""
    watch = Leftovers()
    before = {pid for pid, parent, _ in testing.zombies() if parent == os.getpid()}
    ran = box.sh("landlock", f"setsid sleep {box.sleep_arg()} & echo started")
    assert ran.result.stdout == "started\n"
    time.sleep(0.1)
    assert {pid for pid, parent, _ in testing.zombies() if parent == os.getpid()} == before
    watch.check({ran.uid})


def test_a_host_that_cannot_mount_is_unbounded_unless_a_bound_was_asked_for(
        box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no tmpfs can be mounted (not root, or a container without CAP_SYS_ADMIN) the
    default workspace is unbounded, and a bound asked for explicitly is a clear error."""
    monkeypatch.setattr(workspace, "bounds_available", lambda: False)
    uid = box.uid()
    space = new_workspace(uid, 8 * MiB)
    try:
        assert space.quota is None and not os.path.ismount(space.root)
        assert space.free_bytes() is None and not space.full()
    finally:
        space.release()
    with pytest.raises(OSError, match="cannot mount one"):
        new_workspace(uid, 8 * MiB, required=True)
    from agently_core_isolation.worker_policy import workspace_policy

    assert workspace_policy(None) is None  # no default bound in the policy either
    assert workspace_policy(8) == 8 * MiB
