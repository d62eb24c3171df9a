"""The ``bash`` ExecutionEnvironmentProvider: one :class:`~.sandbox.BashSandbox` per scope."""

from __future__ import annotations

from typing import Any

from .sandbox import BashSandbox, RootsIsolation


class BashSandboxProvider:
    """Prepares a scope's Bash sandbox (its dedicated uid, private home, roots) and removes
    it at release. Nothing runs until a call: each call is one isolated ``bash -c``.

    Requirement config: ``roots`` (host directories, resolved at mount; none: a private
    workspace is created here and removed at release), ``env`` (variables the host gives
    the child), ``tier`` (force an isolation tier), ``allow_trusted_local`` (explicit
    opt-in to no isolation).
    """

    kind = "bash"
    name = "bash"

    async def ensure(self, requirement: Any) -> BashSandbox:
        config = dict(requirement.config or {})
        isolation = RootsIsolation(config.get("tier"),
                                   allow_trusted_local=bool(config.get("allow_trusted_local")))
        return BashSandbox(isolation, roots=config.get("roots") or None, env=config.get("env"))

    async def health_check(self, requirement: Any, resource: BashSandbox) -> bool:
        return resource.healthy()

    async def release(self, requirement: Any, resource: BashSandbox) -> None:
        resource.close()
