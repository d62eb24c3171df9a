"""What ``agent.use_mcp(server, ...)`` accepts, parsed into :class:`ServerSpec` objects, and
the rule that turns MCP tool names into action names.

Accepted forms of ``server``:

* a command line (``"mcp-server-time --local-timezone UTC"``) or a list of its words:
  a stdio server; ``args=``, ``env=`` and ``cwd=`` add to it;
* an ``http(s)://`` URL: Streamable HTTP, or the legacy HTTP+SSE transport when the path
  ends in ``/sse`` or ``transport="sse"`` is given; ``headers=`` are sent with every request;
* one server's config dict: ``{"command", "args", "env", "cwd"}`` or ``{"url", "headers",
  "type"}`` (``type``/``transport``: ``stdio``, ``http``/``streamable-http``, ``sse``);
* an MCP client config: ``{"mcpServers": {"name": {...}, ...}}`` (Claude Desktop's shape),
  several servers at once; an entry with ``"disabled": true`` is skipped;
* an ``mcp.StdioServerParameters``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agently_core.errors import ConfigError
from agently_core.redaction import is_secret_key

TRANSPORTS = ("stdio", "http", "sse")
_TRANSPORT_ALIASES = {
    "stdio": "stdio", "http": "http", "streamable-http": "http", "streamable_http": "http",
    "streamablehttp": "http", "shttp": "http", "sse": "sse",
}
#: Per-server keys of a config entry that agently-core reads besides the transport's own.
ENTRY_OPTIONS = ("prefix", "tools", "timeout", "approval_required")
_ENTRY_KEYS = {"command", "args", "env", "cwd", "url", "headers", "type", "transport",
               "disabled", "name", *ENTRY_OPTIONS}
#: Launchers whose first argument names the server better than the launcher does.
_LAUNCHERS = {"node", "nodejs", "python", "python3", "npx", "uvx", "uv", "bun", "bunx", "deno",
              "sh", "bash", "docker", "pipx", "java"}
_SCRIPTS = (".js", ".mjs", ".cjs", ".ts", ".py", ".sh")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_TOOL_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class ServerSpec:
    """One MCP server to connect to. ``env`` and ``headers`` are secrets: they live under
    those keys of the requirement config, where agently-core's redactor finds them."""

    transport: str
    name: str | None = None
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Per-server overrides of the mount options (prefix, tools, timeout, approval_required).
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name this server before it has told us its own name."""
        if self.name:
            return self.name
        if self.transport == "stdio":
            return derived_name(self.command or "", self.args)
        parts = urlsplit(self.url or "")
        return (parts.hostname and f"{parts.hostname}:{parts.port or ''}".rstrip(":")) or "server"

    def config(self, **extra: Any) -> dict[str, Any]:
        """The environment requirement's config (JSON-able; hashed into the reuse key)."""
        config: dict[str, Any] = {"transport": self.transport, "label": self.label}
        if self.transport == "stdio":
            config.update(command=self.command, args=list(self.args), env=dict(self.env),
                          cwd=self.cwd)
        else:
            config.update(url=self.url, headers=dict(self.headers))
        config.update(extra)
        return config

    def key(self) -> str:
        """A stable id of the server's connection settings (not of the agently options)."""
        material = json.dumps(self.config(), sort_keys=True, default=repr)
        return hashlib.blake2b(material.encode(), digest_size=8).hexdigest()


def derived_name(command: str, args: Iterable[str] = ()) -> str:
    """A short name for a stdio server: the program, or for a launcher (``node``,
    ``python``, ``npx``...) its first argument that is not an option."""
    base = os.path.basename(command)
    stem = os.path.splitext(base)[0] if base.endswith(_SCRIPTS) else base
    if stem.lower() not in _LAUNCHERS and not re.fullmatch(r"python[0-9.]*", stem.lower()):
        return stem or "server"
    for word in args:
        if word.startswith("-") or word in {"run", "exec", "x"}:
            continue
        word = re.sub(r"(?<=.)@[^/@]*$", "", word)  # a version pin: package@1.2.3
        tail = os.path.basename(word.rstrip("/")) or word
        return os.path.splitext(tail)[0] if tail.endswith(_SCRIPTS) else tail
    return stem


def safe_name(name: str) -> str:
    """``name`` made usable in an action name prefix (letters, digits, ``_``, ``-``)."""
    cleaned = _NAME_CHARS.sub("_", name).strip("_") or "server"
    return cleaned if cleaned[0].isalpha() or cleaned[0] == "_" else f"_{cleaned}"


def tool_action_name(tool: str) -> str:
    """An MCP tool name as an action name: characters an action name may not hold become
    ``_``; a name longer than 128 characters is cut and made unique with a hash."""
    cleaned = _TOOL_CHARS.sub("_", tool) or "_"
    if not (cleaned[0].isalpha() or cleaned[0] == "_"):
        cleaned = f"_{cleaned}"
    return limit_name(cleaned, tool)


def limit_name(name: str, original: str | None = None) -> str:
    if len(name) <= 128:
        return name
    digest = hashlib.blake2b((original or name).encode(), digest_size=4).hexdigest()
    return f"{name[:119]}_{digest}"


# -- parsing -------------------------------------------------------------------------------
def parse_servers(server: Any, *, name: str | None = None, transport: str | None = None,
                  args: Iterable[str] | None = None, env: Mapping[str, Any] | None = None,
                  cwd: str | os.PathLike[str] | None = None,
                  headers: Mapping[str, Any] | None = None) -> list[ServerSpec]:
    """Every server that ``server`` names, with the keyword options applied (they apply to
    a single server; with an ``mcpServers`` config they are a usage error, except
    ``name``-less defaults nothing else can mean)."""
    overrides = {"args": args, "env": env, "cwd": cwd, "headers": headers, "transport": transport}
    if isinstance(server, Mapping) and "mcpServers" in server:
        given = [key for key, value in overrides.items() if value is not None]
        if given or name:
            raise ConfigError(f"use_mcp: {', '.join(given + (['name'] if name else []))} apply to "
                              "one server; put them in each entry of the mcpServers config")
        entries = server["mcpServers"]
        if not isinstance(entries, Mapping) or not entries:
            raise ConfigError("use_mcp: mcpServers must be a non-empty mapping of name -> server")
        specs = []
        for key, entry in entries.items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"use_mcp: mcpServers[{key!r}] must be a mapping, got "
                                  f"{type(entry).__name__}")
            if entry.get("disabled"):
                continue
            specs.append(_from_entry(entry, name=str(key), where=f"mcpServers[{key!r}]"))
        if not specs:
            raise ConfigError("use_mcp: every server in mcpServers is disabled")
        return specs
    spec = _from_value(server, transport=transport)
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"use_mcp: name must be a non-empty string, got {name!r}")
        spec.name = name
    if args is not None:
        if spec.transport != "stdio":
            raise ConfigError("use_mcp: args= applies to a stdio server (a command), not a URL")
        spec.args += _strings(args, "args")
    if env is not None:
        if spec.transport != "stdio":
            raise ConfigError("use_mcp: env= applies to a stdio server; send secrets to an HTTP "
                              "server with headers=")
        spec.env.update(_string_map(env, "env"))
    if cwd is not None:
        if spec.transport != "stdio":
            raise ConfigError("use_mcp: cwd= applies to a stdio server (a command), not a URL")
        spec.cwd = os.fspath(cwd)
    if headers is not None:
        if spec.transport == "stdio":
            raise ConfigError("use_mcp: headers= applies to an HTTP or SSE URL; give a stdio "
                              "server its secrets with env=")
        spec.headers.update(_string_map(headers, "headers"))
    return [spec]


def _from_value(server: Any, *, transport: str | None) -> ServerSpec:
    wanted = _transport(transport, "transport") if transport is not None else None
    if isinstance(server, str):
        text = server.strip()
        if not text:
            raise ConfigError("use_mcp: the server is an empty string")
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
            return _url_spec(text, wanted)
        words = shlex.split(text)
        return _command_spec(words[0], words[1:], wanted)
    if isinstance(server, (list, tuple)):
        words = _strings(server, "server")
        if not words:
            raise ConfigError("use_mcp: the server command is an empty list")
        return _command_spec(words[0], words[1:], wanted)
    if isinstance(server, Mapping):
        spec = _from_entry(server, name=None, where="server")
        if wanted is not None and wanted != spec.transport and not (
                wanted in {"http", "sse"} and spec.transport in {"http", "sse"}):
            raise ConfigError(f"use_mcp: transport={transport!r} does not fit this server "
                              f"({spec.transport})")
        if wanted in {"http", "sse"}:
            spec.transport = wanted
        return spec
    if isinstance(server, os.PathLike):
        return _command_spec(os.fspath(server), [], wanted)
    if type(server).__name__ == "StdioServerParameters" and hasattr(server, "command"):
        spec = _command_spec(server.command, list(server.args or ()), wanted)
        spec.env = _string_map(server.env or {}, "env")
        spec.cwd = os.fspath(server.cwd) if server.cwd else None
        return spec
    raise ConfigError(f"use_mcp: cannot connect to {type(server).__name__!r}; give a command "
                      "(string or list), an http(s) URL, a server config dict or an "
                      "{'mcpServers': {...}} config")


def _from_entry(entry: Mapping[str, Any], *, name: str | None, where: str) -> ServerSpec:
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"use_mcp: {where} has unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(_ENTRY_KEYS))}")
    kind = entry.get("type", entry.get("transport"))
    wanted = _transport(kind, f"{where}.type") if kind is not None else None
    if entry.get("command") and entry.get("url"):
        raise ConfigError(f"use_mcp: {where} has both command and url; give one")
    if entry.get("command"):
        command = entry["command"]
        if not isinstance(command, str):
            raise ConfigError(f"use_mcp: {where}.command must be a string")
        if wanted not in (None, "stdio"):
            raise ConfigError(f"use_mcp: {where} has a command but type {kind!r}")
        spec = _command_spec(command, _strings(entry.get("args") or [], f"{where}.args"), None)
        spec.env = _string_map(entry.get("env") or {}, f"{where}.env")
        if entry.get("cwd"):
            spec.cwd = os.fspath(entry["cwd"])
        if entry.get("headers"):
            raise ConfigError(f"use_mcp: {where}.headers applies to a URL, not a command")
    elif entry.get("url"):
        if not isinstance(entry["url"], str):
            raise ConfigError(f"use_mcp: {where}.url must be a string")
        if wanted == "stdio":
            raise ConfigError(f"use_mcp: {where} has a url but type 'stdio'")
        spec = _url_spec(entry["url"], wanted)
        spec.headers = _string_map(entry.get("headers") or {}, f"{where}.headers")
        if entry.get("env") or entry.get("args"):
            raise ConfigError(f"use_mcp: {where}.env and .args apply to a command, not a URL")
    else:
        raise ConfigError(f"use_mcp: {where} needs a command (stdio) or a url (HTTP/SSE)")
    spec.name = entry.get("name") or name
    spec.options = {key: entry[key] for key in ENTRY_OPTIONS if key in entry}
    return spec


def _command_spec(command: str, args: list[str], wanted: str | None) -> ServerSpec:
    if wanted not in (None, "stdio"):
        raise ConfigError(f"use_mcp: transport {wanted!r} needs a URL, got the command {command!r}")
    if not command:
        raise ConfigError("use_mcp: the server command is empty")
    return ServerSpec(transport="stdio", command=command, args=list(args))


def _url_spec(url: str, wanted: str | None) -> ServerSpec:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"use_mcp: {url!r} is not an http(s) URL (stdio servers are given as "
                          "a command)")
    if wanted == "stdio":
        raise ConfigError("use_mcp: transport 'stdio' needs a command, not a URL")
    transport = wanted or ("sse" if parts.path.rstrip("/").endswith("/sse") else "http")
    return ServerSpec(transport=transport, url=url)


def _transport(value: Any, where: str) -> str:
    found = _TRANSPORT_ALIASES.get(str(value).lower()) if isinstance(value, str) else None
    if found is None:
        raise ConfigError(f"use_mcp: {where} must be one of stdio, http (streamable-http), sse; "
                          f"got {value!r}")
    return found


def _strings(values: Any, where: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"use_mcp: {where} must be a list of strings")
    out = []
    for value in values:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"use_mcp: {where} must hold strings, got {value!r}")
        out.append(str(value))
    return out


def _string_map(values: Any, where: str) -> dict[str, str]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"use_mcp: {where} must be a mapping of names to strings")
    out = {}
    for key, value in values.items():
        if not isinstance(key, str) or value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"use_mcp: {where}[{key!r}] must be a string")
        out[key] = str(value)
    return out


def url_secrets(url: str | None) -> list[str]:
    """Secret parts of a URL: the password of its userinfo and the values of query
    parameters with secret-looking names (``token``, ``api_key``...)."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [value for key, value in parse_qsl(parts.query) if value and is_secret_key(key)]
    return found


def argument_secrets(args: Iterable[str]) -> list[str]:
    """Values given to secret-looking options on a command line: ``--token VALUE``,
    ``--api-key=VALUE``, ``--password VALUE``..."""
    found: list[str] = []
    words = list(args)
    for index, word in enumerate(words):
        if not word.startswith("-"):
            continue
        name, has_value, value = word.lstrip("-").partition("=")
        if not is_secret_key(name):
            continue
        if has_value:
            found.append(value)
        elif index + 1 < len(words) and not words[index + 1].startswith("-"):
            found.append(words[index + 1])
    return found


def resolve_command(command: str) -> str:
    """The program to run: as given when it contains a path or is found on ``PATH``, else
    the one beside the running Python (a virtual environment's ``bin``), so servers
    installed in the same environment as agently-core work without activating it."""
    if os.sep in command or (os.altsep and os.altsep in command):
        return command
    if shutil.which(command):
        return command
    beside = os.path.join(os.path.dirname(sys.executable), command)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return command
