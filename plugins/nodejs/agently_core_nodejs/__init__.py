"""Isolated, warm Node.js for agently-core. Kept empty so discovery stays cheap; see
``agently_core_nodejs/worker.js`` (the sandboxed side), ``.sandbox`` (the host side),
``.provider``, ``.executor`` and ``.package``."""
