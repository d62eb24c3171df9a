"""The ``bash`` provider passes the provider conformance suite, its manager cases too: a
sandbox ensured twice under one key is one workspace, released once, and an ensure
cancelled while it starts leaves no workspace (and no process) behind."""

from __future__ import annotations

import os
from typing import Any

from agently_core_bash.provider import BashSandboxProvider
from agently_core_isolation.sandbox import sandbox_root

from agently_core.testing import ProviderConformance
from agently_core.testing.provider_suite import descendant_processes


class TestBashProviderConformance(ProviderConformance):
    kind = "bash"

    def make_provider(self) -> BashSandboxProvider:
        return BashSandboxProvider()

    def make_requirement(self, scenario: str) -> dict[str, Any]:
        if scenario == "bad_config":
            return {"config": {"tier": "no-such-tier"}}
        return {"config": {}}

    def live_resources(self) -> set[Any]:
        workspaces = {path.name for path in sandbox_root().glob(f"ws-{os.getpid()}-*")}
        return {*descendant_processes(), *workspaces}
