"""The ``bash`` action package: ``agent.enable_shell(...)`` mounts ``run_bash(cmd, workdir)``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from agently_core_isolation.worker_policy import workspace_policy

from agently_core.models import ActionSpec, EnvironmentRequirement

from .programs import SAFE_BUILTINS, Allowlist, find_on_path
from .sandbox import check_root

#: Read and inspect: the default allowlist's first part.
READ_COMMANDS = (
    "ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "sort", "uniq", "cut", "tr",
    "diff", "cmp", "comm", "file", "stat", "du", "df", "find", "basename", "dirname",
    "realpath", "readlink", "date", "nl", "od", "xxd", "strings", "md5sum", "sha1sum",
    "sha256sum", "paste", "join", "fold", "fmt", "column", "rev", "seq", "tac", "expand",
    "unexpand", "tree", "jq", "sleep",
)
#: Creating files and directories (a redirection such as ``>`` writes files anyway).
CREATE_COMMANDS = ("mkdir", "touch", "tee")
#: Moving, copying and deleting: not in the default; add them explicitly
#: (``commands=[*DEFAULT_COMMANDS, *FILE_COMMANDS]``).
FILE_COMMANDS = ("cp", "mv", "rm", "ln")
#: The default allowlist (those installed): reading, inspecting, creating files. No
#: interpreter, no sed or awk (GNU sed's ``e`` and awk's ``system()`` run programs), no
#: xargs, env or other launcher, no network client, nothing that deletes or overwrites by
#: itself.
DEFAULT_COMMANDS = READ_COMMANDS + CREATE_COMMANDS
#: Variables the host may not set for the child: they would change which code runs.
_RESERVED_ENV = ("PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "IFS")


def default_commands() -> list[str]:
    """The default allowlist's entries installed on this machine."""
    return [name for name in DEFAULT_COMMANDS if find_on_path(name)]


def describe(allowlist: Allowlist, roots: list[str] | None, network: bool) -> str:
    programs = ", ".join(allowlist.names()) or "none"
    builtins = ", ".join(sorted(SAFE_BUILTINS - {":"}))
    if roots:
        where = ("Files: the directories " + ", ".join(roots) + " (read-write, at these same "
                 "paths); `workdir` is relative to the first, or an absolute path under one "
                 "of them (default: the first). Nothing else on the machine is visible.")
    else:
        where = ("Files: a private workspace, the working directory (use relative paths; it "
                 "persists between calls).")
    return (
        "Run a Bash command line (bash -c) in an isolated sandbox"
        f"{'' if network else ' without network'}. Every command in the line (pipelines, "
        "&&, ||, ;, subshells, $( ) and backticks included) must be an allowed program, "
        "named by its name, or a simple builtin; function definitions, eval/exec/source, "
        "here-documents, arithmetic, arrays and relative-path programs (./x) are refused. "
        "Returns exit_code, stdout and stderr (a non-zero exit code is a normal result). "
        f"Allowed programs: {programs}. Builtins: {builtins}. {where}"
    )


def _roots(root: Any) -> list[str] | None:
    if root is None:
        return None
    items = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    if not items:
        raise ValueError("root must name at least one directory")
    roots: list[str] = []
    for item in items:
        real = check_root(item)
        if real not in roots:
            roots.append(real)
    return roots


def _env(env: Mapping[str, str] | None, passthrough: Iterable[str] | None
         ) -> tuple[dict[str, str], list[str] | None]:
    given = {str(k): str(v) for k, v in (env or {}).items()}
    names = None if passthrough is None else [str(n) for n in passthrough]
    for name in [*given, *(names or [])]:
        if name in _RESERVED_ENV or name.startswith(("BASH_FUNC_", "LD_")) or not name:
            raise ValueError(f"the child's environment may not set {name!r}: it changes which "
                             "code runs (PATH is the sandbox's own)")
    return given, names


def mount(agent: Any, *, root: Any = None, commands: Iterable[str] | None = None,
          timeout: float = 30.0, env: Mapping[str, str] | None = None,
          env_passthrough: Iterable[str] | None = None, network: bool = False,
          scope: str = "agent", memory_mb: int | None = None, cpu_seconds: float | None = None,
          processes: int | None = None, file_mb: int | None = None, tier: str | None = None,
          allow_trusted_local: bool = False, max_output_bytes: int = 100_000,
          name: str = "run_bash", disk_mb: int | None = None) -> list[str]:
    """Register ``run_bash`` with a sandbox per ``scope`` owner.

    ``root``: a host directory or a list of them (must exist; resolved now), the only
    writable places, visible at their own paths; without it each scope gets a private
    workspace, removed at release. ``commands``: the allowlist (names looked up on
    ``/usr/local/bin:/usr/bin:/bin``, or absolute paths), resolved now: an entry that does
    not resolve is a ValueError here; default :data:`DEFAULT_COMMANDS`. ``disk_mb``: what
    the private workspace, home and temporary files may hold together (default 256; it
    holds where the host runs as root; host roots are never bounded, so it is refused with
    ``root``).
    """
    roots = _roots(root)
    workspace_bytes = workspace_policy(disk_mb, private=not roots)
    if isinstance(commands, (str, os.PathLike)):
        commands = [os.fspath(commands)]
    entries = default_commands() if commands is None else list(commands)
    allowlist = Allowlist.resolve(entries, roots=roots or ())
    given, names = _env(env, env_passthrough)
    policy: dict[str, Any] = {
        "timeout_seconds": float(timeout), "network": bool(network),
        "max_output_bytes": int(max_output_bytes),
        "command_allowlist": allowlist.policy_entries(),
    }
    if roots:
        policy["workspace_roots"] = list(roots)
    for key, value in (("max_memory_bytes", memory_mb and int(memory_mb) << 20),
                       ("max_cpu_seconds", None if cpu_seconds is None else float(cpu_seconds)),
                       ("max_processes", processes),
                       ("max_file_bytes", file_mb and int(file_mb) << 20),
                       ("max_workspace_bytes", workspace_bytes),
                       ("env_passthrough", names)):
        if value is not None:
            policy[key] = value
    config: dict[str, Any] = {"allow_trusted_local": bool(allow_trusted_local)}
    if tier:
        config["tier"] = tier
    if roots:
        config["roots"] = list(roots)
    if given:
        config["env"] = given
    requirement = EnvironmentRequirement(
        kind="bash", scope=scope, resource_key="bash", config=config,
        policy={} if workspace_bytes is None else {"max_workspace_bytes": workspace_bytes})
    spec = ActionSpec(
        name=name, description=describe(allowlist, roots, bool(network)), kind="bash",
        policy=policy,
        input_schema={
            "type": "object", "additionalProperties": False, "required": ["cmd"],
            "properties": {
                "cmd": {"type": "string", "description": "The Bash command line to run."},
                "workdir": {"type": "string", "description":
                            "Where it runs: relative to the first root or absolute under a "
                            "root (default: the first root)."},
            },
        },
        tags=["bash", "shell", "sandbox"], execution_environments=[requirement],
        meta={"instruction": "cmd"},
    )
    agent.action.register_action(spec)
    return [name]
