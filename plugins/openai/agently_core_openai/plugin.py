"""Entry point of agently-core-openai: registers names only; imports nothing heavy.

The planners' modules (and the ``openai`` SDK behind them) load when a planner is first
created, never at discovery.
"""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_planners(register):
    register("openai_compatible", "agently_core_openai.chat:OpenAICompatiblePlanner")
    register("openai_responses", "agently_core_openai.responses:OpenAIResponsesPlanner")
