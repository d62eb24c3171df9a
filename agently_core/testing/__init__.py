"""Testing kit for agently-core and its plugins."""

from .distributions import activate, deactivate, make_distribution

__all__ = ["activate", "deactivate", "make_distribution"]
