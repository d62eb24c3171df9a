"""The ``mcp`` ActionExecutor: ``tools/call`` on the call's live MCP session."""

from __future__ import annotations

from typing import Any

from agently_core.errors import ActionError

from .results import error_text, shape
from .schemas import output_problem
from .session import McpConnection, McpSessionLost, McpStartError, _is_closed, _leaf
from .stdio import UNREADABLE_ANSWER


class McpExecutor:
    """Calls the MCP tool behind an action and maps its result (see
    :mod:`agently_core_mcp.results`).

    A result with ``is_error`` and a JSON-RPC error from the server both fail the record
    with the server's text (the mapped result or the error's code and data are kept in
    ``record.result``). Structured content is checked against the tool's output schema
    without the server's regexes (:mod:`agently_core_mcp.schemas`). The per-call timeout
    is the dispatcher's: on timeout the request is cancelled (the SDK tells the server)
    and the session is pinged before its next reuse. An answer over ``max_result_bytes``,
    or one the SDK cannot parse, fails the call at once. MCP servers enforce no
    agently-core policy field, so a call whose policy constrains one (``network``,
    ``read_only``...) is refused by the dispatcher.
    """

    kind = "mcp"
    enforced_policy: frozenset[str] = frozenset()

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        connection = context.execution_environment_resources.get("mcp")
        if not isinstance(connection, McpConnection):
            raise ActionError(f"{spec.name!r} has no MCP session; mount it with agent.use_mcp()")
        meta = spec.meta or {}
        tool = meta.get("mcp_tool", spec.name)
        server = meta.get("mcp_server", connection.label)
        try:
            result = await connection.call_tool(tool, kwargs)
        except (McpStartError, McpSessionLost) as exc:
            raise ActionError(f"MCP server {server!r}: {exc}") from None
        except Exception as exc:
            raise _call_error(exc, tool, server, connection) from None
        if spec.output_schema is not None and not result.is_error:
            present = (result.structured_content is not None
                       or "structured_content" in result.model_fields_set)
            problem = output_problem(spec.output_schema, result.structured_content, present)
            if problem is not None:
                raise ActionError(f"MCP tool {tool!r} of {server!r} returned a result that "
                                  f"does not match its output schema: {problem}")
        mapped, full = shape(result, context.policy.max_output_bytes, _artifact_bytes(context),
                             getattr(context, "redact", None) or _keep)
        if full is not None:
            context.add_artifact("result", full, media_type="application/json")
        if result.is_error:
            raise ActionError(error_text(mapped), result=mapped)
        return mapped


def _keep(text: str, *, cut: bool = False) -> str:
    return text


def _artifact_bytes(context: Any) -> int:
    """The largest artifact the agent's store keeps whole."""
    from agently_core.artifacts import MAX_ARTIFACT_BYTES

    dispatcher = getattr(getattr(context, "agent", None), "dispatcher", None)
    limit = getattr(getattr(dispatcher, "artifacts", None), "max_artifact_bytes", None)
    return limit if isinstance(limit, int) and limit > 0 else MAX_ARTIFACT_BYTES


def _call_error(exc: Exception, tool: str, server: str, connection: McpConnection) -> ActionError:
    from mcp.shared.exceptions import MCPError
    from mcp_types import PARSE_ERROR

    leaf = _leaf(exc)
    if _is_closed(leaf):
        message = f"MCP server {server!r} closed the connection during {tool!r}"
        tail = connection.stderr_tail()
        if tail:
            message += f"; its stderr ends with: {tail}"
        return ActionError(message + " (the next call starts a new session)")
    if isinstance(leaf, MCPError) and (leaf.code == UNREADABLE_ANSWER or (
            leaf.code == PARSE_ERROR and leaf.message.startswith("Failed to parse"))):
        # the client could not take the answer: too large, or unreadable (the SDK's HTTP
        # transport words the second as a parse error)
        return ActionError(f"MCP tool {tool!r} of {server!r} failed: {leaf.message}")
    if isinstance(leaf, MCPError):
        detail = {"code": leaf.code, "message": leaf.message}
        if leaf.data is not None:
            detail["data"] = leaf.data
        return ActionError(f"MCP server {server!r} rejected {tool!r}: {leaf.message} "
                           f"(error {leaf.code})", result=detail)
    return ActionError(f"calling MCP tool {tool!r} of {server!r} failed: "
                       f"{type(leaf).__name__}: {leaf}")
