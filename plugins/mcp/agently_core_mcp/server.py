"""``agently-core serve-mcp``: an agent's actions served as MCP tools.

``tools/list`` shows every visible action with its JSON schema; ``tools/call`` runs the
action through the agent's dispatcher, as a call from a model: argument validation,
policy, approval, environments, timeouts, redaction and artifacts all apply exactly as
for a planner's call. The record becomes the tool result:

* ``success``: the result as JSON text, and as ``structuredContent`` (an object result
  as it is, anything else as ``{"result": ...}``);
* ``failed``: ``isError`` with ``<error_type>: <error>`` (and the record's result, e.g. a
  sandbox's stdout and traceback, as JSON text and structured content);
* ``approval_required`` / ``blocked``: ``isError`` with a text that says the action needs
  approval (or was denied) and **did not run**.

Approval: when the agent's approval handler is an interactive terminal one (the default
``input_timeout_fail``, or ``input``), which cannot work while stdin carries MCP, the
served agent asks the MCP client instead, through form elicitation, when the client
declared that capability on a handshake-era connection: the user accepts (``approve:
true``) and the action runs, or declines and it does not. A client that cannot be asked
gets the ``approval required`` tool error. Other handlers (``auto_approve``,
``fail_closed``, a plugin's) are kept as configured.
"""

from __future__ import annotations

import contextvars
import json
import sys
from typing import Any

#: The MCP request being served (for the approval handler that asks the client).
_REQUEST: contextvars.ContextVar[Any] = contextvars.ContextVar("agently_mcp_request", default=None)
_TERMINAL_HANDLERS = ("input_timeout_fail", "input")
APPROVAL_HANDLER = "mcp_elicitation"
DEFAULT_PORT = 8000


def serve(agent: Any, *, transport: str = "stdio", host: str = "127.0.0.1",
          port: int | None = None) -> int:
    """Serve ``agent``'s actions over MCP until the client disconnects (stdio) or the
    process gets SIGINT/SIGTERM (HTTP, at ``http://HOST:PORT/mcp``; port 0 picks a free
    one, announced on stderr). Blocks; closes the agent before returning 0."""
    import anyio

    return anyio.run(serve_async, agent, transport, host, port)


async def serve_async(agent: Any, transport: str = "stdio", host: str = "127.0.0.1",
                      port: int | None = None) -> int:
    """:func:`serve` on the running event loop (the agent's environments live on it)."""
    import anyio

    from agently_core.errors import ConfigError

    if transport not in ("stdio", "http"):
        raise ConfigError(f"serve-mcp: transport must be 'stdio' or 'http', got {transport!r}")
    server = build_server(agent)
    try:
        if transport == "stdio":
            await _serve_stdio(server, agent)
        else:
            await _serve_http(server, agent, host, DEFAULT_PORT if port is None else port)
    finally:
        with anyio.CancelScope(shield=True):
            await agent.aclose()
    return 0


def build_server(agent: Any) -> Any:
    """The low-level MCP ``Server`` exposing ``agent``'s actions."""
    from mcp.server import Server

    _use_client_approval(agent)

    async def list_tools(ctx: Any, params: Any) -> Any:
        from mcp_types import ListToolsResult, Tool

        tools = [Tool(name=info["name"], description=info.get("description") or None,
                      input_schema=_object_schema(info.get("kwargs")))
                 for info in agent.action.get_action_info()]
        return ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> Any:
        return await _call(agent, ctx, params.name, params.arguments)

    return Server("agently-core", version=_version(), on_list_tools=list_tools,
                  on_call_tool=call_tool,
                  instructions="Actions of an agently-core agent. Calls run under the "
                  "host's policy; an action that needs approval is never run silently.")


async def _call(agent: Any, ctx: Any, name: str, arguments: Any) -> Any:
    from mcp.shared.exceptions import MCPError
    from mcp_types import INVALID_PARAMS

    from agently_core.execution import current_request
    from agently_core.models import ActionCall, new_id

    entry = agent.registry.get(name)
    if entry is None or not entry.visible:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")
    call = ActionCall(id=new_id("call_"), action=name, source="model",
                      kwargs=dict(arguments) if isinstance(arguments, dict) else {})
    request_token = _REQUEST.set(ctx)
    call_token = current_request.set(call.id)
    try:
        record = await agent.dispatcher.dispatch(call)
    finally:
        current_request.reset(call_token)
        _REQUEST.reset(request_token)
    return tool_result(record)


def tool_result(record: Any) -> Any:
    """An action record as an MCP ``CallToolResult``."""
    from mcp_types import CallToolResult, TextContent

    if record.status == "success":
        value = record.result
        text = value if isinstance(value, str) else _json(value)
        structured = value if isinstance(value, dict) else {"result": value}
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=structured, is_error=False)
    if record.status == "approval_required":
        text = (f"approval required: {record.error}. The action was NOT run: it needs a "
                "person's approval, and this MCP client could not be asked (no elicitation "
                "support). Approve it on the agently-core host (its approval handler), or "
                "use a client that supports elicitation.")
    elif record.status == "blocked":
        needs = "approval" in (record.error or "").lower() or record.error_type in {
            "ApprovalDenied", "EnvironmentBlocked"}
        text = (f"not run: {record.error}" + (" (the action needs approval, which was not "
                                              "given)" if needs else ""))
    else:
        text = f"{record.error_type or 'Error'}: {record.error}"
        if record.result is not None:
            text += "\n" + (record.result if isinstance(record.result, str)
                            else _json(record.result))
    structured = {"status": record.status, "error_type": record.error_type,
                  "error": record.error}
    if record.result is not None:
        structured["result"] = record.result
    if record.approval_request_id:
        structured["approval_request_id"] = record.approval_request_id
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=structured, is_error=True)


# -- approval through the client -------------------------------------------------------------
def _use_client_approval(agent: Any) -> None:
    approval = agent.approval
    if approval.default in _TERMINAL_HANDLERS:
        approval.register_handler(APPROVAL_HANDLER, ask_client)
        approval.set_default(APPROVAL_HANDLER)


async def ask_client(context: Any, request: Any) -> Any:
    """Approval handler: ask the MCP client's user (form elicitation); ``pending`` when the
    client cannot be asked, so the call is reported as needing approval, never run."""
    import anyio

    from agently_core.models import ApprovalDecision

    ctx = _REQUEST.get()
    session = getattr(ctx, "session", None)
    if session is None:
        return "pending"
    try:
        capabilities = session.client_capabilities
        able = (capabilities is not None and capabilities.elicitation is not None
                and session.can_send_request)
    except Exception:
        able = False
    if not able:
        return "pending"
    details = request.details or {}
    shown = details.get("kwargs")
    message = (f"agently-core: allow the {request.subject_type} {request.subject!r} to run?"
               + (f" {request.reason}" if request.reason else "")
               + (f"\nArguments: {_json(shown)[:1500]}" if shown else ""))
    schema = {"type": "object", "required": ["approve"], "properties": {
        "approve": {"type": "boolean", "title": "Approve",
                    "description": f"Run {request.subject!r} now"}}}
    timeout = float(getattr(context, "approval_timeout", None) or 300.0)
    try:
        with anyio.fail_after(timeout):
            answer = await session.elicit_form(message, schema,
                                               related_request_id=getattr(ctx, "request_id", None))
    except TimeoutError:
        return ApprovalDecision(request_id=request.id, decision="denied",
                                reason=f"no answer from the MCP client within {timeout:g}s")
    except Exception as exc:
        return ApprovalDecision(request_id=request.id, decision="pending",
                                reason=f"the MCP client could not be asked: {exc}")
    content = answer.content or {}
    if answer.action == "accept" and content.get("approve") is True:
        return ApprovalDecision(request_id=request.id, decision="approved",
                                actor="mcp-client")
    return ApprovalDecision(request_id=request.id, decision="denied", actor="mcp-client",
                            reason=f"the MCP client's user answered {answer.action}"
                            + ("" if answer.action != "accept" else " without approving"))


# -- transports ------------------------------------------------------------------------------
async def _serve_stdio(server: Any, agent: Any) -> None:
    import anyio
    from mcp.server.stdio import stdio_server

    count = len(agent.action.get_action_info())
    _announce(f"serving {count} action(s) as MCP tools over stdio")
    async with anyio.create_task_group() as group:
        group.start_soon(_on_signal, group.cancel_scope.cancel)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        group.cancel_scope.cancel()


async def _serve_http(server: Any, agent: Any, host: str, port: int) -> None:
    import anyio
    import uvicorn

    app = server.streamable_http_app(streamable_http_path="/mcp", host=host)

    class _Server(uvicorn.Server):
        def capture_signals(self) -> Any:  # ours below: uvicorn's re-raises them after
            import contextlib

            return contextlib.nullcontext()

    web = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                 lifespan="on"))

    def stop() -> None:
        web.should_exit = True

    async def announce() -> None:
        while not web.started:
            if web.should_exit:
                return
            await anyio.sleep(0.01)
        ports = [s.getsockname()[1] for srv in web.servers for s in (srv.sockets or ())]
        count = len(agent.action.get_action_info())
        where = f"http://{host}:{ports[0] if ports else port}/mcp"
        _announce(f"serving {count} action(s) as MCP tools on {where}")

    async with anyio.create_task_group() as group:
        group.start_soon(_on_signal, stop)
        group.start_soon(announce)
        await web.serve()
        group.cancel_scope.cancel()
    if not web.started:
        from agently_core.errors import ConfigError

        raise ConfigError(f"serve-mcp: could not listen on {host}:{port}")


async def _on_signal(stop: Any) -> None:
    import signal

    import anyio

    try:
        receiver = anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT)
        with receiver as signals:
            async for _ in signals:
                stop()
                return
    except (ValueError, NotImplementedError, RuntimeError):  # not the main thread
        return


def _announce(text: str) -> None:
    print(f"agently-core serve-mcp: {text}", file=sys.stderr, flush=True)


def _object_schema(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    return schema if schema.get("type") == "object" else {"type": "object", **schema}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr)


def _version() -> str:
    from .session import _version as version

    return version()
