"""``path_allow`` / ``path_deny`` for the workspace file actions.

Whether a path may be touched is decided by the core's
:meth:`~agently_core.models.Policy.path_allowed`, on the normalised path relative to the
workspace root (``.`` for the root): ``fnmatchcase`` globs (``*`` also matches ``/``)
matched against the path and each directory above it; a ``path_deny`` match refuses, and
when ``path_allow`` is set the path (or a directory above it) must match a pattern of every
group. This module adds what walking needs: whether a directory may hold an allowed path
(so a listing or a search goes through ``docs`` for ``docs/*.md``), and why a path is
refused, for the error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from .errors import FileAccessRefused

_WILDCARDS = "*?["


def _candidates(parts: Sequence[str]) -> list[str]:
    """The path and every directory above it (inside the root), longest first."""
    return ["/".join(parts[:end]) for end in range(len(parts), 0, -1)] or ["."]


def _groups(patterns: list[Any]) -> list[list[str]]:
    plain = [p for p in patterns if isinstance(p, str)]
    nested = [[str(q) for q in p] for p in patterns if not isinstance(p, str)]
    return ([plain] if plain or not nested else []) + nested


def _below(directory: str, pattern: str) -> bool:
    """Could ``pattern`` match some path below ``directory``? (Never a wrong "no": every
    match starts with the pattern's text up to its first wildcard.)"""
    cut = min((i for i in (pattern.find(c) for c in _WILDCARDS) if i >= 0), default=-1)
    head = pattern if cut < 0 else pattern[:cut]
    prefix = f"{directory}/" if directory else ""
    if cut < 0:
        return head.startswith(prefix) and head != prefix
    return prefix.startswith(head) or head.startswith(prefix)


class PathPolicy:
    """The ``path_allow`` / ``path_deny`` of one call's policy."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.deny: list[str] = list(policy.path_deny or [])
        allow = policy.path_allow
        self.groups = None if allow is None else _groups(list(allow))

    @classmethod
    def of(cls, policy: Any) -> PathPolicy | None:
        """The path rules of ``policy`` (a :class:`~agently_core.models.Policy` or
        ``None``), or ``None`` when it sets neither field."""
        if policy is None or (policy.path_allow is None and not policy.path_deny):
            return None
        return cls(policy)

    def allows(self, parts: Sequence[str]) -> bool:
        return bool(self.policy.path_allowed("/".join(parts) or "."))

    def refusal(self, parts: Sequence[str]) -> str | None:
        """Why ``parts`` is refused, or ``None`` when it is allowed."""
        if self.allows(parts):
            return None
        for candidate in _candidates(parts):
            for pattern in self.deny:
                if fnmatchcase(candidate, pattern):
                    via = "" if candidate == "/".join(parts) else f" (through {candidate!r})"
                    return f"matches the policy's path_deny pattern {pattern!r}{via}"
        if self.groups is not None and len(self.groups) > 1:
            return "does not match a pattern of every path_allow group of the policy"
        return "matches none of the policy's path_allow patterns"

    def may_hold(self, parts: Sequence[str]) -> bool:
        """May the directory ``parts`` be walked: is it allowed, or may an allowed path lie
        below it?"""
        candidates = _candidates(parts)
        if any(fnmatchcase(c, p) for c in candidates for p in self.deny):
            return False  # everything below it is denied too
        if self.groups is None or self.allows(parts):
            return True
        directory = "/".join(parts)
        return all(any(fnmatchcase(c, p) for c in candidates for p in group)
                   or any(_below(directory, p) for p in group) for group in self.groups)

    def check(self, parts: Sequence[str], action: str) -> None:
        """Refuse ``parts`` (a file's path) unless it is allowed."""
        why = self.refusal(parts)
        if why is not None:
            raise FileAccessRefused(f"{action}: {'/'.join(parts) or '.'!r} {why}")
