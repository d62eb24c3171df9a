"""The ``mcp`` provider passes the provider conformance suite with a real stdio server
(``mcp-server-time``), its manager cases too: one session per key, released once, and an
ensure cancelled while the server starts leaves no process behind."""

from __future__ import annotations

from typing import Any

import pytest
from agently_core_mcp.provider import McpSessionProvider
from agently_core_mcp.testing import time_server_path

from agently_core.testing import ProviderConformance, require
from agently_core.testing.provider_suite import descendant_processes

TIME_SERVER = time_server_path()


class TestMcpProviderConformance(ProviderConformance):
    kind = "mcp"
    # cancel at the first suspension point and during the MCP handshake; each server takes
    # a second or two to start, so two at once are enough for the concurrency case
    start_cancel_delays = (0.0, 0.3)
    concurrent_ensures = 2

    @pytest.fixture(autouse=True)
    def _time_server(self) -> None:
        require(TIME_SERVER.exists(), f"mcp-server-time is not installed at {TIME_SERVER}; "
                "run ./dev setup")

    def make_provider(self) -> McpSessionProvider:
        return McpSessionProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        config: dict[str, Any] = {"transport": "stdio", "label": "time",
                                  "command": str(TIME_SERVER),
                                  "args": ["--local-timezone", "UTC"], "env": {}, "cwd": None,
                                  "start_timeout": 20}
        if scenario == "bad_config":
            config["command"] = str(self.tmp_path / "no-such-server")
        return {"config": config}

    def live_resources(self) -> set[Any]:
        return descendant_processes()
