"""The ``python`` ExecutionEnvironmentProvider: one warm, isolated worker per requirement."""

from __future__ import annotations

from agently_core_isolation.worker_policy import WarmWorkerProvider

from .sandbox import PythonWorker


class PythonSandboxProvider(WarmWorkerProvider):
    """Starts, checks (a real ping round trip) and kills warm Python workers (the options:
    :class:`~agently_core_isolation.worker_policy.WarmWorkerProvider`)."""

    kind = "python"
    name = "python"
    worker = PythonWorker
