"""The ``bash`` ActionExecutor: ``run_bash(cmd, workdir)`` checked, then run once, isolated."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from agently_core_isolation.sandbox import DEADLINE_MARKER, FAILURE, Limits, cap_text
from agently_core_isolation.workspace import full_note

from agently_core.errors import ActionError

from .check import check_line
from .parse import Refused
from .programs import Allowlist
from .sandbox import BashSandbox, under

DEFAULT_TIMEOUT = 30.0
DEFAULT_OUTPUT = 100_000
DEFAULT_MEMORY = 1 << 30
DEFAULT_PROCESSES = 64
DEFAULT_FILE_BYTES = 64 << 20
#: Output kept (as an artifact) when the record's copy is cut; past it the command is
#: stopped.
ARTIFACT_BYTES = 4 << 20
_JSON_ROOM = 128  # what the record's other fields take


class CommandRefused(ActionError):
    """The command line was refused before anything ran."""


class BashExecutor:
    """Checks the line against the *call's* policy (``command_allowlist``,
    ``workspace_roots``), then runs it once in the scope's sandbox with the call's limits.

    Enforces (besides what the dispatcher enforces for every executor):
    ``command_allowlist`` (every command of the line, by resolved program; a model can
    never set it), ``workspace_roots`` (the workdir lies under them; only they are bound,
    read-write), ``network``, ``max_memory_bytes``, ``max_cpu_seconds``,
    ``max_processes``, ``max_file_bytes`` (rlimits of the call), ``max_workspace_bytes``
    (the private workspace's bound: a call whose bound is lower than its sandbox's, or that
    uses host roots, which cannot be bounded, is refused) and ``env_passthrough`` (the only
    host variables the child receives). The command allowlist also binds the kernel: the
    sandbox may execute nothing else.
    """

    kind = "bash"
    enforced_policy = frozenset({"command_allowlist", "workspace_roots", "network",
                                 "max_memory_bytes", "max_cpu_seconds", "max_processes",
                                 "max_file_bytes", "max_workspace_bytes", "env_passthrough"})

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        box = context.execution_environment_resources.get("bash")
        if not isinstance(box, BashSandbox):
            raise ActionError(f"{spec.name!r} has no Bash sandbox; mount it with "
                              "agent.enable_shell()")
        policy = context.policy
        command = kwargs.get("cmd")
        if not isinstance(command, str) or not command.strip():
            raise CommandRefused("cmd must be a non-empty command line")
        roots = call_roots(box, policy.workspace_roots)
        check_workspace_bound(box, policy.max_workspace_bytes)
        if policy.command_allowlist is None:
            raise CommandRefused("the call's policy has no command_allowlist; refusing to run "
                                 "an unchecked command line")
        try:
            allowlist = Allowlist.from_policy(tuple(policy.command_allowlist), tuple(roots))
        except ValueError as exc:
            raise ActionError(f"the command allowlist does not resolve: {exc}") from None
        cwd = resolve_workdir(kwargs.get("workdir"), roots, here=box.paths_here)
        try:
            check_line(command, allowlist)
        except Refused as exc:
            raise CommandRefused(f"refused, nothing ran: {exc}") from None
        timeout = policy.timeout_seconds or DEFAULT_TIMEOUT
        max_output = policy.max_output_bytes or DEFAULT_OUTPUT
        # the sandbox's reaper stops the command a little before the dispatcher's limit, so
        # the record keeps its output; the isolation's own wall clock is the backstop
        deadline = max(0.05, timeout - min(0.3, timeout * 0.15))
        limits = Limits(
            wall_seconds=max(0.1, timeout - min(0.1, timeout * 0.05)),
            cpu_seconds=policy.max_cpu_seconds,
            memory_bytes=policy.max_memory_bytes or DEFAULT_MEMORY,
            processes=policy.max_processes or DEFAULT_PROCESSES,
            file_bytes=policy.max_file_bytes or DEFAULT_FILE_BYTES,
            output_bytes=max_output, artifact_bytes=max(max_output, ARTIFACT_BYTES),
        )
        env = child_env(box.env, policy.env_passthrough)
        try:
            run = await box.run(command, cwd=cwd, roots=roots, allowlist=allowlist,
                                limits=limits, network=bool(policy.network), env=env,
                                deadline=deadline, context=context)
        except ValueError as exc:  # the sandbox cannot hold this call (exec_allow, paths)
            raise ActionError(f"the sandbox cannot run this call, nothing ran: {exc}") from None
        _sandbox_failure(run)
        full_stderr = run.full_stderr
        timed_out = run.timed_out
        if full_stderr.endswith(f"\n{DEADLINE_MARKER}\n"):
            full_stderr, timed_out = full_stderr[:-len(DEADLINE_MARKER) - 2], True
        note = full_note(box.workspace, [full_stderr], "enable_shell(disk_mb=...)",
                         by_text=box.private_workspace)
        if note:
            full_stderr += ("" if not full_stderr or full_stderr.endswith("\n") else "\n") + note + "\n"
        stopped = run.killed == "output limit"
        # redact before any cut: a cut can leave half a secret the record's redaction
        # cannot recognise (output the stream limit stopped is cut at its end already)
        full_stdout = context.redact(run.full_stdout, cut=stopped)
        full_stderr = context.redact(full_stderr, cut=stopped)
        out_room, err_room = _budget(_json_size(full_stdout), _json_size(full_stderr),
                                     max(128, max_output - _JSON_ROOM))
        stdout, cut_out = _cap_json(full_stdout, out_room)
        stderr, cut_err = _cap_json(full_stderr, err_room)
        if cut_out or (stopped and full_stdout):
            context.add_artifact("stdout", full_stdout)
        if cut_err or (stopped and full_stderr):
            context.add_artifact("stderr", full_stderr)
        # a process killed by a signal: the shell's convention, 128 + the signal, in every tier
        exit_code = run.exit_code if run.exit_code is None or run.exit_code >= 0 \
            else 128 - run.exit_code
        result = {"exit_code": exit_code, "stdout": stdout, "stderr": stderr,
                  "truncated": cut_out or cut_err or stopped, "timed_out": timed_out}
        if timed_out:
            raise ActionError(f"timed out after {timeout:g}s; the command and every process it "
                              "started were killed", result=result)
        if stopped:
            raise ActionError(f"stopped: the output passed {limits.artifact_bytes} bytes; the "
                              "command and every process it started were killed", result=result)
        if policy.max_cpu_seconds and exit_code == 128 + signal.SIGXCPU:
            raise ActionError(f"stopped: the command used up its CPU time limit "
                              f"({policy.max_cpu_seconds:g}s) and was killed", result=result)
        return result


def check_workspace_bound(box: BashSandbox, wanted: int | None) -> None:
    """Refuse a call whose ``max_workspace_bytes`` the sandbox cannot hold: lower than its
    bound, no bound here (a host that is not root), or host roots (never bounded)."""
    if wanted is None:
        return
    have = box.workspace_bytes
    if not box.private_workspace:
        raise ActionError("the call's max_workspace_bytes cannot be enforced: this sandbox "
                          "writes to host directories (root=), which are not bounded")
    if have is None or have > wanted:
        bound = "unbounded: the host is not root" if have is None else f"{have} bytes"
        raise ActionError(f"the call's max_workspace_bytes ({wanted}) is stricter than its "
                          f"Bash sandbox ({bound}); refusing to run it looser. Start the "
                          f"sandbox within it with agent.enable_shell(disk_mb="
                          f"{max(1, wanted >> 20)}), or lift the stricter limit of the agent "
                          "or call")


def call_roots(box: BashSandbox, wanted: Sequence[str] | None) -> list[str]:
    """The roots of this call: the policy's (each within the sandbox's roots), or the
    sandbox's own."""
    if wanted is None:
        return list(box.roots)
    roots = []
    for root in wanted:
        real = _resolved(str(root), box.paths_here)
        if not under(real, box.roots):
            raise ActionError(f"the call's workspace root {root!r} is not within this "
                              f"sandbox's roots ({', '.join(box.roots)})")
        if box.paths_here and not os.path.isdir(real):
            raise ActionError(f"the call's workspace root {root!r} is not a directory")
        roots.append(real)
    if not roots:
        raise ActionError("the call's policy allows no workspace root")
    return roots


def resolve_workdir(workdir: Any, roots: Sequence[str], *, here: bool = True) -> str:
    """``workdir`` (relative to the first root, or absolute) resolved on the host,
    symlinks and ``..`` included; it must be a directory under one of ``roots``.
    ``here=False`` (a sandbox on another machine, see ``BashSandbox.paths_here``): by its
    text only, ``..`` included; the sandbox resolves it again where its files are."""
    if workdir is None or workdir == "":
        target = roots[0]
    elif not isinstance(workdir, str) or "\x00" in workdir:
        raise ActionError("workdir must be a path")
    else:
        target = os.path.join(roots[0], workdir)  # an absolute workdir replaces the root
    real = _resolved(target, here)
    if not under(real, roots):
        raise ActionError(f"workdir {workdir!r} resolves to {real}, outside the roots "
                          f"({', '.join(roots)}); nothing ran")
    if here and not os.path.isdir(real):
        raise ActionError(f"workdir {workdir!r} is not an existing directory; nothing ran")
    return real


def _resolved(path: str, here: bool) -> str:
    """``path`` resolved on this machine (symlinks followed), or by its text only."""
    return os.path.realpath(path) if here else os.path.normpath(path)


def child_env(given: Mapping[str, str], passthrough: Sequence[str] | None) -> dict[str, str]:
    """The child's environment: the host's given values and the named host variables,
    never inherited otherwise (PATH is the sandbox's, set by the sandbox)."""
    env = dict(given)
    for name in passthrough or ():
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _json_size(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode())


def _cap_json(text: str, room: int) -> tuple[str, bool]:
    """``text`` cut (with the isolation's marker) so that it takes at most ``room`` bytes
    as a JSON string in the record, and whether it was cut."""
    if _json_size(text) <= room:
        return text, False
    low, high = 0, min(len(text.encode()), room)
    while low < high:  # the longest cut whose JSON fits
        middle = (low + high + 1) // 2
        if _json_size(cap_text(text, middle)[0]) <= room:
            low = middle
        else:
            high = middle - 1
    return cap_text(text, low)[0], True


def _budget(out_bytes: int, err_bytes: int, room: int) -> tuple[int, int]:
    """How many bytes of stdout and stderr fit ``room`` together: each gets half, and what
    one does not use goes to the other."""
    if out_bytes + err_bytes <= room:
        return room, room
    half = room // 2
    if out_bytes <= half:
        return out_bytes, room - out_bytes
    if err_bytes <= half:
        return room - err_bytes, err_bytes
    return half, room - half


def _sandbox_failure(run: Any) -> None:
    """The sandbox itself failed to start (not the command): a clear error."""
    first = run.full_stderr.lstrip().splitlines()[0] if run.full_stderr.strip() else ""
    if run.exit_code not in (0, None) and first.startswith((FAILURE, "bwrap: ")):
        raise ActionError(f"the sandbox failed to start: {first}")
