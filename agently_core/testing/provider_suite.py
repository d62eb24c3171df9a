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
    a live resource that ``async_health_check`` confirms; ``release`` (called exactly once
    per resource, as the manager does) frees it, after which ``async_health_check`` answers
    ``False`` or raises; a bad configuration fails ``ensure`` with a clear error and leaves
    nothing behind; concurrent ``ensure`` calls give independent resources.

    The ``test_manager_*`` cases run the provider through an
    :class:`~agently_core.environments.ExecutionEnvironmentManager`, as a host does: two
    ensures of one key share one resource and count references; releasing one handle twice
    releases the resource once (the second release answers ``False``); an ensure cancelled
    while the provider starts leaves nothing behind and the next ensure works.

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
    #: Seconds after the provider's ``ensure`` began at which the cancellation test cancels
    #: it (``0``: at its first suspension point); one case per delay.
    start_cancel_delays: ClassVar[tuple[float, ...]] = (0.0, 0.05)

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
        from ..protocols import ProviderHandle

        handle = ProviderHandle(f"envh_conformance_{id(resource):x}", requirement, resource)
        with anyio.fail_after(self.operation_timeout):
            return await tracker.provider.async_health_check(handle)

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
                "`async_health_check` and `release`")

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
        """``ensure`` returns a resource and ``async_health_check`` on it answers ``True``."""

        async def body(provider: Any, tracker: _Tracker) -> None:
            requirement = self._requirement("default")
            resource = await tracker.ensure(requirement)
            assert resource is not None, "ensure() returned None instead of the live resource"
            healthy = await self._healthy(tracker, requirement, resource)
            assert healthy is True, (
                f"async_health_check on a fresh resource gave {healthy!r}")

        self.run(self._with_provider, body)

    def test_release_frees_the_resource(self) -> None:
        """After one ``release`` the resource is gone: ``async_health_check`` answers
        ``False`` or raises, and :meth:`live_resources` is back where it started."""

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
            assert healthy is False, f"async_health_check after release gave {healthy!r}"
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

    # -- through the manager -------------------------------------------------------------
    def _managed_requirement(self, **update: Any) -> Any:
        """A working requirement for the manager: the provider under test serves it (no
        pinned provider name), with ``update`` applied."""
        return self._requirement("default").model_copy(update={"provider": None, **update})

    async def _with_manager(self, body: Any) -> None:
        from ..environments import ExecutionEnvironmentManager

        provider = self.make_provider()
        counted = _Counted(provider, self.resource_identity)
        before = self._live()
        try:
            async with ExecutionEnvironmentManager(providers={self._kind(): counted}) as manager:
                with anyio.fail_after(self.operation_timeout * 4):
                    await body(manager, counted)
            assert not counted.double_releases(), (
                f"the provider released {counted.double_releases()} more than once")
            assert not counted.unreleased(), (
                f"resources the provider started were never released: {counted.unreleased()!r}")
            after = self._live()
            if before is not None and after is not None:
                assert after == before, (
                    f"left behind after the manager closed: {sorted(map(str, after - before))}")
        finally:
            await self.close_provider(provider)

    def test_manager_reuses_one_resource_per_key_and_counts_references(self) -> None:
        """Two ensures of one reuse key give one resource (one provider ``ensure``, health
        checked before the reuse) with two references; it is released once, when the last
        reference goes."""

        async def body(manager: Any, counted: _Counted) -> None:
            before = self._live()
            requirement = self._managed_requirement(scope="action_call")
            first = await manager.async_ensure(requirement)
            started = self._live()
            second = await manager.async_ensure(requirement)
            assert first.id == second.id and first.lease_id != second.lease_id
            assert (first.ref_count, second.ref_count) == (1, 2), (
                f"ref counts {first.ref_count}, {second.ref_count}; expected 1, 2")
            assert manager.resource(first) is manager.resource(second)
            assert counted.ensures == 1, f"two ensures of one key started {counted.ensures}"
            assert counted.health_checks >= 1, "the reuse was not health-checked"
            assert first.status == second.status == "ready"
            during = self._live()
            if started is not None and during is not None:
                assert during == started, (
                    f"the reuse started more: {sorted(map(str, during - started))}")
            assert await manager.async_release(first) is True
            assert manager.inspect(second.id).ref_count == 1
            assert counted.releases() == 0, "released while a reference was still held"
            third = await manager.async_ensure(requirement)  # the resource still works
            assert third.id == first.id and counted.ensures == 1
            assert await manager.async_release(second) is True
            assert await manager.async_release(third) is True
            assert counted.releases() == 1 and manager.list() == []
            after = self._live()
            if before is not None and after is not None:
                assert after == before, f"left behind: {sorted(map(str, after - before))}"

        self.run(self._with_manager, body)

    def test_manager_release_twice_releases_the_resource_once(self) -> None:
        """Releasing a handle a second time answers ``False`` and never calls the
        provider's ``release`` again; the same for a scope released twice."""

        async def body(manager: Any, counted: _Counted) -> None:
            handle = await manager.async_ensure(self._managed_requirement(scope="action_call"))
            assert await manager.async_release(handle) is True
            assert await manager.async_release(handle) is False
            assert await manager.async_release(handle.lease_id) is False
            assert await manager.async_release(handle.id) is False
            assert counted.releases() == 1

            owned = self._managed_requirement(scope="session", owner_id="conformance")
            pinned = await manager.async_ensure(owned)
            assert pinned.ref_count == 2, "a session resource holds the caller's and the owner's"
            assert await manager.async_release(pinned) is True
            assert await manager.async_release(pinned) is False
            assert counted.releases() == 1, "released while its owner still held it"
            assert await manager.async_release_scope("session", "conformance") == 1
            assert await manager.async_release_scope("session", "conformance") == 0
            assert counted.releases() == 2 and manager.list() == []

        self.run(self._with_manager, body)

    def test_manager_ensure_cancelled_while_starting_leaks_nothing(self) -> None:
        """An ensure cancelled while the provider's ``ensure`` runs leaves no resource
        behind (what the provider had started is released, or was never made) and no
        reference in the manager; the next ensure of the same key works."""
        delays = self.start_cancel_delays

        async def body(manager: Any, counted: _Counted) -> None:
            before = self._live()
            requirement = self._managed_requirement(scope="action_call")
            for delay in delays:
                counted.entered = anyio.Event()
                got: list[Any] = []

                async def attempt(got: list[Any]) -> None:
                    got.append(await manager.async_ensure(requirement))

                async with anyio.create_task_group() as group:
                    group.start_soon(attempt, got)
                    await counted.entered.wait()
                    if delay:
                        await anyio.sleep(delay)
                    group.cancel_scope.cancel()
                for handle in got:  # it finished before the cancellation reached it
                    assert await manager.async_release(handle) is True
                assert manager.list() == [], f"a cancelled ensure left {manager.list()!r}"
                assert not counted.unreleased(), (
                    f"cancelled {delay}s into start, the provider's resource was never "
                    f"released: {counted.unreleased()!r}")
                after = self._live()
                if before is not None and after is not None:
                    assert after == before, (
                        f"cancelled {delay}s into start, left behind: "
                        f"{sorted(map(str, after - before))}")
            handle = await manager.async_ensure(requirement)
            assert handle.status == "ready"
            resource = manager.resource(handle)
            assert await self._healthy(_Tracker(counted.provider, self.operation_timeout),
                                       requirement, resource) is True
            assert await manager.async_release(handle) is True

        self.run(self._with_manager, body)


def descendant_processes() -> set[tuple[int, bytes]]:
    """``(pid, command line)`` of every live (not zombie) process descended from this one,
    read from ``/proc`` (Linux): a ready-made :meth:`ProviderConformance.live_resources`
    for providers whose resources are processes. Empty where ``/proc`` is missing."""
    import os
    from pathlib import Path

    parents: dict[int, int] = {}
    lines: dict[int, bytes] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        if state != b"Z":
            parents[int(entry)] = int(ppid)
            lines[int(entry)] = cmdline.replace(b"\0", b" ").strip()
    me, found = os.getpid(), set()
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor != me:
            ancestor = parents.get(ancestor)
        if ancestor == me:
            found.add((pid, lines[pid]))
    return found


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


class _Counted:
    """The provider under test as the manager sees it, counting every call it gets."""

    def __init__(self, provider: Any, identity: Any) -> None:
        self.provider = provider
        self.kind = provider.kind
        self.name = getattr(provider, "name", type(provider).__name__)
        self.identity = identity
        self.started: list[Any] = []
        self.released: dict[Hashable, int] = {}
        self.ensures = 0
        self.health_checks = 0
        self.entered = anyio.Event()

    async def ensure(self, requirement: Any) -> Any:
        self.ensures += 1
        self.entered.set()
        resource = await self.provider.ensure(requirement)
        self.started.append(resource)
        return resource

    async def async_health_check(self, handle: Any) -> bool:
        self.health_checks += 1
        return await self.provider.async_health_check(handle)

    async def release(self, requirement: Any, resource: Any) -> None:
        key = self.identity(resource)
        self.released[key] = self.released.get(key, 0) + 1
        await self.provider.release(requirement, resource)

    def releases(self) -> int:
        return sum(self.released.values())

    def unreleased(self) -> list[Any]:
        return [r for r in self.started if self.identity(r) not in self.released]

    def double_releases(self) -> list[Any]:
        return [key for key, count in self.released.items() if count > 1]


__all__ = ["SCENARIOS", "ProviderConformance", "descendant_processes"]
