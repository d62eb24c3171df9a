"""The ``python`` ExecutionEnvironmentProvider: one warm, isolated worker per requirement."""

from __future__ import annotations

import os
from typing import Any

from agently_core_isolation.sandbox import Isolation, Limits

from agently_core.models import Policy

from .sandbox import PythonWorker

DEFAULT_MEMORY = 1 << 30
DEFAULT_PROCESSES = 32
DEFAULT_FILE_BYTES = 64 << 20


def limits_for(policy: Policy) -> Limits:
    """The worker's rlimits, from the requirement's policy (the wall clock is per call)."""
    return Limits(
        wall_seconds=3600.0, cpu_seconds=None,
        memory_bytes=policy.max_memory_bytes or DEFAULT_MEMORY,
        processes=policy.max_processes or DEFAULT_PROCESSES,
        file_bytes=policy.max_file_bytes or DEFAULT_FILE_BYTES,
    )


def env_for(policy: Policy, config: dict[str, Any]) -> tuple[dict[str, str], frozenset[str]]:
    """The child's environment, built from the host's config and the policy, never
    inherited; and the names in it that were passed through from the host's environment."""
    env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
    passed = set()
    for name in policy.env_passthrough or ():
        if name in os.environ:
            env[name] = os.environ[name]
            passed.add(name)
    return env, frozenset(passed)


class PythonSandboxProvider:
    """Starts, checks (a real ping round trip) and kills warm Python workers.

    Requirement config: ``tier`` (force an isolation tier), ``allow_trusted_local``
    (explicit opt-in to no isolation), ``env`` (variables the host gives the child).
    Requirement policy: ``network``, ``max_memory_bytes``, ``max_processes``,
    ``max_file_bytes``, ``env_passthrough``.
    """

    kind = "python"
    name = "python"

    async def ensure(self, requirement: Any) -> PythonWorker:
        config = dict(requirement.config or {})
        policy = Policy().merge(dict(requirement.policy or {}))
        isolation = Isolation(config.get("tier"),
                              allow_trusted_local=bool(config.get("allow_trusted_local")))
        env, passed = env_for(policy, config)
        worker = PythonWorker(isolation, limits_for(policy), network=bool(policy.network),
                              env=env, passed=passed)
        return await worker.start()

    async def health_check(self, requirement: Any, worker: PythonWorker) -> bool:
        return not worker.dead and await worker.ping()

    async def release(self, requirement: Any, worker: PythonWorker) -> None:
        await worker.aclose()
