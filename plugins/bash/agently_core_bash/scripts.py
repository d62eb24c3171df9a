"""The programs awk and sed run: their command lines, and their scripts read for what
starts a program.

awk: only ``-F SEP``, ``-v NAME=VALUE`` and ``--`` may precede the program text (``-f``
would read a program the checker cannot see; mawk's ``-W exec`` likewise), which must be
a literal without ``system`` (anywhere), a ``|`` that is not half of ``||`` (a pipe to or
from a command, also in a regular expression: write ``a|b`` as two matches) or an ``@``
(gawk's ``@load``, ``@include`` and indirect calls).

sed (GNU): the script (``-e``/``--expression`` parts, or the first operand) is parsed
command by command as sed compiles it; the ``e`` command and the ``e`` flag of ``s`` run
a shell, and are refused. With ``--sandbox`` sed itself refuses them (and ``r``/``w``), so
any script, also one read with ``-f``, is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

from .options import SED, walk
from .parse import NAME, Refused, Word

AWKS = frozenset({"awk", "mawk", "gawk", "nawk", "original-awk"})


# == awk ======================================================================================
def check_awk(program: str, args: Sequence[Word]) -> None:
    """Check an awk command line: its options, and its (literal) program text."""
    i = 0
    while i < len(args):
        word = args[i]
        lead = word.lead
        if lead is None or (word.value is None and lead in ("", "-", "-F", "-v")):
            raise Refused(f"{program}: the argument {word.raw!r} must be a literal here (it "
                          "could become an option or the program text)")
        if word.value == "--":
            i += 1
            break
        if word.value == "-" or not lead.startswith("-"):
            break
        option, attached = lead[:2], lead[2:]
        if option not in ("-F", "-v"):
            raise Refused(f"{program} {word.raw} is not allowed (only -F, -v and --: -f reads "
                          "a program the checker cannot see)")
        if not attached and word.value is not None:
            i += 1
            if i >= len(args):
                raise Refused(f"{program} {option} needs an argument")
            if args[i].splits:
                raise Refused(f"{program} {option}: the argument {args[i].raw!r} must stay "
                              "one word (quote it)")
            attached = args[i].lead or ""
        if option == "-v":
            name, eq, _ = attached.partition("=")
            if not eq or not NAME.fullmatch(name):
                raise Refused(f"{program} -v needs NAME=VALUE with a literal NAME")
        i += 1
    if i >= len(args):
        raise Refused(f"{program} needs a program text")
    text = args[i].value
    if text is None:
        raise Refused(f"{program}: the program text {args[i].raw!r} must be a literal")
    check_awk_program(program, text)


def check_awk_program(program: str, text: str) -> None:
    """Refuse awk program text that could start a program."""
    joined = text.replace("\\\r\n", "").replace("\\\n", "")
    if "system" in joined:
        raise Refused(f"{program}: system() is not allowed (it runs a shell)")
    if "|" in joined.replace("||", ""):
        raise Refused(f"{program}: '|' is not allowed: a pipe to or from a command runs a shell "
                      "(|| is fine; write a regular expression a|b as two matches)")
    if "@" in joined:
        raise Refused(f"{program}: '@' is not allowed (gawk's @load, @include and indirect "
                      "calls)")


# == sed ======================================================================================
def check_sed(program: str, args: Sequence[Word]) -> None:
    """Check a GNU sed command line: its options, and its script unless ``--sandbox``."""
    parsed = walk(program, args, SED)
    if parsed.has("--sandbox"):
        return
    if parsed.has("-f", "--file"):
        raise Refused(f"{program} -f/--file reads a script the checker cannot see (allowed with "
                      "--sandbox)")
    parts = parsed.values("-e", "--expression")
    if not parts:
        if not parsed.operands:
            raise Refused(f"{program} needs a script")
        parts = [parsed.operands[0].value]
    if any(part is None for part in parts):
        raise Refused(f"{program}: the script must be a literal (or give --sandbox)")
    check_sed_script(program, "\n".join(p for p in parts if p is not None))


_SIMPLE = frozenset("=dDgGhHnNpPxzF")
_NUMBER = frozenset("lqQL")
_LABEL = frozenset("btTv:")
_FILE = frozenset("rRwW")


class _SedScript:
    def __init__(self, program: str, text: str) -> None:
        self.program, self.s, self.n, self.p = program, text, len(text), 0

    def fail(self, why: str) -> Refused:
        return Refused(f"{self.program}: {why} in its script (near {self.s[self.p:self.p + 12]!r})")

    def peek(self) -> str:
        return self.s[self.p] if self.p < self.n else ""

    def blanks(self) -> None:
        while self.p < self.n and self.s[self.p] in " \t\r":
            self.p += 1

    def to_line_end(self, *, escapes: bool) -> None:
        while self.p < self.n and self.s[self.p] != "\n":
            self.p += 2 if escapes and self.s[self.p] == "\\" else 1

    def delimited(self, delimiter: str) -> None:
        """Up to and past the next unescaped ``delimiter`` (a newline ends sed's too)."""
        while self.p < self.n:
            c = self.s[self.p]
            if c == "\\":
                self.p += 2
                continue
            if c == "\n":
                raise self.fail("an unterminated regular expression or s/y part")
            self.p += 1
            if c == delimiter:
                return
        raise self.fail("an unterminated regular expression or s/y part")

    def address(self, *, second: bool) -> None:
        c = self.peek()
        if c.isdigit():
            while self.peek().isdigit():
                self.p += 1
            if self.peek() == "~":
                self.p += 1
                while self.peek().isdigit():
                    self.p += 1
        elif c == "$":
            self.p += 1
        elif c in ("+", "~") and second:
            self.p += 1
            while self.peek().isdigit():
                self.p += 1
        elif c in ("/", "\\"):
            if c == "\\":
                self.p += 1
                c = self.peek()
                if not c or c in "\n\\":
                    raise self.fail("a bad regular expression delimiter")
            self.p += 1
            self.delimited(c)
            while self.peek() in ("I", "M"):
                self.p += 1

    def end_of_command(self) -> None:
        self.blanks()
        c = self.peek()
        if c in ("", "\n", ";"):
            self.p += 1 if c else 0
        elif c not in ("}", "#"):
            raise self.fail(f"unexpected {c!r} after a command")

    def substitute(self) -> None:
        delimiter = self.peek()
        if not delimiter or delimiter in "\n\\":
            raise self.fail("a bad s delimiter")
        self.p += 1
        self.delimited(delimiter)
        self.delimited(delimiter)
        while True:
            c = self.peek()
            if c == "e":
                raise Refused(f"{self.program}: the s///e flag is not allowed (it runs the "
                              "pattern space as a shell command)")
            if c == "w":
                self.p += 1
                self.to_line_end(escapes=False)
                return
            if c and (c in "gpiImM" or c.isdigit()):
                self.p += 1
                continue
            self.end_of_command()
            return

    def command(self) -> None:
        self.address(second=False)
        self.blanks()
        if self.peek() == ",":
            self.p += 1
            self.blanks()
            self.address(second=True)
        self.blanks()
        while self.peek() == "!":
            self.p += 1
            self.blanks()
        c = self.peek()
        if not c:
            raise self.fail("a missing command")
        self.p += 1
        if c == "e":
            raise Refused(f"{self.program}: the e command is not allowed (it runs a shell "
                          "command)")
        if c == "{":
            return
        if c in _SIMPLE or c == "}":
            self.end_of_command()
        elif c in _NUMBER:
            self.blanks()
            while self.peek().isdigit():
                self.p += 1
            self.end_of_command()
        elif c in _LABEL:
            self.blanks()
            while self.p < self.n and self.s[self.p] not in " \t\r\n;":
                self.p += 1
            self.end_of_command()
        elif c in "aic":
            self.blanks()
            if self.s.startswith("\\\n", self.p):
                self.p += 2
            elif self.peek() == "\\":
                self.p += 1
            self.to_line_end(escapes=True)
        elif c in _FILE:
            self.to_line_end(escapes=False)
        elif c == "s":
            self.substitute()
        elif c == "y":
            delimiter = self.peek()
            if not delimiter or delimiter in "\n\\":
                raise self.fail("a bad y delimiter")
            self.p += 1
            self.delimited(delimiter)
            self.delimited(delimiter)
            self.end_of_command()
        else:
            raise self.fail(f"the command {c!r}, which the checker does not know,")

    def check(self) -> None:
        while True:
            while self.p < self.n and self.s[self.p] in " \t\r\n;":
                self.p += 1
            if self.p >= self.n:
                return
            if self.peek() == "#":
                self.to_line_end(escapes=False)
                continue
            self.command()


def check_sed_script(program: str, text: str) -> None:
    """Refuse a GNU sed script that could run a command (``e``, ``s///e``), or that the
    checker cannot read command by command."""
    _SedScript(program, text).check()
