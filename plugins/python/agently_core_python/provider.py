"""The ``python`` ExecutionEnvironmentProvider: one warm, isolated worker per requirement."""

from __future__ import annotations

from typing import Any

import anyio
from agently_core_isolation.sandbox import Isolation
from agently_core_isolation.worker_policy import worker_env, worker_limits

from agently_core.models import Policy
from agently_core.protocols import ProviderHandle

from .sandbox import PythonWorker


class PythonSandboxProvider:
    """Starts, checks (a real ping round trip) and kills warm Python workers.

    Requirement config: ``tier`` (force an isolation tier), ``allow_trusted_local``
    (explicit opt-in to no isolation), ``env`` (variables the host gives the child).
    Requirement policy: ``network``, ``max_memory_bytes``, ``max_processes``,
    ``max_file_bytes``, ``max_workspace_bytes`` (what the workspace and temporary files may
    hold together, where the host is root), ``env_passthrough``.
    """

    kind = "python"
    name = "python"

    async def ensure(self, requirement: Any) -> PythonWorker:
        config = dict(requirement.config or {})
        policy = Policy().merge(dict(requirement.policy or {}))
        isolation = Isolation(config.get("tier"),
                              allow_trusted_local=bool(config.get("allow_trusted_local")))
        env, passed = worker_env(policy, config)
        worker = PythonWorker(isolation, worker_limits(policy), network=bool(policy.network),
                              env=env, passed=passed, workspace_bytes=policy.max_workspace_bytes)
        try:
            return await worker.start()
        except BaseException:  # failed or cancelled while starting: leave nothing behind
            with anyio.CancelScope(shield=True):
                await worker.aclose()
            raise

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        worker: PythonWorker = handle.resource
        return not worker.dead and await worker.ping()

    async def release(self, requirement: Any, worker: PythonWorker) -> None:
        await worker.aclose()
