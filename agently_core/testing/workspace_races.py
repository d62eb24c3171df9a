"""Cross-process race suite for durable, ``multi_process`` workspace backends."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from typing import Any, ClassVar

import anyio
import pytest

from ..workspace import EVENT_SEQUENCES, LEASES, MULTI_PROCESS, LeaseLost
from ._base import ConformanceSuite, maybe_await
from .race_workers import BackendSpec, crash_value, open_backend, run_worker


class WorkspaceRaceConformance(ConformanceSuite):
    """Tries to break a backend with real processes sharing one store:

    * ``processes`` processes x ``cas_writes`` read-then-compare-and-set increments: exactly
      one winner per expected version, and the final count equals the number of wins (no
      lost update);
    * ``lease_rounds`` rounds of every process claiming one fresh lease at once: exactly one
      owner per round; then churn on one name: every successful claim has its own fence;
    * a lease holder killed with SIGKILL: nobody else gets the lease before its TTL, then
      one claim takes it over with a higher fence and the dead holder's token is refused;
    * concurrent event appends, some with the same ids in every process: one sequence per
      id, sequences unique (and dense when ``event_sequences`` is reported);
    * a writer of large values killed with SIGKILL ``kills`` times: every time the store
      opens, its values are whole and consistent, and the next write succeeds.

    Subclass it and supply :meth:`backend_spec`: how a *new process* reopens the same
    store, as ``("package.module:factory", {options})`` (options must pickle)::

        class TestLocalRaces(WorkspaceRaceConformance):
            def backend_spec(self):
                return ("agently_core_workspace_local.backend:LocalWorkspaceBackend",
                        {"path": str(self.tmp_path / "ws")})

    Override :meth:`verify_store` to add a backend's own consistency check (such as
    SQLite's ``PRAGMA integrity_check``) after each kill. Workers start with the
    ``spawn`` method, so nothing is inherited from the test process.
    """

    __test__ = False

    processes: ClassVar[int] = 4
    cas_writes: ClassVar[int] = 500
    lease_rounds: ClassVar[int] = 30
    lease_churn: ClassVar[int] = 100
    lease_ttl: ClassVar[float] = 1.5
    event_appends: ClassVar[int] = 100
    kills: ClassVar[int] = 3
    crash_blob_bytes: ClassVar[int] = 256 * 1024
    process_timeout: ClassVar[float] = 120.0

    # -- what a subclass supplies --------------------------------------------------------
    def backend_spec(self) -> BackendSpec:
        """``("module:factory", {options})`` that opens the store under test in any process."""
        raise NotImplementedError(f"{type(self).__name__} must define backend_spec()")

    async def verify_store(self, backend: Any) -> None:
        """Extra checks after a writer was killed (the backend is open). Default: none."""

    # -- plumbing ------------------------------------------------------------------------
    def _open(self) -> Any:
        return open_backend(self.backend_spec())

    def _prepare(self) -> frozenset[str]:
        """Create the store once in this process (before workers race to create it) and
        return its capabilities."""

        async def create() -> frozenset[str]:
            backend = await self._open()
            try:
                return frozenset(backend.capabilities())
            finally:
                await backend.aclose()

        found = self.run(create)
        if MULTI_PROCESS not in found:
            pytest.skip("the backend does not report the 'multi_process' capability")
        return found

    def _race(self, task: str, params: dict[str, Any], count: int | None = None) -> list[Any]:
        """Run ``task`` in ``count`` processes at once; their results by index."""
        count = count or self.processes
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(count)
        results = context.Queue()
        params = {"timeout": self.process_timeout, **params}
        workers = [context.Process(target=run_worker, daemon=True,
                                   args=(task, self.backend_spec(), index, barrier, results,
                                         params)) for index in range(count)]
        for worker in workers:
            worker.start()
        try:
            found: dict[int, Any] = {}
            for _ in range(count):
                index, status, result = self._receive(results, workers)
                if status != "ok":
                    pytest.fail(f"worker {index} of {task} failed:\n{result}", pytrace=False)
                found[index] = result
            return [found[index] for index in range(count)]
        finally:
            for worker in workers:
                worker.join(10)
                if worker.is_alive():
                    worker.kill()
                    worker.join(5)

    def _spawn_one(self, task: str, params: dict[str, Any]) -> tuple[Any, Any]:
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        params = {"timeout": self.process_timeout, **params}
        barrier = context.Barrier(1)
        worker = context.Process(target=run_worker, daemon=True,
                                 args=(task, self.backend_spec(), 0, barrier, results, params))
        worker.start()
        worker.keep = (barrier, results)  # alive until the child has unpickled them
        return worker, results

    def _receive(self, results: Any, workers: list[Any]) -> tuple[int, str, Any]:
        """The next report, failing early when every worker died without one."""
        import queue

        deadline = time.monotonic() + self.process_timeout
        while time.monotonic() < deadline:
            try:
                return results.get(timeout=0.5)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers):
                    try:
                        return results.get(timeout=0.5)
                    except queue.Empty:
                        codes = [worker.exitcode for worker in workers]
                        pytest.fail(f"the workers exited (codes {codes}) without reporting",
                                    pytrace=False)
        pytest.fail(f"no worker reported within {self.process_timeout} s", pytrace=False)

    @staticmethod
    def _kill(worker: Any) -> None:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        assert worker.exitcode == -signal.SIGKILL, f"the worker ended with {worker.exitcode}"

    # -- the races -----------------------------------------------------------------------
    def test_compare_and_set_across_processes(self) -> None:
        """Exactly one winner per expected version; no lost update."""
        self._prepare()
        outcomes = self._race("cas_writes", {"key": "counter", "writes": self.cas_writes})
        wins = [tuple(win) for outcome in outcomes for win in outcome["wins"]]
        expected = [version for version, _ in wins]
        duplicated = sorted({v for v in expected if expected.count(v) > 1})
        assert not duplicated, (
            f"several processes won the compare-and-set from versions {duplicated[:10]}")
        new_versions = [new for _, new in wins]
        assert len(set(new_versions)) == len(new_versions), "two writes got one version"
        assert all(new > old for old, new in wins)
        conflicts = sum(outcome["conflicts"] for outcome in outcomes)
        assert conflicts > 0, "no write ever conflicted: the processes did not race"

        async def check() -> None:
            backend = await self._open()
            try:
                version, value = await backend.read_snapshot("counter")
            finally:
                await backend.aclose()
            assert version == max(new_versions)
            assert value["count"] == len(wins), (
                f"{len(wins)} writes won but the count is {value['count']}: lost updates")

        self.run(check)

    def test_lease_claims_across_processes(self) -> None:
        """Exactly one owner per lease; every successful claim has its own fence."""
        if LEASES not in self._prepare():
            pytest.skip("the backend does not report the 'leases' capability")
        outcomes = self._race("lease_claims", {
            "rounds": self.lease_rounds, "churn": self.lease_churn, "ttl": 60.0,
            "prefix": "race"})
        for round_index in range(self.lease_rounds):
            owners = [i for i, outcome in enumerate(outcomes)
                      if outcome["rounds"][round_index] is not None]
            assert len(owners) == 1, (
                f"round {round_index}: processes {owners} all hold the one lease")
        fences = [fence for outcome in outcomes for fence in outcome["fences"]]
        assert fences, "no process ever claimed the churned lease"
        assert len(set(fences)) == len(fences), "two claims got the same fence: two owners"
        lost = sum(outcome["lost"] for outcome in outcomes)
        assert not lost, f"{lost} times a held lease was taken before its holder released it"

    def test_killed_holder_lease_is_taken_over_after_its_ttl(self) -> None:
        """A holder killed with SIGKILL keeps the lease until its TTL, then loses it."""
        if LEASES not in self._prepare():
            pytest.skip("the backend does not report the 'leases' capability")
        ttl = self.lease_ttl
        worker, results = self._spawn_one("hold_lease", {"name": "takeover", "ttl": ttl})
        try:
            _, status, held = self._receive(results, [worker])
            assert status == "held" and held is not None, (status, held)
            claimed_at = time.monotonic()
        finally:
            self._kill(worker)

        async def check() -> None:
            backend = await self._open()
            try:
                if time.monotonic() - claimed_at < ttl * 0.8:
                    assert await backend.claim_lease("takeover", "survivor", ttl) is None, (
                        "the lease was handed out again before its TTL")
                await anyio.sleep(max(0.0, claimed_at + ttl * 1.2 - time.monotonic()))
                lease = await backend.claim_lease("takeover", "survivor", ttl)
                assert lease is not None, "an expired lease could not be claimed"
                assert lease.fence > held["fence"]
                with pytest.raises(LeaseLost):
                    await backend.heartbeat_lease("takeover", held["token"], ttl)
                assert await backend.release_lease("takeover", held["token"]) is False
                assert (await backend.read_lease("takeover")).owner == "survivor"
            finally:
                await backend.aclose()

        self.run(check)

    def test_event_appends_across_processes(self) -> None:
        """One sequence per event id across processes; unique, dense where promised."""
        found = self._prepare()
        outcomes = self._race("event_appends", {"execution": "busy",
                                                "appends": self.event_appends})
        shared = {event_id: {outcome[event_id] for outcome in outcomes}
                  for event_id in outcomes[0] if event_id.startswith("shared-")}
        split = {event_id: seqs for event_id, seqs in shared.items() if len(seqs) > 1}
        assert not split, f"one event id got several sequences: {dict(list(split.items())[:5])}"
        total = self.event_appends * (self.processes + 1)

        async def check() -> None:
            backend = await self._open()
            try:
                events, after = [], 0
                while batch := await backend.read_events("busy", after=after, limit=97):
                    events += batch
                    after = batch[-1]["sequence"]
            finally:
                await backend.aclose()
            sequences = [event["sequence"] for event in events]
            assert len(events) == total, f"{len(events)} events stored, {total} appended"
            assert sequences == sorted(set(sequences))
            if EVENT_SEQUENCES in found:
                assert sequences == list(range(1, total + 1))
            by_id = {event["event_id"]: event["sequence"] for event in events}
            for outcome in outcomes:
                for event_id, sequence in outcome.items():
                    assert by_id[event_id] == sequence

        self.run(check)

    def test_writer_killed_mid_write_leaves_a_consistent_store(self) -> None:
        """SIGKILL a writer of large values, several times: each time the store opens,
        its values are whole, events and snapshot agree, and writing works at once."""
        self._prepare()
        last_count = 0
        for _ in range(self.kills):
            worker, results = self._spawn_one("crash_writer",
                                              {"blob_bytes": self.crash_blob_bytes})
            try:
                _, status, detail = self._receive(results, [worker])
                assert status == "started", detail
                time.sleep(random.uniform(0.05, 0.3))
            finally:
                self._kill(worker)
            last_count = self.run(self._check_after_crash, last_count)

    async def _check_after_crash(self, last_count: int) -> int:
        backend = await self._open()
        try:
            with anyio.fail_after(30):
                version, value = await backend.read_snapshot("crash")
                blob = "x" * self.crash_blob_bytes
                assert value == crash_value(value["count"], blob), "a torn snapshot value"
                assert value["count"] >= max(last_count, 1)
                events, after = [], 0
                while batch := await backend.read_events("crash-events", after=after,
                                                         limit=500):
                    events += batch
                    after = batch[-1]["sequence"]
                counts = [event["payload"]["count"] for event in events]
                assert counts == list(range(1, len(counts) + 1)), "events lost or reordered"
                assert counts[-1] in (value["count"], value["count"] - 1)
                for slot in range(8):
                    record = await backend.get_record("crash", f"r{slot}")
                    if record is not None:
                        assert record == crash_value(record["count"], blob), "a torn record"
                        assert record["count"] <= value["count"]
                await maybe_await(self.verify_store(backend))
                # writing works at once; the event of the last write, if the kill beat it
                new = await backend.write_snapshot("crash", crash_value(value["count"], blob),
                                                   expected_state_version=version)
                assert new > version
                await backend.append_event("crash-events", f"e{value['count']}",
                                           {"count": value["count"]})
            return value["count"]
        finally:
            await backend.aclose()


__all__ = ["WorkspaceRaceConformance"]
