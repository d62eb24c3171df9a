"""Exceptions raised by agently-core. All derive from :class:`AgentlyError`."""

from __future__ import annotations


class AgentlyError(Exception):
    """Base class for every error agently-core raises on purpose."""


class ConfigError(AgentlyError):
    """The configuration is invalid or names something that is not installed."""


class PluginError(AgentlyError):
    """A plugin could not be loaded, registered or selected."""


class PluginConflictError(PluginError):
    """Two plugins registered the same name for the same role."""


class NotInstalledError(PluginError):
    """A role has no implementation installed; the message names the distribution to install."""


class ActionError(AgentlyError):
    """Raised by an executor to fail a call with a clear, user-facing message. ``result``
    (optional, JSON-like) is kept in the failed record, e.g. a sandbox's stdout and
    traceback."""

    def __init__(self, message: str, *, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class ActionNotFoundError(AgentlyError):
    """No action with that name is registered."""


class ExecutionEnvironmentError(AgentlyError):
    """Base class for execution-environment failures."""


class EnvironmentNotFound(ExecutionEnvironmentError):
    """No declared requirement or live handle has that id."""


class EnvironmentStartError(ExecutionEnvironmentError):
    """A provider failed to start a resource; nothing was kept."""


class EnvironmentApprovalRequired(ExecutionEnvironmentError):
    """Starting the environment waits for a person's approval (``request`` says which)."""

    def __init__(self, message: str, request: object = None) -> None:
        super().__init__(message)
        self.request = request


class EnvironmentBlocked(ExecutionEnvironmentError):
    """Approval for the environment was denied."""


class ManagerClosedError(ExecutionEnvironmentError):
    """The execution-environment manager has shut down."""


class ModelError(AgentlyError):
    """A model request failed for good: the key was refused (401/403), the model or the
    endpoint does not exist (404), the request was rejected (400), it timed out, the
    server could not be reached, or the retries ran out. The message says what to fix and
    never holds the key. ``planner`` names the planner, ``status`` the HTTP status when
    there was one. A planner raises it from ``plan`` or ``generate``; the flow ends the run
    with ``stop_reason="failed"`` and ``error=str(exc)``."""

    def __init__(self, message: str, *, planner: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.planner = planner
        self.status = status


class AutoFuncError(AgentlyError):
    """An ``@agent.auto_func`` function got no valid result from its planner within its
    attempts. ``attempts`` lists each attempt's ``{"output", "error"}``."""

    def __init__(self, message: str, *, attempts: list[dict[str, object]] | None = None
                 ) -> None:
        super().__init__(message)
        self.attempts = list(attempts or ())
