"""The ``python`` action package: ``agent.enable_python(...)`` mounts ``run_python``."""

from __future__ import annotations

from typing import Any

from agently_core_isolation.worker_policy import mount_worker_action

DESCRIPTION = (
    "Run Python code in an isolated, persistent sandbox (no network, private file system). "
    "Variables, imports and functions persist between calls, like a notebook. Returns "
    "stdout, stderr, the value of a final expression, and any error with its traceback. "
    "Only the standard library is available; files live in /work."
)


def mount(agent: Any, *, scope: str = "agent", timeout: float = 30.0, network: bool = False,
          memory_mb: int | None = None, processes: int | None = None,
          file_mb: int | None = None, env: dict[str, str] | None = None,
          env_passthrough: list[str] | None = None, tier: str | None = None,
          allow_trusted_local: bool = False, max_output_bytes: int = 100_000,
          disk_mb: int | None = None, name: str = "run_python") -> list[str]:
    """Register ``run_python`` with a warm worker per ``scope`` owner."""
    return mount_worker_action(
        agent, kind="python", name=name, description=DESCRIPTION, scope=scope,
        input_schema={"type": "object", "additionalProperties": False, "required": ["python_code"],
                      "properties": {"python_code": {"type": "string",
                                                     "description": "The Python code to run."}}},
        instruction="python_code", timeout=timeout, network=network, memory_mb=memory_mb,
        processes=processes, file_mb=file_mb, env=env, env_passthrough=env_passthrough, tier=tier,
        allow_trusted_local=allow_trusted_local, max_output_bytes=max_output_bytes,
        disk_mb=disk_mb)
