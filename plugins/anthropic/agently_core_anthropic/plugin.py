"""Entry point of agently-core-anthropic: registers names only; imports nothing heavy.

The planner's module (and the ``anthropic`` SDK behind it) loads when the planner is first
created, never at discovery.
"""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_planners(register):
    register("anthropic_compatible", "agently_core_anthropic.planner:AnthropicCompatiblePlanner")
