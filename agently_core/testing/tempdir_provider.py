"""``tempdir``: a small, real ExecutionEnvironmentProvider - the reference for provider
authors, and the provider the provider conformance suite is proven against.

``ensure`` creates a private temporary directory (mode 0700), ``async_health_check``
writes and removes a probe file in it, ``release`` deletes it with everything inside.
Configuration (``EnvironmentRequirement.config``):

``base``
    The directory to create it in (default: the system temporary directory). It must
    exist and be writable.
``prefix``
    The directory name's prefix (default ``agently-tempdir-``): letters, digits, ``.``,
    ``_`` and ``-`` only.

A bad configuration is refused before anything is created. File system calls run in worker
threads, so the event loop never waits on the disk.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ..errors import AgentlyError

if TYPE_CHECKING:
    from ..protocols import ProviderHandle

DEFAULT_PREFIX = "agently-tempdir-"
CONFIG_KEYS = ("base", "prefix")
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class TempdirError(AgentlyError, ValueError):
    """The ``tempdir`` provider refused a configuration or a resource."""


class TempdirProvider:
    """Private temporary directories as managed resources (kind ``tempdir``)."""

    kind = "tempdir"

    def __init__(self) -> None:
        self._live: set[Path] = set()
        self._released: set[Path] = set()

    @staticmethod
    def settings(requirement: Any) -> tuple[Path | None, str]:
        """Validate the requirement's configuration; returns ``(base, prefix)``."""
        config = getattr(requirement, "config", None) or {}
        if not isinstance(config, Mapping):
            raise TempdirError(f"tempdir config must be a mapping, got {type(config).__name__}")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise TempdirError(f"unknown tempdir config key(s) {', '.join(map(repr, unknown))}; "
                               f"known: {', '.join(CONFIG_KEYS)}")
        prefix = config.get("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise TempdirError(f"tempdir prefix {prefix!r} must be 1-64 letters, digits, "
                               "'.', '_' or '-'")
        base = config.get("base")
        if base is None:
            return None, prefix
        if not isinstance(base, (str, os.PathLike)) or not str(base):
            raise TempdirError(f"tempdir base must be a directory path, got {base!r}")
        path = Path(base)
        if not path.is_dir():
            raise TempdirError(f"tempdir base {str(path)!r} is not an existing directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise TempdirError(f"tempdir base {str(path)!r} is not writable")
        return path, prefix

    async def ensure(self, requirement: Any) -> Path:
        """Create the directory and return its path."""
        base, prefix = self.settings(requirement)
        created = Path(await anyio.to_thread.run_sync(_mkdtemp, prefix, base))
        self._live.add(created)
        return created

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        """``True`` when the directory exists and a file can be written in it."""
        path = Path(handle.resource)
        if path not in self._live:
            return False
        try:
            return await anyio.to_thread.run_sync(_probe, path)
        except OSError:
            return False

    async def release(self, requirement: Any, resource: Any) -> None:
        """Delete the directory and everything in it. Releasing it again does nothing; a
        path this provider did not create is refused."""
        path = Path(resource)
        if path in self._released:
            return
        if path not in self._live:
            raise TempdirError(f"{str(path)!r} was not created by this tempdir provider")
        self._live.discard(path)
        self._released.add(path)
        await anyio.to_thread.run_sync(_remove, path)


def _mkdtemp(prefix: str, base: Path | None) -> str:
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def _probe(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False
    fd, name = tempfile.mkstemp(prefix=".agently-health-", dir=path)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(name)
    return True


def _remove(path: Path) -> None:
    from agently_core.fs import remove_tree  # read-only and deeply nested trees too

    if path.exists() or path.is_symlink():
        remove_tree(path)


__all__ = ["CONFIG_KEYS", "DEFAULT_PREFIX", "TempdirError", "TempdirProvider"]
