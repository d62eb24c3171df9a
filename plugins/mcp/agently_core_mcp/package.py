"""The ``mcp`` action package: ``agent.use_mcp(server, **options)`` mounts an MCP server's
tools as actions.

Each server becomes one ``mcp`` environment requirement (its session), shared by all its
tools; each tool becomes one action of kind ``mcp`` with the tool's input schema. Mounting
connects to every server (concurrently) to list its tools. For the ``agent``, ``session``
and ``global`` scopes that first session is the scope's own, kept by the environment
manager and reused by the calls; for the other scopes a short-lived session lists the
tools and each scope owner starts its own.

Naming (the ``prefix`` option, also settable per server in an ``mcpServers`` entry):

* ``None`` (default): the tool's own name; when two servers of one ``use_mcp`` offer the
  same tool name, or the name is already taken by another action, those tools become
  ``<server>__<tool>``;
* ``True``: every tool is ``<server>__<tool>``;
* a string: prepended to every tool name, ``{server}`` in it replaced by the server name
  (``prefix="{server}_"``);
* ``False``: never prefixed; a clash is a ``ConfigError``.

``<server>`` is the ``name`` option or the ``mcpServers`` key, else the server's own name
from its ``initialize`` answer (``mcp-servers/everything`` -> ``everything``). Characters an
action name cannot hold become ``_``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agently_core.environments import SCOPES
from agently_core.errors import (
    ConfigError,
    EnvironmentApprovalRequired,
    EnvironmentBlocked,
    EnvironmentStartError,
)
from agently_core.models import ActionSpec, EnvironmentRequirement

from .schemas import (
    DEFAULT_MAX_DESCRIPTION_BYTES,
    DEFAULT_MAX_SCHEMA_BYTES,
    DEFAULT_MAX_SCHEMA_DEPTH,
    ToolRefused,
    arguments_validator,
    check_tool,
)
from .servers import (
    ServerSpec,
    argument_secrets,
    limit_name,
    parse_servers,
    safe_name,
    tool_action_name,
    url_secrets,
)
from .session import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MAX_TOOLS,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_START_TIMEOUT,
    McpConnection,
    McpStartError,
)
from .stdio import MAX_MESSAGE_BYTES

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_OUTPUT = 100_000
#: Scopes whose owner is known at mount time: the mount's session is the scope's session.
_PINNED_SCOPES = ("agent", "session", "global")
#: A required string argument with one of these names makes the tool instruction-heavy:
#: its records get a digest, and the argument and result are kept as artifacts.
INSTRUCTION_ARGUMENTS = ("code", "python_code", "source_code", "script", "command", "cmd",
                         "shell_command", "sql", "program")
OPTIONS = ("name", "prefix", "tools", "scope", "timeout", "start_timeout", "ping_interval",
           "ping_timeout", "max_output_bytes", "approval_required", "transport", "args", "env",
           "cwd", "headers", "max_tools", "max_description_bytes", "max_schema_bytes",
           "max_schema_depth", "max_result_bytes")
#: The limits on what a server may send, with their defaults (``use_mcp`` options).
LIMITS = {"max_tools": DEFAULT_MAX_TOOLS, "max_description_bytes": DEFAULT_MAX_DESCRIPTION_BYTES,
          "max_schema_bytes": DEFAULT_MAX_SCHEMA_BYTES, "max_schema_depth": DEFAULT_MAX_SCHEMA_DEPTH,
          "max_result_bytes": DEFAULT_MAX_RESULT_BYTES}
_log = logging.getLogger("agently_core_mcp")


@dataclass
class _Server:
    spec: ServerSpec
    requirement: EnvironmentRequirement
    prefix: Any
    tools: list[str] | None
    timeout: float | None
    approval_required: Any


def mount(agent: Any, *, server: Any = None, **options: Any) -> list[str]:
    """``agent.use_mcp(server, **options)``: connect, list the tools, register them.
    Returns the action names. See :func:`async_mount` for the options."""
    servers, settings = _plan(agent, server, options)
    from agently_core import _sync

    if threading.current_thread() is getattr(_sync, "_thread", None):
        raise ConfigError("agent.use_mcp() cannot run on agently-core's own event loop; use "
                          "`await agently_core_mcp.async_use_mcp(agent, server, ...)` there")
    listings = _sync.run_sync(_list_servers, agent, servers, settings)
    return _register(agent, servers, listings, settings)


async def async_mount(agent: Any, server: Any, **options: Any) -> list[str]:
    """Mount MCP ``server``'s tools on ``agent`` from async code; the sessions start on the
    running event loop. Returns the action names.

    Options: ``name`` (the server's name, for prefixes and messages), ``prefix`` (see the
    module docstring), ``tools`` (only these tool names), ``scope`` (``agent`` by default;
    any environment scope), ``timeout`` (seconds per call, default 60; ``None``: no limit),
    ``start_timeout`` (30), ``ping_interval`` (idle seconds before a reuse pings, 30),
    ``ping_timeout`` (5), ``max_output_bytes`` (100000; larger results become artifacts),
    the limits on what the server may send: ``max_tools`` (1000 per server),
    ``max_description_bytes`` (16 KiB per tool), ``max_schema_bytes`` (256 KiB per schema),
    ``max_schema_depth`` (64), ``max_result_bytes`` (32 MiB per message, stdio),
    ``approval_required`` (``True`` or the tool names that need approval), ``transport``
    (``stdio``/``http``/``sse``; guessed from the server), and for one server: ``args``,
    ``env``, ``cwd`` (stdio) or ``headers`` (HTTP/SSE). ``env`` and ``headers`` values are
    secrets: masked in records, events, errors and logs."""
    servers, settings = _plan(agent, server, options)
    listings = await _list_servers(agent, servers, settings)
    return _register(agent, servers, listings, settings)


# -- planning ------------------------------------------------------------------------------
def _plan(agent: Any, server: Any, options: dict[str, Any]) -> tuple[list[_Server], dict[str, Any]]:
    if server is None:
        raise ConfigError("the mcp package needs a server: agent.use_mcp(server) with a "
                          "command, an http(s) URL or an {'mcpServers': {...}} config")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"use_mcp: unknown option(s) {', '.join(unknown)}; options: "
                          f"{', '.join(OPTIONS)}")
    scope = options.get("scope", "agent")
    if scope not in SCOPES:
        raise ConfigError(f"use_mcp: unknown scope {scope!r}; scopes: {', '.join(SCOPES)}")
    if scope == "session" and getattr(agent, "session_id", None) is None:
        raise ConfigError("use_mcp: scope='session' needs agent.session_id to be set first")
    settings = {
        "scope": scope,
        "timeout": _seconds(options.get("timeout", DEFAULT_TIMEOUT), "timeout", allow_none=True),
        "start_timeout": _seconds(options.get("start_timeout", DEFAULT_START_TIMEOUT),
                                  "start_timeout"),
        "ping_interval": _seconds(options.get("ping_interval", DEFAULT_PING_INTERVAL),
                                  "ping_interval"),
        "ping_timeout": _seconds(options.get("ping_timeout", DEFAULT_PING_TIMEOUT), "ping_timeout"),
        "max_output_bytes": options.get("max_output_bytes", DEFAULT_MAX_OUTPUT),
    }
    if not isinstance(settings["max_output_bytes"], int) or settings["max_output_bytes"] < 1:
        raise ConfigError("use_mcp: max_output_bytes must be a positive integer")
    for limit, default in LIMITS.items():
        value = options.get(limit, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"use_mcp: {limit} must be a positive integer, got {value!r}")
        settings[limit] = value
    if settings["max_result_bytes"] > MAX_MESSAGE_BYTES:
        raise ConfigError(f"use_mcp: max_result_bytes is at most {MAX_MESSAGE_BYTES}")
    specs = parse_servers(server, name=options.get("name"), transport=options.get("transport"),
                          args=options.get("args"), env=options.get("env"),
                          cwd=options.get("cwd"), headers=options.get("headers"))
    servers = []
    for spec in specs:
        per = spec.options
        prefix = per.get("prefix", options.get("prefix"))
        if prefix is not None and not isinstance(prefix, (bool, str)):
            raise ConfigError(f"use_mcp: prefix must be None, True, False or a string, got {prefix!r}")
        tools = per.get("tools", options.get("tools"))
        if tools is not None:
            if isinstance(tools, str) or not isinstance(tools, Iterable):
                raise ConfigError("use_mcp: tools must be a list of tool names")
            tools = [str(t) for t in tools]
        timeout = _seconds(per["timeout"], "timeout", allow_none=True) if "timeout" in per \
            else settings["timeout"]
        config = spec.config(start_timeout=settings["start_timeout"],
                             ping_interval=settings["ping_interval"],
                             ping_timeout=settings["ping_timeout"],
                             max_result_bytes=settings["max_result_bytes"],
                             max_tools=settings["max_tools"])
        agent.redactor.add_from_config(config)  # secret before anything can print them
        agent.redactor.add(*url_secrets(spec.url), *argument_secrets(spec.args))
        # an explicit reuse key: the manager need not hash the config on every call
        requirement = EnvironmentRequirement(kind="mcp", scope=scope, resource_key="mcp",
                                             config=config, reuse_key=_config_key(config))
        servers.append(_Server(spec, requirement, prefix, tools, timeout,
                               per.get("approval_required", options.get("approval_required",
                                                                       False))))
    return servers, settings


def _config_key(config: dict[str, Any]) -> str:
    import hashlib
    import json

    material = json.dumps(config, sort_keys=True, default=repr).encode()
    return "mcp-" + hashlib.blake2b(material, digest_size=12).hexdigest()


def _seconds(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"use_mcp: {name} must be a positive number of seconds, got {value!r}")
    return float(value)


# -- listing -------------------------------------------------------------------------------
async def _list_servers(agent: Any, servers: list[_Server], settings: dict[str, Any]) -> list[Any]:
    import anyio

    results: list[Any] = [None] * len(servers)

    async def one(index: int, server: _Server) -> None:
        try:
            results[index] = await _list_one(agent, server, settings)
        except Exception as exc:
            results[index] = exc

    async with anyio.create_task_group() as group:
        for index, server in enumerate(servers):
            group.start_soon(one, index, server)
    failed = [(s, r) for s, r in zip(servers, results, strict=True) if isinstance(r, Exception)]
    for _server, error in failed:
        if isinstance(error, (EnvironmentApprovalRequired, EnvironmentBlocked)):
            raise error
    if failed:
        text = "; ".join(_start_message(error) for _server, error in failed)
        raise EnvironmentStartError(agent.redactor.text(f"use_mcp: {text}"))
    return results


def _start_message(error: Exception) -> str:
    cause = error.__cause__ if isinstance(error, EnvironmentStartError) else None
    if isinstance(cause, McpStartError):
        return str(cause)
    if isinstance(error, McpStartError):
        return str(error)
    return f"{type(error).__name__}: {error}"


async def _list_one(agent: Any, server: _Server, settings: dict[str, Any]
                    ) -> tuple[list[Any], Any]:
    """The server's tools and its own description; the whole listing is bounded by
    ``start_timeout``. A listing that fails closes the session (nothing keeps running)."""
    import anyio

    scope = settings["scope"]
    requirement = server.requirement
    if scope in _PINNED_SCOPES:
        if scope != "global":
            owner = agent.id if scope == "agent" else agent.session_id
            requirement = requirement.model_copy(
                update={"owner_id": owner, "id": f"{requirement.id}@{owner}"})
        manager = agent.manager
        handle = await manager.async_ensure(requirement, events=agent.events,
                                            approval_context=agent, approval=agent.approval,
                                            policy=agent.policy)
        try:
            connection = manager.resource(handle)
            return await _listing(connection, settings)
        finally:
            with anyio.CancelScope(shield=True):
                await manager.async_release(handle, events=agent.events)
    connection = McpConnection(requirement.config)
    try:
        await connection.start()
        return await _listing(connection, settings)
    finally:
        with anyio.CancelScope(shield=True):
            await connection.aclose()


async def _listing(connection: McpConnection, settings: dict[str, Any]) -> tuple[list[Any], Any]:
    import anyio

    try:
        return (await connection.list_tools(settings["start_timeout"], settings["max_tools"]),
                connection.server_info)
    except BaseException:
        connection.unhealthy = True  # its server is killed, and the next ensure starts anew
        with anyio.CancelScope(shield=True):
            await connection.aclose()
        raise


# -- registering ---------------------------------------------------------------------------
def _server_name(server: _Server, info: Any) -> str:
    if server.spec.name:
        return safe_name(server.spec.name)
    own = getattr(info, "name", None)
    if isinstance(own, str) and own.strip():
        return safe_name(own.rstrip("/").rsplit("/", 1)[-1])
    return safe_name(server.spec.label)


def _register(agent: Any, servers: list[_Server], listings: list[Any],
              settings: dict[str, Any]) -> list[str]:
    entries: list[dict[str, Any]] = []
    for server, (tools, info) in zip(servers, listings, strict=True):
        name = _server_name(server, info)
        tools = _accepted(agent, server, name, tools, settings)
        if server.tools is not None:
            offered = {tool.name for tool in tools}
            missing = [t for t in server.tools if t not in offered]
            if missing:
                raise ConfigError(f"use_mcp: MCP server {name!r} has no tool(s) "
                                  f"{', '.join(map(repr, missing))}; it offers: "
                                  f"{', '.join(sorted(offered)) or 'none'}")
            tools = [tool for tool in tools if tool.name in server.tools]
        for tool in tools:
            entries.append({"server": server, "server_name": name, "tool": tool,
                            "base": tool_action_name(tool.name), "key": server.spec.key()})
    _assign_names(agent, entries)
    mounted = []
    for entry in entries:
        spec = _action_spec(entry, settings)
        agent.action.register_action(spec, validate=_validator(spec.input_schema))
        mounted.append(spec.name)
    return mounted


def _accepted(agent: Any, server: _Server, name: str, tools: list[Any],
              settings: dict[str, Any]) -> list[Any]:
    """The tools within the limits. A tool over one is left out with a warning (logged,
    and the ``mcp.tool_refused`` event); one asked for by ``tools=`` is a ConfigError."""
    kept = []
    for tool in tools:
        try:
            check_tool(tool, max_description_bytes=settings["max_description_bytes"],
                       max_schema_bytes=settings["max_schema_bytes"],
                       max_schema_depth=settings["max_schema_depth"])
        except ToolRefused as exc:
            label = str(tool.name)[:128]
            message = (f"use_mcp: the tool {label!r} of MCP server {name!r} was left out: "
                       f"{exc}")
            if server.tools is not None and tool.name in server.tools:
                raise ConfigError(message) from None
            _log.warning("%s", agent.redactor.text(message))
            agent.events.emit_sync("mcp.tool_refused", source="mcp", server=name, tool=label,
                                   reason=str(exc))
            continue
        kept.append(tool)
    return kept


def _assign_names(agent: Any, entries: list[dict[str, Any]]) -> None:
    taken = {e.spec.name: (e.spec.meta or {}).get("mcp_server_key") for e in agent.registry}

    def prefixed(entry: dict[str, Any]) -> str:
        return limit_name(f"{entry['server_name']}__{entry['base']}")

    for entry in entries:
        prefix = entry["server"].prefix
        if prefix is True:
            entry["name"] = prefixed(entry)
        elif isinstance(prefix, str) and prefix:
            entry["name"] = limit_name(prefix.replace("{server}", entry["server_name"])
                                       + entry["base"])
        else:
            entry["name"] = entry["base"]
    counts: dict[str, set[str]] = {}
    for entry in entries:
        counts.setdefault(entry["name"], set()).add(entry["key"])
    for entry in entries:
        if entry["server"].prefix is not None:
            continue
        name = entry["name"]
        other = name in taken and taken[name] != entry["key"]
        if len(counts[name]) > 1 or other:
            entry["name"] = prefixed(entry)
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name = entry["name"]
        clash = seen.get(name)
        if clash is not None or (name in taken and taken[name] != entry["key"]):
            who = (f"MCP server {clash['server_name']!r}" if clash is not None
                   else "an action already registered")
            raise ConfigError(
                f"use_mcp: the tool {entry['tool'].name!r} of MCP server "
                f"{entry['server_name']!r} would be the action {name!r}, which {who} already "
                "uses; give the servers distinct names or a prefix (prefix=True makes every "
                "tool <server>__<tool>)")
        seen[name] = entry


def _action_spec(entry: dict[str, Any], settings: dict[str, Any]) -> ActionSpec:
    server: _Server = entry["server"]
    tool = entry["tool"]
    schema = dict(tool.input_schema) if isinstance(tool.input_schema, Mapping) else {}
    schema.setdefault("type", "object")
    policy: dict[str, Any] = {"max_output_bytes": settings["max_output_bytes"]}
    if server.timeout is not None:
        policy["timeout_seconds"] = server.timeout
    approval = server.approval_required
    if isinstance(approval, bool):
        needs_approval = approval
    elif isinstance(approval, Iterable) and not isinstance(approval, str):
        wanted = {str(a) for a in approval}
        needs_approval = tool.name in wanted or entry["name"] in wanted
    else:
        raise ConfigError("use_mcp: approval_required must be True, False or a list of tool names")
    tags = ["mcp", f"mcp:{entry['server_name']}"]
    meta: dict[str, Any] = {"mcp_server": entry["server_name"], "mcp_tool": tool.name,
                            "mcp_server_key": entry["key"]}
    annotations = getattr(tool, "annotations", None)
    if annotations is not None:
        dumped = annotations.model_dump(mode="json", exclude_none=True)
        if dumped:
            meta["mcp_annotations"] = dumped
        for field, tag in (("read_only_hint", "read-only"), ("destructive_hint", "destructive"),
                           ("idempotent_hint", "idempotent"), ("open_world_hint", "open-world")):
            if getattr(annotations, field, None):
                tags.append(tag)
    instruction = _instruction_argument(schema)
    if instruction:
        meta["instruction"] = instruction
    description = (tool.description or getattr(tool, "title", None)
                   or f"The {tool.name!r} tool of MCP server {entry['server_name']!r}.")
    output = tool.output_schema if isinstance(tool.output_schema, Mapping) else None
    return ActionSpec(name=entry["name"], description=description, input_schema=schema,
                      output_schema=dict(output) if output else None, kind="mcp",
                      approval_required=needs_approval, policy=policy, tags=tags,
                      execution_environments=[server.requirement], meta=meta)


def _instruction_argument(schema: Mapping[str, Any]) -> str | None:
    properties = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    for name in INSTRUCTION_ARGUMENTS:
        prop = properties.get(name)
        if name in required and isinstance(prop, Mapping) and prop.get("type") == "string":
            return name
    return None


_JSON_TYPES: dict[str, Any] = {"string": str, "boolean": bool, "object": dict, "array": list,
                               "null": type(None), "number": (int, float), "integer": int}
_PLAIN_TOP = {"type", "properties", "required", "additionalProperties", "$schema", "title",
              "description"}
_PLAIN_PROPERTY = {"type", "description", "title", "default", "examples"}


def _validator(schema: dict[str, Any]) -> Any:
    """How the dispatcher checks a call's arguments against the tool's input schema: a
    JSON-schema validator that evaluates none of the server's regexes
    (:func:`~agently_core_mcp.schemas.arguments_validator`), behind a fast path for the
    common plain schemas (an object of typed properties) that accepts what is plainly
    valid and hands anything else to the full validator, which decides and words the
    error. No check at all when the server's schema is not valid JSON Schema (the server
    still validates)."""
    full = arguments_validator(schema)
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    required = schema.get("required") or []
    if (schema.get("type") != "object" or set(schema) - _PLAIN_TOP or extra not in (True, False)
            or not isinstance(properties, dict) or not isinstance(required, list)
            or any(not isinstance(p, dict) or set(p) - _PLAIN_PROPERTY
                   or p.get("type") not in _JSON_TYPES for p in properties.values())):
        return full
    kinds = {name: (p["type"], _JSON_TYPES[p["type"]]) for name, p in properties.items()}
    closed = extra is False

    def validate(kwargs: dict[str, Any]) -> dict[str, Any]:
        for name in required:
            if name not in kwargs:
                return full(kwargs)
        for name, value in kwargs.items():
            kind = kinds.get(name)
            if kind is None:
                if closed:
                    return full(kwargs)
                continue
            label, python = kind
            if not isinstance(value, python) or (type(value) is bool and label != "boolean"):
                return full(kwargs)
        return kwargs

    return validate
