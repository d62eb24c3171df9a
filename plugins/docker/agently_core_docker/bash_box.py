"""The ``bash`` kind served from Docker (``[providers] bash = "docker"``): ``run_bash`` runs
in a hardened warm container, with no change to the action, the executor or user code.

:class:`DockerBashSandbox` is a subclass of the native ``BashSandbox``, so the ``bash``
executor takes it as its own and does its host-side work unchanged (the line analyser
against the call's ``command_allowlist``, the workdir and roots resolved on the host, the
workspace bound). What differs is where a call runs: the sandbox's private workspace (home,
temporary files and the private root, one bounded tmpfs on the host), the host's roots
(``enable_shell(root=...)``) and the PATH directories are bind-mounted into one container
per scope owner **at their host paths**, so every path the executor checked on the host is
the same path inside. ``/tmp`` in the container is a tiny tmpfs the calls cannot write (it
holds the mount points); their temporary files go to ``TMPDIR``, the workspace's ``tmp``.
Bind mounts need the engine on this machine: a ``DOCKER_HOST`` on another machine is
refused, and a container that does not see a probe file the host wrote fails to start.

Each call is one ``docker exec`` (docker-py, in a worker thread) of a small launcher as the
sandbox's dedicated uid (the container's main process, ``sleep`` under docker's init, runs
as another uid): the launcher sets the call's rlimits, confines the child with Landlock when
the kernel offers it inside the container (only bash, the allowlist's programs, their script
interpreters and the ELF loader executable; the file system readable only under the system
trees; writable only in the workspace and roots), runs ``bash --noprofile --norc -c CMD``
with ``PATH`` the allowlist's directory and the host's environment only, waits for it, then
kills every process of its uid (``kill(-1, SIGKILL)`` until none is left; init reaps
them), so nothing a call started outlives it. Output is streamed up to
``limits.artifact_bytes``; past it the call's processes are killed. The wall clock is kept
by the host: past the deadline the container is killed and removed, and the next call gets
a fresh one over the same workspace. Releasing the sandbox removes its container and its
workspace.

The image must hold bash and python3 (the launcher's interpreter); the default image does.
The programs of the allowlist are resolved on the host but run from the image: one the image
lacks is "command not found" (exit 127).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

from agently_core.errors import AgentlyError
from agently_core.models import Policy

from .engine import container_labels, where
from .provider import DockerContainer, _remove_ids, _start
from .settings import DEFAULT_USER, ContainerSettings, DockerConfigError, Mount
from .workers import worker_image

#: The launcher's interpreter and bash, inside the image.
PYTHON = "/usr/bin/python3"
BASH = "/usr/bin/bash"
#: Processes the container needs besides a call's: docker's init, ``sleep``, the launcher
#: and a sweep.
EXTRA_PIDS = 4
DEFAULT_MEMORY = 1 << 30
DEFAULT_PROCESSES = 64
WORKER_CPUS = 1.0
#: Seconds a health check's or the start probe's round trip may take.
PING_TIMEOUT = 10.0
#: Read and searched in the container, never written, under Landlock (plus the PATH
#: directories); ``/proc`` is the container's own.
READ_TREES = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc")
#: ``/tmp`` in the container: root's and read-only to the calls (it only holds the mount
#: points of the host paths under it); a call's temporary files go to ``TMPDIR``.
TMP_MOUNT = "rw,noexec,nosuid,nodev,size=65536,mode=0755"
LOCAL_SCHEMES = ("unix", "npipe", "")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")

_ISOLATION = Path(__import__("agently_core_isolation").__file__).parent
#: The launcher: stdlib only, run as ``python3 -I -S -c LAUNCHER CONFIG`` as the call's uid.
LAUNCHER = (_ISOLATION / "_landlock_exec.py").read_text("utf-8") + r'''
import json as _json, resource as _resource, signal as _signal, struct as _struct, sys as _sys
import time as _time


def _interpreter(path):
    """What the kernel opens to execute ``path``: a script's ``#!`` program or an ELF's
    loader (PT_INTERP); None when there is none."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head[:2] == b"#!":
                handle.seek(0)
                words = handle.readline(256)[2:].split()
                return words[0].decode() if words else None
            if head[:4] != b"\x7fELF":
                return None
            wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
            if wide:
                phoff, = _struct.unpack_from(order + "Q", head, 0x20)
                size, count = _struct.unpack_from(order + "HH", head, 0x36)
            else:
                phoff, = _struct.unpack_from(order + "I", head, 0x1C)
                size, count = _struct.unpack_from(order + "HH", head, 0x2A)
            for index in range(min(count, 64)):
                handle.seek(phoff + index * size)
                entry = handle.read(size)
                if _struct.unpack_from(order + "I", entry, 0)[0] != 3:  # PT_INTERP
                    continue
                offset, length = (_struct.unpack_from(order + "QQQQ", entry, 8)[::3] if wide
                                  else _struct.unpack_from(order + "IIII", entry, 4)[::3])
                handle.seek(offset)
                return handle.read(length).rstrip(b"\0").decode()
    except (OSError, ValueError, _struct.error):
        return None
    return None


def _executables(paths):
    found, queue = [], [p for p in paths if os.path.exists(p)]
    while queue:
        path = queue.pop()
        if path in found:
            continue
        found.append(path)
        more = _interpreter(path)
        if more and os.path.isabs(more) and os.path.exists(more) and len(found) < 256:
            queue.append(more)
    return found


def _child(config):
    for number in (_signal.SIGPIPE, _signal.SIGXFSZ):  # Python ignores them at start-up,
        _signal.signal(number, _signal.SIG_DFL)  # and an ignored signal stays so across exec
    for name, soft, hard in config["rlimits"]:
        _resource.setrlimit(getattr(_resource, name), (soft, hard))
    if config["landlock"]:
        restrict_filesystem_and_tcp(ctypes.CDLL(None, use_errno=True), config["write"],
                                    config["read"], config["network"],
                                    executable=_executables(config["exec"]))
    os.chdir(config["cwd"])
    os.execve(config["argv"][0], config["argv"], config["env"])


def _others():
    """Live processes of this uid but this one (zombies are dead: init reaps them)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                if os.stat("/proc/" + entry).st_uid != os.getuid():
                    continue
                with open("/proc/" + entry + "/stat") as handle:
                    if handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        continue
            except (OSError, IndexError):
                continue
            found.append(int(entry))
    return found


def _sweep():
    """Kill every other process of this uid, until none is left (a fork racing the kill
    loses)."""
    for _ in range(2000):
        if not _others():
            return
        try:
            os.kill(-1, _signal.SIGKILL)
        except OSError:
            pass
        _time.sleep(0.001)


def _main():
    config = _json.loads(_sys.argv[1])
    if config.get("sweep"):
        _sweep()
        return
    child = os.fork()
    if child == 0:
        try:
            _child(config)
        except BaseException as exc:
            os.write(2, ("agently-core sandbox: " + repr(exc) + "\n").encode())
        os._exit(126)
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
    status = os.waitpid(child, 0)[1]
    _sweep()  # what the call left running
    _sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status)
              else 128 + os.WTERMSIG(status))


_main()
'''
#: Run as the call's uid: kills every other process of it (the output cap's stop).
SWEEP = [PYTHON, "-I", "-S", "-c", LAUNCHER, json.dumps({"sweep": True})]


def check_local_engine(address: str | None = None) -> None:
    """Refuse an engine on another machine: the workspace is bind-mounted from this one."""
    address = address or where()
    parts = urlsplit(address if "://" in address else f"unix://{address}")
    if parts.scheme in LOCAL_SCHEMES:
        return
    if parts.scheme in ("tcp", "http", "https") and (parts.hostname or "") in LOCAL_HOSTS:
        return
    raise DockerConfigError(
        f"the bash kind served from Docker bind-mounts its workspace from this machine, so "
        f"the Docker engine must run here; DOCKER_HOST={address} names another machine (use "
        "the local socket, or the native bash provider there)")


@dataclass
class _Stream:
    """What one exec produced so far (shared with the thread that reads it)."""

    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    killed: str | None = None
    exit_code: int | None = None


def _rlimits(limits: Any) -> list[tuple[str, int, int]]:
    values = []
    if limits.cpu_seconds is not None:
        cpu = max(1, int(limits.cpu_seconds + 0.999))
        values.append(("RLIMIT_CPU", cpu, cpu + 1))  # SIGXCPU at the soft, SIGKILL at the hard
    for name, value in (("RLIMIT_AS", limits.memory_bytes), ("RLIMIT_DATA", limits.data_bytes),
                        # the launcher is a process of the uid too
                        ("RLIMIT_NPROC", limits.processes and limits.processes + 1),
                        ("RLIMIT_FSIZE", limits.file_bytes),
                        ("RLIMIT_NOFILE", limits.open_files)):
        if value is not None:
            values.append((name, int(value), int(value)))
    return values


def sandbox_class() -> type:
    """:class:`DockerBashSandbox`, a subclass of the native ``BashSandbox`` (made on first
    use: agently-core-bash is needed only when the kind is served)."""
    global _CLASS
    if _CLASS is None:
        try:
            from agently_core_bash.sandbox import BashSandbox
        except ImportError:
            raise AgentlyError("the docker provider serves kind 'bash' with the Bash sandbox's "
                               "host side: install agently-core-bash") from None

        class DockerBashSandbox(BashSandbox):
            """A scope's Bash sandbox whose calls run in a warm hardened container."""

            tier = "docker"

            def __init__(self, *, roots: Sequence[str] | None, env: Mapping[str, str] | None,
                         workspace_bytes: int | None, labels: Mapping[str, str],
                         memory_bytes: int, processes: int, network: bool) -> None:
                super().__init__(None, roots=roots, env=env,  # type: ignore[arg-type]
                                 workspace_bytes=workspace_bytes)
                self.labels = dict(labels)
                self.memory_bytes = memory_bytes
                self.processes = processes
                self.network = network
                self.container: DockerContainer | None = None
                self.landlock = False
                self.dead = False
                self.call_user = f"{self.uid}:{self.uid}" if self.uid is not None else \
                    f"{os.getuid()}:{os.getgid()}"
                self.main_user = DEFAULT_USER if self.call_user != DEFAULT_USER else "65533:65533"
                self.probe = self.bin_parent / f".probe-{secrets.token_hex(8)}"
                self.probe.write_text("", "utf-8")

            # -- the container -------------------------------------------------------
            def settings(self, network: bool) -> ContainerSettings:
                mounts = [Mount(str(self.bin_parent), str(self.bin_parent), True),
                          Mount(str(self.workspace["tmp"]), str(self.workspace["tmp"]), False),
                          Mount(str(self.home), str(self.home), False),
                          *(Mount(root, root, False) for root in self.roots)]
                return ContainerSettings(
                    image=worker_image(), network=network, memory_bytes=self.memory_bytes,
                    processes=self.processes + EXTRA_PIDS, cpus=WORKER_CPUS, tmpfs_bytes=1,
                    workdir="/", user=self.main_user, mounts=tuple(mounts))

            def _create(self, network: bool) -> DockerContainer:
                """Start a container for this sandbox and check it (blocking)."""
                check_local_engine()
                settings = self.settings(network)
                made: list[str] = []
                options = {"init": True, "tmpfs": {"/tmp": TMP_MOUNT}, "entrypoint": [],
                           "command": ["sleep", "2147483647"]}
                try:
                    container = _start(settings, self.labels, made, options=options)
                    answer = container.exec(
                        ["/bin/sh", "-c", f'test -x {BASH} || echo "no {BASH}"; '
                         f'test -x {PYTHON} || echo "no {PYTHON}"; '
                         f'test -e "$1" || echo "no workspace"; '
                         f'{PYTHON} -I -S -c "import ctypes; '
                         f'print(\'landlock\', ctypes.CDLL(None).syscall(444, None, 0, 1))"',
                         "probe", str(self.probe)], 4096)
                except BaseException:
                    _remove_ids(made)
                    raise
                text = answer.stdout.decode(errors="replace")
                missing = [line[3:] for line in text.splitlines() if line.startswith("no ")]
                if missing:
                    container.remove()
                    if "workspace" in missing:
                        raise DockerConfigError(
                            f"the container does not see this machine's files (a bind mount of "
                            f"{self.bin_parent} came up empty): the Docker engine at "
                            f"{where()} runs on another machine or in a VM that does not share "
                            "them; run the engine here")
                    raise DockerConfigError(
                        f"image {settings.image!r} lacks {' and '.join(missing)}, which the "
                        "bash kind needs in Docker (set AGENTLY_DOCKER_IMAGE to an image "
                        "with both, or build the default: agently-core docker build-image)")
                abi = text.split("landlock", 1)[-1].split()
                self.landlock = bool(abi) and abi[0].lstrip("-").isdigit() and int(abi[0]) >= 4
                container.network = network  # type: ignore[attr-defined]
                return container

            async def _container(self, network: bool) -> DockerContainer:
                current = self.container
                if current is not None and not current.removed \
                        and getattr(current, "network", None) == network:
                    return current
                if current is not None:
                    self.container = None
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(current.remove)
                made: list[DockerContainer] = []

                def create() -> None:
                    made.append(self._create(network))

                try:
                    await anyio.to_thread.run_sync(create)
                finally:  # also when cancelled: the thread finished, its container is kept
                    if made and self.closed:  # released while it started
                        with anyio.CancelScope(shield=True):
                            await anyio.to_thread.run_sync(made[0].remove)
                    elif made:  # here aclose finds it
                        self.container, self.network = made[0], network
                if self.closed:
                    raise RuntimeError("the Bash sandbox was released")
                return made[0]

            async def start(self) -> Any:
                """Start the container now (errors of the image or engine show at once)."""
                await self._container(self.network)
                return self

            # -- one call ---------------------------------------------------------------
            def _config(self, command: str, *, cwd: str, roots: Sequence[str], allowlist: Any,
                        limits: Any, network: bool, env: Mapping[str, str]) -> dict[str, Any]:
                if allowlist.extra_read_only():
                    raise ValueError(
                        "programs outside the system trees "
                        f"({', '.join(allowlist.extra_read_only())}) are not in the container; "
                        "the image's own programs run there")
                path = str(self.bin_dir(allowlist))
                programs = sorted({p.path for p in allowlist.programs}
                                  | {p.real for p in allowlist.programs})
                return {
                    "argv": [BASH, "--noprofile", "--norc", "-c", command], "cwd": cwd,
                    "env": {"LANG": "C.UTF-8", **env, "HOME": str(self.home),
                            "TMPDIR": str(self.workspace["tmp"]), "PATH": path},
                    "rlimits": _rlimits(limits), "landlock": self.landlock,
                    "write": [str(self.home), str(self.workspace["tmp"]), *roots],
                    "read": [*READ_TREES, str(self.bin_parent)],
                    "exec": [BASH, *programs], "network": network,
                }

            def _exec(self, container: DockerContainer, config: Mapping[str, Any],
                      cap: int, state: _Stream) -> None:
                """One call's exec (blocking): stream up to ``cap`` bytes, then stop it."""
                api = container.engine.api
                made = api.exec_create(container.id, [PYTHON, "-I", "-S", "-c", LAUNCHER,
                                                      json.dumps(config)],
                                       stdout=True, stderr=True, user=self.call_user,
                                       workdir=config["cwd"], privileged=False)
                for stdout, stderr in api.exec_start(made["Id"], stream=True, demux=True):
                    for chunk, sink in ((stdout, state.out), (stderr, state.err)):
                        if not chunk or state.killed:
                            continue
                        room = cap - len(state.out) - len(state.err)
                        sink += chunk[:max(room, 0)]
                        if len(chunk) > room:
                            state.killed = "output limit"
                            self._sweep(container)
                state.exit_code = api.exec_inspect(made["Id"]).get("ExitCode")

            def _sweep(self, container: DockerContainer) -> None:
                """Kill every process of the call's uid in the container (blocking)."""
                api = container.engine.api
                made = api.exec_create(container.id, SWEEP, stdout=False, stderr=False,
                                       user=self.call_user, privileged=False)
                api.exec_start(made["Id"])

            async def run(self, command: str, *, cwd: str, roots: Sequence[str],
                          allowlist: Any, limits: Any, network: bool, env: Mapping[str, str],
                          deadline: float | None = None, context: Any = None) -> Any:
                """Run one line in the container (see the module); the same result as the
                native sandbox's ``run``."""
                from agently_core_isolation.sandbox import RunResult, cap_text, kill_uid

                if self.closed:
                    raise RuntimeError("the Bash sandbox was released")
                ends = time.monotonic() + (deadline or limits.wall_seconds + 1.0)
                async with self.turnstile.turn(context):
                    config = self._config(command, cwd=cwd, roots=roots, allowlist=allowlist,
                                          limits=limits, network=network, env=env)
                    container = await self._container(network)
                    self.calls += 1
                    state, started, timed_out = _Stream(), time.monotonic(), False
                    try:
                        with anyio.fail_after(max(0.001, ends - time.monotonic())):
                            await anyio.to_thread.run_sync(self._exec, container, config,
                                                           limits.artifact_bytes, state,
                                                           abandon_on_cancel=True)
                    except TimeoutError:
                        timed_out, state.killed = True, "wall timeout"
                        await self._drop(container)
                    except BaseException:
                        await self._drop(container)  # cancelled: the exec may still run
                        raise
                    finally:  # the host's backstop: the launcher could have been killed
                        with anyio.CancelScope(shield=True):
                            await anyio.to_thread.run_sync(kill_uid, self.uid)
                out = bytes(state.out).decode(errors="replace")
                err = bytes(state.err).decode(errors="replace")
                code = 137 if timed_out else state.exit_code
                stdout, cut_out = cap_text(out, limits.output_bytes)
                stderr, cut_err = cap_text(err, limits.output_bytes)
                return RunResult(exit_code=code, stdout=stdout, stderr=stderr,
                                 duration_s=time.monotonic() - started, timed_out=timed_out,
                                 output_truncated=cut_out or cut_err
                                 or state.killed == "output limit",
                                 killed=state.killed, full_stdout=out, full_stderr=err)

            async def _drop(self, container: DockerContainer) -> None:
                """Kill and remove ``container``; the next call starts a fresh one."""
                if self.container is container:
                    self.container = None
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(container.remove)

            # -- what the docker provider asks of a served resource ---------------------
            def healthy(self) -> bool:
                return not self.dead and super().healthy()

            async def ping(self) -> bool:
                """A real round trip to the engine: the container runs (started first when
                a timeout removed it). An inspect, not an exec of ``true``: that cost every
                reuse about 80 ms, and a call in a broken container fails by itself."""
                if not self.healthy():
                    return False
                try:
                    with anyio.fail_after(PING_TIMEOUT):
                        container = self.container
                        if container is None or container.removed:
                            if self.turnstile.busy:
                                return True  # the call under way starts it
                            async with self.turnstile.turn():
                                container = await self._container(self.network)
                        running = await anyio.to_thread.run_sync(
                            container.running, abandon_on_cancel=True)
                except Exception:
                    # a call's timeout removed it meanwhile: the next call starts a new one
                    return container is not None and container.removed and not self.dead
                return running or (container.removed and not self.dead)

            async def aclose(self) -> None:
                """Remove the container, then the workspace (idempotent)."""
                self.dead = True
                with anyio.CancelScope(shield=True):
                    container, self.container = self.container, None
                    if container is not None:
                        await anyio.to_thread.run_sync(container.remove)
                    await anyio.to_thread.run_sync(self.close)

        _CLASS = DockerBashSandbox
    return _CLASS


_CLASS: type | None = None


async def ensure_bash(requirement: Any) -> Any:
    """A scope's Bash sandbox with its container started (``SERVED["bash"]``)."""
    config = dict(requirement.config or {})
    if config.get("tier"):
        raise DockerConfigError(
            f"tier={config['tier']!r} picks a native isolation tier; kind 'bash' is served by "
            "the docker provider here (leave tier out, or choose the native provider with "
            "[providers] bash = \"bash\")")
    check_local_engine()
    policy = Policy().merge(dict(requirement.policy or {}))
    labels = container_labels(requirement)
    make = sandbox_class()
    box = await anyio.to_thread.run_sync(lambda: make(
        roots=config.get("roots") or None, env=config.get("env"),
        workspace_bytes=policy.max_workspace_bytes, labels=labels,
        memory_bytes=policy.max_memory_bytes or DEFAULT_MEMORY,
        processes=policy.max_processes or DEFAULT_PROCESSES, network=bool(policy.network)))
    try:
        return await box.start()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await box.aclose()
        raise


__all__ = ["LAUNCHER", "check_local_engine", "ensure_bash", "sandbox_class"]
