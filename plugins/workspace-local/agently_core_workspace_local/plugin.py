"""Entry point of agently-core-workspace-local: registers names only; imports nothing heavy."""

from agently_core.hookspecs import hookimpl


@hookimpl
def register_workspace_backends(register):
    register("local", "agently_core_workspace_local.backend:LocalWorkspaceBackend")


@hookimpl
def register_action_packages(register):
    register("workspace_files", "agently_core_workspace_local.file_actions:mount",
             description="list_files, read_file, search_files and write_file over the "
                         "workspace's file root, confined to it.",
             actions=("list_files", "read_file", "search_files", "write_file"))
