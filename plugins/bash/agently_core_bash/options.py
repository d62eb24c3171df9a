"""GNU-style options of the programs whose arguments the checker looks into, walked exactly.

An :class:`Options` lists a program's options as its ``getopt_long`` call does: flags,
options that take an argument (``-o FILE``, ``-oFILE``, ``--output FILE``,
``--output=FILE``), options whose argument is optional (attached only), and the long names
with their unambiguous abbreviations (``--compress`` is ``--compress-program``).
:func:`walk` reads a command's words the way the program will: every option that takes an
argument consumes it, clusters (``-rok``) are split, ``--`` ends the options, and with
``permute`` (GNU's default) options may follow operands. Whatever is not listed is refused.

A word that is not a literal is accepted only where what it becomes cannot change how the
words are read: as an option's argument (exactly one word: ``-o "$f"``), attached to an
option that takes an argument (``--output="$f"``, ``-k"$k"`` after at least one more
literal character), or as an operand whose literal start (``./"$f"``, ``./*.txt``) is not
``-``. Anywhere else it could turn into an option (``"$x"`` holding ``--compress-program``,
a glob matching a file named ``-exec``) or vanish and shift the words after it: refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .parse import Refused, Word


@dataclass(frozen=True)
class Options:
    """A program's options. ``refused`` holds letters and long names that are never
    allowed, with the reason from ``reasons``; ``numeric`` accepts ``-N`` (nice);
    ``permute`` lets options follow operands; ``literal`` requires literal option
    arguments (their values are checked)."""

    flags: str = ""
    takes: str = ""
    optional: str = ""
    long_flags: frozenset[str] = frozenset()
    long_takes: frozenset[str] = frozenset()
    long_optional: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()
    reasons: Mapping[str, str] = field(default_factory=dict)
    numeric: bool = False
    permute: bool = False
    literal: bool = True

    @property
    def long_names(self) -> frozenset[str]:
        return self.long_flags | self.long_takes | self.long_optional | frozenset(
            r for r in self.refused if len(r) > 1)


def opts(flags: str = "", takes: str = "", optional: str = "", long_flags: str = "",
         long_takes: str = "", long_optional: str = "", refused: str = "",
         reasons: Mapping[str, str] | None = None, numeric: bool = False,
         permute: bool = False, literal: bool = True) -> Options:
    """An :class:`Options` from space-separated long names."""
    return Options(flags, takes, optional, frozenset(long_flags.split()),
                   frozenset(long_takes.split()), frozenset(long_optional.split()),
                   frozenset(refused.split()), dict(reasons or {}), numeric, permute, literal)


@dataclass
class Parsed:
    """What :func:`walk` read: the options (``("-u", "PATH")``, ``("--output", None)``
    for a value that is not a literal) and the operands; ``end`` is where the operands
    start when the program does not permute (or the words' length)."""

    options: list[tuple[str, str | None]]
    operands: list[Word]
    end: int

    def has(self, *names: str) -> bool:
        return any(name in names for name, _ in self.options)

    def values(self, *names: str) -> list[str | None]:
        return [value for name, value in self.options if name in names]


def long_name(program: str, name: str, spec: Options) -> str:
    """The long option ``--name`` stands for (itself or the one it abbreviates)."""
    known = spec.long_names
    if name in known:
        return name
    matches = [k for k in known if k.startswith(name)] if name else []
    if len(matches) == 1:
        return matches[0]
    raise Refused(f"{program}: option --{name} is not recognised" +
                  (" (ambiguous)" if matches else ""))


def _refuse_option(program: str, option: str, spec: Options) -> Refused:
    key = option.lstrip("-")
    reason = spec.reasons.get(key)
    return Refused(f"{program} {option} is not allowed" + (f" ({reason})" if reason else ""))


def _not_literal(program: str, word: Word, why: str) -> Refused:
    return Refused(f"{program}: the argument {word.raw!r} must be a literal here: {why}")


def _argument(program: str, option: str, words: Sequence[Word], i: int,
              spec: Options) -> str | None:
    """The argument of ``option`` taken from ``words[i]`` (the next word)."""
    if i >= len(words):
        raise Refused(f"{program} {option} needs an argument")
    word = words[i]
    if word.value is not None:
        return word.value
    if spec.literal:
        raise Refused(f"{program} {option} needs a literal argument")
    if word.splits:
        raise _not_literal(program, word, f"as the argument of {option} it must stay one "
                           "word (quote it: \"$x\")")
    return None


def walk(program: str, words: Sequence[Word], spec: Options) -> Parsed:
    """Read ``words`` (a command's arguments) as ``program`` will; :class:`Refused` for an
    unknown or refused option, a missing argument, or a word that is not a literal where
    it could change how the words are read."""
    seen: list[tuple[str, str | None]] = []
    operands: list[Word] = []
    i = 0
    while i < len(words):
        word = words[i]
        lead = word.lead
        if word.value == "--":
            return Parsed(seen, [*operands, *words[i + 1:]],
                          len(words) if spec.permute else i + 1)
        if lead is None:
            raise _not_literal(program, word, "unquoted, it could become several words "
                               "(options among them) or none")
        if word.value == "-" or (lead and not lead.startswith("-")):
            if not spec.permute:
                return Parsed(seen, list(words[i:]), i)
            operands.append(word)
            i += 1
            continue
        if not lead or lead == "-":
            raise _not_literal(program, word, "it could become an option (put operands "
                               "after --, or start them with ./)")
        if lead.startswith("--"):
            i = _long(program, words, i, spec, seen)
        elif spec.numeric and word.value is not None and word.value[1:].isdigit():
            seen.append(("-n", word.value[1:]))
            i += 1
        else:
            i = _cluster(program, words, i, spec, seen)
    return Parsed(seen, operands, len(words) if spec.permute else i)


def _long(program: str, words: Sequence[Word], i: int, spec: Options,
          seen: list[tuple[str, str | None]]) -> int:
    word = words[i]
    lead = word.lead or ""
    name, eq, value = lead[2:].partition("=")
    if word.value is None and not eq:
        raise _not_literal(program, word, "the option it names is not known until it runs")
    full = long_name(program, name, spec)
    if full in spec.refused:
        raise _refuse_option(program, f"--{full}", spec)
    if full in spec.long_flags:
        if eq:
            raise Refused(f"{program} --{full} takes no argument")
        seen.append((f"--{full}", None))
        return i + 1
    if eq:
        if word.value is None and spec.literal:
            raise Refused(f"{program} --{full} needs a literal argument")
        seen.append((f"--{full}", value if word.value is not None else None))
        return i + 1
    if full in spec.long_optional:
        seen.append((f"--{full}", None))
        return i + 1
    seen.append((f"--{full}", _argument(program, f"--{full}", words, i + 1, spec)))
    return i + 2


def _cluster(program: str, words: Sequence[Word], i: int, spec: Options,
             seen: list[tuple[str, str | None]]) -> int:
    word = words[i]
    lead = word.lead or ""
    j = 1
    while j < len(lead):
        c = lead[j]
        if c in spec.refused:
            raise _refuse_option(program, f"-{c}", spec)
        if c in spec.takes or c in spec.optional:
            attached = lead[j + 1:]
            if word.value is not None:
                if attached or c in spec.optional:
                    seen.append((f"-{c}", attached or None))
                    return i + 1
                seen.append((f"-{c}", _argument(program, f"-{c}", words, i + 1, spec)))
                return i + 2
            if spec.literal:
                raise Refused(f"{program} -{c} needs a literal argument")
            if not attached and c in spec.takes:
                # "-o$x" with x empty is "-o": it would take the next word
                raise _not_literal(program, word, f"it could be just -{c}, which takes the "
                                   f"next word; write -{c} \"$x\" as two words")
            seen.append((f"-{c}", None))
            return i + 1
        if c not in spec.flags:
            raise Refused(f"{program}: option -{c} is not recognised")
        seen.append((f"-{c}", None))
        j += 1
    if word.value is None:
        raise _not_literal(program, word, "more option letters could follow")
    return i + 1


def operand_lead_ok(word: Word, bad_starts: str = "-") -> bool:
    """Whether ``word`` becomes one or more words that all start with a literal that is
    not empty and does not start with one of ``bad_starts``."""
    lead = word.lead
    return bool(lead) and lead[0] not in bad_starts  # type: ignore[index]


# == the programs' options (GNU coreutils 9, findutils 4.9, diffutils 3.8, sed 4.9) =========
PROGRAM_NOTE = "it runs a program"

WRAPPERS: dict[str, Options] = {
    "env": opts("i0v", "uCS", long_flags="ignore-environment null debug list-signal-handling "
                "help version", long_takes="unset chdir split-string",
                long_optional="block-signal default-signal ignore-signal",
                refused="S split-string",
                reasons={"S": "it splits a string into a command",
                         "split-string": "it splits a string into a command"}),
    "timeout": opts("fpv", "ks", long_flags="foreground preserve-status verbose help version",
                    long_takes="kill-after signal"),
    "nice": opts("", "n", long_flags="help version", long_takes="adjustment", numeric=True),
    "nohup": opts(long_flags="help version"),
    "stdbuf": opts("", "ioe", long_flags="help version", long_takes="input output error"),
    "setsid": opts("cfw", long_flags="ctty fork wait help version"),
    "time": opts("apqv", "fo", long_flags="append portability quiet verbose help version",
                 long_takes="format output"),
    "sudo": opts("AbEHknPS", "CDghpRrTtUu", long_flags="askpass background set-home "
                 "non-interactive preserve-groups stdin",
                 long_takes="close-from chdir group host prompt other-user user",
                 long_optional="preserve-env", refused="e i l s v K V R"),
    "doas": opts("n", "au", refused="s L C"),
    "flock": opts("sxenuoF", "wEc", long_flags="shared exclusive nonblock nonblocking nb "
                  "unlock close no-fork verbose help version", long_takes="wait timeout "
                  "conflict-exit-code command", refused="c command",
                  reasons={"c": "it runs a shell", "command": "it runs a shell"}),
    "strace": opts("cCdDfFhiqrtTvVwxyzZkn", "abeEIoOPsSUXpu", refused="p u"),
    "watch": opts("bcCegtwxpr", "nq", "d", long_flags="beep color no-color errexit chgexit "
                  "no-title no-wrap exec precise no-rerun help version",
                  long_takes="interval equexit", long_optional="differences"),
    "xargs": opts("0oprtx", "adEILnPs", "eil", long_flags="null open-tty interactive "
                  "no-run-if-empty verbose exit show-limits help version",
                  long_takes="arg-file delimiter max-args max-procs max-chars "
                  "process-slot-var", long_optional="eof replace max-lines",
                  refused="process-slot-var"),
}

#: GNU sort: ``--compress-program`` runs a program; ``-y`` (obsolete) takes the next word
#: only when it is all digits, so it is refused rather than guessed.
SORT = opts("bcdfghimnrsuzCMRV", "kotST", long_flags="debug dictionary-order "
            "general-numeric-sort help human-numeric-sort ignore-case ignore-leading-blanks "
            "ignore-nonprinting merge month-sort numeric-sort random-sort reverse stable "
            "unique version version-sort zero-terminated",
            long_takes="batch-size buffer-size compress-program field-separator files0-from "
            "key output parallel random-source sort temporary-directory",
            long_optional="check", refused="y compress-program",
            reasons={"compress-program": PROGRAM_NOTE,
                     "y": "an obsolete option whose argument depends on its value"},
            permute=True, literal=False)

#: GNU diff: ``-l``/``--paginate`` pipes the output through ``pr``.
DIFF = opts("abcdefhinpqrstuwyBEHNPTZ0123456789", "xCDFILSUWX", long_flags="brief ed "
            "expand-tabs help ignore-all-space ignore-blank-lines ignore-case "
            "ignore-file-name-case ignore-space-change ignore-tab-expansion "
            "ignore-trailing-space initial-tab left-column minimal new-file no-dereference "
            "no-ignore-file-name-case normal rcs recursive report-identical-files "
            "show-c-function side-by-side speed-large-files strip-trailing-cr "
            "suppress-blank-empty suppress-common-lines text unidirectional-new-file version "
            "binary forward-ed inhibit-hunk-merge sdiff-merge-assist",
            long_takes="exclude exclude-from from-file horizon-lines ifdef "
            "ignore-matching-lines label line-format palette show-function-line starting-file "
            "tabsize to-file width changed-group-format new-group-format old-group-format "
            "unchanged-group-format new-line-format old-line-format unchanged-line-format",
            long_optional="color context unified", refused="l paginate",
            reasons={"l": "it runs pr", "paginate": "it runs pr"},
            permute=True, literal=False)

#: GNU sed (its script is checked by :func:`.scripts.check_sed_script`); ``-f`` reads a
#: script the checker cannot see (allowed with ``--sandbox`` only).
SED = opts("bnrsuzE", "efl", "i", long_flags="debug follow-symlinks help null-data "
           "zero-terminated posix quiet silent regexp-extended sandbox separate unbuffered "
           "version binary", long_takes="expression file line-length",
           long_optional="in-place", permute=True, literal=False)

PERMUTING: dict[str, Options] = {"sort": SORT, "diff": DIFF, "sed": SED}
