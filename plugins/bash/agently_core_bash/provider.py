"""The ``bash`` ExecutionEnvironmentProvider: one :class:`~.sandbox.BashSandbox` per scope."""

from __future__ import annotations

from typing import Any

from agently_core_isolation.sandbox import Isolation

from agently_core.models import Policy
from agently_core.protocols import ProviderHandle

from .sandbox import BashSandbox


class BashSandboxProvider:
    """Prepares a scope's Bash sandbox (its dedicated uid, private workspace, roots) and
    removes it at release. Nothing runs until a call: each call is one isolated ``bash -c``.

    Requirement config: ``roots`` (host directories, resolved at mount; none: a private
    workspace is created here and removed at release), ``env`` (variables the host gives
    the child), ``tier`` (force an isolation tier), ``allow_trusted_local`` (explicit
    opt-in to no isolation). Requirement policy: ``max_workspace_bytes`` (the bound of the
    private workspace; default
    :data:`~agently_core_isolation.workspace.DEFAULT_WORKSPACE_BYTES`).
    """

    kind = "bash"
    name = "bash"

    async def ensure(self, requirement: Any) -> BashSandbox:
        config = dict(requirement.config or {})
        policy = Policy().merge(dict(requirement.policy or {}))
        isolation = Isolation(config.get("tier"),
                              allow_trusted_local=bool(config.get("allow_trusted_local")))
        return BashSandbox(isolation, roots=config.get("roots") or None, env=config.get("env"),
                           workspace_bytes=policy.max_workspace_bytes)

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        sandbox: BashSandbox = handle.resource
        return sandbox.healthy()

    async def release(self, requirement: Any, resource: BashSandbox) -> None:
        resource.close()
