"""From a policy to a warm worker's limits and environment, and back: does a worker
already started satisfy a call's (possibly stricter) policy? And from a package's
``mount`` options to its action and requirement; and the provider that starts the workers.
Shared by the warm sandboxes (Python, Node.js)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import anyio

from agently_core.errors import ActionError
from agently_core.models import ActionSpec, EnvironmentRequirement, Policy
from agently_core.protocols import ProviderHandle

from . import workspace
from .sandbox import Isolation, Limits
from .workspace import DEFAULT_WORKSPACE_BYTES

DEFAULT_MEMORY = 1 << 30
DEFAULT_PROCESSES = 32
DEFAULT_FILE_BYTES = 64 << 20
#: The policy fields a warm worker enforces: its executor's ``enforced_policy``.
WORKER_POLICY_FIELDS = frozenset({"network", "max_memory_bytes", "max_processes",
                                  "max_file_bytes", "max_workspace_bytes", "env_passthrough"})


def worker_limits(policy: Any) -> Limits:
    """A warm worker's limits, from its requirement's policy (the wall clock is per call,
    so the worker's own is only a backstop)."""
    return Limits(
        wall_seconds=3600.0, cpu_seconds=None,
        memory_bytes=policy.max_memory_bytes or DEFAULT_MEMORY,
        processes=policy.max_processes or DEFAULT_PROCESSES,
        file_bytes=policy.max_file_bytes or DEFAULT_FILE_BYTES,
    )


def worker_env(policy: Any, config: Mapping[str, Any]) -> tuple[dict[str, str], frozenset[str]]:
    """The child's environment, built from the host's config (``env``) and the policy's
    ``env_passthrough``, never inherited; and the names in it passed through from the
    host's environment (as opposed to values the host configured)."""
    env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
    passed = set()
    for name in policy.env_passthrough or ():
        if name in os.environ:
            env[name] = os.environ[name]
            passed.add(name)
    return env, frozenset(passed)


def workspace_policy(disk_mb: int | None, *, private: bool = True) -> int | None:
    """The ``max_workspace_bytes`` a sandbox package puts in its policy: ``disk_mb`` MiB when
    given, else the default where it holds (a private workspace on a host that can mount
    a bounded tmpfs: :func:`~.workspace.bounds_available`), else None. ``ValueError`` for
    a bad value, or for ``disk_mb`` with host directories (``private=False``), which
    nothing here can bound."""
    if disk_mb is None:
        return DEFAULT_WORKSPACE_BYTES if private and workspace.bounds_available() else None
    if isinstance(disk_mb, bool) or not isinstance(disk_mb, int) or disk_mb <= 0:
        raise ValueError(f"disk_mb must be a positive whole number of MiB, got {disk_mb!r}")
    if not private:
        raise ValueError("disk_mb bounds the sandbox's private workspace; host directories "
                         "given as root cannot be bounded (leave disk_mb out)")
    return disk_mb << 20


def uncovered(worker: Any, policy: Any) -> list[str]:
    """The policy fields a running ``worker`` (with ``limits``, ``network``, ``passed`` and
    ``workspace_bytes``) is looser than: a call with any of them must not run in it."""
    limits = worker.limits
    problems = []
    if policy.network is False and worker.network:
        problems.append("network")
    for field, have in (("max_memory_bytes", limits.memory_bytes),
                        ("max_processes", limits.processes),
                        ("max_file_bytes", limits.file_bytes),
                        ("max_workspace_bytes", worker.workspace_bytes)):
        want = getattr(policy, field)
        if want is not None and (have is None or have > want):
            problems.append(field)
    if policy.env_passthrough is not None and worker.passed - set(policy.env_passthrough):
        problems.append("env_passthrough")  # host variables beyond what the call allows
    return problems


#: The mount option that starts a warm sandbox within each policy field, and the value it
#: takes for a policy value.
_OPTIONS: dict[str, tuple[str, Any]] = {
    "network": ("network", lambda value: value),
    "max_memory_bytes": ("memory_mb", lambda value: max(1, value >> 20)),
    "max_processes": ("processes", lambda value: value),
    "max_file_bytes": ("file_mb", lambda value: max(1, value >> 20)),
    "max_workspace_bytes": ("disk_mb", lambda value: max(1, value >> 20)),
    "env_passthrough": ("env_passthrough", lambda value: list(value)),
}
_ENABLE = {"Python": "enable_python", "Node.js": "enable_nodejs", "Bash": "enable_shell"}


def check_covered(worker: Any, policy: Any, sandbox: str) -> None:
    """Refuse (``ActionError``) a call whose policy is stricter than the running ``worker``;
    ``sandbox`` names it in the message (``"Python"``, ``"Node.js"``), which also says the
    mount option that starts the sandbox within the call's policy."""
    problems = uncovered(worker, policy)
    if problems:
        enable = _ENABLE.get(sandbox, "the package's mount")
        fixes = ", ".join(f"{_OPTIONS[field][0]}={_OPTIONS[field][1](getattr(policy, field))!r}"
                          for field in problems if field in _OPTIONS)
        raise ActionError(
            f"the call's policy is stricter than its {sandbox} sandbox for "
            f"{', '.join(problems)}; refusing to run it looser. Start the sandbox within it "
            f"with agent.{enable}({fixes}), or lift the stricter limit of the agent or call")


def mount_settings(*, timeout: float, network: bool, memory_mb: int | None,
                   processes: int | None, file_mb: int | None, env: Mapping[str, str] | None,
                   env_passthrough: list[str] | None, tier: str | None,
                   allow_trusted_local: bool, max_output_bytes: int, disk_mb: int | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A warm sandbox package's ``mount`` options as ``(action policy, requirement policy,
    requirement config)``: the action's policy also caps the output and the wall clock;
    the worker is started from the rest."""
    policy: dict[str, Any] = {"timeout_seconds": float(timeout), "network": bool(network),
                              "max_output_bytes": int(max_output_bytes)}
    for key, value in (("max_memory_bytes", memory_mb and memory_mb << 20),
                       ("max_processes", processes), ("max_file_bytes", file_mb and file_mb << 20),
                       ("max_workspace_bytes", workspace_policy(disk_mb)),
                       ("env_passthrough", env_passthrough)):
        if value is not None:
            policy[key] = value
    config: dict[str, Any] = {"allow_trusted_local": allow_trusted_local}
    if tier:
        config["tier"] = tier
    if env:
        config["env"] = dict(env)
    worker_policy = {k: v for k, v in policy.items() if k != "max_output_bytes"}
    return policy, worker_policy, config


def mount_worker_action(agent: Any, *, kind: str, name: str, description: str, scope: str,
                        input_schema: dict[str, Any], instruction: str, **options: Any) -> list[str]:
    """Register the action ``name`` of a warm sandbox package, run by a worker of ``kind``
    (also its resource key) per ``scope`` owner; ``options`` are ``mount_settings``'s."""
    policy, worker_policy, config = mount_settings(**options)
    requirement = EnvironmentRequirement(
        kind=kind, scope=scope, resource_key=kind, config=config, policy=worker_policy,
    )
    spec = ActionSpec(
        name=name, description=description, kind=kind, policy=policy, input_schema=input_schema,
        tags=[kind, "sandbox"], execution_environments=[requirement],
        meta={"instruction": instruction},
    )
    agent.action.register_action(spec)
    return [name]


class WarmWorkerProvider:
    """The ExecutionEnvironmentProvider of a warm sandbox: starts one isolated worker per
    requirement, checks it with a real ping round trip and kills it on release.

    A subclass sets ``kind``, ``name`` and ``worker``: the worker class, built as
    ``worker(isolation, limits, network=, env=, passed=, workspace_bytes=)`` and offering
    ``start()``, ``ping()``, ``dead`` and ``aclose()``. Requirement config: ``tier`` (force
    an isolation tier), ``allow_trusted_local`` (explicit opt-in to no isolation), ``env``
    (variables the host gives the child). Requirement policy: ``network``,
    ``max_memory_bytes``, ``max_processes``, ``max_file_bytes``, ``max_workspace_bytes``
    (what the workspace and temporary files may hold together, where the host is root),
    ``env_passthrough``."""

    kind: str
    name: str
    worker: type

    async def ensure(self, requirement: Any) -> Any:
        config = dict(requirement.config or {})
        policy = Policy().merge(dict(requirement.policy or {}))
        isolation = Isolation(config.get("tier"),
                              allow_trusted_local=bool(config.get("allow_trusted_local")))
        env, passed = worker_env(policy, config)
        worker = self.worker(isolation, worker_limits(policy), network=bool(policy.network),
                             env=env, passed=passed, workspace_bytes=policy.max_workspace_bytes)
        try:
            return await worker.start()
        except BaseException:  # failed or cancelled while starting: leave nothing behind
            with anyio.CancelScope(shield=True):
                await worker.aclose()
            raise

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        worker = handle.resource
        return not worker.dead and await worker.ping()

    async def release(self, requirement: Any, worker: Any) -> None:
        await worker.aclose()
