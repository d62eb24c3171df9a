"""Conformance suite for :class:`~agently_core.protocols.ExecutionEnvironmentProvider`
plugins."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from typing import Any, ClassVar

import anyio

from ._base import ConformanceSuite, close_quietly, fail
from .harness import make_plugin, make_plugin_manager

SCENARIOS = ("default", "bad_config")


class ProviderConformance(ConformanceSuite):
    """Proves a provider keeps the
    :class:`~agently_core.protocols.ExecutionEnvironmentProvider` contract: ``ensure`` gives
    a live resource that ``health_check`` confirms; ``release`` (called exactly once per
    resource, as the manager does) frees it, after which ``health_check`` answers ``False``
    or raises; a bad configuration fails ``ensure`` with a clear error and leaves nothing
    behind; concurrent ``ensure`` calls give independent resources.

    Subclass it in a test module and supply::

        class TestMyProvider(ProviderConformance):
            kind = "sqlite"
            def make_provider(self): return SQLiteProvider()
            def make_requirement(self, scenario):
                if scenario == "bad_config": return {"config": {"path": "/no/such/dir/x.db"}}
                return {"config": {"path": str(self.tmp_path / "db.sqlite")}}
            def live_resources(self): return set(self.tmp_path.glob("*.sqlite"))

    ``make_requirement(scenario)`` returns an
    :class:`~agently_core.models.EnvironmentRequirement` or a dict of its fields (``kind``
    defaults to :attr:`kind`) for ``"default"`` (a working configuration; it is called once
    per resource, so it may hand out fresh paths) and ``"bad_config"`` (one ``ensure`` must
    refuse).

    :meth:`live_resources` returns what the provider currently holds, as seen from the
    outside (files, processes, containers...); with it the suite checks that a failed
    ``ensure`` and a ``release`` leave nothing behind; without it those checks are left out.
    """

    __test__ = False

    #: The environment kind the provider serves (``EnvironmentRequirement.kind``); required.
    kind: ClassVar[str] = ""
    #: The name it is registered under; defaults to :attr:`kind`.
    provider_name: ClassVar[str | None] = None
    #: How many ``ensure`` calls run at once in the concurrency test.
    concurrent_ensures: ClassVar[int] = 4
    #: The longest any single provider call may take.
    operation_timeout: ClassVar[float] = 30.0

    # -- what a subclass supplies --------------------------------------------------------
    def make_provider(self) -> Any:
        """Return a new provider."""
        raise NotImplementedError(f"{type(self).__name__} must define make_provider()")

    def make_requirement(self, scenario: str) -> Any:
        """Return an EnvironmentRequirement (or a dict of its fields) for ``scenario``."""
        raise NotImplementedError(f"{type(self).__name__} must define make_requirement()")

    def live_resources(self) -> Collection[Any] | None:
        """What the provider holds right now, observed from outside; ``None`` to skip the
        leak checks."""
        return None

    def resource_identity(self, resource: Any) -> Hashable:
        """What tells two resources apart (default: the resource if hashable, else its id)."""
        try:
            hash(resource)
        except TypeError:
            return id(resource)
        return resource

    async def close_provider(self, provider: Any) -> None:
        """Release a provider the suite made (default: its ``aclose()``/``close()``)."""
        await close_quietly(provider)

    # -- plumbing ------------------------------------------------------------------------
    def _kind(self) -> str:
        if not self.kind:
            fail(f"{type(self).__name__} must set the class attribute `kind`")
        return self.kind

    def _requirement(self, scenario: str) -> Any:
        from ..models import EnvironmentRequirement

        made = self.make_requirement(scenario)
        if isinstance(made, Mapping):
            made = EnvironmentRequirement.model_validate({"kind": self._kind(), **made})
        if not isinstance(made, EnvironmentRequirement):
            fail(f"make_requirement({scenario!r}) must return an EnvironmentRequirement or a "
                 f"dict, got {made!r}")
        if made.kind != self.kind:
            fail(f"make_requirement({scenario!r}) is of kind {made.kind!r}; the suite tests "
                 f"kind {self.kind!r}")
        return made

    def _live(self) -> set[Any] | None:
        found = self.live_resources()
        return None if found is None else set(found)

    async def _with_provider(self, body: Any) -> None:
        provider = self.make_provider()
        tracker = _Tracker(provider, self.operation_timeout)
        try:
            await body(provider, tracker)
        finally:
            await tracker.release_all()
            await self.close_provider(provider)

    async def _healthy(self, tracker: _Tracker, requirement: Any, resource: Any) -> Any:
        with anyio.fail_after(self.operation_timeout):
            return await tracker.provider.health_check(requirement, resource)

    # -- the contract --------------------------------------------------------------------
    def test_kind_attribute_and_protocol(self) -> None:
        """``kind`` matches and ``isinstance(provider, ExecutionEnvironmentProvider)``."""
        from ..protocols import ExecutionEnvironmentProvider

        kind = self._kind()

        async def body(provider: Any, tracker: _Tracker) -> None:
            assert getattr(provider, "kind", None) == kind, (
                f"provider.kind is {getattr(provider, 'kind', None)!r}, expected {kind!r}")
            assert isinstance(provider, ExecutionEnvironmentProvider), (
                f"{type(provider).__name__} does not satisfy "
                "protocols.ExecutionEnvironmentProvider: it needs `kind` and async `ensure`, "
                "`health_check` and `release`")

        self.run(self._with_provider, body)

    def test_registered_provider_is_selected_by_kind(self) -> None:
        """Registered through ``register_execution_environment_providers``, it is the one
        selected for its kind."""
        kind = self._kind()
        name = self.provider_name or kind
        plugin = make_plugin(environment_provider={name: (self.make_provider, {"kind": kind})})
        manager = make_plugin_manager(plugin)
        registration = manager.select("environment_provider", kind=kind)
        assert registration.name == name and registration.kind == kind

        async def check() -> None:
            provider = manager.create("environment_provider", kind=kind)
            try:
                assert getattr(provider, "kind", None) == kind
            finally:
                await self.close_provider(provider)

        self.run(check)

    def test_ensure_gives_a_live_healthy_resource(self) -> None:
        """``ensure`` returns a resource and ``health_check`` on it answers ``True``."""

        async def body(provider: Any, tracker: _Tracker) -> None:
            requirement = self._requirement("default")
            resource = await tracker.ensure(requirement)
            assert resource is not None, "ensure() returned None instead of the live resource"
            healthy = await self._healthy(tracker, requirement, resource)
            assert healthy is True, f"health_check on a fresh resource gave {healthy!r}"

        self.run(self._with_provider, body)

    def test_release_frees_the_resource(self) -> None:
        """After one ``release`` the resource is gone: ``health_check`` answers ``False`` or
        raises, and :meth:`live_resources` is back where it started."""

        async def body(provider: Any, tracker: _Tracker) -> None:
            before = self._live()
            requirement = self._requirement("default")
            resource = await tracker.ensure(requirement)
            during = self._live()
            if before is not None and during is not None:
                assert during - before, (
                    "live_resources() shows nothing new after ensure(); it cannot detect leaks")
            await tracker.release(requirement, resource)
            try:
                healthy = await self._healthy(tracker, requirement, resource)
            except Exception:
                healthy = False  # an error is an acceptable answer for a released resource
            assert healthy is False, f"health_check after release gave {healthy!r}"
            after = self._live()
            if before is not None and after is not None:
                assert after == before, f"release() left behind: {sorted(map(str, after - before))}"

        self.run(self._with_provider, body)

    def test_bad_config_fails_clearly_and_leaves_nothing_behind(self) -> None:
        """``ensure`` of a bad configuration raises an exception with a message, leaves
        nothing behind, and the provider still works afterwards."""

        async def body(provider: Any, tracker: _Tracker) -> None:
            before = self._live()
            bad = self._requirement("bad_config")
            try:
                with anyio.fail_after(self.operation_timeout):
                    resource = await provider.ensure(bad)
            except Exception as exc:
                assert str(exc).strip(), (
                    f"ensure() of a bad config raised {type(exc).__name__} without a message")
            else:
                tracker.adopt(bad, resource)
                fail(f"ensure() accepted the bad config {bad.config!r} and returned {resource!r}")
            after = self._live()
            if before is not None and after is not None:
                assert after == before, (
                    f"a failed ensure() left behind: {sorted(map(str, after - before))}")
            good = self._requirement("default")
            resource = await tracker.ensure(good)
            assert await self._healthy(tracker, good, resource) is True, (
                "the provider no longer works after a failed ensure()")

        self.run(self._with_provider, body)

    def test_concurrent_ensures_give_independent_resources(self) -> None:
        """Concurrent ``ensure`` calls give distinct healthy resources; releasing one leaves
        the others healthy."""
        count = self.concurrent_ensures

        async def body(provider: Any, tracker: _Tracker) -> None:
            before = self._live()
            requirements = [self._requirement("default") for _ in range(count)]
            resources: list[Any] = [None] * count

            async def ensure(index: int) -> None:
                resources[index] = await tracker.ensure(requirements[index])

            async with anyio.create_task_group() as group:
                for index in range(count):
                    group.start_soon(ensure, index)
            identities = {self.resource_identity(r) for r in resources}
            assert len(identities) == count, (
                f"{count} concurrent ensure() calls gave {len(identities)} distinct resources")
            for requirement, resource in zip(requirements, resources, strict=True):
                assert await self._healthy(tracker, requirement, resource) is True
            await tracker.release(requirements[0], resources[0])
            for requirement, resource in zip(requirements[1:], resources[1:], strict=True):
                assert await self._healthy(tracker, requirement, resource) is True, (
                    "releasing one resource broke another")
            for requirement, resource in zip(requirements[1:], resources[1:], strict=True):
                await tracker.release(requirement, resource)
            after = self._live()
            if before is not None and after is not None:
                assert after == before, f"release() left behind: {sorted(map(str, after - before))}"

        self.run(self._with_provider, body)


class _Tracker:
    """Ensures and releases through the provider; each resource is released exactly once."""

    def __init__(self, provider: Any, timeout: float) -> None:
        self.provider = provider
        self.timeout = timeout
        self.live: list[tuple[Any, Any]] = []

    def adopt(self, requirement: Any, resource: Any) -> None:
        self.live.append((requirement, resource))

    async def ensure(self, requirement: Any) -> Any:
        with anyio.fail_after(self.timeout):
            resource = await self.provider.ensure(requirement)
        self.adopt(requirement, resource)
        return resource

    async def release(self, requirement: Any, resource: Any) -> None:
        for index, (req, res) in enumerate(self.live):
            if req is requirement and res is resource:
                del self.live[index]
                break
        else:
            raise AssertionError("the suite released a resource it does not hold")
        with anyio.fail_after(self.timeout):
            await self.provider.release(requirement, resource)

    async def release_all(self) -> None:
        for requirement, resource in list(self.live):
            try:
                await self.release(requirement, resource)
            except Exception:
                pass  # cleanup after a failed test; the failure is already reported


__all__ = ["SCENARIOS", "ProviderConformance"]
