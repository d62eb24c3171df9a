"""Both OpenAI planners pass the planner conformance suite (agently_core.testing), against
the loopback server through the real SDK."""

from __future__ import annotations

import agently_core_openai.plugin

from agently_core.testing import PlannerConformance


class TestOpenAICompatibleConformance(PlannerConformance):
    __test__ = True
    planner_name = "openai_compatible"
    planner_plugin = agently_core_openai.plugin
    api_key_env = "CONFORMANCE_OPENAI_KEY"


class TestOpenAIResponsesConformance(PlannerConformance):
    __test__ = True
    planner_name = "openai_responses"
    planner_plugin = agently_core_openai.plugin
    api_key_env = "CONFORMANCE_OPENAI_KEY"
