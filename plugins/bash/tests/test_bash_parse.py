"""The command-line analyser (parse.py), the allowlist (programs.py) and the checker
(check.py), without a sandbox; and a differential test against real Bash: whatever the
checker accepts, Bash runs nothing else."""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agently_core_bash.check import check_line
from agently_core_bash.parse import Refused, dangerous_name, parse
from agently_core_bash.programs import Allowlist, Program, make_bin_dir, resolve_entry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALLOW = Allowlist.resolve(["ls", "cat", "grep", "wc", "sort", "head", "find", "env", "timeout",
                           "nice", "xargs", "sh", "bash", "nohup", "setsid", "stdbuf", "flock",
                           "watch", "strace", "sleep", "tr"])


def commands(line: str) -> list[list[str | None]]:
    return [c.argv for c in parse(line)]


def programs(line: str, allowlist: Allowlist = ALLOW) -> list[str]:
    return sorted({p.name for p in check_line(line, allowlist).programs})


def refused(line: str, allowlist: Allowlist = ALLOW) -> str:
    with pytest.raises(Refused) as caught:
        check_line(line, allowlist)
    return str(caught.value)


# == structure ===============================================================================
@pytest.mark.parametrize(("line", "expected"), [
    ("ls -la", [["ls", "-la"]]),
    ("ls | grep x | wc -l", [["ls"], ["grep", "x"], ["wc", "-l"]]),
    ("ls && cat f || wc; sort\nhead", [["ls"], ["cat", "f"], ["wc"], ["sort"], ["head"]]),
    ("ls & cat f &", [["ls"], ["cat", "f"]]),
    ("ls |& cat", [["ls"], ["cat"]]),
    ("(cd sub; ls) && { cat a; wc b; }", [["cd", "sub"], ["ls"], ["cat", "a"], ["wc", "b"]]),
    ("( (ls) )", [["ls"]]),
    ("! ls", [["ls"]]),
    ("time -p ls", [["ls"]]),
    ("ls # rm -rf / $(rm)", [["ls"]]),
    ("ls a#b", [["ls", "a#b"]]),
    ("ls \\\n  -la", [["ls", "-la"]]),
])
def test_lists_pipelines_and_groups(line: str, expected: list[list[str]]) -> None:
    assert commands(line) == expected


@pytest.mark.parametrize(("line", "nested"), [
    ("echo $(rm x)", "rm"),
    ("echo `rm x`", "rm"),
    ('echo "$(rm x)"', "rm"),
    ('echo "`rm x`"', "rm"),
    ('echo "a $(ls "$(rm x)") b"', "rm"),
    ("echo $(ls $(cat $(rm x)))", "rm"),
    ("cat <(rm x)", "rm"),
    ("ls > >(rm x)", "rm"),
    ("x=$(rm x) ls", "rm"),
    ("ls > $(rm x)", "rm"),
    ('echo "${x:-$(rm x)}"', "rm"),
    ("echo ${x:+`rm x`}", "rm"),
    ("for f in $(rm x); do ls; done", "rm"),
    ("if $(rm x); then ls; fi", "rm"),
    ("ls <<< $(rm x)", "rm"),
    ("(ls) > $(rm x)", "rm"),
])
def test_substitutions_are_found_wherever_they_hide(line: str, nested: str) -> None:
    found = [c.argv[0] for c in parse(line)]
    assert nested in found, found
    assert "'rm'" in refused(line)


@pytest.mark.parametrize("line", [
    "echo 'a; rm x'", 'echo "a; rm x"', "echo a\\;rm", "echo '$(rm x)'", "echo \\$\\(rm x\\)",
    'echo "\\$(rm x)"', "echo '`rm x`'", "echo 'a|rm'", "echo a'&&'rm", 'echo "a\nrm"',
])
def test_quotes_and_escapes_hide_operators(line: str) -> None:
    assert [c.argv[0] for c in parse(line)] == ["echo"]
    assert programs(line) == []


@pytest.mark.parametrize(("line", "word"), [
    ("'ls'", "ls"), ('"ls"', "ls"), ("l's'", "ls"), ("\\ls", "ls"), ('l"s"', "ls"),
])
def test_quote_removal_of_the_command_word(line: str, word: str) -> None:
    assert commands(line) == [[word]]
    assert programs(line) == ["ls"]


def test_compound_commands_are_walked() -> None:
    line = ("if grep -q x f; then cat f; elif wc f; then head f; else sort f; fi > out\n"
            "for n in a b c; do ls $n; done\nwhile head f; do wc f; done\n"
            "until cat f; do sort f; done 2>&1")
    assert programs(line) == ["cat", "grep", "head", "ls", "sort", "wc"]
    assert "'rm'" in refused("for x in a; do rm $x; done")
    assert "'rm'" in refused("if ls; then :; else rm x; fi")
    assert "'rm'" in refused("while ls; do rm x; done")


def test_assignments_and_redirections_are_kept() -> None:
    (command,) = parse("A=1 B='two words' ls -l > out 2>&1 < in")
    assert [name for name, _ in command.assignments] == ["A", "B"]
    assert command.argv == ["ls", "-l"]
    assert [(r.fd, r.op, r.target.raw) for r in command.redirects] == [
        (None, ">", "out"), ("2", ">&", "1"), (None, "<", "in")]
    assert programs("A=1 B=2") == []  # assignments only
    assert programs("> file") == []  # a redirection only


# == refusals ================================================================================
@pytest.mark.parametrize(("line", "why"), [
    (":(){ :|:& };:", "function definitions"),
    ("f() { ls; }", "function definitions"),
    ("function f { ls; }", "function definitions"),
    ("eval ls", "builtin 'eval'"),
    ("exec ls", "builtin 'exec'"),
    ("source f", "builtin 'source'"),
    (". f", "builtin '.'"),
    ("command ls", "builtin 'command'"),
    ("builtin echo", "builtin 'builtin'"),
    ("enable -f x.so x", "builtin 'enable'"),
    ("alias ls=rm", "builtin 'alias'"),
    ("trap 'rm x' EXIT", "builtin 'trap'"),
    ("coproc ls", "coproc"),
    ("declare -x A=1", "builtin 'declare'"),
    ("hash -p /usr/bin/rm ls", "builtin 'hash'"),
    ("let x=1", "builtin 'let'"),
    ("shopt -s extglob", "builtin 'shopt'"),
    ("case x in a) ls;; esac", "case"),
    ("select x in a; do ls; done", "select"),
    ("[[ -f x ]]", "[[ ]]"),
    ("((x = 1))", "arithmetic"),
    ("echo $((1 + 1))", "arithmetic"),
    ("echo $[1 + 1]", "arithmetic"),
    ("for ((i=0; i<3; i++)); do ls; done", "arithmetic"),
    ("cat <<EOF\nx\nEOF", "here-documents"),
    ("cat <<-EOF\nx\nEOF", "here-documents"),
    ("echo 'unterminated", "unterminated single quote"),
    ('echo "unterminated', "unterminated double quote"),
    ("echo $(ls", "unterminated $( )"),
    ("echo `ls", "unterminated backtick"),
    ("echo ${x", "unterminated ${"),
    ("echo ${!x}", "indirect expansion"),
    ("echo ${x:1:2}", "substring"),
    ("echo ${x@P}", "transformations"),
    ("echo ${a[1]}", "arrays"),
    ("a[1]=x", "array assignments"),
    ("a=(1 2)", "array assignments"),
    ("{fd}>file ls", "named file descriptors"),
    ("echo `echo \\`rm\\``", "backslashes inside backticks"),
    ("ls; ;", "expected a command"),
    ("| ls", "expected a command"),
    ("ls &&", "expected a command"),
    ("ls )", "unexpected ')'"),
    ("{ ls }", "expected '}'"),
    ("if ls; then cat", "expected"),
    ("ls ;; cat", "unexpected ';;'"),
    ("ls\x00", "NUL"),
    ('echo $"hello"', "translated string"),
    ('echo "a\\\nb"', "line continuation"),
])
def test_refused_constructs(line: str, why: str) -> None:
    assert why in refused(line)


@pytest.mark.parametrize("name", [
    "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH", "GLOBIGNORE",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "BASH_FUNC_x", "OPTIND", "RANDOM", "SHELL", "PAGER",
    "GIT_SSH_COMMAND", "PYTHONPATH", "GCONV_PATH", "PROMPT_COMMAND", "BASH_XTRACEFD", "TEXTDOMAINDIR",
])
def test_dangerous_names_cannot_be_set(name: str) -> None:
    assert dangerous_name(name)
    for line in (f"{name}=x ls", f"{name}=x", f"{name}+=x ls", f"export {name}=x",
                 f"export {name}", f"unset {name}", f"read {name}", f"read -a {name}",
                 f"for {name} in a; do ls; done", f"echo ${{{name}:=x}}", f"env {name}=x ls"):
        message = refused(line)
        assert repr(name) in message or "not a plain" in message, (line, message)


def test_harmless_names_and_builtins_are_allowed() -> None:
    assert programs("LANG=C ls; export FOO=1 BAR; unset FOO; read -r line; echo $line") == ["ls"]
    assert programs('cd sub && pwd; printf "%s\\n" a; test -f x; [ -d y ]; true; false; : ok') \
        == []
    assert programs("set -euo pipefail; set -- a b; shift; wait; exit 0") == []
    assert programs('sleep 1 & wait $!; wait "$pid"; wait -n; exit $?') == ["sleep"]


@pytest.mark.parametrize(("line", "why"), [
    ("set -k", "set -k"),
    ("set -o vi", "set -o vi"),
    ("printf -v PATH x", "printf -v"),
    ('printf "$fmt" x', "format must be a literal"),
    ("test -v x", "-v"),
    ("[ -v 'a[$(rm)]' ]", "-v"),
    ('[ "$op" x ]', "operator"),
    ("[ $x = 1 ]", "quote expansions"),
    ("export -f f", "export"),
    ('export "$name=1"', "literal"),
    ("read 'a[0]'", "not a plain"),
    ("kill 1", "builtin 'kill'"),
    ("wait -p PID", "wait -p"),
    ("wait -n -p 'a[$(rm)]'", "wait -p"),
    ("wait $pids", "must be a literal"),
    ('wait "$x" 1', "must be a literal"),
])
def test_builtin_arguments_are_checked(line: str, why: str) -> None:
    assert why in refused(line)


def test_test_accepts_quoted_operands_with_literal_operators() -> None:
    assert programs('[ -f "$file" ] && [ "$a" = "$b" ] && test ! -d "$dir"') == []
    assert "quote expansions" in refused('[ -n "$@" ]')  # "$@" is any number of words


# == the command word ========================================================================
@pytest.mark.parametrize("line", [
    "$cmd", "${cmd}", '"$cmd" x', "$(echo ls)", "`echo ls`", "l*", "l?", "[l]s", "{ls,rm}",
    "~/ls", "$'ls'", "ls$x", "''", '""',
])
def test_a_command_word_that_is_not_a_literal_is_refused(line: str) -> None:
    message = refused(line)
    assert "not a literal" in message or "empty" in message, message


def test_a_quoted_keyword_is_a_command_not_a_keyword() -> None:
    assert commands("'if' x") == [["if", "x"]]
    assert "'if' is not an allowed command" in refused("'if' x")


# == resolution ==============================================================================
def test_allowlist_entries_resolve_to_real_programs() -> None:
    sh = resolve_entry("sh")
    assert sh is not None and sh.name == "sh" and sh.real == os.path.realpath("/usr/bin/sh")
    assert resolve_entry("/usr/bin/ls") == Program("ls", "/usr/bin/ls", "/usr/bin/ls")
    assert resolve_entry("echo") is None  # a safe builtin: always allowed anyway
    for bad, why in (("no-such-program-xyz", "was not found"), ("bin/ls", "absolute path"),
                     ("/no/such/file", "not an executable"), ("eval", "never allowed"),
                     ("if", "keyword")):
        with pytest.raises(ValueError, match=why):
            resolve_entry(bad)


def test_an_entry_inside_a_writable_root_is_refused(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    with pytest.raises(ValueError, match="writable root"):
        Allowlist.resolve([str(tool)], roots=[str(tmp_path)])


@pytest.mark.parametrize("word", ["/usr/bin/ls", "/bin/ls"])
def test_an_allowed_program_by_its_system_path(word: str) -> None:
    assert programs(word) == ["ls"]


@pytest.mark.parametrize(("word", "why"), [
    ("./ls", "relative path"), ("bin/ls", "relative path"), ("../../usr/bin/rm", "relative path"),
    ("../../usr/bin/ls", "relative path"), ("/tmp/ls", "not where an allowed program lives"),
    ("/usr/bin/../bin/ls", "not a normalised"), ("/usr//bin/ls", "not a normalised"),
    ("/usr/bin/rm", "not an allowed program"), ("/usr/bin/dash", "not an allowed program"),
    ("rm", "not an allowed command"),
])
def test_basename_tricks_are_refused(word: str, why: str) -> None:
    assert why in refused(f"{word} -la")


def test_a_workspace_symlink_named_like_an_allowed_program_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ls").symlink_to("/usr/bin/rm")
    (tmp_path / "cat").symlink_to("/usr/bin/cat")  # even one pointing to the real thing
    for word in (str(tmp_path / "ls"), str(tmp_path / "cat")):
        assert "not where an allowed program lives" in refused(word)


def test_the_same_binary_under_another_name_is_another_program() -> None:
    # sh is dash: allowing sh does not allow dash, and allowing ls does not allow "dir",
    # however the files are linked (busybox-style multi-call binaries)
    only_sh = Allowlist.resolve(["sh"])
    assert programs("sh -c 'echo'", only_sh) == ["sh"]
    assert "'dash' is not an allowed command" in refused("dash -c 'echo'", only_sh)
    assert "not an allowed program" in refused("/usr/bin/dash -c 'echo'", only_sh)


def test_the_sandbox_path_directory_holds_only_the_allowed_names(tmp_path: Path) -> None:
    folder = make_bin_dir(Allowlist.resolve(["ls", "sh", "awk"]), tmp_path / "bin")
    assert sorted(os.listdir(folder)) == ["awk", "ls", "sh"]
    assert os.readlink(folder / "sh") == os.path.realpath("/usr/bin/sh")
    assert not os.access(folder, os.W_OK) or os.geteuid() == 0
    assert oct(folder.stat().st_mode & 0o777) == "0o555"


# == programs that start programs ============================================================
@pytest.mark.parametrize(("line", "expected"), [
    ("env A=1 ls", ["env", "ls"]),
    ("env -u HOME -C sub ls", ["env", "ls"]),
    ("env", ["env"]),
    ("timeout 5 cat f", ["cat", "timeout"]),
    ("timeout -s KILL -k 1 5 cat f", ["cat", "timeout"]),
    ("timeout --signal=TERM 5s grep x f", ["grep", "timeout"]),
    ("nice -n 5 ls", ["ls", "nice"]),
    ("nice -5 ls", ["ls", "nice"]),
    ("nohup sleep 1", ["nohup", "sleep"]),
    ("setsid -f sleep 1", ["setsid", "sleep"]),
    ("stdbuf -oL grep x", ["grep", "stdbuf"]),
    ("flock /tmp/lock ls", ["flock", "ls"]),
    ("xargs -0 -n 1 wc -l", ["wc", "xargs"]),
    ("strace -f -e trace=open ls", ["ls", "strace"]),
    ("watch -n 1 ls -la", ["ls", "watch"]),
    ("watch -x ls", ["ls", "watch"]),
    ("find . -name '*.py' -exec grep -l x {} +", ["find", "grep"]),
    ("find . -type f -execdir wc -l {} \\;", ["find", "wc"]),
    ('find . -name "$pat" -print', ["find"]),
    ("sh -c 'ls | wc -l'", ["ls", "sh", "wc"]),
    ("bash -ec 'cat f && head f'", ["bash", "cat", "head"]),
    ("sh -c 'sh -c \"ls\"'", ["ls", "sh"]),
    ("find . -exec sh -c 'ls \"$1\"' _ {} \\;", ["find", "ls", "sh"]),
    ("timeout 5 env A=1 nice ls", ["env", "ls", "nice", "timeout"]),
])
def test_wrappers_name_their_nested_command(line: str, expected: list[str]) -> None:
    assert programs(line) == expected


@pytest.mark.parametrize(("line", "why"), [
    ("env rm x", "'rm'"),
    ("env A=1 rm x", "'rm'"),
    ("env -i rm x", "'rm'"),
    ("env PATH=/tmp ls", "'PATH'"),
    ("env LD_PRELOAD=/tmp/x.so ls", "'LD_PRELOAD'"),
    ("env -S 'rm x'", "-S is not allowed"),
    ("env --split-string='rm x'", "--split-string is not allowed"),
    ("env --spl='rm x'", "--split-string is not allowed"),
    ("env $x", "must be a literal"),
    ('env "A=$x" rm', "must be a literal"),
    ("timeout 5 rm x", "'rm'"),
    ("timeout 5", "needs a command"),
    ("timeout -q 5 ls", "not recognised"),
    ("timeout $t rm", "must be a literal"),
    ("nice rm", "'rm'"),
    ("nohup rm x", "'rm'"),
    ("setsid rm x", "'rm'"),
    ("stdbuf -o0 rm x", "'rm'"),
    ("flock f rm x", "'rm'"),
    ("flock -c 'rm x' f", "-c is not allowed"),
    ("xargs rm", "'rm'"),
    ("xargs sh -c 'ls'", "xargs cannot run 'sh'"),
    ("xargs find", "xargs cannot run 'find'"),
    ("xargs --process-slot-var=LD_PRELOAD ls", "process-slot-var"),
    ("strace -p 1", "-p is not allowed"),
    ("strace -E LD_PRELOAD=x ls", "'LD_PRELOAD'"),
    ("strace rm", "'rm'"),
    ("watch rm x", "'rm'"),
    ("watch 'ls; rm x'", "'rm'"),
    ("watch -x rm x", "'rm'"),
    ("find . -exec rm {} \\;", "'rm'"),
    ("find . -execdir rm {} +", "'rm'"),
    ("find . -ok rm {} \\;", "'rm'"),
    ("find . -okdir /usr/bin/rm {} \\;", "not an allowed program"),
    ("find . -exec ./ls {} \\;", "relative path"),
    ("find . -exec ls", "terminating"),
    ("find . $opts", "must be a literal"),
    ("find . -name $pat", "must be a literal"),
    ("find . -exec ls \"$x\" -exec rm {} \\;", "must be a literal"),
    ("find . -exec sh -c 'rm x' \\;", "'rm'"),
    ("set -- x -exec rm {} ';'; find . -name \"$@\"", "must be a literal"),
    ("find . -name \"${@:-x}\"", "must be a literal"),
    ("sh script.sh", "not a script file"),
    ("sh", "not a script file"),
    ("bash -i -c ls", "-i is not allowed"),
    ("bash -l -c ls", "-l is not allowed"),
    ("bash --rcfile x -c ls", "--rcfile is not allowed"),
    ("sh -c 'rm x'", "'rm'"),
    ("sh -c \"ls; $(rm x)\"", "'rm'"),
    ("sh -c \"$cmd\"", "must be a literal"),
    ("bash -c 'eval ls'", "builtin 'eval'"),
    ("sh -c \"echo $'\\';rm x;\\''\"", "not POSIX sh"),
    ("sort --compress-program=python3 f", "--compress-program"),
    ("sort --compress=sh f", "--compress-program"),
    ("sort $opts f", "must be a literal"),
])
def test_wrappers_refuse_what_they_would_run(line: str, why: str) -> None:
    assert why in refused(line), refused(line)


def test_sort_takes_expansions_after_double_dash() -> None:
    assert programs('sort -r -- "$file"') == ["sort"]


def test_shells_are_checked_only_when_allowlisted() -> None:
    no_shell = Allowlist.resolve(["ls"])
    assert "'sh' is not an allowed command" in refused("sh -c 'ls'", no_shell)
    assert "'bash' is not an allowed command" in refused("bash -c 'ls'", no_shell)


@pytest.mark.parametrize("name", ["su", "chroot", "unshare", "nsenter", "runuser"])
def test_launchers_that_cannot_be_checked_are_refused(name: str) -> None:
    try:
        allowlist = Allowlist.resolve([name])
    except ValueError as exc:  # not installed: it cannot even be allowlisted
        assert name in str(exc)
        allowlist = Allowlist.resolve(["ls"])
    assert re.search(r"not (an )?allowed", refused(f"{name} root ls", allowlist))


def test_env_without_path_looks_the_command_up_on_the_default_path(tmp_path: Path) -> None:
    tool = tmp_path / "ls"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    allowlist = Allowlist([Program("ls", str(tool), str(tool)),
                           *Allowlist.resolve(["env"]).programs])
    assert sorted(p.name for p in check_line("env ls", allowlist).programs) == ["env", "ls"]
    assert "/bin:/usr/bin" in refused("env -i ls", allowlist)  # /bin/ls is another program
    assert "/bin:/usr/bin" in refused("env -u PATH ls", allowlist)


def test_deep_nesting_is_refused() -> None:
    assert "nested too deeply" in refused("echo " + "$(" * 40 + "ls" + ")" * 40)
    assert "nested too deeply" in refused("( " * 40 + "ls" + " )" * 40)


# == differential: what the checker accepts, real Bash runs nothing else ====================
STUBS = ("ls", "cat", "wc", "rm", "evil")
ALLOWED_STUBS = {"ls", "cat", "wc"}
REAL = {"sh": "/usr/bin/dash", "env": "/usr/bin/env", "timeout": "/usr/bin/timeout",
        "find": "/usr/bin/find", "xargs": "/usr/bin/xargs", "nice": "/usr/bin/nice"}
FRAGMENTS = [
    "ls", "cat", "wc", "rm", "evil", "'rm'", '"rm"', "\\rm", "r'm'", "$x", "${x}", "${x:-rm}",
    "${x:-$(rm)}", "x=rm", "x=$(rm)", "$(rm)", "$(ls)", "`rm`", "`ls`", "$'rm'", "{rm,ls}", "*",
    "#", "\\", "'", '"', "$", "(", ")", "{", "}", ";", "&", "&&", "||", "|", "|&", "\n", "<",
    ">", "2>&1", "<(", ">(", "$(", "`", "!", "if", "then", "else", "fi", "for", "in", "do",
    "done", "time", "-c", "sh", "env", "-i", "A=1", "timeout", "1", "find", ".", "-exec", "{}",
    "\\;", "+", "xargs", "nice", "echo", "a", "b", "f", "\"$(rm)\"", "'$(rm)'", "\\$(rm)",
    "\"'\"", "'\"'", "<<<", "$(cat", "rm)", "`rm", "ls`", "${x:-`rm`}", ":", "-n", "5", "/",
]


@pytest.fixture(scope="module")
def stub_path() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="agently-bash-stubs-"))
    stub = folder / ".stub"
    stub.write_text('#!/bin/sh\necho "${0##*/}" >> "$STUB_LOG"\n')
    stub.chmod(0o755)
    for name in STUBS:
        (folder / name).symlink_to(stub)
    for name, real in REAL.items():
        (folder / name).symlink_to(real)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _differential_allowlist(folder: Path) -> Allowlist:
    stub = os.path.realpath(folder / ".stub")
    programs = [Program(name, str(folder / name), stub) for name in ALLOWED_STUBS]
    programs += [Program(name, str(folder / name), real) for name, real in REAL.items()]
    return Allowlist(programs)


def _run_bash(line: str, folder: Path, cwd: Path) -> list[str]:
    log = cwd / "log"
    log.write_text("")
    env = {"PATH": str(folder), "STUB_LOG": str(log), "HOME": str(cwd), "LANG": "C"}
    try:
        subprocess.run(["/usr/bin/bash", "--noprofile", "--norc", "-c", line], cwd=cwd, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        pass
    return log.read_text().split()


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from([" ", "", " ", "\n"])),
                min_size=1, max_size=10))
def test_bash_runs_nothing_the_checker_did_not_accept(stub_path: Path,
                                                      pieces: list[tuple[str, str]]) -> None:
    line = "".join(f"{fragment}{sep}" for fragment, sep in pieces)
    allowlist = _differential_allowlist(stub_path)
    try:
        report = check_line(line, allowlist)
    except Refused:
        return
    accepted = {p.name for p in report.programs}
    with tempfile.TemporaryDirectory() as scratch:
        ran = _run_bash(line, stub_path, Path(scratch))
    assert set(ran) <= accepted & ALLOWED_STUBS, (line, ran, accepted)


@pytest.mark.parametrize("line", [
    "ls; cat f | wc -l && echo $(ls) `cat`", "x=1 ls \"$(cat)\" <(wc) >(ls)",
    "if ls; then cat; else wc; fi", "for i in a b; do ls $i; done",
    "sh -c 'ls; cat'", "env A=1 ls", "timeout 1 cat", "find . -maxdepth 0 -exec ls {} \\;",
    "xargs -r ls", "echo 'rm; evil' \"rm\" \\rm", "ls # ; rm", "echo ${x:-`ls`}",
])
def test_bash_runs_what_the_checker_names(stub_path: Path, line: str, tmp_path: Path) -> None:
    report = check_line(line, _differential_allowlist(stub_path))
    ran = _run_bash(line, stub_path, tmp_path)
    assert set(ran) <= {p.name for p in report.programs}, (line, ran)
    assert "rm" not in ran and "evil" not in ran


# a grammar of (mostly) valid lines, with a random character mutation now and then: most are
# accepted, so real Bash runs them
_CMDS = ["ls", "cat", "wc", "rm", "evil", "echo", "true", ":", "'ls'", "\\cat", 'l"s"']
_ARGS = ["a", "-l", "'rm'", '"rm"', "\\;", "'$(rm)'", '"$x"', "$x", "${x:-rm}", "x=rm", "'a b'",
         "\"'\"", "'\"'", "#", "a#b", "{}", "*", "~", "\\rm", "$'\\''", "$'rm'", "'\\'", "\\\\",
         '"\\""', '"a\\$(rm)"']
_NOISE = ["'", '"', "\\", "$", "(", ")", "`", "{", "}", ";", "#", " ", "\n", "|", "&", "<", ">",
          "!", "*"]


class _Lines:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def word(self, depth: int) -> str:
        r = self.rng.random()
        if depth < 3:
            for limit, make in ((0.15, "$({})"), (0.22, '"$({})"'), (0.30, "<({})"),
                                (0.33, '"${{x:-$({})}}"')):
                if r < limit:
                    return make.format(self.line(depth + 1))
            if r < 0.37:
                return f"`{self.simple(depth + 1)}`"
        return self.rng.choice(_ARGS)

    def simple(self, depth: int) -> str:
        parts = [self.rng.choice(["A=1", "B=$(ls)", "C='x y'"])] if self.rng.random() < 0.15 else []
        parts.append(self.rng.choice(_CMDS))
        parts += [self.word(depth) for _ in range(self.rng.randint(0, 3))]
        if self.rng.random() < 0.15:
            parts.append(self.rng.choice(["> f", "2>&1", "< f", ">> g", "&> h", "<<< w"]))
        return " ".join(parts)

    def command(self, depth: int) -> str:
        r = self.rng.random()
        if depth >= 3 or r < 0.5:
            return self.simple(depth)
        inner = self.line(depth + 1)
        for limit, make in ((0.58, "( {} )"), (0.64, "{{ {}; }}"),
                            (0.70, "if {0}; then {0}; else {0}; fi"),
                            (0.75, "for v in a b; do {}; done")):
            if r < limit:
                return make.format(inner)
        if r < 0.80:
            return "sh -c " + shlex.quote(inner)
        prefix = self.rng.choice(["env A=1 ", "timeout 2 ", "xargs -r ", "nice "])
        if r < 0.88:
            return f"find . -maxdepth 0 -exec {self.simple(depth + 1)} {{}} \\;"
        return prefix + self.simple(depth + 1)

    def line(self, depth: int = 0) -> str:
        parts = [self.command(depth)]
        for _ in range(self.rng.randint(0, 2)):
            parts += [self.rng.choice([";", "&&", "||", "|", "&", "\n", "|&"]), self.command(depth)]
        text = " ".join(parts)
        if depth == 0 and self.rng.random() < 0.5:
            for _ in range(self.rng.randint(1, 2)):
                at = self.rng.randrange(len(text) + 1)
                if self.rng.random() < 0.5:
                    text = text[:at] + self.rng.choice(_NOISE) + text[at:]
                else:
                    text = text[:at] + text[at + 1:]
        return text


@settings(max_examples=160, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_bash_runs_nothing_the_checker_did_not_accept_grammar(stub_path: Path,
                                                              rng: random.Random) -> None:
    line = _Lines(rng).line()
    try:
        report = check_line(line, _differential_allowlist(stub_path))
    except Refused:
        return
    with tempfile.TemporaryDirectory() as scratch:
        ran = _run_bash(line, stub_path, Path(scratch))
    assert set(ran) <= {p.name for p in report.programs} & ALLOWED_STUBS, (line, ran)


def test_the_stubs_do_log_what_bash_runs(stub_path: Path, tmp_path: Path) -> None:
    ran = _run_bash("ls; cat f | wc -l && echo $(ls) `cat`; sh -c 'ls'", stub_path, tmp_path)
    assert sorted(ran) == ["cat", "cat", "ls", "ls", "ls", "wc"]
