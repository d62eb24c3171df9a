"""Entry point of agently-core-docker: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_execution_environment_providers(register):
    register("docker", "agently_core_docker.provider:DockerProvider", kind="docker",
             also_serves=("python", "node", "bash"))


@hookimpl
def register_action_executors(register):
    register("docker", "agently_core_docker.executor:DockerExecutor", kind="docker")


@hookimpl
def register_action_packages(register):
    register("docker", "agently_core_docker.package:mount",
             description="run_in_container (a command in a warm, hardened Docker container of "
                         "a host-configured image), behind approval.",
             actions=("run_in_container",))


@hookimpl
def register_diagnostics(register):
    register("docker", "agently_core_docker.doctor:check_docker")


@hookimpl
def register_commands(register):
    register("docker", "agently_core_docker.cli:docker_command",
             help="Docker tools: build-image (the default image, from Debian packages)")
