"""agently-core: a plugin-registry execution layer for model-callable actions.

Importing this package is cheap: everything below loads on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not imported from typing: keeps `import agently_core` nearly free

__version__ = "0.1.0"

_EXPORTS = {
    "create_agent": "agently_core.agent",
    "Agent": "agently_core.agent",
    "Action": "agently_core.agent",
    "ActionPackage": "agently_core.agent",
    "ActionContext": "agently_core.actions",
    "Config": "agently_core.config",
    "PluginManager": "agently_core.plugins",
    "get_plugin_manager": "agently_core.plugins",
    "hookimpl": "agently_core.hookspecs",
    "hookspec": "agently_core.hookspecs",
    "EventCenter": "agently_core.events",
    "Execution": "agently_core.execution",
    "create_execution": "agently_core.execution",
    "Workspace": "agently_core.workspace",
    "create_workspace": "agently_core.workspace",
    "ExecutionEnvironmentManager": "agently_core.environments",
    "Redactor": "agently_core.redaction",
    "summarize_records": "agently_core.records",
    "ExecutionSnapshot": "agently_core.models",
    "PolicyApproval": "agently_core.policy_approval",
    "configure_policy_approval": "agently_core.policy_approval",
    "ActionCall": "agently_core.models",
    "ActionDecision": "agently_core.models",
    "ActionRecord": "agently_core.models",
    "ActionSpec": "agently_core.models",
    "ApprovalDecision": "agently_core.models",
    "ApprovalRequest": "agently_core.models",
    "EnvironmentHandle": "agently_core.models",
    "EnvironmentRequirement": "agently_core.models",
    "Event": "agently_core.models",
    "FlowResult": "agently_core.models",
    "Policy": "agently_core.models",
    "AgentlyError": "agently_core.errors",
    "ActionError": "agently_core.errors",
    "ConfigError": "agently_core.errors",
    "NotInstalledError": "agently_core.errors",
    "PluginConflictError": "agently_core.errors",
    "PluginError": "agently_core.errors",
    "ModelError": "agently_core.errors",
    "AutoFuncError": "agently_core.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    """An exported name, or a public submodule (``agently_core.execution_environment``,
    ``agently_core.policy_approval``, ...), imported on first use."""
    import importlib

    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("_") and name.isidentifier():
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists but something it imports is missing
            raise AttributeError(f"module 'agently_core' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'agently_core' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    import pkgutil

    submodules = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return sorted({*__all__, *submodules})


if TYPE_CHECKING:
    from . import env, execution_environment, policy_approval
    from .actions import ActionContext
    from .agent import Action, ActionPackage, Agent, create_agent
    from .config import Config
    from .environments import ExecutionEnvironmentManager
    from .errors import (
        ActionError,
        AgentlyError,
        ConfigError,
        NotInstalledError,
        PluginConflictError,
        PluginError,
    )
    from .events import EventCenter
    from .execution import Execution, create_execution
    from .hookspecs import hookimpl, hookspec
    from .models import (
        ActionCall,
        ActionDecision,
        ActionRecord,
        ActionSpec,
        ApprovalDecision,
        ApprovalRequest,
        EnvironmentHandle,
        EnvironmentRequirement,
        Event,
        ExecutionSnapshot,
        FlowResult,
        Policy,
    )
    from .plugins import PluginManager, get_plugin_manager
    from .policy_approval import PolicyApproval, configure_policy_approval
    from .records import summarize_records
    from .redaction import Redactor
    from .workspace import Workspace, create_workspace
