"""A conservative analyser of Bash command lines: finds every simple command a line can run.

:func:`parse` tokenises a line the way Bash does (quotes, escapes, operators,
redirections, comments) and walks its structure: lists (``;``, ``&``, newlines), ``&&`` and
``||``, pipelines (``|``, ``|&``), ``!`` and ``time``, subshells ``( )``, brace groups
``{ ...; }``, ``if``/``while``/``until``/``for ... in`` compounds, command substitutions
``$( )`` and backticks (also inside double quotes and ``${...}`` words) and process
substitutions ``<( )``/``>( )``. It returns every :class:`SimpleCommand`, nested ones
included, with its words, its leading ``NAME=value`` assignments and its redirections.

It proves nothing it cannot see, so it refuses (raising :class:`Refused` with a message
naming the construct) whatever could run code it does not see as a simple command:

- function definitions, ``case``, ``select``, ``coproc``, ``function``, ``[[ ]]``,
  arithmetic (``(( ))``, ``$(( ))``, ``$[ ]``, ``for ((``), here-documents (``<<``),
  named file descriptors (``{fd}>file``), array assignments and subscripts;
- parameter expansions beyond ``$NAME``, ``${NAME}``, ``${#NAME}`` and
  ``${NAME<op>word}`` with op one of ``:- - :+ + :? ? := = # ## % %% / // /# /% ^ ^^ , ,,``
  (refused: indirection ``${!x}``, substrings ``${x:1}``, transformations ``${x@P}``:
  each can evaluate text as code at run time);
- assignments to names that change how commands are found or run (``PATH``, ``IFS``,
  ``BASH_ENV``, ``LD_PRELOAD``, ``PS4``, ``OPTIND``, ``RANDOM``... see :func:`dangerous_name`);
- ``$"..."`` (a translated string, expanded again after translation);
- unterminated quotes or substitutions, line continuations inside a word, NUL bytes,
  backticks containing backslashes (write ``$( )``), nesting deeper than :data:`MAX_DEPTH`.

What a simple command's words mean (which program, which builtin, wrappers such as
``env`` or ``find -exec``) is decided by :mod:`agently_core_bash.check`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 24
MAX_LENGTH = 64 * 1024

#: Bash's reserved words (recognised unquoted, in command position).
RESERVED = frozenset({"if", "then", "else", "elif", "fi", "case", "esac", "for", "select",
                      "while", "until", "do", "done", "in", "function", "time", "{", "}", "!",
                      "[[", "]]", "coproc"})
_REFUSED_KEYWORDS = {
    "case": "case statements are not supported; use if/elif",
    "select": "select loops are not supported",
    "function": "function definitions are not allowed",
    "coproc": "coproc is not allowed",
    "[[": "[[ ]] is not supported (it evaluates arithmetic); use [ ] or test",
    "]]": "unexpected ]]",
}
# longest first
_OPERATORS = (";;&", ";;", ";&", "&&", "||", "|&", "&>>", "&>", "<<<", "<<-", "<<", "<>",
              "<&", ">&", ">>", ">|", "|", "&", ";", "(", ")", "<", ">")
_REDIRECTS = frozenset({"<", ">", ">>", ">|", "<>", "<&", ">&", "&>", "&>>", "<<<"})
_METACHARS = frozenset(" \t\n|&;()<>")
_SPECIAL_PARAMS = frozenset("@*#?-$!0123456789")
_PARAM_OPS = (":-", ":=", ":?", ":+", "##", "%%", "//", "/#", "/%", "^^", ",,",
              "-", "=", "?", "+", "#", "%", "/", "^", ",")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?=)")

#: Names whose value changes how Bash or the programs it starts find and run code.
DANGEROUS_NAMES = frozenset({
    "PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "CDPATH", "GLOBIGNORE",
    "EXECIGNORE", "FIGNORE", "PROMPT_COMMAND", "SHELL", "OPTIND", "OPTARG", "OPTERR",
    "RANDOM", "SRANDOM", "SECONDS", "LINENO", "FUNCNEST", "TMOUT", "MAIL", "MAILPATH",
    "MAILCHECK", "INPUTRC", "POSIXLY_CORRECT", "PAGER", "EDITOR", "VISUAL", "MANPAGER",
    "MANOPT", "BROWSER", "TAR_OPTIONS", "GREP_OPTIONS", "GCONV_PATH", "LOCPATH", "NLSPATH",
    "HOSTALIASES", "RESOLV_HOST_CONF", "TERMINFO", "TERMINFO_DIRS", "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS", "XDG_DATA_DIRS", "TZDIR", "TEXTDOMAIN", "TEXTDOMAINDIR",
})
_DANGEROUS_PREFIXES = ("BASH", "LD_", "DYLD_", "PS", "HIST", "COMP_", "GIT_", "LESS", "PYTHON",
                       "PERL", "RUBY", "NODE_", "NPM_", "JAVA_", "_JAVA", "SSH_", "SUDO_",
                       "MALLOC_", "GLIBC_", "GCONV", "PROMPT_")


class Refused(ValueError):
    """The line contains something the analyser cannot prove safe; the message says what."""


def dangerous_name(name: str) -> bool:
    """Whether setting variable ``name`` could change which code runs."""
    return name in DANGEROUS_NAMES or name.startswith(_DANGEROUS_PREFIXES)


def check_name(name: str, what: str) -> None:
    """Refuse ``name`` as a variable to set unless it is a plain identifier and harmless."""
    if not NAME.fullmatch(name):
        raise Refused(f"{what} {name!r} is not a plain variable name")
    if dangerous_name(name):
        raise Refused(f"{what} {name!r} is not allowed: it changes how commands are found or run")


@dataclass
class Word:
    """One shell word. ``value`` is its text after quote removal when it is *static* (no
    expansion of any kind, no glob, no brace expansion, no tilde), else None. ``prefix`` is
    the static text every word it expands to starts with (the text before its first
    expansion, glob bracket or brace). ``splits`` says whether it could become several
    words, or none: an unquoted expansion, ``"$@"``, a glob or a brace expansion.
    ``globs`` says that only a glob or a brace expansion could: then it becomes at least
    one word, each starting with ``prefix``."""

    raw: str
    value: str | None
    prefix: str
    splits: bool = False
    quoted: bool = False
    globs: bool = False

    @property
    def lead(self) -> str | None:
        """The text every word this one becomes starts with (all of it for a literal), or
        None when it could become no word at all, or words that do not all start so."""
        if self.value is not None:
            return self.value
        if self.splits and not self.globs:
            return None
        return self.prefix

    @property
    def static(self) -> bool:
        return self.value is not None

    def __str__(self) -> str:
        return self.raw


@dataclass
class Redirect:
    op: str
    target: Word
    fd: str | None = None


@dataclass
class SimpleCommand:
    """One simple command: ``assignments`` (name, word), ``words`` (the command word
    first) and ``redirects``; ``where`` says where it was found (for messages)."""

    assignments: list[tuple[str, Word]] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    where: str = ""

    @property
    def argv(self) -> list[str | None]:
        return [w.value for w in self.words]


@dataclass
class _Token:
    kind: str  # "word", "op", "ionum", "eof"
    text: str
    word: Word | None = None


class _WordBuilder:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.prefix: list[str] = []
        self.static = True
        self.splits = False  # field splitting: several words, or none
        self.pathname = False  # a glob or a brace expansion: one word or more
        self.quoted = False
        self.unquoted_brace: int | None = None  # prefix length at the first unquoted {
        self.bracket: int | None = None  # prefix length at the first unquoted [

    def literal(self, text: str) -> None:
        self.text.append(text)
        if self.static:
            self.prefix.append(text)

    def dynamic(self, *, splits: bool) -> None:
        self.static = False
        self.splits = self.splits or splits

    def glob(self) -> None:
        self.static = False
        self.pathname = True

    def mark(self) -> int:
        return len("".join(self.prefix))


def parse(line: str, *, posix: bool = False) -> list[SimpleCommand]:
    """Every simple command ``line`` can run (nested ones included), or :class:`Refused`.

    ``posix=True`` analyses a line for a POSIX ``sh`` (dash): Bash-only quoting such as
    ``$'...'`` is refused there, since dash would read it differently."""
    if not isinstance(line, str):
        raise Refused("the command line must be a string")
    if len(line) > MAX_LENGTH:
        raise Refused(f"the command line is longer than {MAX_LENGTH} characters")
    if "\x00" in line:
        raise Refused("the command line contains a NUL byte")
    parser = _Parser(line, posix=posix, depth=0, where="")
    parser.parse_all()
    return parser.commands


class _Parser:
    def __init__(self, src: str, *, posix: bool, depth: int, where: str) -> None:
        if depth > MAX_DEPTH:
            raise Refused("the command line is nested too deeply")
        self.src = src
        self.n = len(src)
        self.pos = 0
        self.posix = posix
        self.depth = depth
        self.where = where
        self.peeked: _Token | None = None
        self.commands: list[SimpleCommand] = []

    # -- entry -------------------------------------------------------------------------
    def parse_all(self) -> None:
        self.parse_list(frozenset())
        token = self.next()
        if token.kind != "eof":
            raise Refused(f"unexpected {token.text!r}")

    # -- tokens ------------------------------------------------------------------------
    def peek(self) -> _Token:
        if self.peeked is None:
            self.peeked = self._lex()
        return self.peeked

    def next(self) -> _Token:
        token = self.peek()
        self.peeked = None
        return token

    def _skip_blanks(self) -> None:
        src, n = self.src, self.n
        while self.pos < n:
            c = src[self.pos]
            if c in " \t":
                self.pos += 1
            elif c == "\\" and src.startswith("\\\n", self.pos):
                self.pos += 2
            elif c == "#":
                end = src.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                break

    def _lex(self) -> _Token:
        self._skip_blanks()
        if self.pos >= self.n:
            return _Token("eof", "end of the line")
        src, pos = self.src, self.pos
        c = src[pos]
        if c == "\n":
            self.pos += 1
            return _Token("op", "\n")
        if c in "<>" and src.startswith("(", pos + 1):
            return self._word_token()
        for op in _OPERATORS:
            if src.startswith(op, pos):
                self.pos += len(op)
                return _Token("op", op)
        return self._word_token()

    def _word_token(self) -> _Token:
        word = self._scan_word()
        nxt = self.src[self.pos] if self.pos < self.n else ""
        if nxt in ("<", ">"):  # (a process substitution was taken into the word)
            if word.raw.isdigit():
                return _Token("ionum", word.raw, word)
            if re.fullmatch(r"\{[A-Za-z_][A-Za-z0-9_]*\}", word.raw):
                raise Refused(f"named file descriptors ({word.raw}{nxt}...) are not allowed")
        return _Token("word", word.raw, word)

    # -- words -------------------------------------------------------------------------
    def _continuation(self, pos: int) -> None:
        if self.src.startswith("\\\n", pos):
            raise Refused("a line continuation (backslash-newline) inside a word is not "
                          "supported; put it between words")

    def _scan_word(self) -> Word:
        src, n = self.src, self.n
        start = self.pos
        b = _WordBuilder()
        pos = self.pos
        first = True
        plain_before = ""  # the previous character, when it was an unquoted literal one
        brace_at = 0  # where the first unquoted { is in the word
        while pos < n:
            c = src[pos]
            if c in _METACHARS:
                if c in "<>" and src.startswith("(", pos + 1):
                    if self.posix:
                        raise Refused("process substitution is not POSIX sh")
                    pos = self._substitution(pos + 2, "process substitution")
                    b.dynamic(splits=True)
                    first = False
                    plain_before = ""
                    continue
                break
            if c == "\\":
                self._continuation(pos)
                if pos + 1 >= n:
                    b.literal("\\")  # a trailing backslash is literal
                    pos += 1
                else:
                    b.literal(src[pos + 1])
                    b.quoted = True
                    pos += 2
            elif c == "'":
                end = src.find("'", pos + 1)
                if end < 0:
                    raise Refused("unterminated single quote")
                b.literal(src[pos + 1:end])
                b.quoted = True
                pos = end + 1
            elif c == '"':
                b.quoted = True
                pos = self._scan_dquote(pos + 1, b)
            elif c == "$":
                pos = self._scan_dollar(pos, b, quoted=False)
            elif c == "`":
                pos = self._backticks(pos)
                b.dynamic(splits=True)
            else:
                if c in "*?":
                    b.glob()
                    b.text.append(c)
                elif c == "[":
                    if b.bracket is None:
                        b.bracket = b.mark()  # a glob only when a ] follows
                    b.literal(c)
                elif c == "]" and b.bracket is not None:
                    b.glob()
                    b.text.append(c)
                elif c in "{}":
                    if b.unquoted_brace is None and c == "{":
                        b.unquoted_brace = b.mark()
                        brace_at = pos - start
                    b.literal(c)
                elif c == "~" and (first or (plain_before in ("=", ":"))):
                    # a tilde starts a word, and follows = or : in an assignment-like word
                    # (a=~/x is a=$HOME/x, even as an argument)
                    b.dynamic(splits=False)
                    b.text.append(c)
                else:
                    b.literal(c)
                plain_before = c
                pos += 1
                first = False
                continue
            plain_before = ""
            first = False
        raw = src[start:pos]
        self.pos = pos
        prefix = "".join(b.prefix)
        if b.bracket is not None and "]" in raw[raw.index("["):]:
            b.glob()  # possibly a [...] glob: what it matches starts before the [
            prefix = prefix[:b.bracket]
        after = raw[brace_at:]
        if b.unquoted_brace is not None and ("," in after or ".." in after):
            b.glob()  # possibly a brace expansion: {a,b} or {1..3}
            prefix = prefix[:b.unquoted_brace]
        return Word(raw, "".join(b.text) if b.static else None, prefix,
                    splits=b.splits or b.pathname, quoted=b.quoted,
                    globs=b.pathname and not b.splits)

    def _scan_dquote(self, pos: int, b: _WordBuilder) -> int:
        """Scan a double-quoted string from just after its opening quote; returns the
        position after the closing quote."""
        src, n = self.src, self.n
        while pos < n:
            c = src[pos]
            if c == '"':
                return pos + 1
            if c == "\\":
                self._continuation(pos)
                if pos + 1 < n and src[pos + 1] in '$`"\\':
                    b.literal(src[pos + 1])
                    pos += 2
                else:
                    b.literal("\\")
                    pos += 1
            elif c == "$":
                pos = self._scan_dollar(pos, b, quoted=True)
            elif c == "`":
                pos = self._backticks(pos)
                b.dynamic(splits=False)
            else:
                b.literal(c)
                pos += 1
        raise Refused("unterminated double quote")

    def _scan_dollar(self, pos: int, b: _WordBuilder, *, quoted: bool) -> int:
        src, n = self.src, self.n
        self._continuation(pos + 1)
        nxt = src[pos + 1] if pos + 1 < n else ""
        if src.startswith("$((", pos):
            raise Refused("arithmetic expansion $(( )) is not supported")
        if nxt == "(":
            b.dynamic(splits=not quoted)
            return self._substitution(pos + 2, "$( )")
        if nxt == "[":
            raise Refused("arithmetic expansion $[ ] is not supported")
        if nxt == "{":
            # "${@}" (and "${@:-x}"...) is quoted yet expands to any number of words
            b.dynamic(splits=(not quoted and not src.startswith("#", pos + 2))  # ${#x}: a number
                      or src.startswith("@", pos + 2))
            return self._scan_param(pos + 2, b, quoted=quoted)
        if nxt == "'" and not quoted:
            if self.posix:
                raise Refused("$'...' quoting is not POSIX sh (dash reads it differently)")
            end = pos + 2
            while end < n and src[end] != "'":
                end += 2 if src[end] == "\\" else 1
            if end >= n:
                raise Refused("unterminated $'...' string")
            b.dynamic(splits=False)
            b.quoted = True
            return end + 1
        if nxt == '"' and not quoted:
            raise Refused('$"..." (a translated string: its translation is expanded again) is '
                          'not supported; use "..."')
        if nxt and (nxt in _SPECIAL_PARAMS):
            # "$@" is any number of words; $? $$ $! $# $- are one (a number or flags)
            b.dynamic(splits=nxt == "@" or (not quoted and nxt not in "?$!#-"))
            return pos + 2
        match = NAME.match(src, pos + 1)
        if match:
            b.dynamic(splits=not quoted)
            return match.end()
        b.literal("$")  # a lone dollar is literal
        return pos + 1

    def _scan_param(self, pos: int, b: _WordBuilder, *, quoted: bool) -> int:
        """``${...}`` from just after ``${``; returns the position after its ``}``."""
        src, n = self.src, self.n
        if pos >= n:
            raise Refused("unterminated ${")
        c = src[pos]
        if c == "}":
            raise Refused("empty ${} substitution")
        if c == "!":
            if src.startswith("}", pos + 1):
                return pos + 2  # ${!}: the last background pid
            raise Refused("indirect expansion ${!...} is not allowed")
        if c == "#" and not src.startswith("}", pos + 1):
            end = self._param_name(pos + 1)
            if not src.startswith("}", end):
                raise Refused("only ${#NAME} is supported after ${#")
            return end + 1
        end = self._param_name(pos)
        name = src[pos:end]
        if end >= n:
            raise Refused("unterminated ${")
        if src[end] == "}":
            return end + 1
        if src[end] == "[":
            raise Refused("arrays and subscripts are not supported")
        if src[end] == "@":
            raise Refused("${NAME@...} transformations are not allowed")
        if src[end] == ":" and not src.startswith((":-", ":=", ":?", ":+"), end):
            raise Refused("substring expansion ${NAME:offset} is not supported (it evaluates "
                          "arithmetic)")
        for op in _PARAM_OPS:
            if src.startswith(op, end):
                break
        else:
            raise Refused(f"unsupported ${{...}} form near {src[pos:end + 1]!r}")
        if op in (":=", "="):
            check_name(name, "assigning")
        return self._scan_param_word(end + len(op), b, quoted=quoted)

    def _param_name(self, pos: int) -> int:
        src = self.src
        match = NAME.match(src, pos)
        if match:
            return match.end()
        if pos < self.n and src[pos].isdigit():
            end = pos
            while end < self.n and src[end].isdigit():
                end += 1
            return end
        if pos < self.n and src[pos] in _SPECIAL_PARAMS:
            return pos + 1
        raise Refused(f"bad substitution near {src[pos - 2:pos + 8]!r}")

    def _scan_param_word(self, pos: int, b: _WordBuilder, *, quoted: bool) -> int:
        src, n = self.src, self.n
        scratch = _WordBuilder()
        while pos < n:
            c = src[pos]
            if c == "}":
                if scratch.splits:  # "${x:-$@}" is as many words as "$@"
                    b.dynamic(splits=True)
                return pos + 1
            if c == "\\":
                self._continuation(pos)
                pos += 2
            elif c == "'":
                if quoted:
                    raise Refused("single quotes inside a double-quoted ${...} are not "
                                  "supported")
                end = src.find("'", pos + 1)
                if end < 0:
                    raise Refused("unterminated single quote")
                pos = end + 1
            elif c == '"':
                pos = self._scan_dquote(pos + 1, scratch)
            elif c == "$":
                pos = self._scan_dollar(pos, scratch, quoted=quoted)
            elif c == "`":
                pos = self._backticks(pos)
            elif c == "{":
                raise Refused("braces inside ${...} are not supported")
            elif c in "<>" and not quoted and src.startswith("(", pos + 1):
                raise Refused("process substitution inside ${...} is not supported")
            else:
                pos += 1
        raise Refused("unterminated ${")

    def _substitution(self, pos: int, what: str) -> int:
        """Parse the list of a ``$( )`` or ``<( )`` starting at ``pos``; returns the
        position after its ``)``."""
        saved = (self.pos, self.peeked, self.where)
        self.pos, self.peeked = pos, None
        self.where = f"{self.where} in {what}".strip()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refused("the command line is nested too deeply")
        try:
            self.parse_list(frozenset({")"}))
            token = self.next()
            if token.kind != "op" or token.text != ")":
                raise Refused(f"unterminated {what}" if token.kind == "eof"
                              else f"unexpected {token.text!r} in {what}")
            end = self.pos
        finally:
            self.depth -= 1
        self.pos, self.peeked, self.where = saved
        return end

    def _backticks(self, pos: int) -> int:
        src = self.src
        end = src.find("`", pos + 1)
        if end < 0:
            raise Refused("unterminated backtick")
        body = src[pos + 1:end]
        if "\\" in body:
            raise Refused("backslashes inside backticks are not supported; use $( )")
        inner = _Parser(body, posix=self.posix, depth=self.depth + 1,
                        where=f"{self.where} in backticks".strip())
        inner.parse_all()
        self.commands.extend(inner.commands)
        return end + 1

    # -- grammar -----------------------------------------------------------------------
    def _is_reserved(self, token: _Token, words: frozenset[str] | set[str]) -> bool:
        return token.kind == "word" and token.text in words and token.text in RESERVED

    def _at_end(self, token: _Token, terminators: frozenset[str]) -> bool:
        if token.kind == "eof":
            return True
        if token.kind == "op":
            return token.text in terminators
        return self._is_reserved(token, terminators)

    def skip_newlines(self) -> None:
        while (t := self.peek()).kind == "op" and t.text == "\n":
            self.next()

    def parse_list(self, terminators: frozenset[str]) -> None:
        while True:
            self.skip_newlines()
            if self._at_end(self.peek(), terminators):
                return
            self.parse_and_or(terminators)
            token = self.peek()
            if token.kind == "op" and token.text in (";", "&", "\n"):
                self.next()
                continue
            if self._at_end(token, terminators):
                return
            raise Refused(f"unexpected {token.text!r}" + self._context())

    def _context(self) -> str:
        return f" ({self.where})" if self.where else ""

    def parse_and_or(self, terminators: frozenset[str]) -> None:
        self.parse_pipeline(terminators)
        while (t := self.peek()).kind == "op" and t.text in ("&&", "||"):
            self.next()
            self.skip_newlines()
            self.parse_pipeline(terminators)

    def parse_pipeline(self, terminators: frozenset[str]) -> None:
        token = self.peek()
        if self._is_reserved(token, {"time"}):
            self.next()
            token = self.peek()
            if token.kind == "word" and token.text == "-p":
                self.next()
        while self._is_reserved(self.peek(), {"!"}):
            self.next()
        self.parse_command(terminators)
        while (t := self.peek()).kind == "op" and t.text in ("|", "|&"):
            self.next()
            self.skip_newlines()
            self.parse_command(terminators)

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refused("the command line is nested too deeply")

    def _expect(self, word: str) -> None:
        token = self.next()
        if not (token.kind == "word" and token.text == word) and not (
                token.kind == "op" and token.text == word):
            found = "the end of the line" if token.kind == "eof" else repr(token.text)
            raise Refused(f"expected {word!r}, found {found}" + self._context())

    def parse_command(self, terminators: frozenset[str]) -> None:
        token = self.peek()
        if token.kind == "op" and token.text == "(":
            if self.src.startswith("(", self.pos):
                raise Refused("arithmetic (( )) is not supported")
            self.next()
            self._enter()
            self.parse_list(frozenset({")"}))
            self._expect(")")
            self.depth -= 1
            self._trailing_redirects()
            return
        if token.kind == "word" and token.text in RESERVED:
            keyword = token.text
            if keyword in _REFUSED_KEYWORDS:
                raise Refused(_REFUSED_KEYWORDS[keyword])
            if keyword == "{":
                self.next()
                self._enter()
                self.parse_list(frozenset({"}"}))
                self._expect("}")
                self.depth -= 1
                self._trailing_redirects()
                return
            if keyword == "if":
                self._parse_if()
                return
            if keyword in ("while", "until"):
                self.next()
                self._enter()
                self.parse_list(frozenset({"do"}))
                self._expect("do")
                self.parse_list(frozenset({"done"}))
                self._expect("done")
                self.depth -= 1
                self._trailing_redirects()
                return
            if keyword == "for":
                self._parse_for()
                return
            raise Refused(f"unexpected {keyword!r}" + self._context())
        self.parse_simple()

    def _parse_if(self) -> None:
        self.next()
        self._enter()
        self.parse_list(frozenset({"then"}))
        self._expect("then")
        self.parse_list(frozenset({"elif", "else", "fi"}))
        while True:
            token = self.next()
            if token.text == "elif":
                self.parse_list(frozenset({"then"}))
                self._expect("then")
                self.parse_list(frozenset({"elif", "else", "fi"}))
            elif token.text == "else":
                self.parse_list(frozenset({"fi"}))
                self._expect("fi")
                break
            elif token.text == "fi":
                break
            else:
                raise Refused("unterminated if (expected fi)")
        self.depth -= 1
        self._trailing_redirects()

    def _parse_for(self) -> None:
        self.next()
        token = self.next()
        if token.kind == "op" and token.text == "(":
            raise Refused("arithmetic for (( )) loops are not supported")
        if token.kind != "word" or token.word is None or token.word.value is None:
            raise Refused("for needs a plain variable name")
        check_name(token.word.value, "the loop variable")
        if token.word.raw != token.word.value:
            raise Refused("for needs a plain variable name")
        self.skip_newlines()
        token = self.peek()
        if self._is_reserved(token, {"in"}):
            self.next()
            while (t := self.peek()).kind == "word":
                self.next()
            t = self.next()
            if not (t.kind == "op" and t.text in (";", "\n")):
                raise Refused("expected ';' or a newline after the words of for ... in")
        elif token.kind == "op" and token.text == ";":
            self.next()
        self.skip_newlines()
        self._enter()
        self._expect("do")
        self.parse_list(frozenset({"done"}))
        self._expect("done")
        self.depth -= 1
        self._trailing_redirects()

    def _trailing_redirects(self) -> None:
        while True:
            token = self.peek()
            if token.kind == "ionum":
                self.next()
                self._redirect(self.next(), token.text, None)
            elif token.kind == "op" and token.text in _REDIRECTS | {"<<", "<<-"}:
                self.next()
                self._redirect(token, None, None)
            else:
                return

    def _redirect(self, op: _Token, fd: str | None, command: SimpleCommand | None) -> None:
        if op.kind != "op" or op.text not in _REDIRECTS | {"<<", "<<-"}:
            raise Refused(f"expected a redirection after {fd}")
        if op.text in ("<<", "<<-"):
            raise Refused("here-documents (<<) are not supported; use a here-string (<<<) or "
                          "a file")
        target = self.next()
        if target.kind != "word" or target.word is None:
            raise Refused(f"the redirection {op.text} needs a target" + self._context())
        if command is not None:
            command.redirects.append(Redirect(op.text, target.word, fd))

    def parse_simple(self) -> None:
        command = SimpleCommand(where=self.where)
        while True:
            token = self.peek()
            if token.kind == "ionum":
                self.next()
                self._redirect(self.next(), token.text, command)
            elif token.kind == "op" and token.text in _REDIRECTS | {"<<", "<<-"}:
                self.next()
                self._redirect(token, None, command)
            elif token.kind == "word":
                assert token.word is not None
                self.next()
                if not command.words and self._assignment(token.word, command):
                    continue
                command.words.append(token.word)
            elif token.kind == "op" and token.text == "(":
                if len(command.words) == 1 and not command.assignments:
                    raise Refused("function definitions are not allowed")
                raise Refused("unexpected '('" + self._context())
            else:
                break
        if not (command.words or command.assignments or command.redirects):
            token = self.peek()
            found = "the end of the line" if token.kind == "eof" else repr(token.text)
            raise Refused(f"expected a command, found {found}" + self._context())
        self.commands.append(command)

    def _assignment(self, word: Word, command: SimpleCommand) -> bool:
        if re.match(r"[A-Za-z_][A-Za-z0-9_]*\[", word.raw):
            raise Refused("array assignments are not supported")
        match = _ASSIGNMENT.match(word.raw)
        if not match:
            return False
        check_name(match.group(1), "assigning")
        rest = self.src[self.pos:self.pos + 1]
        if word.raw.endswith("=") and rest == "(":
            raise Refused("array assignments are not supported")
        command.assignments.append((match.group(1), word))
        return True
