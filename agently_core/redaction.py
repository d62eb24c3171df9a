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
    return isinstance(key, str) and SECRET_KEY.search(key) is not None


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


class Redactor:
    """Masks secrets in any JSON-like value. Thread-safe; cheap when nothing matches."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
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
            local = _pattern(v for s in extra if isinstance(s, str)
                             and len(s) >= MIN_SECRET_LENGTH for v in _variants(s))
            if local is not None:
                value = local.sub(MASK, value)
        return value

    def redact(self, value: Any, extra: Iterable[str] = ()) -> Any:
        """A copy of ``value`` with secrets masked (the input is never modified): by key
        name, by registered value, and by each value of ``extra``."""
        if isinstance(value, str):
            return self.text(value, extra)
        if isinstance(value, Mapping):
            return {
                (self.text(key, extra) if isinstance(key, str) else key):
                MASK if is_secret_key(key) and item not in (None, "") else self.redact(item, extra)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.redact(item, extra) for item in value]
        return value

    @staticmethod
    def secret_arguments(kwargs: Mapping[str, Any]) -> list[str]:
        """The string values of secret-named arguments (masked wherever the same call's
        record repeats them, in errors and results too)."""
        return [v for k, v in kwargs.items() if isinstance(v, str) and is_secret_key(k)]

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
