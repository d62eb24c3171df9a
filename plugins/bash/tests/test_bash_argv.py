"""The checker reads a program's arguments exactly as the program does (options.py,
find_expr.py, scripts.py): every option that takes an argument consumes it, a word that is
not a literal is refused wherever it could become an option or a primary, and awk and sed
scripts are read for what starts a program. The models are checked against the installed
programs, and the awk and sed checks against real awk and sed runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agently_core_bash.check import check_line
from agently_core_bash.find_expr import ARITY
from agently_core_bash.options import DIFF, SED, SORT, WRAPPERS, Options
from agently_core_bash.package import default_commands
from agently_core_bash.parse import Refused, parse
from agently_core_bash.programs import Allowlist, Program
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DEFAULT = Allowlist.resolve(default_commands())
HOST = Allowlist.resolve([*default_commands(), "xargs", "env", "timeout", "nice", "nohup",
                          "stdbuf", "setsid", "flock", "awk", "sed", "sh"])
C_ENV = {"LANG": "C", "LC_ALL": "C", "PATH": "/usr/bin:/bin"}


def refused(line: str, allowlist: Allowlist = HOST) -> str:
    with pytest.raises(Refused) as caught:
        check_line(line, allowlist)
    return str(caught.value)


def accepted(line: str, allowlist: Allowlist = HOST) -> list[str]:
    return sorted({p.name for p in check_line(line, allowlist).programs})


# == the lines and their relatives ===================================================
ID = "/usr/bin/id"


@pytest.mark.parametrize(("line", "why"), [
    # the report: the second -printf is the first one's format, "$x" stands where a primary may
    (f'x=-exec; find . -maxdepth 0 -printf -printf "$x" {ID} ";"', "stands where a primary"),
    (f'read x <<< -exec; find . -maxdepth 0 -printf -printf "$x" {ID} ";"', "stands where"),
    (f'export E=-execdir; find . -maxdepth 0 -printf -printf "$E" {ID} ";"', "stands where"),
    (f'find . -fprintf f -printf "$x" {ID} ";"', "stands where a primary"),  # two arguments
    (f'find . -name -name "$x" {ID} ";"', "stands where a primary"),
    (f'find . -newermt -newer "$x" {ID} ";"', "stands where a primary"),
    (f"find . -maxdepth 0 $'-exec' {ID} ';'", "stands where a primary"),
    (f"find . -maxdepth 0 [-]exec {ID} ';'", "stands where a primary"),  # a file named -exec
    (f"find . -maxdepth 0 -exe? {ID} ';'", "stands where a primary"),
    (f"find . -maxdepth 0 {{-exec,{ID},';'}}", "stands where a primary"),
    (f"HOME=-exec; find . -maxdepth 0 ~ {ID} ';'", "must be a literal"),  # ~ is a path here
    (f"find . -maxdepth 0 -name x -o \"$x\" {ID} ';'", "stands where a primary"),
    (f"set -- x -exec {ID} ';'; find . -maxdepth 0 -name \"${{x:-$@}}\"", "one quoted word"),
    (f"set -- -exec {ID} ';'; find . -maxdepth 0 $*", "must be a literal"),
    ('find "$d" -name x', "the path"),
    ("touch -- -exec; find . *", "the path"),
    (f"IFS=-; x=xexec; find . -maxdepth 0 $x {ID} ';'", "'IFS'"),
    (f"x=-exec; n=x; find . -maxdepth 0 \"${{!n}}\" {ID} ';'", "indirect expansion"),
    (f"printf -v x %s -exec; find . \"$x\" {ID} ';'", "printf -v"),
    (f"declare x=-exec; find . \"$x\" {ID} ';'", "builtin 'declare'"),
    ("POSIXLY_CORRECT=1 find . -name x", "'POSIXLY_CORRECT'"),
    ("find * -name x", "the path"),  # * may match a file named -exec
    ("find -- \"$d\"", "the path"),  # -- ends find's options, not its paths
    ("find . -exec ls \"$x\" \\;", "could end the command"),
    ("find -files0-from list -exec sort {} +", "sort: the argument '{}'"),  # a found "-o.."
    ("find . -exec sort -o {} +", "as the argument of -o"),  # {} + is several paths
    # sort: options after operands, abbreviations, clusters, an attached value that may be empty
    (f"sort f --compress-program={ID}", "--compress-program is not allowed"),
    (f"sort f --compress-prog={ID}", "--compress-program is not allowed"),
    (f"sort --co {ID} f", "--compress-program is not allowed"),
    ('x=--compress-program=/usr/bin/id; sort f "$x"', "must be a literal here"),
    ("sort $opts f", "must be a literal"),
    ("sort *.txt", "could become an option"),  # a file named --compress-program=...
    ('sort -o"$x" -t --compress-program=id f', "could be just -o"),
    ('sort -k"$k" f', "could be just -k"),
    ('sort -r"$x" f', "more option letters"),
    ("sort -y 1 f", "-y is not allowed"),
    ("sort --output", "needs an argument"),
    ("sort --c f", "ambiguous"),
    # diff -l runs pr
    ("diff -l a b", "-l is not allowed"),
    ("diff -ul a b", "-l is not allowed"),
    ("diff a b --pag", "--paginate is not allowed"),
    ('diff "$x" a b', "could become an option"),
    # wrappers
    ("flock f -c id", "FILE -c"),
    ("flock f --command id", "FILE -c"),
    ("env -S'id' ls", "-S is not allowed"),
    (f"env --split-str='{ID}'", "--split-string is not allowed"),
    ("xargs diff a", "xargs cannot run 'diff'"),
    ("xargs sed p", "xargs cannot run 'sed'"),
    ("xargs awk 1", "xargs cannot run 'awk'"),
    ("timeout 5 sort --compress-program=id f", "--compress-program"),
    # awk
    ("awk 'BEGIN{system(\"id\")}'", "system()"),
    ("awk 'BEGIN{print | \"id\"}'", "'|' is not allowed"),
    ("awk 'BEGIN{\"id\" | getline x}'", "'|' is not allowed"),
    ("awk 'BEGIN{print |& \"id\"}'", "'|' is not allowed"),
    ("awk 'BEGIN{x ||| y}'", "'|' is not allowed"),
    ("awk 'BEGIN{f=\"sys\" \"tem\"; @f(\"id\")}'", "'@' is not allowed"),
    ("awk 'BEGIN{f=\"x\"; @f(\"id\")}'", "'@' is not allowed"),
    ("awk '@load \"x\"'", "'@' is not allowed"),
    ("awk -f prog.awk", "-f is not allowed"),
    ("awk -W exec prog.awk", "-W is not allowed"),
    ("awk -We prog.awk", "-We is not allowed"),
    ('awk "$p" f', "must be a literal"),
    ('awk -F"$x" 1', "must be a literal"),  # it could be just -F
    ("awk -v 'a[1]=x' 1", "NAME=VALUE"),
    # sed (GNU): the e command and the s///e flag run a shell
    ("sed 'e id'", "the e command"),
    ("sed '1e id'", "the e command"),
    ("sed '$!e id'", "the e command"),
    ("sed 's/x/id/e'", "s///e flag"),
    ("sed 's/x/id/gpe'", "s///e flag"),
    ("sed 's/x/y/ e'", "unexpected 'e'"),  # sed accepts a blank before a flag
    ("sed ':a e id'", "unexpected 'e'"),  # a label ends at a blank: e is a command
    ("sed ':a;e id'", "the e command"),
    ("sed 'b x e id'", "unexpected 'e'"),
    ("sed '/x/{e id\n}'", "the e command"),
    ("sed -n -e p -e 'e id'", "the e command"),
    ("sed --expr='e id'", "the e command"),
    ("sed 's|x|y|;e id'", "the e command"),
    ("sed 'y/a/b/;e id'", "the e command"),
    ("sed '\\%x%e id'", "the e command"),
    ("sed 's/x/a\\\nb/;e id'", "the e command"),  # an escaped newline in the replacement
    ("sed 's/x/y\ne id/'", "unterminated"),
    ("sed -f s.sed f", "-f/--file"),
    ('sed "$s" f', "could become an option"),
    ('sed -- "$s" f', "the script must be a literal"),
    ("sed 'k' f", "does not know"),
    ("sed f", "does not know"),
])
def test_tricks_that_change_what_runs_are_refused(line: str, why: str) -> None:
    message = refused(line)
    assert why in message, message


@pytest.mark.parametrize(("line", "expected"), [
    ('find . -name "$x" -print', ["find"]),
    ('find . -printf "$x" -printf -printf', ["find"]),  # the second -printf is a format
    ('find ./"$d" ./* -type f -newermt "$when"', ["find"]),
    ('find . -fprintf out "$fmt" -o -regextype posix-extended -regex "$re"', ["find"]),
    ("find -L . -maxdepth 2 \\( -name a -o -name b \\) -exec wc -l {} +", ["find", "wc"]),
    ("find . -type f -exec sort -o {}.sorted {} \\;", ["find", "sort"]),
    ("find . -exec diff -u {} ../b/{} \\;", ["diff", "find"]),
    ("find . -execdir sed -n 1p {} \\;", ["find", "sed"]),
    ("find . -exec ls + \\;", ["find", "ls"]),  # + ends the command only after {}
    ('sort -k "$k" -t , -o "$out" ./*.csv -- "$f" "$@"', ["sort"]),
    ("sort -rnk2 -S 1M --parallel=2 f", ["sort"]),
    ("sort -ok f", ["sort"]),  # -o takes "k"
    ("sort --output=\"$o\" --key 1,2 f", ["sort"]),
    ("diff -I -l a b", ["diff"]),  # -I takes "-l": a regular expression
    ('diff -U "$n" --label "$l" a b', ["diff"]),
    ("awk -F: -v n=1 '$1 == \"x\" || NR > n {print $1 > \"out\"}' f", ["awk"]),
    ("awk -v x=\"$y\" -- 'BEGIN{print x}' \"$f\"", ["awk"]),
    ("sed -n '/x/{p;q}' f", ["sed"]),
    ("sed -E -e 's/(a|b)+/<&>/g' -e '/^#/d' -i.bak ./f", ["sed"]),
    ("sed '$a hello; e id' f", ["sed"]),  # text of a: up to the end of the line
    ("sed '1i\\\ne id' f", ["sed"]),
    ("sed 's/x/y/w out' f", ["sed"]),
    ("sed 'y/abc/xyz/;s,/,|,g;:a;N;$!ba' f", ["sed"]),
    ("sed --sandbox -- \"$script\" f", ["sed"]),  # sed refuses e, r and w itself
    ("env -u HOME LANG=C sort -n f", ["env", "sort"]),
    ("timeout -s KILL 5 diff a b", ["diff", "timeout"]),
])
def test_what_the_models_read_as_harmless_is_accepted(line: str, expected: list[str]) -> None:
    assert accepted(line) == expected


def test_the_default_allowlist_holds_find_sort_and_diff() -> None:
    assert {"find", "sort", "diff"} <= set(DEFAULT.names())
    assert "'awk' is not an allowed command" in refused("awk 1", DEFAULT)


@pytest.mark.parametrize(("line", "value"), [
    ("ls a=~/x", None), ("ls a:~", None), ("ls -- x=~", None), ("ls a~", "a~"), ("ls '~'", "~"),
])
def test_a_tilde_after_an_assignment_sign_is_an_expansion(line: str, value: str | None) -> None:
    # Bash expands a=~/x to a=$HOME/x, also as an argument
    assert parse(line)[0].words[-1].value == value


def test_what_every_expansion_starts_with() -> None:
    words = {w.raw: w for w in parse(
        'ls ./* [-]x x{a,b} ./{-a,b} "$x" $x ./"$x" "${x:-$@}" ~/x -o"$y"')[0].words}
    leads = {raw: w.lead for raw, w in words.items()}
    assert leads == {"ls": "ls", "./*": "./", "[-]x": "", "x{a,b}": "x", "./{-a,b}": "./",
                     '"$x"': "", "$x": None, './"$x"': "./", '"${x:-$@}"': None, "~/x": "",
                     '-o"$y"': "-o"}


# == the models against the installed programs ===============================================
_FIND_SAMPLES = {"-type": "f", "-xtype": "f", "-perm": "644", "-size": "1k", "-user": "root",
                 "-group": "root", "-uid": "0", "-gid": "0", "-links": "1", "-inum": "1",
                 "-maxdepth": "1", "-mindepth": "1", "-regextype": "posix-basic",
                 "-fstype": "ext4", "-used": "1", "-amin": "1", "-atime": "1", "-cmin": "1",
                 "-ctime": "1", "-mmin": "1", "-mtime": "1", "-files0-from": "/dev/null",
                 "-fls": "/dev/null", "-fprint": "/dev/null", "-fprint0": "/dev/null",
                 "-fprintf": "/dev/null", "-context": "x"}


@pytest.mark.parametrize("primary", [*sorted(ARITY), "-newermt", "-neweram"])
def test_find_takes_as_many_words_as_the_model_says(primary: str, tmp_path: Path) -> None:
    if primary in ("-help", "--help", "-version", "--version"):
        return  # they print and exit before reading on
    count = 1 if primary.startswith("-newer") and len(primary) == 8 else ARITY[primary]
    arguments = [_FIND_SAMPLES.get(primary, "/" if "newer" in primary or primary == "-samefile"
                                   else "x")] * count
    if primary == "-fprintf":
        arguments = ["/dev/null", "x"]
    if primary == "-newermt":
        arguments = ["2020-01-01"]
    done = subprocess.run(["find", str(tmp_path / "none"), primary, *arguments, "-bogus"],
                          capture_output=True, text=True, env=C_ENV, cwd=tmp_path, timeout=10)
    if primary == "-context" and "SELinux is not enabled" in done.stderr:
        return  # find refuses it here (and runs nothing)
    assert "unknown predicate `-bogus'" in done.stderr, (primary, done.stderr)


def _short_kind(program: str, letter: str, cwd: Path) -> str:
    def run(*args: str) -> str:
        done = subprocess.run([program, *args], capture_output=True, text=True, env=C_ENV,
                              cwd=cwd, stdin=subprocess.DEVNULL, timeout=10)
        return done.stderr + done.stdout

    alone = run(f"-{letter}")
    if re.search(rf"invalid option -- '{letter}'", alone):
        return "invalid"
    if "requires an argument" in alone:
        return "takes"
    return "flag" if "invalid option -- '@'" in run(f"-{letter}@") else "optional"


def _long_kind(program: str, name: str, cwd: Path) -> str:
    def run(*args: str) -> str:
        done = subprocess.run([program, *args], capture_output=True, text=True, env=C_ENV,
                              cwd=cwd, stdin=subprocess.DEVNULL, timeout=10)
        return done.stderr + done.stdout

    alone = run(f"--{name}")
    if "unrecognized option" in alone:
        return "invalid"
    if "requires an argument" in alone:
        return "takes"
    return "flag" if "allow an argument" in run(f"--{name}=zz9") else "optional"


MODELS: dict[str, Options] = {"sort": SORT, "diff": DIFF, "sed": SED,
                              **{name: WRAPPERS[name] for name in (
                                  "xargs", "env", "timeout", "nice", "nohup", "stdbuf",
                                  "setsid", "flock")}}


@pytest.mark.parametrize("program", sorted(MODELS))
def test_each_option_the_model_accepts_takes_what_the_program_takes(program: str,
                                                                    tmp_path: Path) -> None:
    """A letter or name the model accepts is what the program has (or one it refuses to run
    with): a flag never takes the next word, an option that takes one always does."""
    spec = MODELS[program]
    wrong = []
    for kind, letters in (("flag", spec.flags), ("takes", spec.takes),
                          ("optional", spec.optional)):
        for letter in letters:
            if letter in spec.refused or letter.isdigit():
                continue
            real = _short_kind(program, letter, tmp_path)
            if real not in (kind, "invalid"):
                wrong.append((f"-{letter}", kind, real))
    for kind, names in (("flag", spec.long_flags), ("takes", spec.long_takes),
                        ("optional", spec.long_optional)):
        for name in names:
            if name in spec.refused:
                continue
            real = _long_kind(program, name, tmp_path)
            if real not in (kind, "invalid"):
                wrong.append((f"--{name}", kind, real))
    assert not wrong, wrong


def test_the_refused_options_are_real(tmp_path: Path) -> None:
    # what the models refuse exists, and takes an argument where the model says so
    assert _long_kind("sort", "compress-program", tmp_path) == "takes"
    assert _short_kind("diff", "l", tmp_path) == "flag"
    assert _long_kind("diff", "paginate", tmp_path) == "flag"
    assert _short_kind("env", "S", tmp_path) == "takes"


# == awk and sed scripts against real awk and sed ============================================
_SED_PIECES = ["p", "e touch pwned", "s/x/touch pwned/e", "s/x/y/", "s/x/y/ e", "1", "$", "!",
               "/x/", "\\%x%", ",", "{", "}", ";", "\n", " ", ":a", "b a", "b", "t a", "a text",
               "i\\", "c\\", "e", "w out", "r f", "y/x/z/", "#", "q", "=", "s,x,y,g", "\\", "I",
               "s/x/touch\\ pwned/", "s/.*/touch pwned/", "e", "pe", "gI", "s/x/y/w out", "x"]
_AWK_PIECES = ["BEGIN", "{", "}", "system(\"touch pwned\")", "print", "|", "\"touch pwned\"",
               "||", "getline", ";", " ", "x", "=", "\"sys\"", "\"tem\"", "@", "f", "(", ")",
               "\"touch pwned\" | getline", "/a|b/", "close(\"touch pwned\")", "\n", "\\\n",
               "sys", "tem", "printf", ">", "\"out\"", "1", "$0", "~"]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="agently-bash-scripts-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _ran(argv: list[str], folder: Path) -> bool:
    """Run ``argv`` on a line of input in a fresh directory; whether it ran ``touch``."""
    work = Path(tempfile.mkdtemp(dir=folder))
    (work / "f").write_text("x\n")
    try:
        subprocess.run(argv, input="x\n", capture_output=True, text=True, cwd=work,
                       env=C_ENV, timeout=5)
    except subprocess.TimeoutExpired:
        pass
    return (work / "pwned").exists()


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_SED_PIECES), min_size=1, max_size=6))
def test_sed_runs_no_command_in_a_script_the_checker_accepts(scratch: Path,
                                                             pieces: list[str]) -> None:
    script = "".join(pieces)
    try:
        check_line(f"sed -n -e {_quote(script)} f", HOST)
    except Refused:
        return
    assert not _ran(["sed", "-n", "-e", script, "f"], scratch), script


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_AWK_PIECES), min_size=1, max_size=8))
def test_awk_runs_no_command_in_a_program_the_checker_accepts(scratch: Path,
                                                             pieces: list[str]) -> None:
    text = " ".join(pieces)
    try:
        check_line(f"awk {_quote(text)} f", HOST)
    except Refused:
        return
    assert not _ran(["awk", text, "f"], scratch), text


def test_the_script_checks_see_real_commands(scratch: Path) -> None:
    # the differential tests can fail: these run touch, and are refused
    for argv in (["sed", "-n", "-e", "e touch pwned", "f"], ["sed", "s/x/touch pwned/e", "f"],
                 ["sed", "s/x/touch pwned/ e", "f"], ["sed", ":a e touch pwned", "f"],
                 ["awk", "BEGIN{system(\"touch pwned\")}"],
                 ["awk", "BEGIN{print \"\" | \"touch pwned\"}"]):
        assert _ran(argv, scratch), argv
        with pytest.raises(Refused):
            check_line(" ".join(_quote(a) for a in argv), HOST)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"



# == differential: lines the checker accepts never start the stub, with real find/sort/diff ==
_VALUES = ["-exec", "-execdir", "-ok", ";", "evil", "-printf", "-name", "--compress-program=evil",
           "--compress-prog=evil", "--co=evil", "-l", "--pag", "-ul", "-o", "-k", "-exec evil ;",
           "--compress-program evil", "-", "--", "./x"]
_SETUPS = ["x={v}; ", "read -r x <<< {v}; ", "export x={v}; ", "set -- {v}; ", "touch -- {v}; ",
           "x=$(printf %s {v}); ", "HOME={v}; ", ""]
_WORDS = ['"$x"', "$x", '"$@"', "$*", '"$1"', "*", "./*", "[-]exec", "[-]l", "~", '"${x:-$@}"',
          '"${x}"', "$'-exec'", "{-exec,}", "-e'x'ec", '"-l"', "evil", "';'", "\\;", "{}", "+",
          "-exec", "-execdir", "-printf", "-fprintf", "f", "-name", "-o", "-a", "!", "\\(",
          "\\)", "-maxdepth", "0", "-newer", ".", "--", "-print", "-L", "-S", "32K", "-T",
          "big", "-k", "1", "-t", ",", "-l", "-u", "-I", "a", "b", "-c", "-r", '-o"$x"', "x"]
_PROGRAMS = ["find . -maxdepth 0", "find", "seq 30000 > big; sort -S 32K -T . big",
             "sort -S 32K -T .", "printf 'a\\n' > a; printf 'b\\n' > b; diff a b", "diff"]


@pytest.fixture(scope="module")
def argv_stubs() -> Iterator[tuple[Path, Allowlist]]:
    """A PATH with a logging ``evil`` stub and the real find, sort, diff, seq, touch and
    printf, and the allowlist of those real programs (never evil)."""
    folder = Path(tempfile.mkdtemp(prefix="agently-bash-argv-"))
    (folder / "evil").write_text('#!/bin/sh\necho evil >> "$STUB_LOG"\ncat > /dev/null\n')
    (folder / "evil").chmod(0o755)
    real = {name: shutil.which(name) for name in ("find", "sort", "diff", "seq", "touch")}
    for name, path in real.items():
        assert path is not None
        (folder / name).symlink_to(path)
    allowlist = Allowlist([Program(name, str(folder / name), os.path.realpath(path or ""))
                           for name, path in real.items()])
    yield folder, allowlist
    shutil.rmtree(folder, ignore_errors=True)


def _started_evil(line: str, folder: Path) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / ".log"
        log.write_text("")
        env = {"PATH": str(folder), "STUB_LOG": str(log), "HOME": scratch, "LANG": "C"}
        try:
            done = subprocess.run(["/usr/bin/bash", "--noprofile", "--norc", "-c", line],
                                  cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=10)
            out = done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            out = ""
        # diff -l pipes its output through pr, whose page header says "Page 1"
        return bool(log.read_text()) or "Page 1" in out, out


@settings(max_examples=800, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(_SETUPS), st.sampled_from(_VALUES), st.sampled_from(_PROGRAMS),
       st.lists(st.sampled_from(_WORDS), min_size=1, max_size=6))
def test_no_argument_trick_the_checker_accepts_starts_a_program(
        argv_stubs: tuple[Path, Allowlist], setup: str, value: str, program: str,
        words: list[str]) -> None:
    folder, allowlist = argv_stubs
    line = setup.format(v=_quote(value)) + program + " " + " ".join(words)
    try:
        check_line(line, allowlist)
    except Refused:
        return
    started, out = _started_evil(line, folder)
    assert not started, (line, out)


def test_the_argument_differential_sees_a_started_program(
        argv_stubs: tuple[Path, Allowlist]) -> None:
    folder, allowlist = argv_stubs
    for line in ('x=-exec; find . -maxdepth 0 -printf -printf "$x" evil \\;',
                 "seq 30000 > big; x=--compress-program=evil; sort -S 32K -T . big \"$x\"",
                 "printf 'a\\n' > a; printf 'b\\n' > b; x=-l; diff a b \"$x\""):
        assert _started_evil(line, folder)[0], line
        with pytest.raises(Refused):
            check_line(line, allowlist)
