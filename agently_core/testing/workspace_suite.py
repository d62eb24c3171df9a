"""Conformance suite for :class:`~agently_core.protocols.WorkspaceBackend` plugins."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import anyio
import pytest

from ..workspace import (
    ARTIFACTS,
    CHECKPOINTS,
    DURABLE,
    EVENT_SEQUENCES,
    EVIDENCE,
    LEASES,
    LINKS,
    RANGE_READS,
    READ_ONLY_MODE,
    REQUIRED_CAPABILITIES,
    RETENTION,
    SEARCH,
    CheckpointExists,
    Lease,
    LeaseLost,
    MissingArtifact,
    ReadOnlyError,
    VersionConflict,
    WorkspaceError,
)
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

    Optional capabilities (``search``, ``links``, ``checkpoints``, ``leases``,
    ``artifacts``, ``range_reads``, ``retention``, ``event_sequences``,
    ``read_only_mode``) are tested only when ``capabilities()`` reports them; the others
    are skipped. For ``read_only_mode`` also define ``make_read_only_backend()``: the same
    store opened with ``read_only=True``. Cross-process races are in
    :class:`~agently_core.testing.WorkspaceRaceConformance`.
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

    def make_read_only_backend(self) -> Any:
        """Return the store of :meth:`make_backend` opened read-only (or an awaitable of
        it). Without it the ``read_only_mode`` test is skipped."""
        return None

    #: Seconds a short lease lives in the expiry tests.
    short_ttl: ClassVar[float] = 0.3

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

    def _run_with(self, capability: str, body: Any) -> None:
        """Run ``body`` when the backend reports ``capability``; skip the test otherwise."""

        async def guarded(backend: Any) -> None:
            if capability not in backend.capabilities():
                pytest.skip(f"the backend does not report the {capability!r} capability")
            await body(backend)

        self._run(guarded)

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

    # -- optional capabilities ------------------------------------------------------------
    def test_optional_capabilities_have_their_methods(self) -> None:
        """Each reported optional capability comes with the async methods of its protocol."""
        from .. import protocols

        methods = {
            SEARCH: protocols.WorkspaceSearch, LINKS: protocols.WorkspaceLinks,
            CHECKPOINTS: protocols.WorkspaceCheckpoints, LEASES: protocols.WorkspaceLeases,
            ARTIFACTS: protocols.WorkspaceArtifacts, RETENTION: protocols.WorkspaceRetention,
        }

        async def body(backend: Any) -> None:
            found = backend.capabilities()
            for capability, protocol in methods.items():
                if capability not in found:
                    continue
                assert isinstance(backend, protocol), (
                    f"{type(backend).__name__} reports {capability!r} but does not satisfy "
                    f"protocols.{protocol.__name__}")
                for name in protocol.__dict__:
                    if not name.startswith("_") and callable(getattr(protocol, name)):
                        assert inspect.iscoroutinefunction(getattr(backend, name)), (
                            f"{type(backend).__name__}.{name} must be async")
            if RANGE_READS in found:
                params = inspect.signature(backend.read_events).parameters
                assert "before" in params, "'range_reads' needs read_events(..., before=)"

        self._run(body)

    def test_search_finds_records_by_every_word(self) -> None:
        """``search_records`` finds records holding every query word (case-insensitive,
        also inside nested values), filters by collection, honours ``limit``, re-indexes
        on update and treats query syntax as plain words."""

        async def body(backend: Any) -> None:
            await backend.put_record("notes", "a", {"title": "Quarterly report",
                                                    "body": "Revenue grew in spring"})
            await backend.put_record("notes", "b", {"body": "spring cleaning checklist"})
            await backend.put_record("other", "c", {"text": "revenue forecast", "n": 3,
                                                    "nested": {"list": ["SPRING", 1]}})

            async def keys(query: str, **options: Any) -> list[tuple[str, str]]:
                hits = await backend.search_records(query, **options)
                return sorted((hit["collection"], hit["key"]) for hit in hits)

            assert await keys("spring") == [("notes", "a"), ("notes", "b"), ("other", "c")]
            assert await keys("Revenue SPRING") == [("notes", "a"), ("other", "c")]
            assert await keys("spring", collection="notes") == [("notes", "a"), ("notes", "b")]
            assert await keys("absent") == []
            assert await keys("") == []
            assert len(await backend.search_records("spring", limit=1)) == 1
            hit = (await backend.search_records("checklist"))[0]
            assert hit["value"] == {"body": "spring cleaning checklist"}
            assert isinstance(hit["score"], (int, float))
            for query in ('"unbalanced (paren* ^', "NOT spring", "spring OR absent",
                          "spring AND", "body:spring", "-spring", "spring*"):
                await backend.search_records(query)  # plain words, never a syntax error
            assert await keys("spring OR absent") == []  # every word must be there
            await backend.put_record("notes", "a", {"body": "autumn"})
            assert ("notes", "a") not in await keys("spring")
            assert await keys("autumn") == [("notes", "a")]

        self._run_with(SEARCH, body)

    def test_search_ranks_denser_matches_first(self) -> None:
        """A record that repeats the word ranks above one that mentions it once among many."""

        async def body(backend: Any) -> None:
            filler = " ".join(f"word{i}" for i in range(40))
            await backend.put_record("docs", "sparse", {"text": f"zebra {filler}"})
            await backend.put_record("docs", "dense", {"text": "zebra zebra zebra"})
            hits = await backend.search_records("zebra")
            assert [hit["key"] for hit in hits] == ["dense", "sparse"]
            assert hits[0]["score"] >= hits[1]["score"]

        self._run_with(SEARCH, body)

    def test_links_and_evidence(self) -> None:
        """``add_link`` is idempotent per (source, target, relation) and replaces ``data``;
        ``read_links`` reads outgoing or incoming links, optionally of one relation."""

        async def body(backend: Any) -> None:
            claim, paper, note = ("claims", "c1"), ("sources", "paper"), ("notes", "n1")
            await backend.add_link(claim, paper, EVIDENCE, {"quote": "it works", "page": 3})
            await backend.add_link(claim, note, "related")
            await backend.add_link(claim, paper, EVIDENCE, {"quote": "it works!", "page": 4})

            def key(link: dict[str, Any]) -> tuple[Any, ...]:
                return (tuple(link["source"]), tuple(link["target"]), link["relation"])

            out = sorted(await backend.read_links(claim), key=key)
            assert [key(link) for link in out] == [
                (claim, note, "related"), (claim, paper, EVIDENCE)]
            assert out[1]["data"] == {"quote": "it works!", "page": 4}
            assert out[0]["data"] == {}
            evidence = await backend.read_links(claim, relation=EVIDENCE)
            assert [key(link) for link in evidence] == [(claim, paper, EVIDENCE)]
            incoming = await backend.read_links(paper, direction="in")
            assert [key(link) for link in incoming] == [(claim, paper, EVIDENCE)]
            assert await backend.read_links(paper) == []
            assert await backend.read_links(("claims", "unknown")) == []

        self._run_with(LINKS, body)

    def test_checkpoints_freeze_a_version(self) -> None:
        """A checkpoint keeps the version it was saved at while the snapshot moves on; a
        label is immutable; ``expected_state_version`` makes saving a compare-and-set."""

        async def body(backend: Any) -> None:
            with pytest.raises(WorkspaceError):
                await backend.save_checkpoint("plan", "missing")
            first = await backend.write_snapshot("plan", {"step": 1})
            assert await backend.save_checkpoint("plan", "start") == first
            assert await backend.save_checkpoint("plan", "start") == first  # idempotent
            second = await backend.write_snapshot("plan", {"step": 2})
            with pytest.raises(CheckpointExists):
                await backend.save_checkpoint("plan", "start")
            with pytest.raises(VersionConflict):
                await backend.save_checkpoint("plan", "late", expected_state_version=first)
            assert await backend.save_checkpoint("plan", "two",
                                                 expected_state_version=second) == second
            assert await backend.read_checkpoint("plan", "start") == (first, {"step": 1})
            assert await backend.read_checkpoint("plan", "two") == (second, {"step": 2})
            assert await backend.read_checkpoint("plan", "late") is None
            assert await backend.read_checkpoint("other", "start") is None
            assert await backend.list_checkpoints("plan") == [
                {"label": "start", "state_version": first},
                {"label": "two", "state_version": second}]
            assert await backend.list_checkpoints("other") == []
            assert await backend.read_snapshot("plan") == (second, {"step": 2})

        self._run_with(CHECKPOINTS, body)

    def test_lease_claim_heartbeat_release(self) -> None:
        """One holder at a time; the token proves ownership; releasing frees the name and
        the next claim gets a higher fence; ``read_lease`` never shows the token."""

        async def body(backend: Any) -> None:
            lease = await backend.claim_lease("job", "worker-a", 30.0)
            assert isinstance(lease, Lease)
            assert (lease.name, lease.owner, lease.ttl) == ("job", "worker-a", 30.0)
            assert lease.token and isinstance(lease.fence, int) and lease.fence >= 1
            assert await backend.claim_lease("job", "worker-b", 30.0) is None
            assert await backend.claim_lease("job", "worker-a", 30.0) is None
            seen = await backend.read_lease("job")
            assert (seen.owner, seen.fence, seen.token) == ("worker-a", lease.fence, "")
            with pytest.raises(LeaseLost):
                await backend.heartbeat_lease("job", "not-the-token", 30.0)
            renewed = await backend.heartbeat_lease("job", lease.token, 60.0)
            assert (renewed.token, renewed.fence, renewed.ttl) == (lease.token, lease.fence, 60.0)
            assert renewed.expires_at >= lease.expires_at
            assert await backend.release_lease("job", "not-the-token") is False
            assert await backend.release_lease("job", lease.token) is True
            assert await backend.release_lease("job", lease.token) is False
            assert await backend.read_lease("job") is None
            with pytest.raises(LeaseLost):
                await backend.heartbeat_lease("job", lease.token, 30.0)
            again = await backend.claim_lease("job", "worker-b", 30.0)
            assert again is not None and again.fence > lease.fence
            assert again.token != lease.token
            assert await backend.claim_lease("other-job", "worker-a", 30.0) is not None

        self._run_with(LEASES, body)

    def test_expired_lease_is_reclaimable(self) -> None:
        """After its TTL a lease may be claimed by someone else (with a higher fence); the
        old token can neither heartbeat nor release it."""
        ttl = self.short_ttl

        async def body(backend: Any) -> None:
            old = await backend.claim_lease("expiring", "slow-worker", ttl)
            assert old is not None
            assert await backend.claim_lease("expiring", "fast-worker", ttl) is None
            await anyio.sleep(ttl * 1.5)
            assert await backend.read_lease("expiring") is None
            with pytest.raises(LeaseLost):
                await backend.heartbeat_lease("expiring", old.token, ttl)
            new = await backend.claim_lease("expiring", "fast-worker", 30.0)
            assert new is not None and new.fence > old.fence and new.owner == "fast-worker"
            assert await backend.release_lease("expiring", old.token) is False
            assert (await backend.read_lease("expiring")).owner == "fast-worker"

        self._run_with(LEASES, body)

    def test_concurrent_lease_claims_have_one_winner(self) -> None:
        """Claimants racing for one name: exactly one gets the lease."""
        count = self.concurrent_writers

        async def body(backend: Any) -> None:
            async def claim(name: str, index: int, won: list[Lease]) -> None:
                lease = await backend.claim_lease(name, f"w{index}", 30.0)
                if lease is not None:
                    won.append(lease)

            for round_index in range(3):
                won: list[Lease] = []
                async with anyio.create_task_group() as group:
                    for index in range(count):
                        group.start_soon(claim, f"race-{round_index}", index, won)
                assert len(won) == 1, f"{len(won)} of {count} claimants got one lease"

        self._run_with(LEASES, body)

    def test_artifacts_round_trip(self) -> None:
        """Bytes stored by content come back unchanged; the id is the SHA-256; equal
        content gives one id; an unknown id raises ``MissingArtifact``."""
        import hashlib
        import os

        async def body(backend: Any) -> None:
            big = os.urandom(3 << 20)
            ref = await backend.put_artifact(big, media_type="application/x-test")
            assert ref == {"artifact_id": "sha256:" + hashlib.sha256(big).hexdigest(),
                           "size": len(big), "media_type": "application/x-test"}
            assert await backend.read_artifact(ref["artifact_id"]) == big
            assert (await backend.put_artifact(big, media_type="application/x-test")
                    )["artifact_id"] == ref["artifact_id"]
            empty = await backend.put_artifact(b"")
            assert await backend.read_artifact(empty["artifact_id"]) == b""
            with pytest.raises(MissingArtifact):
                await backend.read_artifact("sha256:" + "0" * 64)
            with pytest.raises(WorkspaceError):
                await backend.read_artifact("../../etc/passwd")

        self._run_with(ARTIFACTS, body)

    def test_range_reads_stop_before(self) -> None:
        """``read_events(before=N)`` returns only sequences below ``N``."""

        async def body(backend: Any) -> None:
            sequences = [await backend.append_event("ranged", f"e{i}", {"i": i})
                         for i in range(8)]
            window = await backend.read_events("ranged", after=sequences[1],
                                               before=sequences[5])
            assert [e["payload"]["i"] for e in window] == [2, 3, 4]
            limited = await backend.read_events("ranged", after=0, before=sequences[5], limit=2)
            assert [e["payload"]["i"] for e in limited] == [0, 1]
            assert await backend.read_events("ranged", before=sequences[0]) == []

        self._run_with(RANGE_READS, body)

    def test_retention_prunes_without_reusing_sequences(self) -> None:
        """``prune_events(through=N)`` deletes sequences up to ``N``; new events continue
        above every sequence ever given."""

        async def body(backend: Any) -> None:
            sequences = [await backend.append_event("kept", f"e{i}", {"i": i})
                         for i in range(5)]
            assert await backend.prune_events("kept", through=sequences[2]) == 3
            assert [e["payload"]["i"] for e in await backend.read_events("kept")] == [3, 4]
            assert await backend.prune_events("kept", through=sequences[2]) == 0
            assert await backend.prune_events("kept", through=sequences[-1]) == 2
            assert await backend.read_events("kept") == []
            nxt = await backend.append_event("kept", "later", {"i": 5})
            assert nxt > sequences[-1]
            assert await backend.prune_events("never-written", through=10) == 0

        self._run_with(RETENTION, body)

    def test_event_sequences_are_dense(self) -> None:
        """Sequences are 1, 2, 3... per execution, also under concurrent appends."""
        count = self.concurrent_writers

        async def body(backend: Any) -> None:
            assert [await backend.append_event("dense", f"e{i}", {}) for i in range(3)] == [
                1, 2, 3]
            assert await backend.append_event("dense-2", "e0", {}) == 1
            got: list[int] = []

            async def append(index: int) -> None:
                got.append(await backend.append_event("dense-3", f"e{index}", {}))

            async with anyio.create_task_group() as group:
                for index in range(count * 2):
                    group.start_soon(append, index)
            assert sorted(got) == list(range(1, count * 2 + 1))

        self._run_with(EVENT_SEQUENCES, body)

    def test_read_only_mode_refuses_every_write(self) -> None:
        """The store opened read-only reads what was written and refuses every write with
        ``ReadOnlyError``, changing nothing."""

        async def check() -> None:
            backend = await self._open()
            try:
                found = backend.capabilities()
                if READ_ONLY_MODE not in found:
                    pytest.skip("the backend does not report the 'read_only_mode' capability")
                await backend.put_record("c", "k", {"v": 1})
                version = await backend.write_snapshot("s", {"v": 2})
            finally:
                await backend.aclose()
            with anyio.fail_after(self.operation_timeout):
                reader = await maybe_await(self.make_read_only_backend())
            if reader is None:
                pytest.skip(f"{type(self).__name__} reports 'read_only_mode' but does not "
                            "define make_read_only_backend()")
            try:
                assert getattr(reader, "read_only", False) is True
                durable = DURABLE in found
                writes = [
                    lambda: reader.put_record("c", "k", {"v": 9}),
                    lambda: reader.write_snapshot("s", {"v": 9}),
                    lambda: reader.write_snapshot("s", {"v": 9}, expected_state_version=version),
                    lambda: reader.append_event("x", "e", {}),
                ]
                if LINKS in found:
                    writes.append(lambda: reader.add_link(("c", "k"), ("c", "j")))
                if CHECKPOINTS in found:
                    writes.append(lambda: reader.save_checkpoint("s", "label"))
                if LEASES in found:
                    writes.append(lambda: reader.claim_lease("l", "me", 5.0))
                if ARTIFACTS in found:
                    writes.append(lambda: reader.put_artifact(b"data"))
                if RETENTION in found:
                    writes.append(lambda: reader.prune_events("x", through=5))
                for write in writes:
                    with pytest.raises(ReadOnlyError):
                        await write()
                if durable:
                    assert await reader.get_record("c", "k") == {"v": 1}
                    assert await reader.read_snapshot("s") == (version, {"v": 2})
                else:
                    assert await reader.get_record("c", "k") is None
                assert await reader.read_events("x") == []
            finally:
                await reader.aclose()

        self.run(check)

    # -- through the Workspace facade ----------------------------------------------------
    def test_facade_snapshot_data_and_latest_checkpoint(self) -> None:
        """``Workspace.put_snapshot`` (compare-and-set), ``get_data`` and
        ``latest_checkpoint`` over this backend."""
        from ..workspace import Workspace

        async def body(backend: Any) -> None:
            ws = Workspace(backend)
            assert await ws.get_data("plan") is None
            assert await ws.latest_checkpoint("plan") is None
            first = await ws.put_snapshot("plan", {"step": 1}, expected_state_version=0)
            with pytest.raises(VersionConflict):
                await ws.put_snapshot("plan", {"step": 9}, expected_state_version=0)
            assert await ws.get_data("plan") == {"step": 1}
            await ws.checkpoint("plan", "one")
            second = await ws.put_snapshot("plan", {"step": 2}, expected_state_version=first)
            await ws.checkpoint("plan", "two")
            await ws.put_snapshot("plan", {"step": 3}, expected_state_version=second)
            assert await ws.latest_checkpoint("plan") == {
                "key": "plan", "label": "two", "state_version": second, "data": {"step": 2}}
            assert await ws.get_data("plan") == {"step": 3}
            assert await ws.get_data("plan", label="one") == {"step": 1}
            assert await ws.get_data("plan", label="absent") is None

        self._run_with(CHECKPOINTS, body)

    def test_facade_ref_envelope_keeps_the_payload_behind_a_ref(self) -> None:
        """``Workspace.ref_envelope`` stores a payload as an artifact and returns a compact
        envelope (ref, preview, size); the payload comes back through the ref."""
        from ..workspace import ENVELOPE_FORMAT, Workspace

        async def body(backend: Any) -> None:
            ws = Workspace(backend)
            text = "line of output\n" * 10_000
            envelope = await ws.ref_envelope(text, preview_chars=20)
            assert envelope["format"] == ENVELOPE_FORMAT and envelope["encoding"] == "text"
            assert envelope["preview"] == text[:20] and envelope["truncated"] is True
            assert envelope["size"] == len(text.encode()) == envelope["ref"]["size"]
            assert len(str(envelope)) < 400  # compact, whatever the payload's size
            await ws.put_record("runs", "r1", {"output": envelope})
            stored = (await ws.get_record("runs", "r1"))["output"]
            assert await ws.read_envelope(stored) == text
            assert await ws.read_artifact(stored) == text.encode()
            rows = {"rows": [[i, f"name {i}"] for i in range(500)]}
            as_json = await ws.ref_envelope(rows)
            assert as_json["encoding"] == "json" and as_json["media_type"] == "application/json"
            assert await ws.read_envelope(as_json) == rows
            blob = await ws.ref_envelope(b"\x00\x01binary", media_type="image/x-test")
            assert (blob["encoding"], blob["preview"], blob["size"]) == ("bytes", "", 8)
            assert await ws.read_envelope(blob) == b"\x00\x01binary"
            short = await ws.ref_envelope("short")
            assert short["preview"] == "short" and short["truncated"] is False
            with pytest.raises(WorkspaceError, match="JSON"):
                await ws.ref_envelope({"not": object()})
            with pytest.raises(WorkspaceError, match="preview_chars"):
                await ws.ref_envelope("x", preview_chars=-1)
            with pytest.raises(WorkspaceError, match="not a ref envelope"):
                await ws.read_envelope({"artifact_id": envelope["ref"]["artifact_id"]})

        self._run_with(ARTIFACTS, body)

    def test_facade_evidence_and_runtime_events(self) -> None:
        """``Workspace.link_evidence``, ``append_runtime_event`` and bounded
        ``query_runtime_events`` over this backend."""
        from ..workspace import Workspace

        async def body(backend: Any) -> None:
            ws = Workspace(backend)
            sequences = [await ws.append_runtime_event("exec-f", f"e{i}", {"i": i})
                         for i in range(6)]
            assert await ws.append_runtime_event("exec-f", "e0", {"i": 0}) == sequences[0]
            page = await ws.query_runtime_events("exec-f", after=sequences[0], limit=2)
            assert [e["payload"]["i"] for e in page] == [1, 2]
            if RANGE_READS in backend.capabilities():
                window = await ws.query_runtime_events("exec-f", after=sequences[1],
                                                       before=sequences[4])
                assert [e["payload"]["i"] for e in window] == [2, 3]
            if LINKS in backend.capabilities():
                await ws.link_evidence(("claims", "c"), ("sources", "s"), quote="q")
                assert [link["data"] for link in await ws.evidence(("claims", "c"))] == [
                    {"quote": "q"}]

        self._run(body)

    def test_durable_execution_resume_ledger(self) -> None:
        """A durable execution over this backend records each resume request's phases
        (accepted, dispatched, completed or dispatch_failed) as RuntimeEvents carrying
        ``resume_request_id`` and ``actor``; a repeat of a completed request, here or in
        a copy loaded from the workspace, returns the first result and dispatches nothing;
        a request refused before acceptance writes nothing."""
        from ..environments import ExecutionEnvironmentManager
        from ..execution import Execution, ExecutionBusy
        from ..models import ApprovalRequest
        from ..workspace import Workspace

        async def phases(ws: Any, execution_id: str) -> list[tuple[str, str, Any]]:
            return [(e["payload"]["phase"], e["payload"]["resume_request_id"],
                     e["payload"]["actor"])
                    for e in await ws.query_runtime_events(execution_id, limit=1000)]

        async def body(backend: Any) -> None:
            ws = Workspace(backend)
            manager = ExecutionEnvironmentManager(make_plugin_manager())
            dispatched: list[str] = []

            async def resume(decision: Any) -> dict[str, Any]:
                dispatched.append(decision.decision)
                return {"done": decision.decision, "by": decision.actor}

            async def broken(decision: Any) -> Any:
                dispatched.append("broken")
                raise RuntimeError("the callback's work failed")

            def paused(resumer: Any) -> Execution:
                execution = Execution(manager, workspace=ws)
                execution.suspend([ApprovalRequest(subject_type="action", subject="ship")],
                                  resumer, state={"kind": "test"})
                return execution

            try:
                execution = paused(resume)
                await execution.save()
                out = await execution.async_continue_with(
                    "approved", resume_request_id="cb-1", actor="alice")
                assert out == {"done": "approved", "by": "alice"} and dispatched == ["approved"]
                ledger = await phases(ws, execution.id)
                assert ledger == [("accepted", "cb-1", "alice"), ("dispatched", "cb-1", "alice"),
                                  ("completed", "cb-1", "alice")]
                events = await ws.query_runtime_events(execution.id)
                assert [e["payload"]["type"] for e in events] == [
                    "execution.resume.accepted", "execution.resume.dispatched",
                    "execution.resume.completed"]
                assert events[-1]["payload"]["decision"] == "approved"

                again = await execution.async_continue_with(
                    "denied", resume_request_id="cb-1", actor="mallory")
                assert again == out and dispatched == ["approved"]
                loaded = await Execution.load(manager, ws, execution.id, owner="worker-b")
                try:
                    repeat = await loaded.async_continue_with("approved",
                                                              resume_request_id="cb-1")
                    assert repeat == out and dispatched == ["approved"]
                finally:
                    await loaded.async_close()
                assert await phases(ws, execution.id) == ledger

                failing = paused(broken)
                await failing.save()
                with pytest.raises(RuntimeError, match="callback's work failed"):
                    await failing.async_continue_with("approved", resume_request_id="cb-2",
                                                      actor="bob")
                failed = await ws.query_runtime_events(failing.id)
                assert [(e["payload"]["phase"], e["payload"]["actor"]) for e in failed] == [
                    ("accepted", "bob"), ("dispatched", "bob"), ("dispatch_failed", "bob")]
                assert "callback's work failed" in failed[-1]["payload"]["error"]

                held = paused(resume)
                await held.save()
                lease = await ws.claim_lease(f"execution:{held.id}", ttl=30, owner="elsewhere")
                with pytest.raises(ExecutionBusy):
                    await held.async_continue_with("approved", resume_request_id="cb-3")
                assert await ws.query_runtime_events(held.id) == []
                await ws.release_lease(lease)
                assert held.paused and dispatched == ["approved", "broken"]
            finally:
                await manager.aclose()

        self._run_with(LEASES, body)


__all__ = ["SAMPLE_VALUES", "WorkspaceBackendConformance"]
