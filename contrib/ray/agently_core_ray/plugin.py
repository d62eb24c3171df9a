"""Entry point of agently-core-ray: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_execution_environment_providers(register):
    register("ray", "agently_core_ray.provider:RayProvider", kind="ray",
             also_serves=("python", "node", "bash", "sqlite"))
