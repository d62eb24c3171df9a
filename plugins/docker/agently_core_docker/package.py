"""The ``docker`` action package: ``agent.enable("docker", image=...)``.

It mounts ``run_in_container(cmd, image=None, timeout_seconds=None)``: a command (a shell
line or an argv list) run in a warm, hardened container of the host's image (one container
per scope owner, see :mod:`agently_core_docker.provider`). Every call asks for approval
unless the host passes ``approval=False``. The model cannot choose the image (only the
host's is accepted), the container's options or its limits; it can only narrow the time
limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agently_core.errors import ConfigError
from agently_core.models import ActionSpec, EnvironmentRequirement

from .images import DEFAULT_IMAGE
from .settings import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY,
    DEFAULT_PROCESSES,
    DEFAULT_TMPFS,
    DEFAULT_USER,
    DockerConfigError,
    container_settings,
)

SCOPES = ("action_call", "request", "execution", "session", "agent", "global")
MAX_CMD_CHARS = 100_000


def _schema(image: str) -> dict[str, Any]:
    """The arguments a model may give; ``image`` may only repeat the host's (checked with
    the arguments, before any container starts)."""
    return {
        "type": "object",
        "properties": {
            "cmd": {"description": "The command: a shell line (run with /bin/sh -c) or an argv "
                                   "list.",
                    "anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_CMD_CHARS},
                              {"type": "array", "items": {"type": "string"}, "minItems": 1,
                               "maxItems": 256}]},
            "image": {"type": "string", "enum": [image],
                      "description": "Leave out: only the host's image runs."},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0,
                                "description": "A shorter wall-clock limit for this call."},
        },
        "required": ["cmd"],
        "additionalProperties": False,
    }


def mount(agent: Any, image: str = DEFAULT_IMAGE, *, network: bool = False,
          memory_bytes: int = DEFAULT_MEMORY, processes: int = DEFAULT_PROCESSES,
          cpus: float = DEFAULT_CPUS, tmpfs_bytes: int = DEFAULT_TMPFS, user: str = DEFAULT_USER,
          mounts: Sequence[Mapping[str, Any]] = (), timeout: float = 30.0,
          max_output_bytes: int = 1_000_000, approval: bool = True, scope: str = "agent",
          name: str = "run_in_container") -> list[str]:
    """Mount ``run_in_container`` for the host's ``image`` (it must be on the engine; see
    ``agently-core docker build-image``). Returns the names mounted."""
    if scope not in SCOPES:
        raise ConfigError(f"docker package: unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")
    for label, flag in (("network", network), ("approval", approval)):
        if not isinstance(flag, bool):
            raise ConfigError(f"docker package: {label} must be True or False, got {flag!r}")
    for label, number in (("timeout", timeout), ("max_output_bytes", max_output_bytes)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
            raise ConfigError(f"docker package: {label} must be a positive number, got {number!r}")
    config = {"image": image, "cpus": cpus, "tmpfs_bytes": tmpfs_bytes, "user": user,
              "mounts": [dict(m) for m in mounts]}
    policy = {"network": network, "max_memory_bytes": memory_bytes,
              "max_processes": processes}
    try:
        s = container_settings(config, policy)
    except DockerConfigError as exc:
        raise ConfigError(f"docker package: {exc}") from None
    requirement = EnvironmentRequirement(kind="docker", scope=scope, resource_key="docker",
                                         config=config, policy=policy)
    agent.action.register_action(ActionSpec(
        name=name,
        description=(f"Run a command in a Linux container ({image}) and get back {{exit_code, "
                     "stdout, stderr, truncated}}. "
                     + ("It has no network. " if not s.network else "")
                     + f"Only {s.workdir} is writable (at most {s.tmpfs_bytes} bytes, kept "
                     "between calls); the rest of the file system is read-only. A command "
                     f"is stopped after {timeout:g}s (the container is then replaced); output "
                     f"past {max_output_bytes} bytes is cut."
                     + (" Every call waits for a person's approval." if approval else "")),
        input_schema=_schema(image), kind="docker", approval_required=approval,
        policy={"network": network, "max_memory_bytes": memory_bytes,
                "max_processes": processes},
        tags=["docker", "container"], execution_environments=[requirement],
        meta={"docker": {"resource_key": "docker", "image": image, "timeout_seconds": timeout,
                         "max_output_bytes": max_output_bytes}}))
    return [name]


__all__ = ["mount"]
