"""A model planner on the official Anthropic SDK: ``anthropic_compatible`` (the Messages
API, for Claude and every Messages-compatible server).

Kept empty on purpose: discovery imports ``agently_core_anthropic.plugin`` only. Import
the planner from ``agently_core_anthropic.planner``.
"""
