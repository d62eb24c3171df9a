"""Conformance suite for :class:`~agently_core.protocols.WorkspaceBackend` plugins."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import anyio
import pytest

from ..workspace import DURABLE, REQUIRED_CAPABILITIES, VersionConflict
from ._base import ConformanceSuite, maybe_await
from .harness import make_plugin, make_plugin_manager

#: Values every backend stores and returns unchanged (JSON objects).
SAMPLE_VALUES: tuple[dict[str, Any], ...] = (
    {},
    {"text": "plain"},
    {"unicode": "ünïcödé ✓ 日本語 \U0001f600", "quote": "\"'\\", "newline": "a\nb\tc"},
    {"int": 1, "negative": -7, "big": 2**53, "float": 1.5, "true": True, "false": False,
     "null": None},
    {"nested": {"list": [1, "two", {"three": [3.0, None]}], "empty": [], "obj": {}}},
)


class WorkspaceBackendConformance(ConformanceSuite):
    """Proves a backend keeps the :class:`~agently_core.protocols.WorkspaceBackend`
    contract (spelled out in :mod:`agently_core.workspace`): records by value, versioned
    snapshots with an atomic compare-and-set (exactly one winner among concurrent writers
    that expect the same version, :class:`~agently_core.workspace.VersionConflict` for the
    others), events idempotent by ``event_id`` with increasing sequences and paged reads,
    and an idempotent ``aclose``.

    Subclass it in a test module and supply::

        class TestMyBackend(WorkspaceBackendConformance):
            def make_backend(self): return SQLiteBackend(self.tmp_path / "ws.db")

    ``make_backend()`` may be ``async``. When the backend claims the ``durable``
    capability, the suite closes it, calls ``make_backend()`` again, and expects the same
    data: store it under :attr:`tmp_path`.
    """

    __test__ = False

    #: How many tasks race in the concurrency tests.
    concurrent_writers: ClassVar[int] = 8
    #: The longest a single backend call may take.
    operation_timeout: ClassVar[float] = 30.0

    # -- what a subclass supplies --------------------------------------------------------
    def make_backend(self) -> Any:
        """Return a new backend (or an awaitable of one)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_backend()")

    # -- plumbing ------------------------------------------------------------------------
    async def _open(self) -> Any:
        with anyio.fail_after(self.operation_timeout):
            return await maybe_await(self.make_backend())

    def _run(self, body: Any) -> None:
        async def main() -> None:
            backend = await self._open()
            try:
                with anyio.fail_after(self.operation_timeout):
                    await body(backend)
            finally:
                await backend.aclose()

        self.run(main)

    # -- the contract --------------------------------------------------------------------
    def test_satisfies_protocol(self) -> None:
        """``isinstance(backend, WorkspaceBackend)`` and async methods where the protocol
        has them."""
        from ..protocols import WorkspaceBackend

        async def body(backend: Any) -> None:
            assert isinstance(backend, WorkspaceBackend), (
                f"{type(backend).__name__} does not satisfy protocols.WorkspaceBackend")
            for name in ("put_record", "get_record", "read_snapshot", "write_snapshot",
                         "append_event", "read_events", "aclose"):
                assert inspect.iscoroutinefunction(getattr(backend, name)), (
                    f"{type(backend).__name__}.{name} must be async")

        self._run(body)

    def test_capabilities(self) -> None:
        """``capabilities()`` (sync) returns a frozenset of names with the required ones."""

        async def body(backend: Any) -> None:
            found = backend.capabilities()
            assert isinstance(found, frozenset), (
                f"capabilities() must return a frozenset, got {type(found).__name__}")
            assert all(isinstance(name, str) for name in found)
            missing = REQUIRED_CAPABILITIES - found
            assert not missing, f"capabilities() lacks {sorted(missing)}"

        self._run(body)

    def test_registered_backend_is_created_by_name(self) -> None:
        """Registered through ``register_workspace_backends``, the plugin manager creates it."""
        manager = make_plugin_manager(make_plugin(
            workspace_backend={"conformance": lambda **options: self.make_backend()}))

        async def check() -> None:
            backend = await maybe_await(manager.create("workspace_backend", "conformance"))
            await backend.aclose()

        self.run(check)

    def test_records_round_trip(self) -> None:
        """What ``put_record`` stores, ``get_record`` returns; missing keys give ``None``;
        a put replaces; collections are separate."""

        async def body(backend: Any) -> None:
            assert await backend.get_record("things", "missing") is None
            for index, value in enumerate(SAMPLE_VALUES):
                await backend.put_record("things", f"k{index}", value)
            for index, value in enumerate(SAMPLE_VALUES):
                assert await backend.get_record("things", f"k{index}") == value
            await backend.put_record("things", "k1", {"text": "replaced"})
            assert await backend.get_record("things", "k1") == {"text": "replaced"}
            await backend.put_record("other", "k1", {"other": True})
            assert await backend.get_record("things", "k1") == {"text": "replaced"}
            assert await backend.get_record("other", "k1") == {"other": True}
            assert await backend.get_record("other", "k0") is None

        self._run(body)

    def test_values_are_stored_by_value(self) -> None:
        """Changing a dict after ``put_record``/``write_snapshot``, or one that was returned,
        does not change what is stored."""

        async def body(backend: Any) -> None:
            value = {"list": [1], "nested": {"a": 1}}
            await backend.put_record("c", "k", value)
            await backend.write_snapshot("s", value)
            value["list"].append(2)
            value["nested"]["a"] = 99
            got = await backend.get_record("c", "k")
            assert got == {"list": [1], "nested": {"a": 1}}
            got["list"].append(3)
            assert await backend.get_record("c", "k") == {"list": [1], "nested": {"a": 1}}
            _, snapshot = await backend.read_snapshot("s")
            assert snapshot == {"list": [1], "nested": {"a": 1}}
            snapshot["nested"]["a"] = 5
            assert (await backend.read_snapshot("s"))[1] == {"list": [1], "nested": {"a": 1}}

        self._run(body)

    def test_snapshot_versions_increase(self) -> None:
        """A missing snapshot reads ``None``; each write returns a higher version that
        ``read_snapshot`` reports with the value."""

        async def body(backend: Any) -> None:
            assert await backend.read_snapshot("state") is None
            first = await backend.write_snapshot("state", {"n": 1})
            assert isinstance(first, int) and not isinstance(first, bool) and first >= 1
            assert await backend.read_snapshot("state") == (first, {"n": 1})
            second = await backend.write_snapshot("state", {"n": 2})
            assert second > first
            assert await backend.read_snapshot("state") == (second, {"n": 2})
            other = await backend.write_snapshot("other", {"n": 0})
            assert other >= 1 and await backend.read_snapshot("state") == (second, {"n": 2})

        self._run(body)

    def test_snapshot_compare_and_set(self) -> None:
        """With ``expected_state_version`` a write succeeds only on a match (``0`` for a
        missing snapshot); otherwise ``VersionConflict`` and nothing changes."""

        async def body(backend: Any) -> None:
            with pytest.raises(VersionConflict):
                await backend.write_snapshot("cas", {"n": 0}, expected_state_version=3)
            assert await backend.read_snapshot("cas") is None
            created = await backend.write_snapshot("cas", {"n": 1}, expected_state_version=0)
            with pytest.raises(VersionConflict):
                await backend.write_snapshot("cas", {"n": 9}, expected_state_version=0)
            updated = await backend.write_snapshot("cas", {"n": 2},
                                                   expected_state_version=created)
            assert updated > created
            with pytest.raises(VersionConflict) as conflict:
                await backend.write_snapshot("cas", {"n": 9}, expected_state_version=created)
            assert str(conflict.value), "VersionConflict needs a message"
            assert await backend.read_snapshot("cas") == (updated, {"n": 2})
            unconditional = await backend.write_snapshot("cas", {"n": 3})
            assert unconditional > updated

        self._run(body)

    def test_concurrent_writers_exactly_one_wins(self) -> None:
        """Writers racing with the same expected version: exactly one wins, the rest get
        ``VersionConflict``, and the stored value is the winner's."""
        count = self.concurrent_writers

        async def race(backend: Any, expected: int) -> None:
            outcomes: dict[int, Any] = {}

            async def write(index: int) -> None:
                try:
                    outcomes[index] = await backend.write_snapshot(
                        "race", {"writer": index}, expected_state_version=expected)
                except VersionConflict as exc:
                    outcomes[index] = exc

            async with anyio.create_task_group() as group:
                for index in range(count):
                    group.start_soon(write, index)
            winners = {i: v for i, v in outcomes.items() if isinstance(v, int)}
            losers = [v for v in outcomes.values() if isinstance(v, VersionConflict)]
            assert len(winners) == 1, (
                f"{len(winners)} of {count} writers expecting version {expected} won")
            assert len(losers) == count - 1, f"unexpected outcomes: {outcomes!r}"
            (winner, version), = winners.items()
            assert version > expected
            assert await backend.read_snapshot("race") == (version, {"writer": winner})

        async def body(backend: Any) -> None:
            await race(backend, 0)  # creating the snapshot
            await race(backend, (await backend.read_snapshot("race"))[0])  # updating it

        self._run(body)

    def test_events_are_ordered_and_idempotent(self) -> None:
        """``append_event`` returns increasing sequences; the same ``event_id`` again returns
        its first sequence and adds nothing; executions are separate."""

        async def body(backend: Any) -> None:
            assert await backend.read_events("exec-1") == []
            first = await backend.append_event("exec-1", "evt-a", {"n": 1})
            second = await backend.append_event("exec-1", "evt-b", {"n": 2})
            assert isinstance(first, int) and first >= 1 and second > first
            again = await backend.append_event("exec-1", "evt-a", {"n": "changed"})
            assert again == first, "appending an event_id again must return its sequence"
            await backend.append_event("exec-2", "evt-a", {"n": "other execution"})
            events = await backend.read_events("exec-1")
            assert [e["event_id"] for e in events] == ["evt-a", "evt-b"]
            assert [e["sequence"] for e in events] == [first, second]
            assert [e["payload"] for e in events] == [{"n": 1}, {"n": 2}]
            assert all(e["execution_id"] == "exec-1" for e in events)
            other = await backend.read_events("exec-2")
            assert [(e["event_id"], e["payload"]) for e in other] == [
                ("evt-a", {"n": "other execution"})]

        self._run(body)

    def test_read_events_pages_with_after_and_limit(self) -> None:
        """``read_events(after=, limit=)`` returns at most ``limit`` events with a sequence
        above ``after``, in order, so a reader can page through them."""

        async def body(backend: Any) -> None:
            sequences = [await backend.append_event("paged", f"e{i}", {"i": i})
                         for i in range(10)]
            assert sequences == sorted(sequences) and len(set(sequences)) == 10
            page = await backend.read_events("paged", limit=3)
            assert [e["payload"]["i"] for e in page] == [0, 1, 2]
            rest = await backend.read_events("paged", after=page[-1]["sequence"])
            assert [e["payload"]["i"] for e in rest] == list(range(3, 10))
            middle = await backend.read_events("paged", after=sequences[4], limit=2)
            assert [e["payload"]["i"] for e in middle] == [5, 6]
            assert await backend.read_events("paged", after=sequences[-1]) == []
            seen, after = [], 0
            while batch := await backend.read_events("paged", after=after, limit=4):
                seen += [e["payload"]["i"] for e in batch]
                after = batch[-1]["sequence"]
            assert seen == list(range(10))

        self._run(body)

    def test_concurrent_appends(self) -> None:
        """Concurrent appends get distinct sequences and are all read back in order;
        concurrent duplicates of one ``event_id`` are stored once."""
        count = self.concurrent_writers

        async def body(backend: Any) -> None:
            results: dict[str, int] = {}

            async def append(event_id: str) -> None:
                results[event_id] = await backend.append_event("busy", event_id, {"id": event_id})

            duplicates: list[int] = []

            async def duplicate() -> None:
                duplicates.append(await backend.append_event("busy", "same", {"id": "same"}))

            async with anyio.create_task_group() as group:
                for index in range(count):
                    group.start_soon(append, f"e{index}")
                    group.start_soon(duplicate)
            assert len(set(duplicates)) == 1, f"one event_id got sequences {sorted(duplicates)}"
            assert len(set(results.values()) | set(duplicates)) == count + 1
            events = await backend.read_events("busy", limit=10 * count)
            assert len(events) == count + 1
            assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)
            by_id = {e["event_id"]: e["sequence"] for e in events}
            assert by_id == {**results, "same": duplicates[0]}

        self._run(body)

    def test_aclose_is_idempotent(self) -> None:
        """``aclose()`` twice is fine."""

        async def check() -> None:
            backend = await self._open()
            await backend.put_record("c", "k", {"v": 1})
            await backend.aclose()
            await backend.aclose()

        self.run(check)

    def test_durable_data_survives_reopening(self) -> None:
        """A ``durable`` backend opened again sees what was written before ``aclose()``."""

        async def check() -> None:
            backend = await self._open()
            try:
                if DURABLE not in backend.capabilities():
                    pytest.skip("the backend does not claim the 'durable' capability")
                await backend.put_record("c", "k", {"v": 1})
                version = await backend.write_snapshot("s", {"v": 2})
                sequence = await backend.append_event("x", "e", {"v": 3})
            finally:
                await backend.aclose()
            reopened = await self._open()
            try:
                assert await reopened.get_record("c", "k") == {"v": 1}
                assert await reopened.read_snapshot("s") == (version, {"v": 2})
                assert await reopened.append_event("x", "e", {"v": 3}) == sequence
                nxt = await reopened.append_event("x", "f", {"v": 4})
                assert nxt > sequence
            finally:
                await reopened.aclose()

        self.run(check)


__all__ = ["SAMPLE_VALUES", "WorkspaceBackendConformance"]
