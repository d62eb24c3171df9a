"""The core's own plugin: always registered, before any installed plugin."""

from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def register_policy_approval_handlers(register):
    for name in ("input_timeout_fail", "auto_approve", "fail_closed", "input"):
        register(name, f"agently_core.policy_approval:{name}")


@hookimpl
def register_envs(register):
    register("base", "agently_core.env:BaseEnv")
