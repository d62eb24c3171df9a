"""The error every refused file action raises."""

from __future__ import annotations

from agently_core.errors import ActionError


class FileAccessRefused(ActionError):
    """A file action was refused: the path leaves the root, is a link, a special file or a
    hard-linked file, is not allowed by the policy, is too deep or too long, or the write
    is too large, over the quota or in a read-only workspace. The message says which."""
