"""The ``docker`` ActionExecutor: ``run_in_container`` runs one command in the call's warm
container (``docker exec``), with a wall-clock limit kept by the host and output caps.

The result is ``{"exit_code", "stdout", "stderr", "truncated", "container_ms"}``. A call
whose policy is stricter than the running container (no network while it has one, less
memory or fewer processes than it was started with) is refused rather than run looser than
asked; the container's own limits come from the host's settings
(:mod:`agently_core_docker.settings`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agently_core.errors import ActionError

from .provider import DockerContainer

MAX_ARGS = 256
MAX_ARG_CHARS = 100_000


def _argv(cmd: Any) -> list[str]:
    if isinstance(cmd, str):
        if not cmd.strip():
            raise ActionError("cmd must not be empty")
        return ["/bin/sh", "-c", cmd]
    if isinstance(cmd, list) and cmd and len(cmd) <= MAX_ARGS \
            and all(isinstance(a, str) and "\0" not in a for a in cmd):
        if sum(map(len, cmd)) > MAX_ARG_CHARS:
            raise ActionError(f"cmd is longer than {MAX_ARG_CHARS} characters")
        return list(cmd)
    raise ActionError("cmd must be a shell command line (a string) or a non-empty list of up to "
                      f"{MAX_ARGS} strings (argv), got {type(cmd).__name__}")


def _narrower(policy: Any, container: DockerContainer) -> str | None:
    s = container.settings
    if policy.network is False and s.network:
        return "the call's policy allows no network and the container has one"
    if policy.max_memory_bytes is not None and policy.max_memory_bytes < s.memory_bytes:
        return (f"the call's policy allows {policy.max_memory_bytes} bytes of memory and the "
                f"container was started with {s.memory_bytes}")
    if policy.max_processes is not None and policy.max_processes < s.processes:
        return (f"the call's policy allows {policy.max_processes} processes and the container "
                f"was started with {s.processes}")
    return None


class DockerExecutor:
    """Executor for ``kind="docker"``."""

    kind = "docker"
    #: Checked against the running container (see :func:`_narrower`).
    enforced_policy = frozenset({"network", "max_memory_bytes", "max_processes"})

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        meta = spec.meta.get("docker") if isinstance(spec.meta, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        key = meta.get("resource_key", "docker")
        image = kwargs.get("image")
        configured = meta.get("image")
        if image is not None and image != configured:
            raise ActionError(f"image {image!r} is not one the host configured; this action "
                              f"runs {configured!r} (omit image)")
        argv = _argv(kwargs.get("cmd"))
        container = context.execution_environment_resources.get(key)
        if not isinstance(container, DockerContainer):
            raise ActionError(f"action {spec.name!r} has no docker container (it must declare "
                              f"an execution environment of kind 'docker' with resource_key "
                              f"{key!r})")
        policy = context.policy
        refusal = _narrower(policy, container)
        if refusal:
            raise ActionError(f"refusing to run: {refusal}")
        timeout = float(meta.get("timeout_seconds", 30.0))
        asked = kwargs.get("timeout_seconds")
        if asked is not None:
            if isinstance(asked, bool) or not isinstance(asked, (int, float)) or asked <= 0:
                raise ActionError(f"timeout_seconds must be a positive number, got {asked!r}")
            timeout = min(timeout, float(asked))  # a call may only narrow
        if policy.timeout_seconds is not None:
            timeout = min(timeout, policy.timeout_seconds)
        max_bytes = int(meta.get("max_output_bytes", 1_000_000))
        if policy.max_output_bytes is not None:
            max_bytes = min(max_bytes, policy.max_output_bytes)
        began = time.perf_counter()
        result = await container.run(argv, timeout=timeout, max_bytes=max_bytes)
        return {"exit_code": result.exit_code,
                "stdout": result.stdout.decode("utf-8", "replace"),
                "stderr": result.stderr.decode("utf-8", "replace"),
                "truncated": result.truncated,
                "container_ms": round((time.perf_counter() - began) * 1000, 1)}


__all__ = ["DockerExecutor"]
