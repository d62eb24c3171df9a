"""Isolated, warm Python for agently-core. Kept empty so discovery stays cheap; see
``agently_core_python.worker`` (the sandboxed side), ``.sandbox`` (the host side),
``.provider``, ``.executor`` and ``.package``."""
