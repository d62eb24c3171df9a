"""The local function ActionExecutor for agently-core.

Kept empty on purpose so discovery stays fast; the executor lives in
``agently_core_function.executor``.
"""
