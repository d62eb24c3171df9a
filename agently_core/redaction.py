"""Redaction: secrets never leave through events, records, digests or logs.

Two rules, applied together:

* **by key name**: a mapping value whose key looks secret (``password``, ``api_key``,
  ``access_token``, ``authorization``, ``cookie``, ...) is masked whole;
* **by value**: every secret value the host configured (environment passthrough, headers,
  configuration, :meth:`Redactor.add`) is masked wherever it appears, inside longer strings
  and URLs too, also in its percent-encoded form. The token of an ``Authorization``-style
  value (``Bearer <token>``) is a secret on its own.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

MASK = "***"
SECRET_KEY = re.compile(
    r"""
      pass(?:word|wd|phrase)                    # password, db_passwd, passphrase
    | (?<![a-z])pass(?![a-z])                   # pass, db_pass (not passthrough, compass)
    | secret
    | (?<![a-z])token(?![a-z])                  # token, access_token (not max_tokens)
    | (?:api|access|private|secret)[-_]?key
    | (?<![a-z])auth(?:orization)?(?![a-z])     # auth, authorization (not author)
    | cookie | credential | session[-_]?id | signature | bearer
    """,
    re.IGNORECASE | re.VERBOSE,
)
_SCHEME_TOKEN = re.compile(r"^\s*(?:bearer|basic|token|bot|digest)\s+(\S+)\s*$", re.IGNORECASE)
#: Values shorter than this are not masked by value (masking "a" would destroy every text).
MIN_SECRET_LENGTH = 4


def is_secret_key(key: object) -> bool:
    """Does this mapping key name a secret?"""
    return isinstance(key, str) and _secret_name(key)


@lru_cache(maxsize=4096)  # key names repeat: every result of a tool has the same few
def _secret_name(key: str) -> bool:
    return SECRET_KEY.search(key) is not None


def _variants(value: str) -> set[str]:
    from urllib.parse import quote, quote_plus

    found = {value, quote(value, safe=""), quote_plus(value)}
    scheme = _SCHEME_TOKEN.match(value)
    if scheme and len(scheme.group(1)) >= MIN_SECRET_LENGTH:
        found |= _variants(scheme.group(1))
    return found


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(secrets), key=len, reverse=True)  # longest first
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


@lru_cache(maxsize=256)
def _local_pattern(extra: tuple[Any, ...]) -> re.Pattern[str] | None:
    """The pattern of a call's own secrets (``extra``), built once per distinct set."""
    return _pattern(v for s in extra if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH
                    for v in _variants(s))


def _local(extra: Iterable[str]) -> re.Pattern[str] | None:
    extra = tuple(extra)
    if not extra:
        return None
    try:
        return _local_pattern(extra)
    except TypeError:  # an unhashable item (never a secret: only strings are)
        return _local_pattern(tuple(s for s in extra if isinstance(s, str)))


#: The shortest start of a secret masked at the end of a cut text (:meth:`Redactor.cut_text`).
MIN_PARTIAL_SECRET = 3


def _mask_tail(value: str, secrets: Iterable[str]) -> str:
    """``value`` with its end masked when it is the start of one of ``secrets`` (the
    longest such start wins)."""
    longest = 0
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(value)), MIN_PARTIAL_SECRET - 1, -1):
            if size <= longest:
                break
            if value.endswith(secret[:size]):
                longest = size
                break
    return value[:-longest] + MASK if longest else value


#: How many distinct key names a redactor remembers the masked form of.
_KEY_CACHE_SIZE = 4096
_LEAVES = frozenset({int, float, bool, type(None)})


def _mask(value: str, pattern: re.Pattern[str] | None, local: re.Pattern[str] | None) -> str:
    if pattern is not None:
        value = pattern.sub(MASK, value)
    if local is not None:
        value = local.sub(MASK, value)
    return value


def _walk(value: Any, pattern: re.Pattern[str] | None, local: re.Pattern[str] | None,
          keys: dict[str, tuple[bool, str]] | None) -> Any:
    """:meth:`Redactor.redact`'s walk: exact types first (JSON values), then the generic
    ones, in the order the rules name them. ``keys`` caches each key name's (secret?,
    masked text) for ``pattern`` (None when there are call-local secrets)."""
    kind = type(value)
    if kind is str:
        return _mask(value, pattern, local)
    if kind in _LEAVES:
        return value
    if kind is dict or (not isinstance(value, str) and isinstance(value, Mapping)):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if keys is not None and type(key) is str:
                entry = keys.get(key)
                if entry is None:
                    entry = (_secret_name(key), _mask(key, pattern, local))
                    if len(keys) < _KEY_CACHE_SIZE:
                        keys[key] = entry
                secret, key = entry
            elif isinstance(key, str):
                secret, key = _secret_name(key), _mask(key, pattern, local)
            else:
                secret = False
            out[key] = MASK if secret and item not in (None, "") else _walk(
                item, pattern, local, keys)
        return out
    if kind is list or kind is tuple:
        return [_walk(item, pattern, local, keys) for item in value]
    if isinstance(value, str):
        return _mask(value, pattern, local)
    if isinstance(value, (list, tuple)):
        return [_walk(item, pattern, local, keys) for item in value]
    return value


class _NotJson(Exception):
    """:func:`_walk_json` met a value that is not plain JSON."""


_JSON = frozenset({str, int, float, bool, type(None), dict, list})
#: An upper bound of the JSON text of each scalar ("false", "null", a float's repr).
_SCALAR_BYTES = {bool: 5, type(None): 4, float: 24}
#: Longer ints are measured exactly by the caller (and may not print at all).
_MAX_INT_BITS = 4096
_UNBOUNDED = 1 << 62


def _walk_json(value: Any, pattern: re.Pattern[str] | None, local: re.Pattern[str] | None,
               keys: dict[str, tuple[bool, str]] | None, size: list[int]) -> Any:
    """:func:`_walk` for plain JSON values (exact types only), adding to ``size[0]`` an
    upper bound of the UTF-8 length of the copy's ``json.dumps(..., ensure_ascii=False)``:
    a character takes at most 6 bytes (``\\u001f``), separators are ``", "`` and ``": "``.
    Raises :class:`_NotJson` at anything else."""
    kind = type(value)
    if kind is str:
        if pattern is not None:
            value = pattern.sub(MASK, value)
        if local is not None:
            value = local.sub(MASK, value)
        size[0] += 6 * len(value) + 2
        return value
    if kind is dict:
        size[0] += 2 + 4 * len(value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str or type(item) not in _JSON:
                raise _NotJson
            if keys is not None:
                entry = keys.get(key)
                if entry is None:
                    entry = (_secret_name(key), _mask(key, pattern, local))
                    if len(keys) < _KEY_CACHE_SIZE:
                        keys[key] = entry
                secret, key = entry
            else:
                secret, key = _secret_name(key), _mask(key, pattern, local)
            size[0] += 6 * len(key) + 2
            if secret and item not in (None, ""):
                out[key] = MASK
                size[0] += 5
            else:
                out[key] = _walk_json(item, pattern, local, keys, size)
        return out
    if kind is list:
        size[0] += 2 + 2 * len(value)
        return [_walk_json(item, pattern, local, keys, size) for item in value]
    if kind is int:
        bits = value.bit_length()
        size[0] += bits // 3 + 2 if bits <= _MAX_INT_BITS else _UNBOUNDED  # log10(2) < 1/3
        return value
    bound = _SCALAR_BYTES.get(kind)
    if bound is None:
        raise _NotJson
    size[0] += bound
    return value


class Redactor:
    """Masks secrets in any JSON-like value. Thread-safe; cheap when nothing matches."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        #: The pattern and the masked key names for it, replaced together (one read gives
        #: a walk a consistent pair, even while another thread adds a secret).
        self._state: tuple[re.Pattern[str] | None, dict[str, tuple[bool, str]]] = (None, {})
        self._lock = threading.Lock()
        self.add(*secrets)

    # -- registering secrets -----------------------------------------------------------
    def add(self, *values: Any) -> None:
        """Register secret values; each is masked wherever it appears."""
        new: set[str] = set()
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                new |= _variants(value)
        with self._lock:
            if new - self._secrets:
                self._secrets |= new
                self._pattern = _pattern(self._secrets)
                self._state = (self._pattern, {})

    def add_mapping(self, mapping: Mapping[str, Any] | None, *, all_values: bool = False) -> None:
        """Register the values of ``mapping`` whose keys look secret, or every value with
        ``all_values=True`` (environment passthrough and HTTP headers are secrets by
        default). Nested mappings are walked."""
        if not mapping:
            return
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                self.add_mapping(value, all_values=all_values or is_secret_key(key))
            elif isinstance(value, str) and (all_values or is_secret_key(key)):
                self.add(value)

    def add_from_config(self, config: Mapping[str, Any] | None) -> None:
        """Register the secrets of an environment requirement's or server's config:
        ``env`` and ``headers`` values, and every value under a secret-looking key."""
        if not config:
            return
        for key, value in config.items():
            if key in {"env", "headers", "environment"} and isinstance(value, Mapping):
                self.add_mapping(value, all_values=True)
            elif isinstance(value, Mapping):
                self.add_from_config(value)
            elif isinstance(value, str) and is_secret_key(key):
                self.add(value)

    @property
    def active(self) -> bool:
        """Are any secret values registered? (Key names are masked regardless.)"""
        return self._pattern is not None

    # -- masking -----------------------------------------------------------------------
    def text(self, value: str, extra: Iterable[str] = ()) -> str:
        """``value`` with every registered secret (and each of ``extra``) masked."""
        pattern = self._pattern
        if pattern is not None:
            value = pattern.sub(MASK, value)
        if extra:
            local = _local(extra)
            if local is not None:
                value = local.sub(MASK, value)
        return value

    def cut_text(self, value: str, extra: Iterable[str] = ()) -> str:
        """:meth:`text` for a text that was cut at its end before it could be redacted
        whole (a stream that stopped at a byte limit): also masks a secret the cut split,
        whose first characters end the text. At most the first
        ``MIN_PARTIAL_SECRET - 1`` characters of a secret can remain visible at the edge."""
        value = self.text(value, extra)
        secrets = set(self._secrets)
        if extra:
            secrets |= {v for s in extra if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH
                        for v in _variants(s)}
        return _mask_tail(value, secrets)

    def redact(self, value: Any, extra: Iterable[str] = ()) -> Any:
        """A copy of ``value`` with secrets masked (the input is never modified): by key
        name, by registered value, and by each value of ``extra``."""
        pattern, keys = self._state
        local = _local(extra) if extra else None
        return _walk(value, pattern, local, keys if local is None else None)

    def redact_json(self, value: Any, extra: Iterable[str] = ()) -> tuple[Any, int]:
        """:meth:`redact` for a plain JSON value (dicts with string keys, lists, strings,
        ints, floats, bools, None; exact types), in the same one walk an upper bound of
        the copy's serialised size: ``(copy, bound)``. ``(None, -1)`` when ``value`` is not
        plain JSON (convert it, then use :meth:`redact`)."""
        pattern, keys = self._state
        local = _local(extra) if extra else None
        size = [0]
        try:
            return _walk_json(value, pattern, local, keys if local is None else None,
                              size), size[0]
        except _NotJson:
            return None, -1
        except RecursionError:  # deeper than the walk goes: the caller's path decides
            return None, -1

    @staticmethod
    def secret_arguments(kwargs: Mapping[str, Any]) -> list[str]:
        """The string values of secret-named arguments (masked wherever the same call's
        record repeats them, in errors and results too)."""
        return [v for k, v in kwargs.items()
                if isinstance(v, str) and isinstance(k, str) and _secret_name(k)]

    def logging_filter(self) -> Any:
        """A :class:`logging.Filter` that masks secrets in messages, arguments and
        tracebacks of every record it sees (add it to a handler)."""
        import logging

        redactor = self

        class _Filter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if isinstance(record.msg, str):
                    record.msg = redactor.text(record.msg)
                args = record.args
                if isinstance(args, Mapping):
                    record.args = redactor.redact(args)
                elif args:
                    record.args = tuple(
                        redactor.redact(a) if isinstance(a, (str, Mapping, list, tuple)) else a
                        for a in args
                    )
                if record.exc_info and not record.exc_text:
                    record.exc_text = redactor.text(
                        logging.Formatter().formatException(record.exc_info))
                return True

        return _Filter()
