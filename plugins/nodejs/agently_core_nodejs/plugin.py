"""Entry point of agently-core-nodejs: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_execution_environment_providers(register):
    register("node", "agently_core_nodejs.provider:NodeSandboxProvider")


@hookimpl
def register_action_executors(register):
    register("node", "agently_core_nodejs.executor:NodeExecutor")


@hookimpl
def register_action_packages(register):
    register("nodejs", "agently_core_nodejs.package:mount",
             description="run_nodejs: isolated, warm Node.js with notebook-style globals.")
