"""GNU find's command line (findutils 4.9), read the way find reads it.

``find [-H|-L|-P|-D OPTS|-OLEVEL]... [--] [PATH]... [EXPRESSION]``: leading options, then
paths up to the first word that looks like an expression (``-x``, ``(``, ``!``, ``)``,
``,``), then the expression, where every word is a primary, an operator or a primary's
argument: :data:`ARITY` says how many words each primary takes, ``-exec``/``-execdir``
take a command up to ``;`` (or ``{} +``), ``-ok``/``-okdir`` up to ``;``. A word that is
not a literal is accepted only as a primary's argument (and then as exactly one word) or
as a path whose literal start cannot begin an expression (``./"$d"``); the words of an
``-exec`` command are literals (an expansion could hold the ``;`` that ends it). In the
command, ``{}`` is a found path: a word holding it is treated as not a literal, starting
with the start point (``./`` for ``-execdir``), and as one word or more before ``+``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .parse import Refused, Word

EXEC = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
OPERATORS = frozenset({"!", "(", ")", ",", "-not", "-a", "-and", "-o", "-or"})
#: The words each primary takes after its name.
ARITY: dict[str, int] = {
    **dict.fromkeys((
        "-daystart", "-delete", "-d", "-depth", "-empty", "-executable", "-false", "-follow",
        "-ignore_readdir_race", "-ls", "-mount", "-nogroup", "-noignore_readdir_race",
        "-noleaf", "-nouser", "-nowarn", "-print", "-print0", "-prune", "-quit", "-readable",
        "-true", "-warn", "-writable", "-xdev", "-help", "--help", "-version", "--version"),
        0),
    **dict.fromkeys((
        "-amin", "-anewer", "-atime", "-cmin", "-cnewer", "-context", "-ctime",
        "-files0-from", "-fls", "-fprint", "-fprint0", "-fstype", "-gid", "-group",
        "-ilname", "-iname", "-inum", "-ipath", "-iregex", "-iwholename", "-links", "-lname",
        "-maxdepth", "-mindepth", "-mmin", "-mtime", "-name", "-newer", "-path", "-perm",
        "-printf", "-regex", "-regextype", "-samefile", "-size", "-type", "-uid", "-used",
        "-user", "-wholename", "-xtype"), 1),
    "-fprintf": 2,
}
_NEWER_XY = "aBcm"


def arity(word: str) -> int | None:
    """How many words primary ``word`` takes; None for an unknown word."""
    if word in ARITY:
        return ARITY[word]
    if len(word) == 8 and word.startswith("-newer") and word[6] in _NEWER_XY \
            and word[7] in _NEWER_XY + "t":
        return 1  # -newerXY REFERENCE
    return None


def looks_like_expression(text: str) -> bool:
    """find's own test: where the paths end."""
    return (text.startswith("-") and text != "-") or text in ("(", "!", ")", ",")


CheckCommand = Callable[[list[Word]], None]


def check_find(args: Sequence[Word], check_command: CheckCommand) -> None:
    """Check find's arguments; ``check_command`` checks each ``-exec`` command (its words,
    ``{}`` substituted)."""
    i = _leading_options(args)
    starts: list[str] = []
    while i < len(args):
        word = args[i]
        if word.value is not None:
            if looks_like_expression(word.value):
                break
            starts.append(word.value)
        else:
            lead = word.lead
            if not lead or lead[0] in "-(!),":
                raise Refused(f"find: the path {word.raw!r} must be a literal, or start with "
                              "a literal such as ./ (it could become an expression: -exec...)")
            starts.append(lead)
        i += 1
    expression = list(args[i:])
    files_from = any(w.value == "-files0-from" for w in expression)
    start = "" if files_from else _common_start(starts or ["."])
    _check_expression(expression, start, check_command)


def _common_start(texts: list[str]) -> str:
    """The text all of ``texts`` start with (character by character)."""
    low, high = min(texts), max(texts)
    k = 0
    while k < len(low) and low[k] == high[k]:
        k += 1
    return low[:k]


def _leading_options(args: Sequence[Word]) -> int:
    i = 0
    while i < len(args):
        text = args[i].value
        if text is None:
            return i
        if text in ("-H", "-L", "-P") or (text.startswith("-O") and len(text) > 2):
            i += 1
        elif text == "-D":
            if i + 1 >= len(args) or args[i + 1].value is None:
                raise Refused("find -D needs a literal argument")
            i += 2
        elif text == "--":
            return i + 1
        else:
            return i
    return i


def _check_expression(words: list[Word], start: str, check_command: CheckCommand) -> None:
    i = 0
    while i < len(words):
        word = words[i]
        text = word.value
        if text is None:
            raise Refused(f"find: {word.raw!r} stands where a primary (-name, -exec...) may: "
                          "it must be a literal (an expansion there is accepted only as a "
                          "primary's argument: -name \"$x\")")
        if text in OPERATORS:
            i += 1
            continue
        if text in EXEC:
            i = _exec(words, i, start, check_command)
            continue
        count = arity(text)
        if count is None:
            raise Refused(f"find: {text!r} is not a primary or operator find knows")
        for k in range(i + 1, i + 1 + count):
            if k >= len(words):
                raise Refused(f"find {text} needs {count} argument{'s' if count > 1 else ''}")
            if words[k].value is None and words[k].splits:
                raise Refused(f"find {text}: the argument {words[k].raw!r} must be a literal, "
                              "or one quoted word (\"$x\"), so the words after it stay in place")
        i += 1 + count


def _exec(words: list[Word], i: int, start: str, check_command: CheckCommand) -> int:
    primary = words[i].value
    plus = primary in ("-exec", "-execdir")
    end = i + 1
    while end < len(words):
        text = words[end].value
        if text is None:
            raise Refused(f"find {primary}: the argument {words[end].raw!r} must be a literal "
                          "(an expansion could end the command)")
        if text == ";" or (plus and text == "+" and words[end - 1].value == "{}"
                           and end > i + 1):
            break
        end += 1
    else:
        raise Refused(f"find {primary} needs a terminating ';'" + (" or '{} +'" if plus else ""))
    nested = words[i + 1:end]
    if not nested:
        raise Refused(f"find {primary} needs a command")
    found = "./" if primary in ("-execdir", "-okdir") else start
    many = words[end].value == "+"
    check_command([_found_path(w, found, many=many) for w in nested])
    return end + 1


def _found_path(word: Word, start: str, *, many: bool) -> Word:
    """``word`` with find's ``{}`` replaced by a path it finds (starting with ``start``), or
    by as many paths as fit (``{} +``)."""
    text = word.value or ""
    if "{}" not in text:
        return word
    return Word(word.raw, None, text[:text.index("{}")] + start, splits=many, globs=many,
                quoted=word.quoted)
