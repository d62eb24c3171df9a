"""Entry point of agently-core-ray: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl  # noqa: F401
