"""Entry point of agently-core-mcp: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_execution_environment_providers(register):
    register("mcp", "agently_core_mcp.provider:McpSessionProvider")


@hookimpl
def register_action_executors(register):
    register("mcp", "agently_core_mcp.executor:McpExecutor")


@hookimpl
def register_action_packages(register):
    register("mcp", "agently_core_mcp.package:mount",
             description="MCP servers' tools as actions: agent.use_mcp(server, ...) with a "
             "command, an HTTP/SSE URL or an mcpServers config.")


@hookimpl
def register_commands(register):
    register("serve-mcp", "agently_core_mcp.cli:serve_mcp",
             help="serve the actions as MCP tools (stdio or HTTP)")
