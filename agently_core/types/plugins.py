"""The plugin protocols and the handler contract, in one import::

    from agently_core.types.plugins import (
        ActionExecutor, ActionRuntime, ActionFlow,
        ActionPlanningHandler, ActionExecutionHandler,
    )

The protocols are those of :mod:`agently_core.protocols`; the handler types those of
:mod:`agently_core.action_handlers` (``ActionRunContext``, ``ActionPlanningRequest``,
``ActionExecutionRequest``, ``ActionResult``); ``ActionDecision`` is what a planning
handler answers with (imported on first use: it needs pydantic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..action_handlers import (
    ActionExecutionHandler,
    ActionExecutionRequest,
    ActionPlanningHandler,
    ActionPlanningRequest,
    ActionResult,
    ActionRunContext,
)
from ..protocols import (
    ActionExecutor,
    ActionFlow,
    ActionRuntime,
    ExecutionEnvironmentProvider,
    OutputPlanner,
    Planner,
    WorkspaceBackend,
)

if TYPE_CHECKING:
    from ..models import ActionDecision

__all__ = [
    "ActionDecision",
    "ActionExecutionHandler",
    "ActionExecutionRequest",
    "ActionExecutor",
    "ActionFlow",
    "ActionPlanningHandler",
    "ActionPlanningRequest",
    "ActionResult",
    "ActionRunContext",
    "ActionRuntime",
    "ExecutionEnvironmentProvider",
    "OutputPlanner",
    "Planner",
    "WorkspaceBackend",
]


def __getattr__(name: str) -> object:
    if name == "ActionDecision":
        from ..models import ActionDecision

        return ActionDecision
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
