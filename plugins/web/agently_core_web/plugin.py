"""Entry point of agently-core-web: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl  # noqa: F401
