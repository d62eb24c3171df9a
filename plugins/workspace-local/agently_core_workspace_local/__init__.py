"""agently-core-workspace-local: the local workspace backend (SQLite WAL + files) and the
``workspace_files`` action package."""
