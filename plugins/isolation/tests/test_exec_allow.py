"""``SandboxSpec.exec_allow``: the kernel starts no program outside the allowed set, in
every real tier, whatever the command line tries (as if a line analyser had been fooled).

Observed, not inferred: every run goes under ``strace -f`` (every ``execve``/``execveat`` of
the supervisor and all it starts is recorded) and the program that must never start is a
canary, ``touch``, which leaves a marker file when it does. A control run with ``touch``
allowed shows that the same attempts do create their markers where nothing else stops
them, and that copies in writable places stay refused even then (``noexec``).

Against the code before ``exec_allow`` existed these cases cannot even be built (the spec
has no such field); with the field ignored, every marker below appears.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from agently_core_isolation import testing
from agently_core_isolation.exec_view import ExecViewError, elf_interpreter, exec_view
from agently_core_isolation.sandbox import Isolation, Limits, SandboxSpec, allocate_uid, run
from agently_core_isolation.testing import TIERS, Box

import agently_core
from agently_core.testing import require_program, require_root

box = pytest.fixture(testing.box)
ALLOWED = ["/usr/bin/bash", "/usr/bin/cat", "/usr/bin/ls", "/usr/bin/find", "/usr/bin/sort",
           "/usr/bin/env", "/usr/bin/cp", "/usr/bin/seq"]
CANARY = "/usr/bin/touch"
LOADER = elf_interpreter("/usr/bin/bash")[1] or "/lib64/ld-linux-x86-64.so.2"


@pytest.fixture(autouse=True)
def _strace() -> None:
    require_program("strace")


@pytest.fixture
def root(box: Box) -> Iterator[Path]:
    """A host directory given read-write (``rw_paths``), where markers land."""
    path = Path(tempfile.mkdtemp(prefix="agently-exec-root-", dir="/tmp"))
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def plant(path: Path, source: str | None = None, text: str | None = None, uid: int | None = None) -> None:
    """Write a file as the sandbox could have (a copy of a program, a script), executable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copyfile(source, path)
    else:
        path.write_text(text or "")
    os.chmod(path, 0o755)
    if uid is not None:
        os.chown(path, uid, uid)


ATTACKS = r"""
R={root}; T={tmp}; L={loader}
/usr/bin/touch $R/direct
find . -maxdepth 0 -exec /usr/bin/touch $R/find-exec \;
x=-exec; find . -maxdepth 0 -printf -printf "$x" /usr/bin/touch $R/find-printf ";"
seq 200000 | sort --compress-program=/usr/bin/touch -S 1k --batch-size=2 > /dev/null
env /usr/bin/touch $R/env
bash -c "/usr/bin/touch $R/bash-c"
$L /usr/bin/touch $R/loader-system
./touch $R/copy-work; $T/touch $R/copy-tmp; $R/touch $R/copy-root
$L ./touch $R/loader-work; $L $T/touch $R/loader-tmp; $L $R/touch $R/loader-root
exec 3< ./touch; /proc/self/fd/3 $R/proc-fd; $L /proc/self/fd/3 $R/loader-proc-fd
./shebang $R/shebang-touch
./run.sh $R/shebang-bash
bash ./run.sh $R/bash-script
cp /usr/bin/ls ./ls2 && ./ls2 > /dev/null
cp ./touch /dev/shm/touch 2>/dev/null && /dev/shm/touch $R/dev-shm
cp ./touch /touch 2>/dev/null && /touch $R/slash
echo done
"""
#: Markers whose attempt only an exec allowlist stops (the control run creates them).
BY_ALLOWLIST = ["direct", "find-exec", "env", "bash-c", "loader-system", "bash-script"]
#: Markers whose attempt runs a file from a writable place (noexec stops it in any case).
BY_NOEXEC = ["copy-work", "copy-tmp", "copy-root", "loader-work", "loader-tmp", "loader-root",
             "proc-fd", "loader-proc-fd", "shebang-touch", "shebang-bash", "dev-shm", "slash"]


def attack_spec(box: Box, tier: str, root: Path, allowed: list[str]) -> tuple[SandboxSpec, int]:
    uid = box.uid()
    workdir = box.workdir(uid)
    tmp = workdir / ".tmp"
    for place in (workdir, tmp, root):
        plant(place / "touch", CANARY, uid=uid)
    plant(workdir / "shebang", text="#!/usr/bin/touch\n", uid=uid)
    plant(workdir / "run.sh", text='#!/usr/bin/bash\n/usr/bin/touch "$1"\n', uid=uid)
    tmp.chmod(0o700)
    os.chown(tmp, uid, uid)
    inside_tmp = "/tmp" if tier == "bubblewrap" else str(tmp)
    script = ATTACKS.format(root=root, tmp=inside_tmp, loader=LOADER)
    return SandboxSpec(["/usr/bin/bash", "-c", script], workdir, rw_paths=(str(root),),
                       limits=Limits(wall_seconds=30), exec_allow=allowed), uid


def markers(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.name != "touch"}


@pytest.mark.parametrize("tier", TIERS)
def test_nothing_outside_the_exec_allowlist_starts(box: Box, tier: str, root: Path) -> None:
    spec, uid = attack_spec(box, tier, root, ALLOWED)
    traced = testing.trace_execs(tier, spec, uid=uid)
    assert traced.stdout.endswith("done\n"), traced.out  # every attempt was made
    assert traced.tried("/usr/bin/touch") and traced.tried("./touch"), traced.execs
    # the allowed programs and their interpreters (the loader, a script's #!)
    assert traced.started_outside(exec_view(tuple(ALLOWED)).programs) == [], traced.execs
    assert markers(root) == set(), traced.out
    started = {os.path.realpath(p) for p in traced.started()}
    assert os.path.realpath(LOADER) in started  # the loader ran, and mapped nothing it may not
    box.still_works(tier)


@pytest.mark.parametrize("tier", TIERS)
def test_control_the_attempts_are_real(box: Box, tier: str, root: Path) -> None:
    """With the canary allowed the same lines start it, except from writable places."""
    spec, uid = attack_spec(box, tier, root, [*ALLOWED, CANARY])
    traced = testing.trace_execs(tier, spec, uid=uid)
    assert traced.stdout.endswith("done\n"), traced.out
    made = markers(root)
    assert set(BY_ALLOWLIST) <= made, (made, traced.out)
    assert made.isdisjoint(BY_NOEXEC), (made, traced.out)
    assert "/usr/bin/touch" in traced.started()
    assert not any(p.endswith(("/ls2", "./touch", "/dev/shm/touch")) for p in traced.started())


@pytest.mark.parametrize("tier", TIERS)
def test_the_allowed_programs_still_work(box: Box, tier: str) -> None:
    ran = box.sh(tier, "ls / >/dev/null; echo b a | sort; find . -maxdepth 0; "
                 "env LC_ALL=C seq 2 | cat", exec_allow=["/bin/sh", *ALLOWED])
    assert ran.result.exit_code == 0, ran.out
    assert ran.result.stdout == "b a\n.\n1\n2\n"


@pytest.mark.parametrize("tier", TIERS)
def test_a_first_program_outside_the_set_or_an_unknown_one_is_refused(box: Box, tier: str) -> None:
    uid = box.uid()
    workdir = box.workdir(uid)
    isolation = Isolation(tier)
    with pytest.raises(ValueError, match="not among the programs the sandbox may execute"):
        isolation.command(SandboxSpec([CANARY, "x"], workdir, exec_allow=ALLOWED), uid=uid)
    with pytest.raises(ExecViewError, match="is not a file"):
        isolation.command(SandboxSpec(["/usr/bin/bash"], workdir,
                                      exec_allow=[*ALLOWED, "/usr/bin/no-such-program"]), uid=uid)
    with pytest.raises(ExecViewError, match="absolute"):
        isolation.command(SandboxSpec(["/usr/bin/bash"], workdir, exec_allow=["bash"]), uid=uid)
    assert list(workdir.iterdir()) == []
    box.still_works(tier)


@pytest.mark.parametrize("tier", TIERS)
def test_a_mount_that_cannot_be_made_noexec_fails_closed(box: Box, tier: str) -> None:
    """A writable tree the supervisor cannot bind noexec: nothing runs."""
    uid = box.uid()
    workdir = box.workdir(uid)
    spec = SandboxSpec(["/usr/bin/bash", "-c", "touch RAN"], workdir, exec_allow=ALLOWED,
                       rw_paths=("/nonexistent-agently-root",), limits=Limits(wall_seconds=10))
    result = anyio.run(functools.partial(run, Isolation(tier), spec, uid=uid))
    assert result.exit_code == 126, result
    assert result.stderr.startswith("agently-core sandbox: binding /nonexistent-agently-root")
    assert not (workdir / "RAN").exists()
    box.still_works(tier)


def test_the_view_is_the_closure_of_the_programs() -> None:
    view = exec_view(("/usr/bin/egrep", "/usr/bin/ls"))
    real = os.path.realpath
    assert real("/usr/bin/egrep") in view.programs and real("/bin/sh") in view.programs  # #!/bin/sh
    assert real(LOADER) in view.programs
    assert real("/usr/bin/grep") not in view.programs  # what the script runs is not included
    libc = [p for p in view.libraries if os.path.basename(p).startswith("libc.so")]
    assert libc and all(not p.startswith(("/usr/bin", "/bin")) for p in view.libraries)
    assert ("/bin", "usr/bin") in view.links or not os.path.islink("/bin")
    assert all(os.path.exists(p) for p in (*view.programs, *view.libraries, *view.data))


@pytest.mark.parametrize("tier", TIERS)
def test_a_host_without_root_uses_a_user_namespace(tier: str, root: Path) -> None:
    """Run the library as an unprivileged host user: the noexec mounts come from a user
    namespace of its own, and the allowlist holds the same."""
    require_root("become another user")
    uid = allocate_uid()
    workdir = Path(tempfile.mkdtemp(prefix="agently-nonroot-", dir="/tmp"))
    try:
        os.chown(workdir, uid, uid)
        plant(workdir / "touch", CANARY, uid=uid)
        library = str(Path(__file__).resolve().parents[1])
        core = str(Path(agently_core.__file__).resolve().parents[1])
        script = textwrap.dedent(f"""
            import subprocess, sys
            sys.path[:0] = [{library!r}, {core!r}]
            from agently_core_isolation.sandbox import Isolation, SandboxSpec, Limits
            line = ('echo $UID; /usr/bin/touch {root}/direct; ./touch {root}/copy; '
                    '{LOADER} ./touch {root}/loader; echo done')
            spec = SandboxSpec(['/usr/bin/bash', '-c', line], {str(workdir)!r},
                               rw_paths=({str(root)!r},), exec_allow={ALLOWED!r},
                               cwd={'/work' if tier == 'bubblewrap' else str(workdir)!r},
                               limits=Limits(wall_seconds=20))
            argv, env = Isolation({tier!r}).command(spec)
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
            print(done.returncode, done.stdout, done.stderr)
        """)
        done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                               "/usr/bin/python3", "-I", "-S", "-c", script],
                              capture_output=True, text=True, timeout=60, cwd="/")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"0 {uid}\n"), done.stdout
        assert "done" in done.stdout and markers(root) == set(), done.stdout
    finally:
        testing.kill_processes_with(str(workdir))
        shutil.rmtree(workdir, ignore_errors=True)
