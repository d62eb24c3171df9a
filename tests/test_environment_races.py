"""The manager under concurrency, cancellation and failure (issue 3, points 3 and 9).

1,000 concurrent ensures of one key give one resource, one provider release and a ref
count back to 0; cancelled ensures (waiting, or creating) leak nothing; releases racing
reuses never hand out a released resource; and hypothesis drives random programs of
ensure, release, double release, cancellation, start failure, health failure and
release_scope - concurrently, and sequentially against an exact reference-count model -
asserting that nothing is ever released twice and that nothing outlives its references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from agently_core.environments import ExecutionEnvironmentManager
from agently_core.errors import EnvironmentStartError, ManagerClosedError
from agently_core.models import EnvironmentHandle, EnvironmentRequirement
from agently_core.testing.memory_provider import MemoryProvider

N = 1000


def req(**fields: Any) -> EnvironmentRequirement:
    fields.setdefault("kind", "memory")
    return EnvironmentRequirement(**fields)


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
async def manager(provider: MemoryProvider):
    mgr = ExecutionEnvironmentManager(providers={"memory": provider})
    yield mgr
    await mgr.aclose()
    assert provider.live == []
    assert provider.double_releases == []


def released_events(manager: ExecutionEnvironmentManager) -> list[Any]:
    seen: list[Any] = []
    manager.events.subscribe(seen.append, "execution_environment.released")
    return seen


async def ensure_many(manager: ExecutionEnvironmentManager, requirement: Any, n: int
                      ) -> list[EnvironmentHandle]:
    handles: list[EnvironmentHandle] = []

    async def one() -> None:
        handle = await manager.async_ensure(requirement)
        # never handed a resource that is already released
        assert manager.resource(handle).released == 0
        handles.append(handle)

    async with anyio.create_task_group() as group:
        for _ in range(n):
            group.start_soon(one)
    return handles


async def release_all(manager: ExecutionEnvironmentManager, handles: list[EnvironmentHandle]
                      ) -> list[bool]:
    results: list[bool] = []

    async def one(handle: EnvironmentHandle) -> None:
        results.append(await manager.async_release(handle))

    async with anyio.create_task_group() as group:
        for handle in handles:
            group.start_soon(one, handle)
    return results


# -- 1,000 concurrent ensures of one key ---------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize("requirement", [
    pytest.param({"owner_id": "call-1"}, id="action_call-owner"),
    pytest.param({"reuse_key": "shared"}, id="reuse_key"),
    pytest.param({"owner_id": "call-1", "config": {"start_delay": 0.02}}, id="slow-start"),
    pytest.param({"reuse_key": "shared", "config": {"start_delay": 0.02}}, id="slow-reuse_key"),
])
async def test_thousand_concurrent_ensures_one_resource(manager, provider, requirement) -> None:
    released = released_events(manager)
    requirement = req(**requirement)
    handles = await ensure_many(manager, requirement, N)

    assert len(handles) == N
    assert len({h.id for h in handles}) == 1
    assert len({h.lease_id for h in handles}) == N
    assert len(provider.started) == 1
    assert manager.inspect(handles[0].id).ref_count == N
    assert [h.ref_count for h in manager.list()] == [N]

    results = await release_all(manager, handles)
    assert results == [True] * N
    assert len(provider.released) == 1
    assert provider.live == [] and provider.double_releases == []
    assert manager.list() == []
    [event] = released
    assert event.payload["ref_count"] == 0
    assert await release_all(manager, handles) == [False] * N  # all again: all no-ops
    assert len(provider.released) == 1


@pytest.mark.anyio
async def test_thousand_concurrent_ensures_of_an_owned_scope(manager, provider) -> None:
    requirement = req(scope="request", owner_id="r1", config={"start_delay": 0.01})
    handles = await ensure_many(manager, requirement, N)
    assert len({h.id for h in handles}) == 1 and len(provider.started) == 1
    assert manager.inspect(handles[0].id).ref_count == N + 1  # plus the owner's pin
    assert await release_all(manager, handles) == [True] * N
    assert manager.inspect(handles[0].id).ref_count == 1
    assert provider.released == []
    assert await manager.async_release_scope("request", "r1") == 1
    assert len(provider.released) == 1
    assert manager.list() == []


@pytest.mark.anyio
async def test_concurrent_ensures_of_many_keys(manager, provider) -> None:
    requirements = [req(owner_id=f"call-{i}", config={"start_delay": 0.005}) for i in range(10)]
    handles: list[EnvironmentHandle] = []

    async def one(requirement: EnvironmentRequirement) -> None:
        handles.append(await manager.async_ensure(requirement))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            for requirement in requirements:
                group.start_soon(one, requirement)
    assert len({h.id for h in handles}) == 10
    assert len(provider.started) == 10
    assert await release_all(manager, handles) == [True] * 500
    assert len(provider.released) == 10
    assert manager.list() == [] and provider.live == []


# -- cancellation ----------------------------------------------------------------------
class GatedProvider(MemoryProvider):
    """Starts (and, once armed, health checks) wait on gates the test opens: every
    interleaving below is forced, not timed."""

    def __init__(self) -> None:
        super().__init__()
        self.start_gate = anyio.Event()
        self.health_gate: anyio.Event | None = None

    async def ensure(self, requirement: Any) -> Any:
        await self.start_gate.wait()
        return await super().ensure(requirement)

    async def async_health_check(self, handle: Any) -> bool:
        if self.health_gate is not None:
            await self.health_gate.wait()
        return await super().async_health_check(handle)


@pytest.mark.anyio
async def test_cancelled_waiters_leak_nothing() -> None:
    """Ensures cancelled while they wait on a start in progress take no reference."""
    provider = GatedProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    requirement = req(owner_id="call-1")
    handles: list[EnvironmentHandle] = []
    scopes: list[anyio.CancelScope] = []

    async def patient() -> None:
        handles.append(await manager.async_ensure(requirement))

    async def impatient() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            handles.append(await manager.async_ensure(requirement))

    async with anyio.create_task_group() as group:
        group.start_soon(patient)  # the creator
        await anyio.wait_all_tasks_blocked()  # inside provider.ensure
        for i in range(200):
            group.start_soon(impatient if i % 2 else patient)
        await anyio.wait_all_tasks_blocked()  # all 200 wait on the slot
        for scope in scopes:
            scope.cancel()
        await anyio.wait_all_tasks_blocked()
        provider.start_gate.set()
    assert sum(scope.cancelled_caught for scope in scopes) == 100
    assert len(handles) == 101
    assert len(provider.started) == 1
    assert manager.inspect(handles[0].id).ref_count == 101  # exactly the survivors
    assert await release_all(manager, handles) == [True] * 101
    assert len(provider.released) == 1
    assert manager.list() == [] and provider.live == []
    await manager.aclose()


@pytest.mark.anyio
async def test_cancelled_creator_leaks_nothing_and_waiters_carry_on() -> None:
    """The task that starts the resource is cancelled inside the provider's start:
    nothing is registered, and the tasks waiting for the same key start a fresh one."""
    provider = GatedProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    seen: list[Any] = []
    manager.events.subscribe(seen.append)
    requirement = req(reuse_key="k")
    handles: list[EnvironmentHandle] = []
    creator_scope = anyio.CancelScope()

    async def creator() -> None:
        with creator_scope:
            handles.append(await manager.async_ensure(requirement))

    async def waiter() -> None:
        handles.append(await manager.async_ensure(requirement))

    async with anyio.create_task_group() as group:
        group.start_soon(creator)
        await anyio.wait_all_tasks_blocked()  # the creator holds the slot, in provider.ensure
        for _ in range(100):
            group.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        creator_scope.cancel()
        await anyio.wait_all_tasks_blocked()  # a waiter has taken over the start
        provider.start_gate.set()
    assert creator_scope.cancelled_caught
    assert len(handles) == 100
    assert len({h.id for h in handles}) == 1
    assert len(provider.started) == 1  # the cancelled start made nothing
    assert manager.inspect(handles[0].id).ref_count == 100
    failed = [e for e in seen if e.type == "execution_environment.failed"]
    assert len(failed) == 1 and "Cancelled" in failed[0].payload["error"]
    assert await release_all(manager, handles) == [True] * 100
    assert len(provider.released) == 1
    assert manager.list() == [] and provider.live == []
    await manager.aclose()


@pytest.mark.anyio
async def test_cancelled_creator_of_an_owned_scope_leaves_no_pin(manager, provider) -> None:
    requirement = req(scope="session", owner_id="s1", config={"start_delay": 0.02})
    with anyio.move_on_after(0.005):
        await manager.async_ensure(requirement)
    assert manager.list() == [] and provider.started == []
    assert await manager.async_release_scope("session", "s1") == 0
    handle = await manager.async_ensure(requirement)
    assert manager.inspect(handle.id).ref_count == 2
    await manager.async_release(handle)
    assert await manager.async_release_scope("session", "s1") == 1
    assert provider.live == [] and provider.double_releases == []


@pytest.mark.anyio
async def test_cancelling_everyone_during_start_leaks_nothing(manager, provider) -> None:
    requirement = req(owner_id="call-1", config={"start_delay": 0.02})
    got: list[EnvironmentHandle] = []
    with anyio.move_on_after(0.005):
        async with anyio.create_task_group() as group:
            for _ in range(100):
                group.start_soon(lambda: _append(got, manager.async_ensure(requirement)))
    assert got == []
    assert provider.started == [] and manager.list() == []
    # and the key is not poisoned
    handle = await manager.async_ensure(requirement)
    assert await manager.async_release(handle)
    assert len(provider.released) == 1


async def _append(target: list[Any], awaitable: Any) -> None:
    target.append(await awaitable)


@pytest.mark.anyio
async def test_failed_start_under_contention(manager, provider) -> None:
    """The creator's start fails: it gets the error, the waiters start afresh."""
    requirement = req(owner_id="call-1", config={"start_delay": 0.01})
    provider.fail_next_starts = 1
    handles: list[EnvironmentHandle] = []
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            handles.append(await manager.async_ensure(requirement))
        except EnvironmentStartError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(one)
    assert len(errors) == 1 and len(handles) == 99
    assert len(provider.started) == 1
    assert await release_all(manager, handles) == [True] * 99
    assert manager.list() == [] and provider.live == []


# -- release racing reuse --------------------------------------------------------------
class SlowProvider(MemoryProvider):
    """Release and health check take time: wide windows for races."""

    def __init__(self, release_delay: float = 0.002, health_delay: float = 0.001) -> None:
        super().__init__()
        self.release_delay = release_delay
        self.health_delay = health_delay

    async def async_health_check(self, handle: Any) -> bool:
        await anyio.sleep(self.health_delay)
        return await super().async_health_check(handle)

    async def release(self, requirement: Any, resource: Any) -> None:
        await anyio.sleep(self.release_delay)
        await super().release(requirement, resource)


@pytest.mark.anyio
async def test_release_racing_reuse_never_hands_out_a_released_resource() -> None:
    provider = SlowProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    requirement = req(owner_id="call-1")
    outcomes: list[bool] = []

    async def cycle(i: int) -> None:
        for _ in range(5):
            handle = await manager.async_ensure(requirement)
            assert manager.resource(handle).released == 0
            await anyio.sleep(0.0005 * (i % 3))
            outcomes.append(await manager.async_release(handle))

    async with anyio.create_task_group() as group:
        for i in range(40):
            group.start_soon(cycle, i)
    assert outcomes == [True] * 200
    assert manager.list() == []
    assert provider.live == [] and provider.double_releases == []
    assert len(provider.started) == len(provider.released)
    await manager.aclose()


@pytest.mark.anyio
async def test_last_release_racing_a_new_ensure() -> None:
    """The last reference goes while a new ensure of the key arrives: the new ensure gets
    a live resource (the old one, or a fresh one), never the one being released."""
    provider = SlowProvider(release_delay=0.01)
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    requirement = req(owner_id="call-1")
    first = await manager.async_ensure(requirement)
    fresh: list[EnvironmentHandle] = []

    async def ensure_later() -> None:
        await anyio.sleep(0.002)  # during the provider's release
        handle = await manager.async_ensure(requirement)
        assert manager.resource(handle).released == 0
        fresh.append(handle)

    async with anyio.create_task_group() as group:
        group.start_soon(ensure_later)
        assert await manager.async_release(first) is True
    assert len(provider.started) == 2 and len(provider.released) == 1
    assert await manager.async_release(fresh[0]) is True
    assert provider.live == [] and provider.double_releases == []
    assert manager.list() == []
    await manager.aclose()


@pytest.mark.anyio
async def test_release_scope_racing_ensures() -> None:
    provider = SlowProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    requirement = req(scope="session", owner_id="s1")
    handles: list[EnvironmentHandle] = []

    async def ensurer() -> None:
        for _ in range(10):
            handle = await manager.async_ensure(requirement)
            assert manager.resource(handle).released == 0
            handles.append(handle)
            await anyio.sleep(0)

    async def scoper() -> None:
        for _ in range(10):
            await manager.async_release_scope("session", "s1")
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(ensurer)
        group.start_soon(scoper)
    await release_all(manager, handles)
    await manager.async_release_scope("session", "s1")
    assert manager.list() == []
    assert provider.live == [] and provider.double_releases == []
    await manager.aclose()


@pytest.mark.anyio
async def test_aclose_racing_ensures_and_releases() -> None:
    provider = SlowProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    closed_errors = 0

    async def user(i: int) -> None:
        nonlocal closed_errors
        try:
            handle = await manager.async_ensure(req(owner_id=f"c{i % 5}"))
            await anyio.sleep(0.001)
            await manager.async_release(handle)
        except ManagerClosedError:
            closed_errors += 1

    async with anyio.create_task_group() as group:
        for i in range(50):
            group.start_soon(user, i)
        await anyio.sleep(0.002)
        await manager.aclose()
    assert manager.list() == []
    assert provider.live == [] and provider.double_releases == []


# -- bugs found by trying to break it ---------------------------------------------------
@pytest.mark.anyio
async def test_aclose_during_a_failing_start_leaks_nothing() -> None:
    provider = GatedProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    requirement = req(scope="global")
    provider.fail_next_starts = 1
    outcomes: list[Any] = []

    async def one() -> None:
        try:
            handle = await manager.async_ensure(requirement)
            outcomes.append(handle)
            await manager.async_release(handle)
        except (EnvironmentStartError, ManagerClosedError) as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(one)  # the creator: inside provider.ensure, its start will fail
        await anyio.wait_all_tasks_blocked()
        group.start_soon(one)  # waits on the creator's slot, then retries
        await anyio.wait_all_tasks_blocked()
        group.start_soon(manager.aclose)  # closed; waits for the slot
        await anyio.wait_all_tasks_blocked()
        provider.start_gate.set()
    assert manager.closed
    assert manager.list() == []
    assert provider.live == []


@pytest.mark.anyio
async def test_concurrent_releases_by_handle_id_each_drop_a_reference() -> None:
    provider = GatedProvider()
    provider.start_gate.set()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    requirement = req(owner_id="call-1")
    first = await manager.async_ensure(requirement)
    await manager.async_ensure(requirement)
    provider.health_gate = anyio.Event()
    results: list[bool] = []
    third: list[EnvironmentHandle] = []

    async def release_by_id() -> None:
        results.append(await manager.async_release(first.id))

    async with anyio.create_task_group() as group:
        group.start_soon(_append, third, manager.async_ensure(requirement))
        await anyio.wait_all_tasks_blocked()  # that ensure holds the lock, in async_health_check
        group.start_soon(release_by_id)
        group.start_soon(release_by_id)
        await anyio.wait_all_tasks_blocked()
        provider.health_gate.set()
    assert results == [True, True]
    assert manager.inspect(first.id).ref_count == 1  # three ensures, two releases
    await manager.aclose()


# -- hypothesis: random concurrent programs ----------------------------------------------
#: The keys a program works on: (requirement fields, owner scope to release or None).
KEYS: list[tuple[dict[str, Any], tuple[str, str] | None]] = [
    ({"owner_id": "k0"}, None),
    ({"reuse_key": "k1", "config": {"start_delay": 0.002}}, None),
    ({"scope": "request", "owner_id": "r2", "config": {"start_delay": 0.001}},
     ("request", "r2")),
    ({"scope": "session", "owner_id": "s3"}, ("session", "s3")),
    ({"scope": "global", "config": {"start_delay": 0.0005}}, None),
]
ACTION_CALL_KEYS = (0, 1)
key_index = st.integers(0, len(KEYS) - 1)
offset = st.sampled_from([0.0, 0.0, 0.0005, 0.001, 0.002])

operation = st.one_of(
    st.tuples(st.just("ensure"), key_index, offset),
    # cancelled after a number of event-loop iterations (int: walks every checkpoint of
    # ensure deterministically) or after a time (float: lands inside a slow start)
    st.tuples(st.just("cancel_ensure"), key_index, offset,
              st.one_of(st.integers(0, 8), st.sampled_from([0.0005, 0.001, 0.003]))),
    st.tuples(st.just("release"), st.integers(0, 63), offset),
    st.tuples(st.just("release_twice"), st.integers(0, 63), offset),
    st.tuples(st.just("fail_next_start"), offset),
    st.tuples(st.just("unhealthy"), key_index, offset),
    st.tuples(st.just("release_scope"), st.sampled_from([2, 3]), offset),
)


@dataclass
class _Ensure:
    key: int
    done: anyio.Event = field(default_factory=anyio.Event)
    handle: EnvironmentHandle | None = None
    true_releases: int = 0


async def _run_program(program: list[tuple[Any, ...]]) -> None:
    provider = MemoryProvider()
    manager = ExecutionEnvironmentManager(providers={"memory": provider})
    requirements = [req(**fields) for fields, _ in KEYS]
    ensures: list[_Ensure] = []

    async def cancel_after(scope: anyio.CancelScope, loops: int) -> None:
        for _ in range(loops):
            await anyio.sleep(0)
        scope.cancel()

    async def ensure(slot: _Ensure, delay: float, cancel: int | float | None) -> None:
        try:
            await anyio.sleep(delay)
            with anyio.CancelScope() as scope:
                if isinstance(cancel, int):
                    group.start_soon(cancel_after, scope, cancel)
                elif cancel is not None:
                    scope.deadline = anyio.current_time() + cancel
                try:
                    handle = await manager.async_ensure(requirements[slot.key])
                except EnvironmentStartError:
                    return
                assert manager.resource(handle).released == 0
                slot.handle = handle
        finally:
            slot.done.set()

    async def release(slot: _Ensure, delay: float, times: int) -> None:
        await anyio.sleep(delay)
        await slot.done.wait()
        if slot.handle is None:
            return
        for _ in range(times):
            if await manager.async_release(slot.handle):
                slot.true_releases += 1

    async def later(delay: float, fn: Any, *args: Any) -> None:
        await anyio.sleep(delay)
        result = fn(*args)
        if hasattr(result, "__await__"):
            await result

    def make_unhealthy(key: int) -> None:
        for resource in provider.live:
            if resource.requirement_id == requirements[key].id:
                provider.make_unhealthy(resource)

    def fail_next_start() -> None:
        provider.fail_next_starts += 1

    async with anyio.create_task_group() as group:
        for op in program:
            name = op[0]
            if name in ("ensure", "cancel_ensure"):
                slot = _Ensure(op[1])
                ensures.append(slot)
                group.start_soon(ensure, slot, op[2], op[3] if name == "cancel_ensure" else None)
            elif name in ("release", "release_twice"):
                if ensures:
                    group.start_soon(release, ensures[op[1] % len(ensures)], op[2],
                                     1 if name == "release" else 2)
            elif name == "fail_next_start":
                group.start_soon(later, op[1], fail_next_start)
            elif name == "unhealthy":
                group.start_soon(later, op[2], make_unhealthy, op[1])
            else:
                scope, owner = KEYS[op[1]][1]  # type: ignore[misc]
                group.start_soon(later, op[2], manager.async_release_scope, scope, owner)

    # a lease is released at most once, whatever the program did
    assert all(slot.true_releases <= 1 for slot in ensures)
    assert provider.double_releases == []

    # release everything left: every action_call resource goes with its last lease
    provider.fail_next_starts = 0
    for slot in ensures:
        if slot.handle is not None and await manager.async_release(slot.handle):
            slot.true_releases += 1
    assert all(slot.true_releases <= 1 for slot in ensures)
    action_call_ids = {requirements[i].id for i in ACTION_CALL_KEYS}
    assert [r for r in provider.live if r.requirement_id in action_call_ids] == []
    assert manager.list("action_call") == []

    # the owned scopes go with their owners, the global scope with the manager
    for _, owner in KEYS:
        if owner is not None:
            await manager.async_release_scope(*owner)
    assert [h.scope for h in manager.list()] in ([], ["global"])
    await manager.aclose()
    assert manager.list() == []
    assert provider.live == []
    assert provider.double_releases == []
    assert len(provider.released) == len(provider.started)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(operation, min_size=1, max_size=30))
def test_random_concurrent_programs_never_leak_or_double_release(program) -> None:
    anyio.run(_run_program, program)


# -- hypothesis: sequential programs against an exact reference-count model -----------------
class ManagerModel(RuleBasedStateMachine):
    """Every operation, one at a time through the synchronous API, checked against a model
    of the exact reference counts and live resources."""

    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.provider = MemoryProvider()
        self.manager = ExecutionEnvironmentManager(providers={"memory": self.provider})
        # sequential: the keys of the concurrent test without their start delays
        self.requirements = [req(**{**fields, "config": {}}) for fields, _ in KEYS]
        # per key: the live leases the model expects, and whether the owner pin is held
        self.expected: list[set[str]] = [set() for _ in KEYS]
        self.pinned = [False] * len(KEYS)
        self.live = [False] * len(KEYS)
        self.fail_pending = 0

    def _drop_key(self, key: int) -> None:
        self.expected[key].clear()
        self.pinned[key] = False
        self.live[key] = False

    def _resource(self, key: int) -> Any:
        [handle] = [h for h in self.manager.list()
                    if h.requirement_id == self.requirements[key].id]
        return self.manager.resource(handle.id)

    @rule(target=leases, key=key_index)
    def ensure(self, key: int) -> Any:
        needs_start = not self.live[key] or not self._resource(key).healthy
        if needs_start and self.fail_pending:
            self.fail_pending -= 1
            try:
                self.manager.ensure(self.requirements[key])
            except EnvironmentStartError:
                pass
            else:
                raise AssertionError("the injected start failure did not happen")
            self._drop_key(key)  # a failed restart takes the whole slot with it
            return (key, None)
        handle = self.manager.ensure(self.requirements[key])
        assert self.manager.resource(handle).released == 0
        self.live[key] = True
        self.expected[key].add(handle.lease_id)
        if KEYS[key][0].get("scope", "action_call") != "action_call":
            self.pinned[key] = True
        return (key, handle.lease_id)

    @rule(lease=consumes(leases))
    def release(self, lease: tuple[int, str | None]) -> None:
        key, lease_id = lease
        if lease_id is None:
            return
        expected = lease_id in self.expected[key]
        assert self.manager.release(lease_id) is expected
        self.expected[key].discard(lease_id)
        if expected and not self.expected[key] and not self.pinned[key]:
            self.live[key] = False

    @rule(lease=leases)
    def release_twice(self, lease: tuple[int, str | None]) -> None:
        self.release(lease)
        lease_id = lease[1]
        if lease_id is not None:
            assert self.manager.release(lease_id) is False

    @rule(key=st.sampled_from([2, 3]))
    def release_scope(self, key: int) -> None:
        scope, owner = KEYS[key][1]  # type: ignore[misc]
        assert self.manager.release_scope(scope, owner) == int(self.live[key])
        self._drop_key(key)

    @rule(key=key_index)
    def make_unhealthy(self, key: int) -> None:
        if self.live[key]:
            self.provider.make_unhealthy(self._resource(key))

    @rule()
    def fail_next_start(self) -> None:
        self.provider.fail_next_starts += 1
        self.fail_pending += 1

    @invariant()
    def counts_are_exact(self) -> None:
        live = {h.requirement_id: h for h in self.manager.list()}
        for key, requirement in enumerate(self.requirements):
            handle = live.get(requirement.id)
            assert (handle is not None) == self.live[key]
            if handle is not None:
                assert handle.ref_count == len(self.expected[key]) + self.pinned[key]
        assert len(self.provider.live) == sum(self.live)
        assert self.provider.double_releases == []

    def teardown(self) -> None:
        self.manager.close()
        assert self.manager.list() == []
        assert self.provider.live == []
        assert self.provider.double_releases == []
        assert len(self.provider.released) == len(self.provider.started)


ManagerModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_sequential_programs_match_the_reference_count_model = ManagerModel.TestCase
