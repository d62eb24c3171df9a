"""What each process of :class:`~agently_core.testing.WorkspaceRaceConformance` runs.

A worker reopens the store from a *backend spec* ``("module:factory", {options})``, waits
at a barrier so every process starts together, does its part, and reports a JSON-like
result on a queue. Kept apart from the suite so a worker process imports neither pytest
nor the suite.
"""

from __future__ import annotations

import hashlib
import inspect
import traceback
from typing import Any

BackendSpec = tuple[str, dict[str, Any]]


async def open_backend(spec: BackendSpec) -> Any:
    """The backend ``spec`` names, opened in this process."""
    from ..workspace import _load

    factory, options = spec
    backend = _load(factory)(**dict(options))
    return await backend if inspect.isawaitable(backend) else backend


def run_worker(task: str, spec: BackendSpec, index: int, barrier: Any, results: Any,
               params: dict[str, Any]) -> None:
    """Process entry point: run ``task`` and put ``(index, "ok" | "error", result)``."""
    import anyio

    async def main() -> Any:
        backend = await open_backend(spec)
        try:
            return await TASKS[task](backend, index, barrier, results, params)
        finally:
            await backend.aclose()

    try:
        results.put((index, "ok", anyio.run(main)))
    except BaseException:
        results.put((index, "error", traceback.format_exc()))


async def cas_writes(backend: Any, index: int, barrier: Any, results: Any,
                     params: dict[str, Any]) -> dict[str, Any]:
    """Read, then compare-and-set ``count + 1``, ``params["writes"]`` times."""
    from ..workspace import VersionConflict

    key, wins, conflicts = params["key"], [], 0
    barrier.wait(params["timeout"])
    for attempt in range(params["writes"]):
        found = await backend.read_snapshot(key)
        version, value = found if found is not None else (0, {"count": 0})
        try:
            new = await backend.write_snapshot(
                key, {"count": value["count"] + 1, "writer": index, "attempt": attempt},
                expected_state_version=version)
        except VersionConflict:
            conflicts += 1
        else:
            wins.append((version, new))
    return {"wins": wins, "conflicts": conflicts}


async def lease_claims(backend: Any, index: int, barrier: Any, results: Any,
                       params: dict[str, Any]) -> dict[str, Any]:
    """Claim one fresh name per round, all processes at once; then churn on one name."""
    rounds: list[int | None] = []
    for round_index in range(params["rounds"]):
        barrier.wait(params["timeout"])
        lease = await backend.claim_lease(f"{params['prefix']}-{round_index}", f"p{index}",
                                          params["ttl"])
        rounds.append(None if lease is None else lease.fence)
    fences, lost = [], 0
    barrier.wait(params["timeout"])
    for _ in range(params["churn"]):
        lease = await backend.claim_lease(f"{params['prefix']}-hot", f"p{index}",
                                          params["ttl"])
        if lease is not None:
            fences.append(lease.fence)
            if not await backend.release_lease(lease.name, lease.token):
                lost += 1  # someone else took a lease this process held
    return {"rounds": rounds, "fences": fences, "lost": lost}


async def hold_lease(backend: Any, index: int, barrier: Any, results: Any,
                     params: dict[str, Any]) -> None:
    """Claim a lease, report it, then wait to be killed while holding it."""
    import anyio

    lease = await backend.claim_lease(params["name"], f"p{index}", params["ttl"])
    results.put((index, "held", None if lease is None else
                 {"token": lease.token, "fence": lease.fence}))
    await anyio.sleep(3600)


async def event_appends(backend: Any, index: int, barrier: Any, results: Any,
                        params: dict[str, Any]) -> dict[str, int]:
    """Append own events and events every process also appends (same ids), interleaved."""
    execution, got = params["execution"], {}
    barrier.wait(params["timeout"])
    for i in range(params["appends"]):
        for event_id in (f"p{index}-{i}", f"shared-{i}"):
            got[event_id] = await backend.append_event(execution, event_id,
                                                       {"by": index, "i": i})
    return got


def crash_value(count: int, blob: str) -> dict[str, Any]:
    """The snapshot the crash writer stores: its digest proves the value is whole."""
    digest = hashlib.sha256(f"{count}:{blob}".encode()).hexdigest()
    return {"count": count, "blob": blob, "digest": digest}


async def crash_writer(backend: Any, index: int, barrier: Any, results: Any,
                       params: dict[str, Any]) -> None:
    """Write large values (snapshot, event, record) in a loop until killed."""
    blob = "x" * params["blob_bytes"]
    started = False
    while True:
        found = await backend.read_snapshot("crash")
        version, value = found if found is not None else (0, {"count": 0})
        count = value["count"] + 1
        await backend.write_snapshot("crash", crash_value(count, blob),
                                     expected_state_version=version)
        await backend.append_event("crash-events", f"e{count}", {"count": count})
        await backend.put_record("crash", f"r{count % 8}", crash_value(count, blob))
        if not started:
            started = True
            results.put((index, "started", count))


TASKS = {
    "cas_writes": cas_writes,
    "lease_claims": lease_claims,
    "hold_lease": hold_lease,
    "event_appends": event_appends,
    "crash_writer": crash_writer,
}
