"""The ``bash`` sandbox and the ``sqlite`` connection hosted in Ray actors.

These two kinds have no request protocol: the native executors call ``BashSandbox.run``
and ``SQLiteConnection.run``. The host-side stand-ins (:func:`bash_sandbox_class`,
:func:`sqlite_connection_class`) subclass those native classes, so the native executors
accept them and run every policy check where the agent runs; only the ``run`` itself
crosses, as plain data, to :meth:`ResourceHost.call <agently_core_ray.host.ResourceHost.call>`,
which hands it to :func:`node_call` on the worker node, where the real resource is.

What crosses, and where each thing is decided:

- **bash**: the command line, the roots and workdir the executor chose (checked here by
  their text: they are the node's paths, ``BashSandbox.paths_here`` is False), the
  allowlist as its programs' absolute paths, the limits as a dict and the *names* of the
  ``env_passthrough`` variables. On the node the roots and workdir are resolved again
  against the node's files (symlinks included), the allowlist is resolved again and the
  line checked again against it, the child's environment is built from the node's own
  variables, and the output is redacted of their values before it leaves. The values the
  executor read from this host's environment never cross. A ``RunResult`` comes back.
- **sqlite**: the executor's message (its SQL, parameters and authorizer rules) and
  timeout. The statement runs in the connection's worker processes on the node, whose
  authorizer enforces the rules; a refused or failed statement comes back as the native
  error class, so the record is the native one.

Deadlines, cancellation, a lost actor and health are :class:`RemoteWorkerMixin`'s
(:mod:`agently_core_ray.workers`). Unlike a Python worker, a cancelled call leaves the
resource usable: the node stops that command (or statement) and the sandbox stays warm.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

from agently_core.errors import ActionError, AgentlyError
from agently_core.queueing import ResourceBusy

# -- on the worker node (inside ResourceHost) ------------------------------------------------


class CallRecorder:
    """What the node's queue says of one call (the ``ActionContext`` fields a resource
    sets while a call waits), sent back to the call's real context."""

    def __init__(self) -> None:
        self.queued = False
        self.queued_for: str | None = None
        self.queued_s = 0.0

    def data(self) -> dict[str, Any]:
        return {"queued": self.queued, "queued_for": self.queued_for, "queued_s": self.queued_s}


async def _bash_run(host: Any, args: dict[str, Any], recorder: CallRecorder) -> dict[str, Any]:
    """One ``run_bash`` line in the node's ``BashSandbox``; its paths, allowlist and
    environment are the node's (see the module docstring)."""
    from agently_core_bash.check import check_line
    from agently_core_bash.executor import CommandRefused, call_roots, child_env, resolve_workdir
    from agently_core_bash.parse import Refused
    from agently_core_bash.programs import Allowlist
    from agently_core_isolation.sandbox import Limits

    from agently_core.redaction import Redactor

    box = host.resource
    roots = call_roots(box, args["roots"])
    cwd = resolve_workdir(args["cwd"], roots)
    try:
        allowlist = Allowlist.from_policy(tuple(args["programs"]), tuple(roots))
    except ValueError as exc:
        raise ValueError(f"the command allowlist does not resolve on the worker node: "
                         f"{exc}") from None
    try:
        check_line(args["command"], allowlist)
    except Refused as exc:
        raise CommandRefused(f"refused on the worker node, nothing ran: {exc}") from None
    names = list(args["passthrough"])
    env = child_env(box.env, names)
    run = await box.run(args["command"], cwd=cwd, roots=roots, allowlist=allowlist,
                        limits=Limits(**args["limits"]), network=bool(args["network"]),
                        env=env, deadline=args["deadline"], context=recorder)
    redactor = Redactor([*(env[n] for n in names if n in env), *box.env.values()])
    stopped = run.killed == "output limit"
    data = dataclasses.asdict(run)
    for key, cut in (("stdout", run.output_truncated), ("stderr", run.output_truncated),
                     ("full_stdout", stopped), ("full_stderr", stopped)):
        data[key] = redactor.cut_text(data[key]) if cut else redactor.text(data[key])
    masked = any(data[key] != getattr(run, key) for key in
                 ("stdout", "stderr", "full_stdout", "full_stderr"))
    return {"run": data, "masked": masked, "full": bool(box.workspace.full())}


async def _sqlite_run(host: Any, args: dict[str, Any], recorder: CallRecorder) -> Any:
    """One statement on the node's ``SQLiteConnection`` (its authorizer enforces the
    message's rules there)."""
    return await host.resource.run(args["message"], timeout=float(args["timeout"]),
                                   context=recorder)


#: The calls :func:`node_call` runs, by name.
NODE_CALLS = {"bash.run": _bash_run, "sqlite.run": _sqlite_run}


async def node_call(host: Any, op: str, args: dict[str, Any]) -> tuple[str, Any]:
    """Run ``op`` on ``host``'s resource: ``("ok", {"value", "queue"})`` or ``("error",
    {"message", "type", "dead", "queue"})``, the error's text redacted of the node's
    secrets (the host re-raises it as its native class)."""
    recorder = CallRecorder()
    try:
        run = NODE_CALLS.get(op)
        if run is None:
            raise AgentlyError(f"unknown call {op!r} (known: {', '.join(NODE_CALLS)})")
        if host.released or host.resource is None:
            raise RuntimeError("the resource was released")
        value = await run(host, args, recorder)
        if host.redactor is not None:
            value = host.redactor.redact(value)
        return "ok", {"value": value, "queue": recorder.data()}
    except Exception as exc:
        text = host.redactor.text(str(exc)) if host.redactor is not None else str(exc)
        return "error", {"message": text, "type": type(exc).__name__,
                         "dead": host.stopped(), "queue": recorder.data()}


def details(resource: Any) -> dict[str, Any]:
    """What a stand-in needs of a bash sandbox or sqlite connection besides
    :func:`~agently_core_ray.host.describe` (plain data; empty for other resources)."""
    out: dict[str, Any] = {}
    if hasattr(resource, "private_workspace") and hasattr(resource, "roots"):  # BashSandbox
        out["bash"] = {"roots": [str(r) for r in resource.roots],
                       "private_workspace": bool(resource.private_workspace),
                       "home": str(resource.home)}
    settings = getattr(resource, "settings", None)
    if settings is not None and hasattr(resource, "pool"):  # SQLiteConnection
        data = dataclasses.asdict(settings)
        out["sqlite"] = {**data, "database": str(data["database"])}

    return out


# -- on the agent's host ---------------------------------------------------------------------


class NodeWorkspace:
    """The host's view of a sandbox's workspace on its node: its bound, and whether the
    last call found it full (what ``full_note`` reads)."""

    def __init__(self, quota: int | None) -> None:
        self.quota = quota
        self.last_full = False

    def full(self) -> bool:
        """Whether the sandbox's last call on its node found the workspace full."""
        return self.last_full


def _queue_to(context: Any, queue: dict[str, Any] | None) -> None:
    """Put what the node's queue said of a call on its context."""
    if context is None or not queue or not queue.get("queued_for"):
        return
    context.queued_for = queue["queued_for"]
    context.queued_s += float(queue.get("queued_s") or 0.0)
    context.queued = bool(queue.get("queued"))


@functools.cache
def call_mixin() -> type:
    """:class:`RemoteWorkerMixin` with :meth:`_call`: one ``ResourceHost.call`` (made on
    first use, as the worker classes are)."""
    from .workers import RemoteWorkerMixin

    class RemoteCallMixin(RemoteWorkerMixin):
        """Forwarding of a kind's ``run`` to its actor (see the module docstring)."""

        error_class = ActionError
        cancel_kills = False
        #: The node's error classes this stand-in re-raises as themselves, by name.
        errors: dict[str, type[Exception]] = {}

        async def _call(self, op: str, args: dict[str, Any], timeout: float,
                        context: Any = None) -> Any:
            """``op`` on the actor: its value, or the node's error as its native class.
            Waits ``timeout`` plus ``call_grace``; a cancelled caller cancels the
            remote call (the node stops it; the resource stays usable)."""
            status, reply = await self._remote("call", op, args, timeout=timeout)
            _queue_to(context, reply.get("queue"))
            if status == "error":
                if reply.get("dead"):
                    self.dead = True
                raise self.errors.get(reply.get("type"), ActionError)(reply["message"])
            return reply["value"]

        def healthy(self) -> bool:
            """Alive by the actor's watch (the native check runs in :meth:`ping`)."""
            return not self._closed and not self.stopped()

    return RemoteCallMixin


@functools.cache
def bash_sandbox_class() -> type:
    """The Bash sandbox in a Ray actor (a subclass of the native ``BashSandbox``)."""
    try:
        from agently_core_bash.executor import CommandRefused
        from agently_core_bash.sandbox import BashSandbox
        from agently_core_isolation.sandbox import Limits, RunResult
    except ImportError:
        raise AgentlyError("the ray provider serves kind 'bash' with the Bash sandbox: "
                           "install agently-core-bash") from None

    class RayBashSandbox(call_mixin(), BashSandbox):
        """A Bash sandbox living in a Ray actor on a worker node: its roots, workspace
        and workdirs are that node's paths."""

        paths_here = False
        errors = {"ValueError": ValueError, "CommandRefused": CommandRefused,
                  "ActionError": ActionError, "ResourceBusy": ResourceBusy}

        def __init__(self, actor: Any, info: dict[str, Any], **options: Any) -> None:
            # no BashSandbox.__init__: its uid, workspace and roots are the node's
            self._setup(actor, info, label="the Bash sandbox of its scope (Ray)",
                        **options)
            bash = info["bash"]
            self.roots = list(bash["roots"])
            self.private_workspace = bool(bash["private_workspace"])
            self.home = Path(bash["home"])
            self.workspace = NodeWorkspace(info.get("workspace_bytes"))
            self.isolation = None
            self.uid = None

        @property
        def closed(self) -> bool:
            return self._closed or self.stopped()

        async def run(self, command: str, *, cwd: str, roots: Any, allowlist: Any,
                      limits: Limits, network: bool, env: Any,
                      deadline: float | None = None, context: Any = None) -> RunResult:
            """Run one line on the node (see the module docstring). ``env``'s values
            were read from this host's environment and stay here: the node reads the
            call's ``env_passthrough`` names (``env``'s names without a context) from
            its own."""
            if self._closed:
                raise RuntimeError("the Bash sandbox was released")
            ends = time.monotonic() + (deadline or limits.wall_seconds + 1.0)
            policy = getattr(context, "policy", None)
            names = list(policy.env_passthrough or ()) if policy is not None else list(env)
            args = {"command": command, "cwd": cwd, "roots": list(roots),
                    "programs": allowlist.policy_entries(),
                    "limits": dataclasses.asdict(limits), "network": bool(network),
                    "passthrough": names}
            async with self.turnstile.turn(context):
                args["deadline"] = left = max(0.001, ends - time.monotonic())
                self.calls += 1
                reply = await self._call("bash.run", args,
                                         max(left, limits.wall_seconds), context)
            self.workspace.last_full = bool(reply["full"])
            if reply["masked"] and context is not None:
                context.masked = True
            run = RunResult(**reply["run"])
            if self.lost_note:
                note, self.lost_note = self.lost_note, None
                run = dataclasses.replace(run, stderr=f"{note}\n{run.stderr}",
                                          full_stderr=f"{note}\n{run.full_stderr}")
            return run

        def close(self) -> None:
            """Nothing to remove here: the provider's release (:meth:`aclose`) closes
            the sandbox on its node and kills the actor. Later calls fail."""
            self.dead = True

    return RayBashSandbox


@functools.cache
def sqlite_connection_class() -> type:
    """The SQLite connection in a Ray actor (a subclass of the native
    ``SQLiteConnection``; statements run side by side in its pool on the node)."""
    try:
        from agently_core_sqlite.pool import (
            SQLiteBusyError,
            SQLiteClosedError,
            SQLiteTimeoutError,
        )
        from agently_core_sqlite.provider import Settings, SQLiteConfigError, SQLiteConnection
        from agently_core_sqlite.worker import KILL_GRACE
    except ImportError:
        raise AgentlyError("the ray provider serves kind 'sqlite' with the SQLite "
                           "connection: install agently-core-sqlite") from None

    class RaySQLiteConnection(call_mixin(), SQLiteConnection):
        """A SQLite connection living in a Ray actor: the database file and the
        worker processes are the node's."""

        serial = False
        errors = {"ActionError": ActionError, "SQLiteTimeoutError": SQLiteTimeoutError,
                  "SQLiteBusyError": SQLiteBusyError, "SQLiteClosedError": SQLiteClosedError,
                  "SQLiteConfigError": SQLiteConfigError, "ResourceBusy": ResourceBusy}

        def __init__(self, actor: Any, info: dict[str, Any], **options: Any) -> None:
            # no SQLiteConnection.__init__: the file and the pool are the node's
            self._setup(actor, info, label="the SQLite connection (Ray)", **options)
            data = info["sqlite"]
            self.settings = Settings(**{**data, "database": Path(data["database"])})
            self.read_only = self.settings.read_only
            self.description = (f"the SQLite connection to {self.settings.database.name} "
                                "(Ray)")
            self.pool = None
            self.lost_note = None  # each statement commits on its own: none is lost
            self._running = 0

        @property
        def closed(self) -> bool:
            """Released, or the pool on the node closed (the actor's watch said so)."""
            return self._closed or self.stopped()

        @property
        def busy(self) -> bool:
            """Whether a statement of this connection is running on its node."""
            return self._running > 0

        async def run(self, message: dict[str, Any], *, timeout: float,
                      context: Any = None) -> dict[str, Any]:
            """One statement on the node, stopped there at ``timeout`` (waiting in its
            queue included, which the record shows as for a local connection)."""
            self._running += 1
            try:
                self.calls += 1
                return await self._call("sqlite.run", {"message": message,
                                                       "timeout": float(timeout)},
                                        timeout + KILL_GRACE, context)
            finally:
                self._running -= 1

        def close(self) -> bool:
            """See ``RayBashSandbox.close``: the release goes through :meth:`aclose`."""
            first = not self.dead
            self.dead = True
            return first

    return RaySQLiteConnection


__all__ = ["NODE_CALLS", "CallRecorder", "NodeWorkspace", "bash_sandbox_class", "call_mixin",
           "details", "node_call", "sqlite_connection_class"]
