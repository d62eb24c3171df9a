"""The local function ActionExecutor for agently-core."""

from .executor import FunctionExecutor

__all__ = ["FunctionExecutor"]
