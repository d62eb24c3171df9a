"""Entry point of agently-core-function: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_action_executors(register):
    register("function", "agently_core_function.executor:FunctionExecutor")


@hookimpl
def register_action_packages(register):
    register("examples", "agently_core_function.examples:mount",
             description="Small pure functions for demos and smoke tests.")
