"""The process-wide execution-environment manager, as module functions.

    from agently_core import execution_environment
    requirement = execution_environment.declare({"kind": "python", "scope": "session",
                                                 "owner_id": "s1"})
    handle = await execution_environment.async_ensure(requirement.id)
    ...
    await execution_environment.async_release(handle)
    await execution_environment.async_release_scope("session", "s1")

Each function delegates to :func:`get_manager`. The process-wide manager's resources live on
the loop the synchronous API runs on, so the ``async_*`` functions run there as well, awaited
from the caller's loop: a program may mix ``ensure`` and ``await async_ensure``. Create an
:class:`~agently_core.environments.ExecutionEnvironmentManager` of your own for tests or
to isolate a component.
"""

from __future__ import annotations

from typing import Any

from ._sync import on_shared_loop
from .environments import SCOPES, ExecutionEnvironmentManager, get_manager

__all__ = [
    "SCOPES",
    "ExecutionEnvironmentManager",
    "async_ensure",
    "async_release",
    "async_release_scope",
    "declare",
    "ensure",
    "get_manager",
    "inspect",
    "list",
    "release",
    "release_scope",
]


def declare(requirement: Any) -> Any:
    """Validate and record a requirement; starts nothing."""
    return get_manager().declare(requirement)


def ensure(requirement_or_id: Any) -> Any:
    """Synchronous :func:`async_ensure`."""
    return get_manager().ensure(requirement_or_id)


async def async_ensure(requirement_or_id: Any, **options: Any) -> Any:
    """A ready handle; release its ``lease_id`` exactly once."""
    return await on_shared_loop(get_manager().async_ensure, requirement_or_id, **options)


def release(handle_or_id: Any) -> bool:
    """Synchronous :func:`async_release`."""
    return get_manager().release(handle_or_id)


async def async_release(handle_or_id: Any, **options: Any) -> bool:
    """Drop one reference; the provider releases the resource when the last one goes."""
    return await on_shared_loop(get_manager().async_release, handle_or_id, **options)


def release_scope(scope: str, owner_id: str | None = None) -> int:
    """Synchronous :func:`async_release_scope`."""
    return get_manager().release_scope(scope, owner_id)


async def async_release_scope(scope: str, owner_id: str | None = None, **options: Any) -> int:
    """Release every resource of a scope and owner."""
    return await on_shared_loop(get_manager().async_release_scope, scope, owner_id, **options)


def inspect(id: str) -> Any:
    """The handle (or declared requirement) with this id."""
    return get_manager().inspect(id)


def list(scope: str | None = None, **filters: Any) -> Any:
    """Live handles, optionally filtered by scope, owner_id and kind."""
    return get_manager().list(scope, **filters)
