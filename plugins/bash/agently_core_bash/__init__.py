"""agently-core-bash: ``run_bash`` in an isolated shell with a command allowlist.

Kept empty so discovery stays cheap; see ``agently_core_bash.parse`` (the command-line
analyser), ``.programs`` (the allowlist), ``.check`` (applying it), ``.sandbox`` (the host
side), ``.provider``, ``.executor`` and ``.package``."""
