"""The ``node`` ExecutionEnvironmentProvider: one warm, isolated worker per requirement."""

from __future__ import annotations

from agently_core_isolation.worker_policy import WarmWorkerProvider

from .sandbox import NodeWorker


class NodeSandboxProvider(WarmWorkerProvider):
    """Starts, checks (a real ping round trip) and kills warm Node.js workers (the options:
    :class:`~agently_core_isolation.worker_policy.WarmWorkerProvider`)."""

    kind = "node"
    name = "node"
    worker = NodeWorker
