"""Testing kit for agently-core and its plugins.

* Conformance suites, one per plugin type: :class:`ExecutorConformance`,
  :class:`ProviderConformance`, :class:`RuntimeConformance`, :class:`PlannerConformance`
  (model planners against a loopback stand-in server) and
  :class:`WorkspaceBackendConformance`, plus :class:`WorkspaceRaceConformance` (real
  processes racing on one durable store). Subclass one in a test module, supply its
  factories, and pytest runs the whole contract.
* Reference implementations: :class:`MemoryWorkspaceBackend`, :class:`TempdirProvider` and
  the counting in-memory :class:`MemoryProvider`.
* Helpers: :func:`make_plugin`, :func:`make_plugin_manager`, :func:`make_agent`,
  :func:`run_async`, :class:`Heartbeat`, :func:`mounted_specs`, :func:`installed_plugin`;
  what a test needs from the machine (:func:`require_program`, :func:`require_root`,
  :func:`require`: fail under CI, skip elsewhere); and fake installed distributions
  (:func:`make_distribution`, :func:`activate`, :func:`deactivate`).

The pytest plugin (``agently_core.testing.pytest_plugin``, entry point ``pytest11``) adds
the ``fake_distributions`` and ``agently_plugin_manager`` fixtures.

Everything but the distribution helpers loads on first use, so importing this package
imports neither pytest nor pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .distributions import activate, deactivate, make_distribution

_LAZY = {
    "ConformanceSuite": "._base",
    "ExecutorConformance": ".executor_suite",
    "ProviderConformance": ".provider_suite",
    "RuntimeConformance": ".runtime_suite",
    "PlannerConformance": ".planner_suite",
    "StandIn": ".planner_suite",
    "WorkspaceBackendConformance": ".workspace_suite",
    "WorkspaceRaceConformance": ".workspace_races",
    "MemoryWorkspaceBackend": ".memory_workspace",
    "TempdirProvider": ".tempdir_provider",
    "MemoryProvider": ".memory_provider",
    "MemoryResource": ".memory_provider",
    "Heartbeat": ".harness",
    "make_agent": ".harness",
    "make_plugin": ".harness",
    "make_plugin_manager": ".harness",
    "mounted_specs": ".harness",
    "installed_plugin": ".harness",
    "run_async": ".harness",
    "in_ci": ".requirements",
    "require": ".requirements",
    "require_program": ".requirements",
    "require_root": ".requirements",
}

__all__ = [
    "ConformanceSuite",
    "ExecutorConformance",
    "Heartbeat",
    "MemoryProvider",
    "MemoryResource",
    "MemoryWorkspaceBackend",
    "PlannerConformance",
    "ProviderConformance",
    "RuntimeConformance",
    "StandIn",
    "TempdirProvider",
    "WorkspaceBackendConformance",
    "WorkspaceRaceConformance",
    "activate",
    "deactivate",
    "in_ci",
    "installed_plugin",
    "make_agent",
    "make_distribution",
    "make_plugin",
    "make_plugin_manager",
    "mounted_specs",
    "require",
    "require_program",
    "require_root",
    "run_async",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from ._base import ConformanceSuite
    from .executor_suite import ExecutorConformance
    from .harness import (
        Heartbeat,
        installed_plugin,
        make_agent,
        make_plugin,
        make_plugin_manager,
        mounted_specs,
        run_async,
    )
    from .memory_workspace import MemoryWorkspaceBackend
    from .planner_suite import PlannerConformance, StandIn
    from .provider_suite import ProviderConformance
    from .runtime_suite import RuntimeConformance
    from .tempdir_provider import TempdirProvider
    from .workspace_races import WorkspaceRaceConformance
    from .workspace_suite import WorkspaceBackendConformance
