"""Entry point of agently-core-bash: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_execution_environment_providers(register):
    register("bash", "agently_core_bash.provider:BashSandboxProvider")


@hookimpl
def register_action_executors(register):
    register("bash", "agently_core_bash.executor:BashExecutor")


@hookimpl
def register_action_packages(register):
    register("bash", "agently_core_bash.package:mount",
             description="run_bash: isolated Bash with a command allowlist checked on every "
                         "command in the line.")


@hookimpl
def register_envs(register):
    # the Env lives in the core; its run_bash comes from this plugin's package "bash"
    register("shell_local", "agently_core.env:ShellLocalEnv")
