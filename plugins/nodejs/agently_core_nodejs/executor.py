"""The ``node`` ActionExecutor: ``run_nodejs(js_code, args)`` in the call's warm worker."""

from __future__ import annotations

from typing import Any

from agently_core_isolation.worker_policy import WORKER_POLICY_FIELDS, check_covered
from agently_core_isolation.worker_result import result_from_reply
from agently_core_isolation.workspace import full_note

from agently_core.errors import ActionError

from .sandbox import NO_ARGS, NodeWorker, WorkerError

DEFAULT_TIMEOUT = 30.0
DEFAULT_OUTPUT = 100_000
#: Output kept as an artifact when the record's copy is cut.
ARTIFACT_BYTES = 4 << 20


class NodeExecutor:
    """Runs code in the worker the environment manager ensured for the call; calls on one
    worker run concurrently.

    Enforces (besides what the dispatcher enforces for every executor) the policy fields
    the isolation applies to the worker: ``network``, ``max_memory_bytes``,
    ``max_processes``, ``max_file_bytes``, ``max_workspace_bytes`` and ``env_passthrough``.
    A call whose policy is stricter than the worker it would run in is refused rather than
    run looser. A write the workspace's bound refused gets a note on stderr.
    """

    kind = "node"
    enforced_policy = WORKER_POLICY_FIELDS

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        worker = context.execution_environment_resources.get("node")
        if not isinstance(worker, NodeWorker):
            raise ActionError(f"{spec.name!r} has no Node.js sandbox; mount it with "
                              "agent.enable_nodejs()")
        policy = context.policy
        check_covered(worker, policy, "Node.js")
        timeout = policy.timeout_seconds or DEFAULT_TIMEOUT
        max_output = policy.max_output_bytes or DEFAULT_OUTPUT
        try:
            reply = await worker.run(kwargs["js_code"], args=kwargs.get("args", NO_ARGS),
                                     timeout=timeout + 1.0, max_output=max_output,
                                     max_capture=max(max_output, ARTIFACT_BYTES),
                                     context=context)
        except WorkerError as exc:
            raise ActionError(str(exc)) from None
        result = result_from_reply(reply, max_output, context)
        note = full_note(worker.workspace, [reply.get("stderr"), reply.get("error")],
                         "enable_nodejs(disk_mb=...)") if worker.workspace is not None else None
        if note:
            result["stderr"] += ("" if not result["stderr"] or result["stderr"].endswith("\n")
                                 else "\n") + note + "\n"
        if not reply.get("ok"):
            first = (reply.get("error") or "").strip().splitlines()
            headline = next((line for line in first if line.startswith(
                f"{reply.get('error_type')}")), first[0] if first else reply.get("error_type"))
            raise ActionError(f"the code threw {str(headline)[:300]}", result=result)
        return result
