"""The ``workspace_files`` action package: ``list_files``, ``read_file``, ``search_files``
and ``write_file`` over a workspace's file root, confined to it by
:class:`~agently_core_workspace_local.confined.ConfinedRoot`.

``agent.enable_workspace_file_actions(read=True, write=False, search=True)`` mounts them
for the agent's workspace. A refused call fails with a clear ``FileAccessRefused`` record;
the agent keeps working. Each action enforces the call's policy fields in
:data:`ENFORCED_POLICY` itself (declared in its spec's ``meta["enforced_policy"]``).
"""

from __future__ import annotations

import os
from typing import Any

from .confined import DEFAULT_MAX_TOTAL_BYTES, ConfinedRoot

#: The Policy fields the file actions enforce on every path they touch (``allow_delete``
#: trivially: no file action deletes anything).
ENFORCED_POLICY = ("path_allow", "path_deny", "read_only", "allow_create", "allow_update",
                   "allow_delete", "max_workspace_bytes")

READ_DESCRIPTION = (
    "Read a file of the workspace (path relative to the workspace root). Text comes back "
    "as UTF-8 in 'content'; a binary file comes back base64-encoded with binary=true. Large "
    "files come in parts: when 'truncated' is true, call again with offset=next_offset. "
    "Files with several hard links are refused.")
LIST_DESCRIPTION = (
    "List a directory of the workspace (path relative to the workspace root, '.' for the "
    "root): each entry's path, type (file, directory, symlink, fifo, device, socket) and "
    "size. recursive=true lists everything below it (up to a depth limit: directories not "
    "entered are named in 'too_deep'; 'hidden_by_policy' counts entries the policy hides).")
SEARCH_DESCRIPTION = (
    "Search the workspace's text files for a literal string (case-insensitive unless "
    "case_sensitive=true): the path, line number and text of each matching line. 'glob' "
    "filters file names (for example '*.py').")
WRITE_DESCRIPTION = (
    "Write a whole file of the workspace (path relative to the workspace root), replacing "
    "it if it exists; missing directories are created. encoding='base64' writes binary "
    "content.")


def mount(agent: Any, *, workspace: Any = None, root: str | os.PathLike[str] | None = None,
          read: bool = True, write: bool = False, search: bool = True,
          read_only: bool | None = None, approval_required_for_write: bool = False,
          prefix: str = "", max_read_bytes: int = 256 * 1024,
          max_write_bytes: int = 1024 * 1024, max_entries: int = 1000,
          max_search_file_bytes: int = 1024 * 1024, max_depth: int = 64,
          max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES) -> list[str]:
    """Register the file actions on ``agent`` and return their names.

    The files are those of ``root`` or else of ``workspace.files_root`` (default: the
    agent's workspace). ``read`` mounts ``list_files`` and ``read_file``; ``search``
    mounts ``search_files``; ``write`` mounts ``write_file``, which refuses every call when
    the workspace (or ``read_only=True``) is read-only. ``prefix`` is put before every name.
    ``max_depth`` bounds paths (components) and walks; ``max_total_bytes`` (256 MiB; ``None``
    for no bound) is what the whole root may hold after a ``write_file``, like the policy's
    ``max_workspace_bytes`` (the smaller one applies).
    """
    workspace = workspace if workspace is not None else getattr(agent, "workspace", None)
    if root is None:
        root = getattr(workspace, "files_root", None)
        if root is None:
            raise ValueError("workspace file actions need a file root: call agent."
                             "use_workspace(...) with a backend that has one (such as "
                             "'local'), pass files=... to the Workspace, or pass root=...")
    if read_only is None:
        read_only = bool(getattr(workspace, "read_only", False))
    confined = ConfinedRoot(root, read_only=read_only, max_read_bytes=max_read_bytes,
                            max_write_bytes=max_write_bytes, max_entries=max_entries,
                            max_search_file_bytes=max_search_file_bytes,
                            max_depth=max_depth, max_total_bytes=max_total_bytes)

    def list_files(path: str = ".", recursive: bool = False,
                   action_context: Any = None) -> dict[str, Any]:
        """List a workspace directory.

        Args:
            path: Directory relative to the workspace root; "." is the root.
            recursive: Also list everything below it.
        """
        return confined.list(path, recursive, policy=_policy(action_context))

    def read_file(path: str, offset: int = 0, max_bytes: int | None = None,
                  action_context: Any = None) -> dict[str, Any]:
        """Read a workspace file.

        Args:
            path: File path relative to the workspace root.
            offset: Byte offset to start at (use next_offset to continue a large file).
            max_bytes: Read at most this many bytes (capped by the host).
        """
        return confined.read(path, offset, max_bytes, policy=_policy(action_context))

    def search_files(query: str, path: str = ".", glob: str = "*", max_results: int = 50,
                     case_sensitive: bool = False, action_context: Any = None
                     ) -> dict[str, Any]:
        """Search workspace text files for a literal string.

        Args:
            query: The text to find.
            path: Directory to search below, relative to the workspace root.
            glob: Only files whose name matches this pattern, such as "*.md".
            max_results: Stop after this many matching lines.
            case_sensitive: Match case exactly.
        """
        return confined.search(query, path, glob, max_results, case_sensitive,
                               policy=_policy(action_context))

    def write_file(path: str, content: str, encoding: str = "utf-8",
                   create_dirs: bool = True, action_context: Any = None) -> dict[str, Any]:
        """Write a whole workspace file, replacing it if it exists.

        Args:
            path: File path relative to the workspace root.
            content: The new content: text, or base64 when encoding is "base64".
            encoding: "utf-8" or "base64".
            create_dirs: Create missing parent directories.
        """
        return confined.write(path, content, encoding, create_dirs,
                              policy=_policy(action_context))

    chosen = []
    if read:
        chosen += [(list_files, LIST_DESCRIPTION, False), (read_file, READ_DESCRIPTION, False)]
    if search:
        chosen.append((search_files, SEARCH_DESCRIPTION, False))
    if write:
        chosen.append((write_file, WRITE_DESCRIPTION, approval_required_for_write))
    names = []
    for func, description, approval in chosen:
        name = f"{prefix}{func.__name__}"
        agent.action_func(func, name=name, description=description, approval_required=approval)
        agent.registry.require(name).spec.meta["enforced_policy"] = list(ENFORCED_POLICY)
        names.append(name)
    return names


def _policy(context: Any) -> Any:
    """The call's merged policy (``None`` when called without the dispatcher)."""
    return getattr(context, "policy", None)
