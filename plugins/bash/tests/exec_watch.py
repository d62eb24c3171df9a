"""Seeing which programs a Bash sandbox starts, and the lines that try to start others.

:class:`Traced` wraps a sandbox's :class:`~agently_core_isolation.sandbox.Isolation` so
that each call runs under ``strace -f`` (every ``execve``/``execveat`` of the call's whole
process tree, with its result, logged to a host file the sandbox cannot see);
:func:`execs` reads the log and :func:`foreign` names every program that *started*
(an exec that succeeded) after the sandbox's own ``bash -c LINE`` and is not an allowed
program. What ran before that exec is the sandbox's own machinery (prlimit, setpriv,
bwrap, the launcher): nothing of the line runs before its bash does.

:func:`dangerous_lines` and :func:`line_strategy` make the command lines: exec-capable
options of the allowed programs (find's ``-exec``, sort's ``--compress-program``, diff's
``-l``, env/timeout/nice/nohup/stdbuf/setsid/flock/xargs command words, awk's
``system()`` and pipes, sed's ``e``), each smuggled in by a variable, ``read``,
``export``, ``set --``, a substitution, a default, ``for``, a tilde, a glob matching a file
of that name, ANSI-C quoting, brace expansion, case or prefix operators, quote splicing,
or a builtin the checker refuses, aimed at programs outside the list (``/usr/bin/id``, a
copy of it in the workspace, the dynamic loader, ``/bin/sh``, ``python3``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agently_core_bash.package import default_commands
from hypothesis import strategies as st

from agently_core.testing import require_program

BASH = "/usr/bin/bash" if os.path.exists("/usr/bin/bash") else "/bin/bash"
#: The host-extended list: the default and the launchers a host may add.
HOST_EXTRA = ("xargs", "env", "timeout", "nice", "nohup", "stdbuf", "setsid", "flock", "awk",
              "sed")
LOADER = "/lib64/ld-linux-x86-64.so.2"


def strace_path() -> str:
    """strace, which the observation needs: missing, the test fails under CI (where the
    set-up installs it) and is skipped elsewhere."""
    return require_program("strace")


def host_commands() -> list[str]:
    return [*default_commands(), *(n for n in HOST_EXTRA if shutil.which(n))]


# == observing ==============================================================================
class Traced:
    """An isolation whose every call runs under ``strace -f``, logging to ``log``."""

    def __init__(self, inner: Any, strace: str, log: Path) -> None:
        self.inner, self.strace, self.log = inner, strace, log
        self.argv: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def command(self, spec: Any, *, uid: int | None = None) -> tuple[list[str], dict[str, str]]:
        argv, env = self.inner.command(spec, uid=uid)
        self.argv = argv
        return [self.strace, "-f", "-qq", "--seccomp-bpf", "-s", "1000000", "-xx",
                "-e", "trace=execve,execveat", "-e", "signal=none", "-o", str(self.log),
                "--", *argv], env


@dataclass
class Exec:
    """One exec and its result: 0 when the program started, None when strace printed none
    (``= ?``, or no line at all: the process died inside the call)."""

    pid: int
    path: str
    argv: list[str]
    result: int | None

    def started(self, *, complete: bool) -> bool:
        """Whether the program started. A traced process stops on its way out of every
        traced call, and strace prints the result there, before it runs on: when strace
        ran to the end (``complete``), an exec without a result died inside the call. Past
        a killed run (strace may have been stopped), it counts as started."""
        return self.result == 0 or (self.result is None and not complete)


_CALL = re.compile(r"^(\d+)\s+(execve|execveat)\((.*)$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (?:execve|execveat) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def _text(hexed: str) -> str:
    return bytes.fromhex(hexed.replace("\\x", "")).decode(errors="replace")


def _settle(record: Exec, tail: str) -> None:
    found = _RESULT.search(tail)
    if found and found.group(1) != "?":
        record.result = int(found.group(1))


def execs(log: Path) -> list[Exec]:
    """Every exec in an strace log (``-xx`` strings), in order, with its result."""
    found: list[Exec] = []
    pending: dict[int, Exec] = {}
    for line in log.read_text(errors="replace").splitlines():
        call = _CALL.match(line)
        if call:
            pid, rest = int(call.group(1)), call.group(3)
            strings = [_text(s) for s in _STRING.findall(rest.split("], ")[0] + "]")]
            if not strings:  # execveat(fd, "", ...) with AT_EMPTY_PATH has one
                strings = [""]
            record = Exec(pid, strings[0], strings[1:], None)
            found.append(record)
            if "<unfinished ...>" in rest:
                pending[pid] = record
            else:
                _settle(record, rest)
            continue
        resumed = _RESUMED.match(line)
        if resumed:
            pid = int(resumed.group(1))
            record = pending.pop(pid, None) or next(
                (r for r in reversed(found) if r.result is None), None)
            if record is not None:
                _settle(record, resumed.group(2))
    return found


def foreign(records: Sequence[Exec], line: str, allowed: set[str], *,
            complete: bool) -> list[str]:
    """The programs that started after the sandbox's ``bash -c line`` and are not in
    ``allowed`` (real paths); raises AssertionError when that bash never started.
    ``complete``: the run ended by itself (nothing killed strace)."""
    start = [BASH, "--noprofile", "--norc", "-c", line]
    first = next((i for i, r in enumerate(records) if r.argv == start and r.result == 0), None)
    if first is None:
        raise AssertionError(f"the sandbox's bash never started: {records}")
    bad = []
    for record in records[first + 1:]:
        if not record.started(complete=complete):
            continue
        real = os.path.realpath(record.path) if record.path.startswith("/") else None
        if real not in allowed:
            bad.append(f"{record.path} {record.argv[1:4]} (pid {record.pid})")
    return bad


def interpreters(programs: Iterable[str]) -> set[str]:
    """What the kernel must also execute to run ``programs`` (real paths), transitively:
    the interpreter of a ``#!`` script, the loader (``PT_INTERP``) of a dynamic ELF. The
    kernel opens them for execution too, so an exec check cannot keep them from starting
    directly; they are the only other programs a sandbox may start."""
    found: set[str] = set()
    todo = [os.path.realpath(p) for p in programs]
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        interpreter = _interpreter(path)
        if interpreter:
            real = os.path.realpath(interpreter)
            found.add(real)
            todo.append(real)
    return found


def _interpreter(path: str) -> str | None:
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        return words[0].decode() if words else None
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None  # only 64-bit little-endian ELF (x86-64, arm64) is read
    phoff = int.from_bytes(head[0x20:0x28], "little")
    size, count = int.from_bytes(head[0x36:0x38], "little"), int.from_bytes(head[0x38:0x3a], "little")
    for index in range(count):
        entry = head[phoff + index * size:phoff + (index + 1) * size]
        if len(entry) >= 0x28 and int.from_bytes(entry[0:4], "little") == 3:  # PT_INTERP
            offset = int.from_bytes(entry[8:16], "little")
            length = int.from_bytes(entry[0x20:0x28], "little")
            return head[offset:offset + length].rstrip(b"\x00").decode()
    return None


# == the lines ==============================================================================
#: Programs outside the list, as the words that run them.
TARGETS: list[list[str]] = [["/usr/bin/id"], ["./evil"], ["{root}/evil"], [LOADER, "/usr/bin/id"],
                            ["/bin/sh", "-c", "id"], ["/usr/bin/python3", "-c", "1"],
                            ["python3", "-c", "1"]]


@dataclass(frozen=True)
class Template:
    """A command line with ``{w}`` (the smuggled word) and ``{t}`` (the target's words,
    quoted) or ``{t1}`` (its first word); ``value`` is what ``{w}`` becomes at run time
    (``{t}``/``{t1}`` there are the target's words unquoted); ``host``: it needs the
    host-extended list."""

    text: str
    value: str
    host: bool = False


_AB = "printf 'a\\n' > a; printf 'b\\n' > b; "
_BIG = "seq 30000 > big; "
TEMPLATES: list[Template] = [
    # find: -exec and friends where a primary stands, after primaries that take arguments
    Template("find . -maxdepth 0 {w} {t} ';'", "-exec"),
    Template("find . -maxdepth 0 -printf -printf {w} {t} ';'", "-exec"),
    Template("find . -maxdepth 0 -name -name {w} {t} ';'", "-execdir"),
    Template("find . -maxdepth 0 -fprintf f -printf {w} {t} ';'", "-exec"),
    Template("find . -maxdepth 0 -newermt -newer {w} {t} ';'", "-exec"),
    Template("find {w} {t} ';'", "-exec"),
    Template("find . -maxdepth 0 -name x -o {w} {t} ';'", "-exec"),
    Template("find . -maxdepth 0 {w}", "-exec {t} ;"),
    Template("find . -maxdepth 0 -exec ls {w} -exec {t} ';'", ";"),
    Template("find . -maxdepth 0 -name {w} -printf x", "-exec"),  # harmless: runs
    # sort: the compress program (spills with a small buffer), after operands, abbreviated
    Template(_BIG + "sort -S 32K -T . big {w}", "--compress-program={t1}"),
    Template(_BIG + "sort -S 32K -T . {w} big", "--compress-prog={t1}"),
    Template(_BIG + "sort -S 32K -T . big {w}", "--co {t1}"),
    Template(_BIG + "sort -S 32K -T . -o out{w} big", " --compress-program={t1}"),
    Template(_BIG + "sort -S 32K -T . -k {w} big", "--compress-program={t1}"),  # harmless
    # diff: -l pipes through pr
    Template(_AB + "diff {w} a b", "-l"),
    Template(_AB + "diff a b {w}", "--paginate"),
    Template(_AB + "diff -u {w} a b", "--pag"),
    Template(_AB + "diff {w} a b", "-ul"),
    Template(_AB + "diff -I {w} a b", "-l"),  # harmless: -I takes it
    # launchers a host may add: their command word
    Template("env {w}", "{t}", host=True),
    Template("env -S {w}", "{t}", host=True),
    Template("env -- {w}", "{t}", host=True),
    Template("timeout 5 {w}", "{t}", host=True),
    Template("timeout {w} {t}", "5", host=True),
    Template("nice {w}", "{t}", host=True),
    Template("nohup {w}", "{t}", host=True),
    Template("stdbuf -o0 {w}", "{t}", host=True),
    Template("setsid -w {w}", "{t}", host=True),
    Template("touch lock; flock lock {w} {t1}", "-c", host=True),
    Template("xargs -a /dev/null -r {w}", "{t}", host=True),
    Template("printf '%s\\n' {w} | xargs -I% %", "{t}", host=True),
    Template("echo a | awk {w}", 'BEGIN{{system("{t}")}}', host=True),
    Template("echo a | awk {w}", '{{print | "{t}"}}', host=True),
    Template("echo a | awk {w}", 'BEGIN{{"{t}" | getline x}}', host=True),
    Template("echo a | awk -v c={w} 'BEGIN{{print c}}'", "{t}", host=True),  # harmless
    Template("echo a | sed {w}", "e {t1}", host=True),
    Template("echo a | sed -e {w}", "s|a|{t}|e", host=True),
    Template("echo a | sed -n p{w}", ";e {t1}", host=True),
    Template("echo a | sed {w} -e p", "--expression=e {t1}", host=True),
    # the same values where the models read them as data: these run, and start nothing else
    Template("find ./{w} -maxdepth 0 -print", "-exec"),
    Template("find . -maxdepth 0 -name x -o -printf {w} -printf -printf", "-exec"),
    Template(_BIG + "sort -S 32K -T . -t {w} -k1 big -- {w}", "--compress-program={t1}"),
    Template(_AB + "diff -- {w} a", "-l"),
    Template("echo a | awk -F {w} '{{print $1}}' -", 'BEGIN{{system("{t}")}}', host=True),
    Template("echo a | sed -n -e p -- {w}", "e {t1}", host=True),
    Template("env -u {w} ls", "{t1}", host=True),
]


def _ansi(value: str) -> str:
    return "".join(f"\\x{ord(c):02x}" for c in value)


def _braced(value: str) -> str:
    return "".join(c if c.isalnum() else "\\" + c for c in value)


def carriers(value: str) -> list[tuple[str, str, str]]:
    """Ways to make a word become ``value`` at run time: (before, word, after)."""
    q = shlex.quote(value)
    words = " ".join(shlex.quote(p) for p in value.split()) or "''"
    ways = [
        (f"x={q}; ", '"$x"', ""), (f"x={q}; ", "$x", ""), (f"x={q}; ", '"${x}"', ""),
        (f"read -r x <<< {q}; ", '"$x"', ""), (f"read x <<< {q}; ", "$x", ""),
        (f"export x={q}; ", '"$x"', ""), (f"set -- {q}; ", '"$1"', ""),
        (f"set -- {words}; ", '"$@"', ""), (f"set -- {words}; ", "$*", ""),
        (f"set -- {words}; ", '"${@:-x}"', ""), (f"set -- {words}; ", '"${x:-$@}"', ""),
        (f"x=$(printf %s {q}); ", '"$x"', ""), (f"x=`printf %s {q}`; ", "$x", ""),
        ("", f'"$(printf %s {q})"', ""), (f"y={q}; : ${{x:=$y}}; ", '"$x"', ""),
        (f"y={q}; ", '"${x:-$y}"', ""), (f"for x in {q}; do ", '"$x"', "; done"),
        (f"HOME={q}; ", "~", ""), ("", f"$'{_ansi(value)}'", ""),
        ("", "{" + _braced(value) + ",}", ""), (f"x=zz{q}; ", '"${x#zz}"', ""),
        (f"x={shlex.quote(value.upper())}; ", '"${x,,}"', ""),
        (f"x={q}; ", '"${x/#/}"', ""),
        # refused by the checker whatever the program: assignments it cannot follow
        (f"printf -v x %s {q}; ", '"$x"', ""), (f"declare x={q}; ", '"$x"', ""),
        (f"n=y; y={q}; ", '"${!n}"', ""), (f"IFS=,; x={q}; ", "$x", ""),
        (f"mapfile -t x <<< {q}; ", '"$x"', ""),
        # spelled out: the checker sees the value itself
        ("", q, ""), ("", shlex.quote(value[:1]) + shlex.quote(value[1:]), ""),
        (f"x={q} ", '"$x"', ""),  # an assignment for the command only: "$x" is empty
    ]
    if value and "/" not in value and " " not in value:
        # a file of that name, matched by a glob
        quoted = shlex.quote(value)
        ways += [(f"touch -- {quoted}; ", "*", ""), (f"touch -- {quoted}; ", f"[{_braced(value[0])}]" +
                  _braced(value[1:]), ""), (f"touch -- {quoted}; ", "?" + _braced(value[1:]), "")]
    return ways


def build(template: Template, target: list[str], carrier: int, root: Path) -> str:
    """The command line ``template`` makes with ``target`` and the ``carrier``-th way."""
    words = [w.replace("{root}", str(root)) for w in target]
    value = template.value.format(t=" ".join(words), t1=words[0])
    ways = carriers(value)
    before, word, after = ways[carrier % len(ways)]
    text = template.text.format(w=word, t=" ".join(shlex.quote(w) for w in words),
                                t1=shlex.quote(words[0]))
    return f"{before}{text}{after}"


def line_strategy(root: Path, *, host: bool) -> st.SearchStrategy[str]:
    templates = [t for t in TEMPLATES if host or not t.host]
    return st.builds(lambda t, target, carrier: build(t, target, carrier, root),
                     st.sampled_from(templates), st.sampled_from(TARGETS),
                     st.integers(min_value=0, max_value=60))


def dangerous_lines(root: Path, *, thorough: bool = True) -> list[tuple[str, bool]]:
    """The known-dangerous lines: the issue's, and per template the plainest carriers
    (``thorough``: three carriers and two targets, else one of each); (line, needs the
    host-extended list)."""
    lines = [
        ('x=-exec; find . -maxdepth 0 -printf -printf "$x" /usr/bin/id ";"', False),
        ("read x <<< -exec; find . -maxdepth 0 -printf -printf \"$x\" /usr/bin/id ';'", False),
        ("export E=-execdir; find . -maxdepth 0 -printf -printf \"$E\" /usr/bin/id ';'", False),
        ("set -- x -exec /usr/bin/id ';'; find . -maxdepth 0 -name \"${x:-$@}\"", False),
        ("touch -- -exec; find . -maxdepth 0 -name x -o [-]exec /usr/bin/id ';'", False),
        (_BIG + "x=--compress-program=/usr/bin/id; sort -S 32K -T . big \"$x\"", False),
        (_BIG + "touch -- --compress-program=evil; sort -S 32K -T . -- big; sort -S 32K -T . *",
         False),
        (_AB + "touch -- -l; diff * a b", False),
        ("echo a | awk 'BEGIN{system(\"/usr/bin/id\")}'", True),
        ("echo a | sed 's/a/\\/usr\\/bin\\/id/ e'", True),
        ("echo a | sed ':a e /usr/bin/id'", True),
        ("touch lock; flock lock -c /usr/bin/id", True),
    ]
    for template in TEMPLATES:
        for target in (TARGETS[0], TARGETS[3]) if thorough else (TARGETS[0],):
            for carrier in (0, 1, 7) if thorough else (0,):
                lines.append((build(template, target, carrier, root), template.host))
    return lines


Runner = Callable[[str], tuple[Any, list[Exec]]]
