"""The Bash allowlist binds the kernel, not only the line analyser: a call's sandbox may
execute bash and the allowlist's programs and nothing else, in both real tiers.

The attacks run the sandbox directly (``BashSandbox.spec`` / ``BashSandbox.run``), as if
the analyser had been fooled, under ``strace -f`` (every ``execve``/``execveat`` recorded)
with canaries whose start would show (``id`` prints its uid, ``cp`` leaves a copy). The
default allowlist still works: every one of its programs runs in both tiers without a
warning. Against the code before this change ``/usr/bin/id`` started from ``find -exec``
(issue 10) and from every other line below, and in the Landlock tier ``df`` listed no file
system and ``file`` warned that it could not read its magic.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_bash.package import DEFAULT_COMMANDS, default_commands
from agently_core_bash.programs import Allowlist
from agently_core_bash.sandbox import BashSandbox
from agently_core_isolation import testing
from agently_core_isolation.exec_view import elf_interpreter, exec_view
from agently_core_isolation.sandbox import Isolation, Limits
from agently_core_isolation.testing import TIERS

from agently_core.testing import in_ci, require_program

LOADER = elf_interpreter("/usr/bin/bash")[1] or "/lib64/ld-linux-x86-64.so.2"
#: The line of issue 10 that ran /usr/bin/id past the analyser.
ISSUE_LINE = 'x=-exec; find . -maxdepth 0 -printf -printf "$x" /usr/bin/id ";"'


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``sandbox(tier)``: a Bash sandbox with a private workspace, released at teardown."""
    made: list[BashSandbox] = []

    def make(tier: str) -> BashSandbox:
        made.append(BashSandbox(Isolation(tier)))
        return made[-1]

    yield make
    for box in made:
        box.close()


def default_allowlist() -> Allowlist:
    return Allowlist.resolve(default_commands())


def spec_of(box: BashSandbox, line: str, allowlist: Allowlist) -> Any:
    return box.spec(line, cwd=box.roots[0], roots=box.roots, allowlist=allowlist,
                    limits=Limits(wall_seconds=30), network=False, env={})


def run_line(box: BashSandbox, line: str, allowlist: Allowlist | None = None) -> Any:
    allowlist = allowlist or default_allowlist()
    return anyio.run(functools.partial(
        box.run, line, cwd=box.roots[0], roots=box.roots, allowlist=allowlist,
        limits=Limits(wall_seconds=30), network=False, env={}))


def need_strace() -> None:
    require_program("strace")


def plant(path: Path, uid: int | None, *, source: str | None = None, text: str = "") -> None:
    """A file the sandbox could have written itself (with printf), executable."""
    if source is not None:
        shutil.copyfile(source, path)
    else:
        path.write_text(text)
    os.chmod(path, 0o755)
    if uid is not None:
        os.chown(path, uid, uid)


@pytest.mark.parametrize("tier", TIERS)
def test_a_fooled_analyser_still_starts_no_other_program(sandbox: Any, tier: str) -> None:
    need_strace()
    box = sandbox(tier)
    work, tmp = Path(box.roots[0]), box.workspace["tmp"]
    for place in (work, tmp, box.home):
        plant(place / "id", box.uid, source="/usr/bin/id")
    plant(work / "script", box.uid, text="#!/usr/bin/id\n")
    plant(work / "run.sh", box.uid, text="#!/usr/bin/bash\n/usr/bin/id\ncp run.sh copied-by-script\n")
    inside_tmp = "/tmp" if tier == "bubblewrap" else str(tmp)
    home = "/work" if tier == "bubblewrap" else str(box.home)
    line = "\n".join([
        ISSUE_LINE,
        "/usr/bin/id; id; find . -maxdepth 0 -exec /usr/bin/cp run.sh copied-by-find \\;",
        "seq 200000 | sort --compress-program=/usr/bin/id -S 1k --batch-size=2 > /dev/null",
        "env /usr/bin/id; python3 -c 'print(\"uid=\")'; bash -c /usr/bin/id",
        f"./id; {inside_tmp}/id; {home}/id; {LOADER} ./id; {LOADER} {inside_tmp}/id; {LOADER} /usr/bin/id",
        f"exec 3< ./id; /proc/self/fd/3; {LOADER} /proc/self/fd/3",
        "./script; ./run.sh; bash ./run.sh",
        "echo done",
    ])
    allowlist = default_allowlist()
    traced = testing.trace_execs(tier, spec_of(box, line, allowlist), uid=box.uid)
    assert traced.stdout.endswith("done\n"), traced.out
    assert "uid=" not in traced.stdout, traced.out
    assert not list(work.glob("copied-by-*"))
    assert traced.tried("/usr/bin/id") and traced.tried("/usr/bin/cp") and traced.tried("./id")
    allowed = exec_view(tuple(spec_of(box, "", allowlist).exec_allow)).programs
    assert traced.started_outside(allowed) == [], traced.execs
    # and through the sandbox's own run (what the executor calls)
    result = run_line(box, f"{ISSUE_LINE}; /usr/bin/id; echo after")
    assert result.stdout.endswith("after\n") and "uid=" not in result.stdout, result


def test_the_issue_line_through_the_agent_starts_no_id(bash_agent: Any) -> None:
    """End to end with the default allowlist: refused by the analyser or run without id."""
    agent = bash_agent()
    record = agent.action.execute_action("run_bash", {"cmd": ISSUE_LINE})
    assert "uid=" not in testing.dump(record)


# every default program, a typical use and what it must print
DEFAULT_USES: dict[str, tuple[str, str]] = {
    "ls": ("ls -l", "a.txt"), "cat": ("cat a.txt", "hello world"),
    "head": ("head -1 a.txt", "hello world"), "tail": ("tail -1 b.txt", "beta"),
    "wc": ("wc -l b.txt", "2 b.txt"), "grep": ("grep -r hello .", "./a.txt:hello world"),
    "egrep": ("egrep 'hel+o' a.txt", "hello"), "fgrep": ("fgrep world a.txt", "world"),
    "sort": ("sort -r b.txt", "beta\nalpha"), "uniq": ("uniq b.txt", "alpha"),
    "cut": ("cut -c1-5 a.txt", "hello"), "tr": ("tr a-z A-Z < a.txt", "HELLO WORLD"),
    "diff": ("diff a.txt b.txt || echo differ", "> alpha"), "cmp": ("cmp a.txt a.txt && echo same", "same"),
    "comm": ("comm -12 b.txt b.txt", "alpha"), "file": ("file a.txt", "ASCII text"),
    "stat": ("stat -c %s a.txt", "12"), "du": ("du -s .", "."),
    "df": ("df -P . | tail -1", "%"), "find": ("find . -name a.txt", "./a.txt"),
    "basename": ("basename /x/y.txt .txt", "y"), "dirname": ("dirname /x/y", "/x"),
    "realpath": ("realpath a.txt", "/a.txt"), "readlink": ("readlink -f a.txt", "/a.txt"),
    "date": ("date -u -d @0 +%Y", "1970"), "nl": ("nl b.txt", "1\talpha"),
    "od": ("od -c a.txt | head -1", "h   e   l"), "xxd": ("xxd a.txt", "6865 6c6c"),
    "strings": ("strings a.txt", "hello world"),
    "md5sum": ("md5sum a.txt", "6f5902ac237024bdd0c176cb93063dc4"),
    "sha1sum": ("sha1sum a.txt", "22596363b3de40b06f981fb85d82312e8c0ed511"),
    "sha256sum": ("sha256sum a.txt", "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"),
    "paste": ("paste b.txt b.txt", "alpha\talpha"), "join": ("join b.txt b.txt", "alpha"),
    "fold": ("fold -w 5 a.txt", "hello\n worl"), "fmt": ("fmt b.txt", "alpha beta"),
    "column": ("column -t a.txt", "hello  world"), "rev": ("rev a.txt", "dlrow olleh"),
    "seq": ("seq 2 3", "2\n3"), "tac": ("tac b.txt", "beta\nalpha"),
    "expand": ("printf 'a\\tb\\n' | expand", "a       b"),
    "unexpand": ("printf 'a       b\\n' | unexpand -a", "a\tb"),
    "tree": ("tree --noreport", "a.txt"), "jq": ("jq .a j.json", "1"),
    "sleep": ("sleep 0.01 && echo slept", "slept"), "mkdir": ("mkdir -p d/e && ls d", "e"),
    "touch": ("touch t && ls t", "t"), "tee": ("echo teed | tee u && cat u", "teed\nteed"),
}


def test_every_default_program_has_a_use() -> None:
    assert set(DEFAULT_USES) == set(DEFAULT_COMMANDS)
    if in_ci():  # the set-up installs them all (tree included)
        assert default_commands() == list(DEFAULT_COMMANDS)


@pytest.mark.parametrize("tier", TIERS)
def test_every_default_program_still_works(sandbox: Any, tier: str) -> None:
    box = sandbox(tier)
    work = Path(box.roots[0])
    for name, text in (("a.txt", "hello world\n"), ("b.txt", "alpha\nbeta\n"), ("j.json", '{"a": 1}\n')):
        plant(work / name, box.uid, text=text)
    allowlist = default_allowlist()
    failures = []
    for name in default_commands():
        line, expected = DEFAULT_USES[name]
        result = run_line(box, line, allowlist)
        if result.exit_code != 0 or expected not in result.stdout or result.stderr:
            failures.append((name, result.exit_code, result.stdout[-200:], result.stderr[-300:]))
    assert not failures, failures
