"""Entry point of agently-core-python: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_execution_environment_providers(register):
    register("python", "agently_core_python.provider:PythonSandboxProvider")


@hookimpl
def register_action_executors(register):
    register("python", "agently_core_python.executor:PythonExecutor")


@hookimpl
def register_action_packages(register):
    register("python", "agently_core_python.package:mount",
             description="run_python: isolated, warm Python with notebook-style state.")
