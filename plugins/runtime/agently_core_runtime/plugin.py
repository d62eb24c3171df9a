"""Entry point of agently-core-runtime: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_action_runtimes(register):
    register("agently", "agently_core_runtime.runtime:AgentlyActionRuntime")


@hookimpl
def register_action_flows(register):
    register("agently", "agently_core_runtime.flow:AgentlyActionFlow")


@hookimpl
def register_planners(register):
    register("scripted", "agently_core_runtime.planners:ScriptedPlanner")
