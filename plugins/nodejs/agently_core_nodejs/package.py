"""The ``nodejs`` action package: ``agent.enable_nodejs(...)`` mounts ``run_nodejs``."""

from __future__ import annotations

from typing import Any

from agently_core_isolation.worker_policy import mount_worker_action

DESCRIPTION = (
    "Run JavaScript in an isolated, persistent Node.js sandbox (no network, private file "
    "system). Globals persist between calls, like a notebook: top-level var and function "
    "declarations and globalThis properties stay (let/const/class stay too but cannot be "
    "declared again). Returns stdout and stderr (console.*), the value of the last "
    "expression (a returned Promise is awaited) and any thrown error with its stack. Code "
    "that uses top-level await runs as the body of an async function: return the value you "
    "want back and put lasting state on globalThis. The optional JSON args are visible as "
    "`args`. The code is CommonJS: require() (or await import()) loads Node's built-in "
    "modules; no npm packages are installed. Files live in the working directory, /work."
)


def mount(agent: Any, *, scope: str = "agent", timeout: float = 30.0, network: bool = False,
          memory_mb: int | None = None, processes: int | None = None,
          file_mb: int | None = None, env: dict[str, str] | None = None,
          env_passthrough: list[str] | None = None, tier: str | None = None,
          allow_trusted_local: bool = False, max_output_bytes: int = 100_000,
          disk_mb: int | None = None, name: str = "run_nodejs") -> list[str]:
    """Register ``run_nodejs`` (executor and environment kind ``node``) with a warm worker
    per ``scope`` owner."""
    return mount_worker_action(
        agent, kind="node", name=name, description=DESCRIPTION, scope=scope,
        input_schema={
            "type": "object", "additionalProperties": False, "required": ["js_code"],
            "properties": {
                "js_code": {"type": "string", "description": "The JavaScript code to run."},
                "args": {"description": "Optional JSON value the code sees as `args`."},
            },
        },
        instruction="js_code", timeout=timeout, network=network, memory_mb=memory_mb,
        processes=processes, file_mb=file_mb, env=env, env_passthrough=env_passthrough, tier=tier,
        allow_trusted_local=allow_trusted_local, max_output_bytes=max_output_bytes,
        disk_mb=disk_mb)
