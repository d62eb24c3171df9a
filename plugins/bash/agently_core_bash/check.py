"""Apply a command allowlist to a Bash line: every simple command, builtins, wrappers.

:func:`check_line` parses the line (:mod:`.parse`) and checks each simple command it can
run:

- its command word must be static (no expansion, glob or brace expansion) and non-empty;
- a Bash builtin must be one of :data:`~.programs.SAFE_BUILTINS` (``cd``, ``echo``,
  ``printf`` without ``-v``, ``test``/``[`` without ``-v``, ``export``/``unset``/``read``
  of harmless literal names, ``set`` with a few options...), or one of the other harmless
  builtins whose name the allowlist grants (``kill``); ``eval``, ``exec``, ``source``,
  ``command``, ``builtin``, ``declare``, ``trap``... are always refused;
- anything else must be an allowed program (:meth:`.Allowlist.match`);
- programs that start other programs are looked into, their options read exactly as the
  program reads them (:mod:`.options`: every option that takes an argument consumes it,
  clusters, abbreviations, ``--``, options after operands), a word that is not a literal
  accepted only where it cannot become an option: ``env``, ``timeout``, ``nice``,
  ``nohup``, ``stdbuf``, ``setsid``, ``time``, ``sudo``, ``doas``, ``flock``, ``strace``,
  ``watch`` and ``xargs`` (the nested command must be allowed too, every word up to it
  static), ``find`` (:mod:`.find_expr`: ``-exec/-execdir/-ok/-okdir PROG`` checked),
  ``sh``/``bash``/``dash -c STRING`` (STRING checked recursively; a shell reading a
  script file or stdin is refused), ``sort`` (``--compress-program`` refused), ``diff``
  (``-l``/``--paginate`` runs ``pr``: refused), ``awk`` and ``sed`` (:mod:`.scripts`:
  ``system()``, pipes, ``e``, ``s///e`` refused); ``su``, ``chroot``, ``busybox``,
  ``runuser``, ``pkexec``, ``unshare`` and ``nsenter`` are refused.

What an allowed program does with its own arguments beyond these (``git -c``, ``tar
--to-command``, an interpreter's script) is the program's: allow only programs whose
arguments cannot run other programs, or accept what they can run. The sandbox's kernel
check on exec holds the allowlist whatever a program's arguments say.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from .find_expr import check_find
from .options import PERMUTING, WRAPPERS, walk
from .parse import Refused, SimpleCommand, Word, check_name, parse
from .programs import OTHER_BUILTINS, REFUSED_BUILTINS, SAFE_BUILTINS, Allowlist, Program
from .scripts import AWKS, check_awk, check_sed

MAX_NESTING = 8
#: PATH a program uses when the environment has none (glibc's confstr(_CS_PATH)).
DEFAULT_PATH = ("/bin", "/usr/bin")
SUDO_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SHELLS = frozenset({"bash", "sh", "dash", "rbash"})
OTHER_SHELLS = frozenset({"zsh", "ksh", "ksh93", "mksh", "csh", "tcsh", "fish", "ash", "yash",
                          "posh", "rc", "es", "pwsh"})
REFUSED_LAUNCHERS = {
    "su": "su runs a login shell", "chroot": "chroot runs a command from another root",
    "busybox": "busybox runs applets by name; allow the applet names instead",
    "runuser": "runuser runs a shell", "pkexec": "pkexec runs commands as another user",
    "unshare": "unshare runs a command in new namespaces",
    "nsenter": "nsenter runs a command in other namespaces",
}
_SET_O = frozenset({"errexit", "nounset", "xtrace", "verbose", "noglob", "noclobber",
                    "pipefail", "noexec", "posix"})
#: Wrappers whose nested command is required (the others may run without one).
NEEDS_COMMAND = frozenset({"timeout", "nohup", "stdbuf", "setsid", "time", "sudo", "doas",
                           "strace"})
#: Programs whose arguments are looked into: never run by xargs, which adds arguments
#: from its input that could not be checked.
ANALYSED = frozenset(WRAPPERS) | SHELLS | {"find"} | set(PERMUTING) | AWKS | \
    set(REFUSED_LAUNCHERS)


@dataclass
class Report:
    """What a checked line may run: the allowed programs and builtins it names."""

    programs: list[Program] = field(default_factory=list)
    builtins: list[str] = field(default_factory=list)


def check_line(line: str, allowlist: Allowlist, *, posix: bool = False) -> Report:
    """Check every command ``line`` can run against ``allowlist``; :class:`Refused` (with
    a message naming the command) for the first one that is not allowed."""
    report = Report()
    _check_line(line, allowlist, report, posix=posix, nesting=0)
    return report


def _check_line(line: str, allowlist: Allowlist, report: Report, *, posix: bool,
                nesting: int) -> None:
    if nesting > MAX_NESTING:
        raise Refused("shells inside shells are nested too deeply")
    for command in parse(line, posix=posix):
        _check_command(command, allowlist, report, nesting)


def _check_command(command: SimpleCommand, allowlist: Allowlist, report: Report,
                   nesting: int) -> None:
    if not command.words:
        return  # assignments (checked by the parser) and redirections only
    try:
        _check_argv(command.words, allowlist, report, nesting)
    except Refused as exc:
        if command.where and "(in " not in str(exc):
            raise Refused(f"{exc} ({command.where})") from None
        raise


def _check_argv(words: Sequence[Word], allowlist: Allowlist, report: Report, nesting: int,
                *, path: Sequence[str] | None = None, builtins: bool = True) -> None:
    first = words[0]
    name = first.value
    if name is None:
        raise Refused(f"the command word {first.raw!r} is not a literal: the program it runs "
                      "cannot be known before it runs")
    if not name:
        raise Refused("the command word is empty")
    if builtins and "/" not in name and name in SAFE_BUILTINS | REFUSED_BUILTINS | OTHER_BUILTINS:
        _check_builtin(name, words, allowlist, report)
        return
    program = allowlist.match(name, path=path)
    report.programs.append(program)
    kind = _kind(program)
    if kind is None:
        return
    rest = list(words[1:])
    if kind in REFUSED_LAUNCHERS:
        raise Refused(f"{name!r} is not allowed: {REFUSED_LAUNCHERS[kind]}")
    if kind in OTHER_SHELLS:
        raise Refused(f"{name!r} is not allowed: only bash and sh command strings are checked")
    if kind in SHELLS:
        _check_shell(name, program, rest, allowlist, report, nesting)
    elif kind == "find":
        check_find(rest, lambda nested: _check_argv(nested, allowlist, report, nesting + 1,
                                                    builtins=False))
    elif kind == "sed":
        check_sed(name, rest)
    elif kind in AWKS:
        check_awk(name, rest)
    elif kind in PERMUTING:
        walk(name, rest, PERMUTING[kind])
    else:
        _check_wrapper(kind, name, rest, allowlist, report, nesting, path)


def _kind(program: Program) -> str | None:
    invoked = program.name
    real = os.path.basename(program.real)
    known = ANALYSED | OTHER_SHELLS
    if real == "busybox":
        return invoked if invoked in known else None
    # awk is mawk or gawk (one model for every awk)
    kinds = {"awk" if k in AWKS else k for k in (invoked, real) if k in known}
    if kinds <= SHELLS and kinds:
        return "bash" if "bash" in kinds and invoked != "sh" else "sh"
    if len(kinds) > 1:
        raise Refused(f"{invoked!r} is {real!r} under another name; refused")
    return next(iter(kinds), None)


# -- builtins ----------------------------------------------------------------------------
def _static_args(name: str, words: Sequence[Word]) -> list[str]:
    values = []
    for word in words:
        if word.value is None:
            raise Refused(f"{name}: the argument {word.raw!r} must be a literal")
        values.append(word.value)
    return values


def _check_builtin(name: str, words: Sequence[Word], allowlist: Allowlist,
                   report: Report) -> None:
    args = list(words[1:])
    if name in REFUSED_BUILTINS:
        raise Refused(f"the builtin {name!r} is not allowed (it can run or redirect code "
                      "the analyser cannot see)")
    if name in OTHER_BUILTINS and name not in allowlist:
        raise Refused(f"the builtin {name!r} is not allowed ({allowlist.allowed_text()})")
    report.builtins.append(name)
    if name in ("test", "["):
        _check_test(name, args)
    elif name == "printf":
        if args and args[0].value is None:
            raise Refused("printf: the format must be a literal (printf -v would assign a "
                          "variable)")
        if args and args[0].value.startswith("-v"):
            raise Refused("printf -v (assigning a variable) is not allowed")
    elif name == "export":
        for word in args:
            _check_assigned_word("export", word, allow_options="np")
    elif name == "unset":
        for word in args:
            if word.value == "-v":
                continue
            _check_assigned_word("unset", word, allow_options="")
    elif name == "read":
        _check_read(args)
    elif name == "wait":
        for index, word in enumerate(args):
            if word.value is None:
                # "$pid" or $!: one word, and the last (an option cannot follow an operand)
                if word.splits or index != len(args) - 1:
                    raise Refused(f"wait: {word.raw!r} must be a literal, or the last argument "
                                  "(wait -p assigns a variable)")
            elif word.value.startswith("-") and word.value not in ("-n", "-f", "-nf", "-fn",
                                                                   "--"):
                raise Refused(f"wait {word.raw} is not allowed (wait -p assigns a variable)")
    elif name == "set":
        _check_set(args)


def _check_assigned_word(builtin: str, word: Word, *, allow_options: str) -> None:
    text = word.value if word.value is not None else word.prefix
    if text.startswith("-"):
        if word.value is None or any(c not in allow_options for c in text[1:]) or text == "-":
            raise Refused(f"{builtin} {word.raw!r} is not allowed")
        return
    name, eq, _ = text.partition("=")
    if not eq and word.value is None:
        raise Refused(f"{builtin}: the name {word.raw!r} must be a literal")
    check_name(name[:-1] if name.endswith("+") and eq else name, f"{builtin} of")


def _check_test(name: str, args: list[Word]) -> None:
    if name == "[":
        if not args or args[-1].value != "]":
            raise Refused("[ needs a closing ]")
        args = args[:-1]
    values = [w.value for w in args]
    if any(v in ("-v", "-R") for v in values):
        raise Refused(f"{name} -v/-R is not allowed (it evaluates array subscripts)")
    # an operand that is not a literal must not be able to stand where -v could: find the
    # operator positions of the (at most 4-argument) POSIX forms
    dynamic = [i for i, v in enumerate(values) if v is None]
    if not dynamic:
        return
    if any(args[i].splits for i in dynamic):
        raise Refused(f"{name}: quote expansions in its arguments (\"$x\"), so their count "
                      "is fixed")
    binary = {"=", "==", "!=", "<", ">", "-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-nt",
              "-ot", "-ef"}

    def ok(vals: list[str | None]) -> bool:
        if len(vals) <= 1:
            return True
        if len(vals) == 2:
            return vals[0] is not None and vals[0] not in ("-v", "-R")
        if len(vals) == 3:
            return vals[1] in binary or (vals[0] == "!" and ok(vals[1:]))
        if len(vals) == 4:
            return vals[0] == "!" and ok(vals[1:])
        return False

    if not ok(values):
        raise Refused(f"{name}: an expansion stands where an operator could; use at most "
                      "three arguments with a literal operator")


def _check_read(args: list[Word]) -> None:
    takes = set("dinNptu")
    i = 0
    while i < len(args):
        word = args[i]
        if word.value is None:
            raise Refused(f"read: the argument {word.raw!r} must be a literal")
        text = word.value
        if text == "--":
            i += 1
            break
        if not text.startswith("-") or text == "-":
            break
        j = 1
        while j < len(text):
            c = text[j]
            if c in "ers":
                j += 1
            elif c == "a":
                value = text[j + 1:] or (args[i + 1].value if i + 1 < len(args) else None)
                if not text[j + 1:]:
                    i += 1
                if value is None:
                    raise Refused("read -a needs a literal name")
                check_name(value, "read into")
                break
            elif c in takes:
                if not text[j + 1:]:
                    i += 1
                    if i >= len(args):
                        raise Refused(f"read -{c} needs an argument")
                break
            else:
                raise Refused(f"read -{c} is not allowed")
        i += 1
    for word in args[i:]:
        if word.value is None:
            raise Refused(f"read: the name {word.raw!r} must be a literal")
        check_name(word.value, "read into")


def _check_set(args: list[Word]) -> None:
    i = 0
    while i < len(args):
        word = args[i]
        if word.value is None:
            raise Refused(f"set: the argument {word.raw!r} must be a literal")
        text = word.value
        if text in ("--", "-") or text[:1] not in ("-", "+"):
            return  # the rest are positional parameters
        i += 1
        for position, c in enumerate(text[1:], start=1):
            if c == "o":
                option = text[position + 1:] or (args[i].value if i < len(args) else None)
                if not text[position + 1:]:
                    i += 1
                if option is not None and option not in _SET_O:
                    raise Refused(f"set {text[0]}o {option} is not allowed")
                break
            if c not in "euxvfCn":
                raise Refused(f"set {text[0]}{c} is not allowed (allowed: -e -u -x -v -f -C -n "
                              f"and -o {', '.join(sorted(_SET_O))})")


# -- programs that start programs ---------------------------------------------------------
def _check_wrapper(kind: str, name: str, args: list[Word], allowlist: Allowlist,
                   report: Report, nesting: int, path: Sequence[str] | None) -> None:
    parsed = walk(name, args, WRAPPERS[kind])
    start, seen = parsed.end, parsed.options
    options = {option for option, _ in seen}
    nested_path = path
    if kind in ("env", "sudo"):
        if kind == "env" and start < len(args) and args[start].value == "-":
            start += 1
            options.add("-i")
        while start < len(args) and "=" in (args[start].value or args[start].prefix):
            if args[start].value is None:
                raise Refused(f"{name}: the setting {args[start].raw!r} must be a literal")
            check_name(args[start].value.split("=", 1)[0], f"{name} setting")
            start += 1
        if kind == "sudo":
            nested_path = SUDO_PATH
        elif options & {"-i", "--ignore-environment"} or any(
                option in ("-u", "--unset") and value == "PATH" for option, value in seen):
            nested_path = DEFAULT_PATH
    elif kind == "strace":
        for option, value in seen:
            if option == "-E" and value is not None:
                check_name(value.split("=", 1)[0], "strace -E setting")
    elif kind in ("timeout", "flock"):
        if start >= len(args):
            raise Refused(f"{name} needs {'a duration' if kind == 'timeout' else 'a file'} "
                          "and a command")
        if args[start].value is None:
            raise Refused(f"{name}: the argument {args[start].raw!r} must be a literal")
        start += 1
        if kind == "flock" and start < len(args) and args[start].value in ("-c", "--command"):
            raise Refused(f"{name} FILE -c is not allowed (it runs a shell)")
    elif kind == "watch" and not options & {"-x", "--exec"}:
        script = _static_args(name, args[start:])
        if not script:
            raise Refused("watch needs a command")
        # watch hands its arguments, joined by spaces, to /bin/sh -c
        _check_line(" ".join(script), allowlist, report, posix=True, nesting=nesting + 1)
        return
    nested = args[start:]
    if not nested:
        if kind in NEEDS_COMMAND:
            raise Refused(f"{name} needs a command")
        return
    if kind == "xargs":
        _check_xargs_command(nested, allowlist)
    _check_argv(nested, allowlist, report, nesting + 1, path=nested_path, builtins=False)


def _check_xargs_command(nested: list[Word], allowlist: Allowlist) -> None:
    word = nested[0].value
    if word is None:
        return  # refused by _check_argv
    program = allowlist.match(word)
    kind = _kind(program)
    if kind is not None:
        raise Refused(f"xargs cannot run {word!r}: xargs adds arguments from its input, and "
                      f"{word}'s arguments must be checked")


def _check_shell(name: str, program: Program, args: list[Word], allowlist: Allowlist,
                 report: Report, nesting: int) -> None:
    posix = os.path.basename(program.real) != "bash"
    command_string = False
    i = 0
    while i < len(args):
        word = args[i]
        text = word.value
        if text is None:
            raise Refused(f"{name}: the argument {word.raw!r} must be a literal")
        if text in ("--", "-"):
            i += 1
            break
        if text in ("--norc", "--noprofile", "--posix"):
            i += 1
            continue
        if text in ("-o", "+o"):
            option = args[i + 1].value if i + 1 < len(args) else None
            if option not in _SET_O:
                raise Refused(f"{name} {text} {option} is not allowed")
            i += 2
            continue
        if text[:1] not in ("-", "+") or text.startswith("--"):
            if text.startswith("--"):
                raise Refused(f"{name} {text} is not allowed")
            break
        for c in text[1:]:
            if c == "c" and text[0] == "-":
                command_string = True
            elif c not in "euxvfCn":
                raise Refused(f"{name} -{c} is not allowed")
        i += 1
    if not command_string:
        raise Refused(f"{name} may only run a checked command string ({name} -c '...'), not "
                      "a script file or its input")
    if i >= len(args):
        raise Refused(f"{name} -c needs a command string")
    script = args[i].value
    if script is None:
        raise Refused(f"{name} -c: the command string {args[i].raw!r} must be a literal")
    _check_line(script, allowlist, report, posix=posix, nesting=nesting + 1)


