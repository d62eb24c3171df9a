"""The default ActionRuntime ('agently'), ActionFlow and scripted planner."""

from .flow import AgentlyActionFlow
from .planners import ScriptedPlanner
from .runtime import AgentlyActionRuntime

__all__ = ["AgentlyActionFlow", "AgentlyActionRuntime", "ScriptedPlanner"]
