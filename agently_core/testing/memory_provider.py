"""``memory``: an in-memory ExecutionEnvironmentProvider that counts everything.

It makes no real resource, so benchmarks time the manager and not the resource, and tests
can prove the manager's bookkeeping: every resource it hands out is a fresh
:class:`MemoryResource`, and the provider remembers how often it started, checked and
released each one. Faults are injected through the requirement's config:

``fail_start``
    ``ensure`` raises ``RuntimeError`` (after ``start_delay``).
``start_delay``
    Seconds ``ensure`` sleeps first (a window for races and cancellation).
``unhealthy``
    ``async_health_check`` answers False.

Or through the provider's attributes at run time (:attr:`fail_next_starts`,
:meth:`make_unhealthy`).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import anyio

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..protocols import ProviderHandle

_ids = itertools.count(1)


class MemoryResource:
    """A live stand-in resource."""

    __slots__ = ("healthy", "id", "released", "requirement_id")

    def __init__(self, requirement_id: str) -> None:
        self.id = next(_ids)
        self.requirement_id = requirement_id
        self.healthy = True
        self.released = 0

    def __repr__(self) -> str:
        return f"MemoryResource({self.id})"


class MemoryProvider:
    """Counting provider for kind ``memory`` (or any kind given)."""

    name = "memory"

    def __init__(self, kind: str = "memory") -> None:
        self.kind = kind
        self.started: list[MemoryResource] = []
        self.released: list[MemoryResource] = []
        self.health_checks = 0
        self.fail_next_starts = 0

    @property
    def live(self) -> list[MemoryResource]:
        """Resources started and not released."""
        return [r for r in self.started if not r.released]

    @property
    def double_releases(self) -> list[MemoryResource]:
        return [r for r in self.started if r.released > 1]

    def make_unhealthy(self, resource: MemoryResource) -> None:
        resource.healthy = False

    async def ensure(self, requirement: Any) -> MemoryResource:
        config = requirement.config or {}
        delay = float(config.get("start_delay", 0) or 0)
        if delay:
            await anyio.sleep(delay)
        if config.get("fail_start") or self.fail_next_starts:
            if self.fail_next_starts:
                self.fail_next_starts -= 1
            raise RuntimeError(f"memory provider refused to start {requirement.id}")
        resource = MemoryResource(requirement.id)
        self.started.append(resource)
        return resource

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        self.health_checks += 1
        resource: MemoryResource = handle.resource
        return resource.healthy and not resource.released and not (
            handle.requirement.config or {}).get("unhealthy")

    async def release(self, requirement: Any, resource: MemoryResource) -> None:
        resource.released += 1
        self.released.append(resource)


class MemoryPlugin:
    """A plugin registering one shared :class:`MemoryProvider` instance as the provider
    ``memory``, so a test holds the very instance the agents' managers use."""

    def __init__(self, provider: MemoryProvider) -> None:
        self.provider = provider

    @hookimpl
    def register_execution_environment_providers(self, register: Any) -> None:
        register("memory", lambda: self.provider)
