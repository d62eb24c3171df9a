"""Entry point of agently-core-isolation: registers its diagnostics (the tiers)."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_diagnostics(register):
    register("isolation", "agently_core_isolation.diagnostics:check")
