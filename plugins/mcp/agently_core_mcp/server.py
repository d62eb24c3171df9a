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

Approval comes from the host: a configured handler (``auto_approve``, ``fail_closed``, a
plugin's) is used as it is. The interactive terminal ones (the default
``input_timeout_fail``, and ``input``) cannot work in a server, so they are replaced by
``fail_closed``: such a call returns the ``approval required`` tool error and does not run.
Only when the host opts in (``client_approval=True``, ``--client-approval``) does the
served agent ask the MCP client instead, through form elicitation on a handshake-era
connection: the client's user accepts (``approve: true``) and the action runs.

Over HTTP: a bearer token is required (:mod:`.server_auth`), Host and Origin headers are
checked for every bind address and a non-loopback bind needs ``allow_remote``
(:mod:`.server_bind`), sessions are bounded in number and idle time, and each MCP session
has its own sandboxes, released when it ends (:mod:`.server_sessions`).
"""

from __future__ import annotations

import contextvars
import json
import math
import sys
from collections.abc import Iterable
from typing import Any

from .server_sessions import SessionOwners

#: The MCP request being served (for the approval handler that asks the client).
_REQUEST: contextvars.ContextVar[Any] = contextvars.ContextVar("agently_mcp_request", default=None)
_TERMINAL_HANDLERS = ("input_timeout_fail", "input")
APPROVAL_HANDLER = "mcp_elicitation"
DEFAULT_PORT = 8000
#: Open HTTP sessions at most; a new one beyond that is refused (503), none is evicted.
DEFAULT_MAX_SESSIONS = 100
#: Seconds an HTTP session may stay idle (no request in flight) before it is closed.
DEFAULT_IDLE_TIMEOUT = 900.0


def serve(agent: Any, *, transport: str = "stdio", host: str = "127.0.0.1",
          port: int | None = None, **options: Any) -> int:
    """Serve ``agent``'s actions over MCP until the client disconnects (stdio) or the
    process gets SIGINT/SIGTERM (HTTP, at ``http://HOST:PORT/mcp``; port 0 picks a free
    one, announced on stderr). Blocks; closes the agent before returning 0. ``options``
    are :func:`serve_async`'s."""
    import functools

    import anyio

    return anyio.run(functools.partial(serve_async, agent, transport, host, port, **options))


async def serve_async(agent: Any, transport: str = "stdio", host: str = "127.0.0.1",
                      port: int | None = None, *, token: str | None = None, auth: bool = True,
                      allow_remote: bool = False, allowed_hosts: Iterable[str] = (),
                      client_approval: bool = False, max_sessions: int | None = None,
                      idle_timeout: float | None = None) -> int:
    """:func:`serve` on the running event loop (the agent's environments live on it).

    HTTP only: ``token`` (default ``AGENTLY_MCP_TOKEN``, else generated and printed once),
    ``auth=False`` (no token; loopback binds only), ``allow_remote`` (listen on a
    non-loopback address), ``allowed_hosts`` (more accepted Host names), ``max_sessions``
    (default 100) and ``idle_timeout`` (seconds, default 900). Both transports:
    ``client_approval`` (the MCP client may approve calls through elicitation)."""
    import anyio

    from agently_core.errors import ConfigError

    from .server_bind import check_bind

    if transport not in ("stdio", "http"):
        raise ConfigError(f"serve-mcp: transport must be 'stdio' or 'http', got {transport!r}")
    allowed_hosts = list(allowed_hosts or ())
    if transport == "stdio":
        given = [name for name, on in (("--allow-remote", allow_remote), ("--no-auth", not auth),
                                       ("--allowed-host", allowed_hosts),
                                       ("--max-sessions", max_sessions is not None),
                                       ("--idle-timeout", idle_timeout is not None),
                                       ("a token", token is not None)) if on]
        if given:
            raise ConfigError(f"serve-mcp: {', '.join(given)} only apply to --transport http")
        http: dict[str, Any] = {}
    else:
        http = {"extra_hosts": check_bind(host, allow_remote=allow_remote, auth=auth,
                                          allowed_hosts=allowed_hosts),
                "max_sessions": _positive_int(max_sessions, DEFAULT_MAX_SESSIONS,
                                              "--max-sessions"),
                "idle_timeout": _positive_seconds(idle_timeout, DEFAULT_IDLE_TIMEOUT,
                                                  "--idle-timeout")}
        if auth:
            from .server_auth import resolve_token

            http["token"], http["generated"] = resolve_token(token)
            agent.add_secrets(http["token"])  # never in a record, event, digest or artifact
        elif token is not None:
            raise ConfigError("serve-mcp: a token and --no-auth contradict each other")
    owners = SessionOwners(agent, single=transport == "stdio")
    server = build_server(agent, client_approval=client_approval, owners=owners)
    try:
        if transport == "stdio":
            await _serve_stdio(server, agent)
        else:
            await _serve_http(server, agent, host, DEFAULT_PORT if port is None else port,
                              **http)
    finally:
        with anyio.CancelScope(shield=True):
            await owners.aclose()
            await agent.aclose()
    return 0


def _positive_int(value: Any, default: int, option: str) -> int:
    from agently_core.errors import ConfigError

    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"serve-mcp: {option} must be a whole number of at least 1, "
                          f"got {value!r}")
    return value


def _positive_seconds(value: Any, default: float, option: str) -> float:
    from agently_core.errors import ConfigError

    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (math.isfinite(value) and value > 0):
        raise ConfigError(f"serve-mcp: {option} must be a positive number of seconds, "
                          f"got {value!r}")
    return float(value)


def build_server(agent: Any, *, client_approval: bool = False,
                 owners: SessionOwners | None = None) -> Any:
    """The low-level MCP ``Server`` exposing ``agent``'s actions; every session's calls
    run under an owner of its own (``owners``; default: one owner per connection)."""
    from mcp.server import Server

    _set_approval(agent, client_approval)
    owners = owners if owners is not None else SessionOwners(agent)

    async def list_tools(ctx: Any, params: Any) -> Any:
        from mcp_types import ListToolsResult, Tool

        tools = [Tool(name=info["name"], description=info.get("description") or None,
                      input_schema=_object_schema(info.get("kwargs")))
                 for info in agent.action.get_action_info()]
        return ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> Any:
        return await _call(agent, owners, ctx, params.name, params.arguments,
                           client_approval=client_approval)

    return Server("agently-core", version=_version(), on_list_tools=list_tools,
                  on_call_tool=call_tool,
                  instructions="Actions of an agently-core agent. Calls run under the "
                  "host's policy; an action that needs approval is never run silently.")


async def _call(agent: Any, owners: SessionOwners, ctx: Any, name: str, arguments: Any, *,
                client_approval: bool = False) -> Any:
    from mcp.shared.exceptions import MCPError
    from mcp_types import INVALID_PARAMS

    from agently_core.execution import current_request, current_session
    from agently_core.models import ActionCall, new_id

    entry = agent.registry.get(name)
    if entry is None or not entry.visible:
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}")
    owner = owners.owner_for(ctx)
    call = ActionCall(id=new_id("call_"), action=name, source="model",
                      kwargs=dict(arguments) if isinstance(arguments, dict) else {})
    request_token = _REQUEST.set(ctx)
    call_token = current_request.set(call.id)
    session_token = current_session.set(owner)
    try:
        record = await agent.dispatcher.dispatch(call)
    finally:
        current_session.reset(session_token)
        current_request.reset(call_token)
        _REQUEST.reset(request_token)
    return tool_result(record, client_approval=client_approval)


def tool_result(record: Any, *, client_approval: bool = False) -> Any:
    """An action record as an MCP ``CallToolResult`` (``client_approval``: whether the
    server may ask the client to approve, which changes the ``approval required`` text)."""
    from mcp_types import CallToolResult, TextContent

    if record.status == "success":
        value = record.result
        text = value if isinstance(value, str) else _json(value)
        structured = value if isinstance(value, dict) else {"result": value}
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=structured, is_error=False)
    if record.status == "approval_required" and client_approval:
        text = (f"approval required: {record.error}. The action was NOT run: it needs a "
                "person's approval, and this MCP client could not be asked (no elicitation "
                "support). Approve it on the agently-core host (its approval handler), or "
                "use a client that supports elicitation.")
    elif record.status == "approval_required":
        text = (f"approval required: {record.error}. The action was NOT run: it needs the "
                "approval of the agently-core host (its approval handler); MCP clients "
                "cannot approve their own calls on this server (the host may allow that "
                "with serve-mcp --client-approval).")
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
def _set_approval(agent: Any, client_approval: bool) -> None:
    """Replace a terminal approval handler (useless in a server): by asking the MCP client
    when the host opted in, else by ``fail_closed`` (the call is reported, never run)."""
    approval = agent.approval
    if approval.default in _TERMINAL_HANDLERS:
        if client_approval:
            approval.register_handler(APPROVAL_HANDLER, ask_client)
            approval.set_default(APPROVAL_HANDLER)
        else:
            approval.set_default("fail_closed")


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


async def _serve_http(server: Any, agent: Any, host: str, port: int, *, extra_hosts: list[str],
                      max_sessions: int, idle_timeout: float, token: str | None = None,
                      generated: bool = False) -> None:
    import anyio
    import uvicorn

    from .server_auth import TOKEN_ENV, BearerTokenMiddleware
    from .server_bind import allowed_hosts, bind_socket, host_literal, is_wildcard, security_settings

    sock = bind_socket(host, port)
    port = sock.getsockname()[1]
    app: Any = server.streamable_http_app(
        streamable_http_path="/mcp", host=host, max_sessions=max_sessions,
        session_idle_timeout=idle_timeout,
        transport_security=security_settings(host, port, extra_hosts))
    if token is not None:
        app = BearerTokenMiddleware(app, token)

    class _Server(uvicorn.Server):
        def capture_signals(self) -> Any:  # ours below: uvicorn's re-raises them after
            import contextlib

            return contextlib.nullcontext()

    web = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                 proxy_headers=False, ws="none", server_header=False,
                                 limit_concurrency=2 * max_sessions + 16,
                                 timeout_graceful_shutdown=5))

    def stop() -> None:
        web.should_exit = True

    async def announce() -> None:
        while not web.started:
            if web.should_exit:
                return
            await anyio.sleep(0.01)
        if token is None:
            _announce("WARNING: --no-auth: no bearer token is required; every process and "
                      "every user of this machine can call these actions")
        elif generated:
            _announce(f"clients must send the header 'Authorization: Bearer {token}' (a "
                      f"token generated for this run; set {TOKEN_ENV} to choose one)")
        else:
            _announce(f"clients must send the header 'Authorization: Bearer <{TOKEN_ENV}>'")
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host) if is_wildcard(host) \
            else host
        count = len(agent.action.get_action_info())
        where = f"http://{host_literal(shown)}:{port}/mcp"
        hosts = ", ".join(allowed_hosts(host, port, extra_hosts))
        _announce(f"serving {count} action(s) as MCP tools on {where} (listening on "
                  f"{host_literal(host)}:{port}; Host names accepted: {hosts})")

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_on_signal, stop)
            group.start_soon(announce)
            await web.serve(sockets=[sock])
            group.cancel_scope.cancel()
    finally:
        sock.close()
    if not web.started:
        from agently_core.errors import ConfigError

        raise ConfigError(f"serve-mcp: could not serve on {host}:{port}")


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
