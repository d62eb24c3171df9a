"""The scripted planner passes the Planner conformance suite.

It talks to no server, so a :class:`~agently_core.testing.planner_suite.CallableModel`
plays the suite's replies through its ``steps`` and ``outputs`` callables: tool calls as
native tool calls, a structured plan's JSON text as the plan, a fault as the ModelError
a model planner would raise. What "the model" received is what the planner was given:
the request and the planning context (history, environment state), as JSON.
"""

from __future__ import annotations

from agently_core.testing import PlannerConformance, StandIn
from agently_core.testing.model_servers import Reply
from agently_core.testing.planner_suite import CallableModel


class TestScriptedPlannerConformance(PlannerConformance):
    planner_name = "scripted"

    def start_model(self, replies: list[Reply]) -> StandIn:
        model = CallableModel(replies, name="scripted")
        return StandIn(options={"steps": model.plan, "outputs": model.generate},
                       inputs=model.inputs)
