"""The Anthropic planner passes the planner conformance suite (agently_core.testing),
against the loopback server through the real SDK."""

from __future__ import annotations

import agently_core_anthropic.plugin

from agently_core.testing import PlannerConformance


class TestAnthropicCompatibleConformance(PlannerConformance):
    __test__ = True
    planner_name = "anthropic_compatible"
    planner_plugin = agently_core_anthropic.plugin
    api_key_env = "CONFORMANCE_ANTHROPIC_KEY"
