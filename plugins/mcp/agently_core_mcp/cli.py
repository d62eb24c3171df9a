"""``agently-core serve-mcp``: the command agently-core-mcp adds to the command line
through the ``register_commands`` hook (see :mod:`agently_core_mcp.plugin`).

:func:`serve_mcp` adds the command's arguments and returns its handler; the server
(:mod:`agently_core_mcp.server`) and the MCP SDK load only when the command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .server import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, DEFAULT_PORT


def serve_mcp(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add the options of ``serve-mcp`` to ``parser``; returns the handler."""
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                        help="stdio (default): one client that started this process; http: "
                        "Streamable HTTP at http://HOST:PORT/mcp")
    parser.add_argument("--host", default="127.0.0.1",
                        help="HTTP: the address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"HTTP: the port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--enable", action="append", metavar="PACKAGE,...",
                        help="serve these action packages (comma-separated; default: every "
                        "installed one)")
    parser.add_argument("--option", action="append", metavar="PACKAGE.KEY=VALUE",
                        help="an option of an action package, PACKAGE.KEY=VALUE (repeatable), "
                        "e.g. sqlite.database=shop.db")
    parser.add_argument("--allow-remote", action="store_true",
                        help="HTTP: allow a non-loopback --host (0.0.0.0, ::, a LAN address)")
    parser.add_argument("--allowed-host", action="append", metavar="NAME[:PORT]",
                        help="HTTP: another Host header value to accept (repeatable)")
    parser.add_argument("--no-auth", action="store_true",
                        help="HTTP, loopback only: require no bearer token (any local process "
                        "can then call the actions)")
    parser.add_argument("--client-approval", action="store_true",
                        help="let the MCP client approve calls that need approval "
                        "(elicitation)")
    parser.add_argument("--max-sessions", type=int, metavar="N",
                        help=f"HTTP: open sessions at most (default {DEFAULT_MAX_SESSIONS})")
    parser.add_argument("--idle-timeout", type=float, metavar="S",
                        help="HTTP: close a session idle this many seconds (default "
                        f"{DEFAULT_IDLE_TIMEOUT:g})")
    return run


def run(args: argparse.Namespace) -> int:
    """Serve the mounted actions until the client goes (stdio) or a signal comes (HTTP)."""
    from agently_core.cli import UsageError, open_agent

    from .server import serve

    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    with open_agent(args.enable, args.option) as agent:
        return int(serve(agent, transport=args.transport, host=args.host, port=args.port,
                         auth=not args.no_auth, allow_remote=args.allow_remote,
                         allowed_hosts=args.allowed_host or (),
                         client_approval=args.client_approval, max_sessions=args.max_sessions,
                         idle_timeout=args.idle_timeout) or 0)
