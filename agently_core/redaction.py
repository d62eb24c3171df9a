"""Redaction: secrets never leave through events, records, digests or logs.

Two rules, applied together:

* **by key name**: a mapping value whose key looks secret (``password``, ``token``,
  ``api_key``, ``authorization``, ``cookie``, ...) is masked whole;
* **by value**: every secret value the host configured (environment passthrough, headers,
  configuration, :meth:`Redactor.add`) is masked wherever it appears, inside longer strings
  and URLs too, also in its percent-encoded form.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
SECRET_KEY = re.compile(
    r"(pass(?:word|wd|phrase)|(?<![a-z])pass(?![a-z])|secret|token|api[-_]?key|"
    r"access[-_]?key|auth(orization)?|cookie|"
    r"credential|private[-_]?key|session[-_]?id|signature|bearer)",
    re.IGNORECASE,
)
#: Values shorter than this are not masked by value (masking "a" would destroy every text).
MIN_SECRET_LENGTH = 4


def is_secret_key(key: object) -> bool:
    """Does this mapping key name a secret?"""
    return isinstance(key, str) and SECRET_KEY.search(key) is not None


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
        from urllib.parse import quote, quote_plus

        new = set()
        for value in values:
            if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
                continue
            new.update({value, quote(value, safe=""), quote_plus(value)})
        with self._lock:
            if new - self._secrets:
                self._secrets |= new
                ordered = sorted(self._secrets, key=len, reverse=True)  # longest first
                self._pattern = re.compile("|".join(map(re.escape, ordered)))

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
        return self._pattern is not None

    # -- masking -----------------------------------------------------------------------
    def text(self, value: str) -> str:
        pattern = self._pattern
        return value if pattern is None else pattern.sub(MASK, value)

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` with secrets masked (the input is never modified)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                key: MASK if is_secret_key(key) and item not in (None, "") else self.redact(item)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.redact(item) for item in value]
        return value

    def logging_filter(self) -> Any:
        """A :class:`logging.Filter` that masks secrets in messages and arguments."""
        import logging

        redactor = self

        class _Filter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if redactor.active:
                    record.msg = redactor.text(str(record.msg))
                    if record.args:
                        args = record.args if isinstance(record.args, tuple) else (record.args,)
                        record.args = tuple(redactor.redact(a) if isinstance(a, (str, Mapping,
                                            list, tuple)) else a for a in args)
                return True

        return _Filter()
