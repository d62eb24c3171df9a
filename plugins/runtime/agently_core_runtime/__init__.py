"""The default ActionRuntime ('agently'), ActionFlow and scripted planner.

Kept empty on purpose: discovery imports ``agently_core_runtime.plugin``, and anything
imported here would be paid by every process that discovers plugins. Import the classes
from their modules (``agently_core_runtime.runtime``, ``.flow``, ``.planners``).
"""
