"""The default ``agently`` ActionRuntime passes the runtime conformance suite."""

from __future__ import annotations

from agently_core_runtime.runtime import AgentlyActionRuntime

from agently_core.testing import RuntimeConformance


class TestAgentlyRuntimeConformance(RuntimeConformance):
    runtime_name = "agently"
    def make_runtime(self) -> AgentlyActionRuntime:
        return AgentlyActionRuntime()
