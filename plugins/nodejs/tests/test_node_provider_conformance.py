"""The ``node`` provider passes the provider conformance suite, its manager cases too: a
worker ensured twice under one key is one process, released once, and an ensure cancelled
while the worker starts leaves no process and no workspace behind."""

from __future__ import annotations

import os
from typing import Any

import pytest
from agently_core_isolation.sandbox import sandbox_root
from agently_core_nodejs.provider import NodeSandboxProvider

from agently_core.testing import ProviderConformance, require_program
from agently_core.testing.provider_suite import descendant_processes


def worker_resources() -> set[Any]:
    """The worker processes and workspaces this test process holds."""
    workspaces = {path.name for path in sandbox_root().glob(f"ws-{os.getpid()}-*")}
    return {*descendant_processes(), *workspaces}


class TestNodeProviderConformance(ProviderConformance):
    kind = "node"
    # cancel at the first suspension point, while the process starts, and while it boots
    start_cancel_delays = (0.0, 0.01, 0.1)

    @pytest.fixture(autouse=True)
    def _node(self) -> None:
        require_program("node", "nodejs")  # fails in CI, skips elsewhere

    def make_provider(self) -> NodeSandboxProvider:
        return NodeSandboxProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        if scenario == "bad_config":
            return {"config": {"tier": "no-such-tier"}}
        return {"config": {}}

    def live_resources(self) -> set[Any]:
        return worker_resources()
