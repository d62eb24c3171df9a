"""Testing kit for the sandboxes built on this library (isolation, Python, Node.js, Bash):
what their attack suites share, for tests only.

* Probing the host: :func:`processes_with` (by a marker in the argv), :func:`wait_gone`,
  :func:`kill_processes_with`, :func:`program_pid`, :func:`alive`, :func:`wait_dead`,
  :func:`running`, :func:`host_can_fork`, and listeners the sandbox must not reach
  (:func:`tcp_listener`, :func:`udp_socket`, :func:`unix_listener`, :func:`got_traffic`).
* Bait and markers: :class:`Canary`, :func:`sleep_marker`.
* Running sandboxes directly: :class:`Box` (with :class:`Ran`), and under ``strace``:
  :func:`trace_execs` (with :class:`Traced`, :func:`parse_execs`).
* Leftovers: :func:`zombies`, :func:`processes_of` (by uid, zombies included),
  :class:`Leftovers`.
* Agents with a sandboxed action: :func:`attack_agents`, :func:`only_resource`,
  :func:`next_call_works`, :func:`dump`, :func:`events_of`, :func:`assert_fresh_start`,
  :func:`no_working_tier`.
* The Docker tier (:data:`DOCKER`, in :data:`ALL_TIERS`): the sandbox's kind served by the
  ``docker`` provider by configuration; :func:`attack_agents` makes its agents (shared by a
  module's cases through :class:`SharedAgents` where a case allows), :func:`workdir_of` and
  :func:`container_pid` reach into its containers from the host.
* Fixtures as plain generator functions (:func:`canary`, :func:`markers`, :func:`box`,
  :func:`shared_agents`):
  a test module makes one a fixture with ``canary = pytest.fixture(testing.canary)``.

Like :mod:`agently_core.testing`, this module imports no pytest. Its checks are plain
``assert`` statements: a conftest that runs ``pytest.register_assert_rewrite(
"agently_core_isolation.testing")`` before the first import gets pytest's reports for them.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from agently_core_isolation.sandbox import (
    Isolation,
    Limits,
    RunResult,
    SandboxSpec,
    allocate_uid,
    new_workdir,
    run,
)

#: The real isolation tiers every attack case runs in (``trusted_local`` isolates nothing).
TIERS = ["bubblewrap", "landlock"]
#: The Docker tier: not a tier option but the sandbox's kind served by the ``docker``
#: provider (agently-core-docker), chosen by configuration (``[providers] python = "docker"``).
DOCKER = "docker"
#: The native tiers and Docker: where an attack case runs unless it inspects native internals.
ALL_TIERS = [*TIERS, DOCKER]
#: The start of an isolated Python command line: ``[*PY, code]``.
PY = ("/usr/bin/python3", "-I", "-S", "-u", "-c")
#: The limits of an attacked Python or Node.js worker (``enable_python``/``enable_nodejs``).
ATTACK_LIMITS: dict[str, Any] = {"timeout": 5, "memory_mb": 256, "processes": 16, "file_mb": 4,
                                 "max_output_bytes": 20_000}
_tokens = itertools.count(int(time.time() * 1000) % 1_000_000 * 1000)


# -- processes -----------------------------------------------------------------------------
def proc_status(pid: int | str) -> tuple[int, str] | None:
    """``(real uid, state letter)`` of a process, or ``None`` when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    uid, state = -1, "?"
    for line in text.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
        elif line.startswith("State:"):
            state = line.split()[1]
    return uid, state


def processes_with(marker: str) -> list[tuple[int, int]]:
    """``(pid, uid)`` of every live (not zombie) process with ``marker`` in its argv."""
    found, needle = [], marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            status = proc_status(entry)
            if status is not None and status[1] != "Z":
                found.append((int(entry), status[0]))
    return found


def running(marker: str) -> bool:
    """Whether a live process carries ``marker`` in its argv."""
    return bool(processes_with(marker))


def wait_gone(*markers: str, timeout: float = 1.0) -> list[tuple[int, int]]:
    """Wait until no process carries any of ``markers``; return what is left."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for m in markers for p in processes_with(m)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_processes_with(*markers: str) -> None:
    """End, by pid, every process that still carries one of ``markers``: a sandbox's
    supervisor is asked to stop (it kills and reaps its sandbox), anything else SIGKILLed."""
    for marker in markers:
        for pid, _ in processes_with(marker):
            try:
                supervisor = b"_supervise.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if supervisor else signal.SIGKILL)


def describe(processes: list[tuple[int, int]]) -> list[str]:
    """What is known about these processes, for a failure message."""
    found = []
    for pid, _ in processes:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
            state = proc_status(pid)
        except OSError:
            continue
        found.append(f"{pid} {state} {cmdline.decode(errors='replace')}")
    return found


def program_pid(uid: int, program: str) -> int:
    """The host pid of the process of ``uid`` whose ``argv[0]`` is ``program`` (a sandboxed
    worker itself, inside bwrap or the launcher)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        owner = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
        if owner == uid and argv[0] == program.encode():
            return int(entry)
    raise AssertionError(f"no {program} runs as uid {uid}")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_dead(pid: int, timeout: float = 2.0) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to end; whether it did."""
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not alive(pid)


def host_can_fork() -> bool:
    return subprocess.run(["/bin/true"], timeout=10).returncode == 0


def sleep_marker() -> str:
    """A unique ``sleep`` duration (``300.<n>``), so a ``sleep`` started with it can be found
    by its argv."""
    return f"300.{next(_tokens)}"


# -- host-side bait ------------------------------------------------------------------------
@dataclass
class Canary:
    """A host file outside every workspace and root that DAC would let anybody read and
    write (so only the isolation stands in the way)."""

    dir: Path
    file: Path
    text: str

    def untouched(self) -> bool:
        return (self.file.read_text() == self.text
                and sorted(p.name for p in self.dir.iterdir()) == [self.file.name])


@contextlib.contextmanager
def tcp_listener(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A non-blocking TCP listener on a free port of ``host``."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen(16)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def udp_socket(host: str = "127.0.0.1", port: int = 0) -> Iterator[socket.socket]:
    """A non-blocking UDP socket bound to ``host:port`` (a free port by default)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


@contextlib.contextmanager
def unix_listener(address: str | Path) -> Iterator[socket.socket]:
    """A non-blocking Unix-socket listener: at a path anybody may connect to (mode 0777,
    like PostgreSQL's socket), or abstract when ``address`` starts with a NUL byte."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(address))
        if not str(address).startswith("\0"):
            os.chmod(address, 0o777)
        server.listen(4)
        server.setblocking(False)
        yield server
    finally:
        server.close()


def got_traffic(sock: socket.socket, wait: float = 0.2) -> bool:
    """Whether a listener saw a connection or a datagram."""
    ready, _, _ = select.select([sock], [], [], wait)
    return bool(ready)


# -- running sandboxes ---------------------------------------------------------------------
@dataclass
class Ran:
    """One sandboxed run: its result, uid, workspace and the marker in its argv."""

    result: RunResult
    uid: int
    workdir: Path
    marker: str

    @property
    def out(self) -> str:
        return self.result.stdout + self.result.stderr


class Box:
    """Runs sandboxes for one test and cleans up after it: every run carries a unique marker
    in its argv, so what it leaves behind can be found (and, at teardown, ended by pid)."""

    def __init__(self) -> None:
        self.markers: list[str] = []
        self.workdirs: list[Path] = []

    def marker(self) -> str:
        marker = f"agently-attack-{uuid.uuid4().hex[:12]}"
        self.markers.append(marker)
        return marker

    def sleep_arg(self) -> str:
        """A unique ``sleep`` duration, so a detached ``sleep`` can be found by its argv."""
        arg = sleep_marker()
        self.markers.append(arg)
        return arg

    @staticmethod
    def uid() -> int:
        """A dedicated sandbox uid, unique machine-wide (so a concurrent test run elsewhere on
        the machine never shares it; test_sandboxes_of_different_host_processes_get_different_uids)."""
        return allocate_uid()

    def workdir(self, uid: int) -> Path:
        path = new_workdir(uid)
        self.workdirs.append(path)
        return path

    async def arun(self, tier: str, argv: Sequence[str], *, limits: Limits | None = None,
                   network: bool = False, env: dict[str, str] | None = None,
                   uid: int | None = None, workdir: Path | None = None,
                   marker: str | None = None, **fields: Any) -> Ran:
        """Run ``argv`` (the marker appended) once; ``fields``: more :class:`SandboxSpec`
        fields (``exec_allow``, ``tmpdir``, ``rw_paths`` ...)."""
        uid = self.uid() if uid is None else uid
        workdir = workdir or self.workdir(uid)
        marker = marker or self.marker()
        spec = SandboxSpec([*argv, marker], workdir, network=network, env=env or {},
                           limits=limits or Limits(wall_seconds=10), **fields)
        result = await run(Isolation(tier), spec, uid=uid)
        return Ran(result, uid, workdir, marker)

    def run(self, tier: str, argv: Sequence[str], **options: Any) -> Ran:
        return anyio.run(functools.partial(self.arun, tier, argv, **options))

    def sh(self, tier: str, script: str, **options: Any) -> Ran:
        return self.run(tier, ["/bin/sh", "-c", script], **options)

    def py(self, tier: str, code: str, **options: Any) -> Ran:
        return self.run(tier, [*PY, textwrap.dedent(code)], **options)

    def still_works(self, tier: str) -> None:
        """The next run in ``tier`` works, as its own uid, and leaves nothing behind."""
        ran = self.sh(tier, "echo ok; id -u")
        assert ran.result.exit_code == 0, ran.out
        assert ran.result.stdout.split() == ["ok", str(ran.uid)]
        assert not wait_gone(ran.marker)

    def contained(self, tier: str, *rans: Ran, extra_markers: Sequence[str] = ()) -> None:
        """Nothing of these runs is left, the host can fork, the tier still works."""
        left = wait_gone(*(r.marker for r in rans), *extra_markers)
        assert not left, f"processes outlived the run: {describe(left)}"
        assert host_can_fork()
        self.still_works(tier)

    def cleanup(self) -> None:
        kill_processes_with(*self.markers)
        for path in self.workdirs:
            shutil.rmtree(path, ignore_errors=True)


# -- what a sandbox executes (strace) --------------------------------------------------------
#: Where ``strace`` is; the exec observations need it (``apt-get install strace``).
STRACE = shutil.which("strace")
_EXEC_LINE = re.compile(r'^(\d+)\s+(execve|execveat)\((.*)$')
_RESUMED = re.compile(r'^(\d+)\s+<\.\.\. (?:execve|execveat) resumed>.*\)\s+=\s+(-?\d+)')
_RESULT = re.compile(r'\)\s+=\s+(-?\d+)')


def parse_execs(log: str) -> list[tuple[str, bool]]:
    """Every ``execve``/``execveat`` in an ``strace -f`` log: the path as given (``""`` for an
    ``execveat`` of a descriptor) and whether it succeeded (the program started)."""
    found: list[tuple[str, bool]] = []
    pending: dict[str, str] = {}
    for line in log.splitlines():
        resumed = _RESUMED.match(line)
        if resumed:
            path = pending.pop(resumed.group(1), "?")
            found.append((path, resumed.group(2) == "0"))
            continue
        match = _EXEC_LINE.match(line)
        if match is None:
            continue
        rest = match.group(3)
        if match.group(2) == "execveat":  # execveat(dirfd, "path", ...)
            rest = rest.split(",", 1)[1].lstrip() if "," in rest else rest
        path = rest.split('"')[1] if rest.startswith('"') else ""
        if rest.rstrip().endswith("<unfinished ...>"):
            pending[match.group(1)] = path
            continue
        result = _RESULT.search(rest)
        found.append((path, bool(result) and result.group(1) == "0"))
    return found


@dataclass
class Traced:
    """A sandbox run under ``strace -f``: its outcome and every program it tried to start."""

    exit_code: int
    stdout: str
    stderr: str
    execs: list[tuple[str, bool]]

    @property
    def out(self) -> str:
        return self.stdout + self.stderr

    def started(self) -> list[str]:
        """The paths of every program that started (its exec succeeded)."""
        return [path for path, ok in self.execs if ok]

    def tried(self, path: str) -> bool:
        """Whether something tried to execute ``path`` (the exec was attempted)."""
        return any(p == path for p, _ in self.execs)

    def started_outside(self, allowed: Sequence[str]) -> list[str]:
        """Started programs that are not ``allowed`` (resolved on the host; a relative path
        or a descriptor is never allowed) besides the host side's own (the supervisor's
        Python, bubblewrap)."""
        from .sandbox import SUPERVISOR_PYTHON

        real = {os.path.realpath(p) for p in allowed}
        started = self.started()
        # the first program is the supervisor itself (the trace starts with it): only that
        # one start of its Python is the host's own, a later one would be the sandbox's
        if started and os.path.realpath(started[0]) == os.path.realpath(SUPERVISOR_PYTHON):
            started = started[1:]
        host = {os.path.realpath(shutil.which("bwrap") or "/")}
        return [path for path in started
                if not path.startswith("/") or path.startswith("/proc/")
                or os.path.realpath(path) not in real | host]


def trace_execs(tier: str, spec: SandboxSpec, *, uid: int | None, timeout: float = 60.0) -> Traced:
    """Run ``spec`` in ``tier`` (its supervisor and everything under it) under
    ``strace -f``, recording every program it tries to start."""
    assert STRACE is not None, "strace is not installed (apt-get install strace)"
    argv, env = Isolation(tier).command(spec, uid=uid)
    with tempfile.NamedTemporaryFile(prefix="agently-strace-", suffix=".log") as log:
        done = subprocess.run([STRACE, "-f", "-qq", "-s", "256", "-e", "trace=execve,execveat",
                               "-e", "signal=none", "-o", log.name, "--", *argv],
                              env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        text = Path(log.name).read_text(errors="replace")
    return Traced(done.returncode, done.stdout, done.stderr, parse_execs(text))


# -- what sandboxes leave behind ---------------------------------------------------------------
def _stat_fields(pid: str) -> tuple[str, int] | None:
    """``(state, parent pid)`` of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def zombies() -> list[tuple[int, int, int]]:
    """``(pid, parent, uid)`` of every zombie on the machine."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        status = proc_status(entry)
        if fields and status and fields[0] == "Z":
            found.append((int(entry), fields[1], status[0]))
    return found


def processes_of(uids: set[int]) -> list[tuple[int, int, str]]:
    """``(pid, uid, state)`` of every process (zombies included) running as one of ``uids``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        status = proc_status(entry)
        if status is not None and status[0] in uids:
            found.append((int(entry), status[0], status[1]))
    return found


class Leftovers:
    """What sandboxes leave on the host, seen from here: zombies handed to PID 1 or to this
    process, and any process of the sandbox uids given to :meth:`check`. Make it before
    the sandboxes run; zombies already there (other processes' on a shared machine) do
    not count."""

    def __init__(self) -> None:
        self.before = {pid for pid, _, _ in zombies()}

    def new_zombies(self, uids: set[int]) -> list[tuple[int, int, int]]:
        """Zombies that appeared since: under this process, or under PID 1 as a sandbox uid
        (another process's zombies on a shared machine are not ours to count)."""
        me = os.getpid()
        return [(pid, parent, uid) for pid, parent, uid in zombies()
                if pid not in self.before and (parent == me or (parent == 1 and uid in uids))]

    def check(self, uids: set[int]) -> None:
        """No zombie of ours and no process of ``uids`` is left, right now: the host's PID 1
        may reap late or never, so a zombie handed to it must not exist even for a moment."""
        dead, left = self.new_zombies(uids), processes_of(uids)
        assert not dead, f"zombies were left: {dead}"
        assert not left, f"processes of the sandbox uids were left: {left}"


# -- agents with a sandboxed action --------------------------------------------------------
def attack_agents(make_agent: Callable[..., Any], *, kind: str | None = None,
                  request: Any = None, shared: SharedAgents | None = None,
                  **defaults: Any) -> Callable[..., Any]:
    """``make(tier, **options)``: ``make_agent(tier=tier, **defaults, **options)``, the
    options winning over the defaults.

    For the tier :data:`DOCKER`, the agent is made on the setting that serves ``kind``
    (the requirement's kind: ``"python"``, ``"node"``, ``"bash"``) by the ``docker``
    provider, ``make_agent(settings={"providers": {kind: "docker"}}, **defaults,
    **options)``, with no tier option; first ``request`` (the test's pytest request) gets
    the ``docker_default_image`` fixture (agently_core_docker.testing: an engine, which
    fails under CI when none can be had, and the image the served kinds run in), so only
    the Docker cases need them. With ``shared`` (:class:`SharedAgents`), a Docker-tier
    agent is the module's shared one of the same options (its first in a test; a second
    is new) unless the case asks ``fresh=True``: for a case that needs its worker's state
    (files, environment) to be its own."""

    def make(tier: str, **options: Any) -> Any:
        fresh = options.pop("fresh", False)
        if tier != DOCKER:
            return make_agent(**{"tier": tier, **defaults, **options})
        assert kind is not None and request is not None, \
            "attack_agents(..., kind=, request=) is needed for the Docker tier"
        request.getfixturevalue("docker_default_image")
        merged = {**defaults, **options}
        merged.pop("tier", None)
        settings = {"providers": {kind: "docker"}}
        if shared is not None and not fresh:
            agent = shared.get(request.node.nodeid, settings, merged)
            if agent is not None:
                return agent
        return make_agent(settings=settings, **merged)

    return make


def configured_agent(home: Path, **settings: Any) -> Any:
    """An agent with every installed plugin whose configuration reads only ``settings`` (no
    environment variable, no file outside ``home``), as ``agently_agent_factory`` makes
    them, for a fixture of a wider scope."""
    from agently_core import Config, PluginManager, create_agent

    home.mkdir(parents=True, exist_ok=True)
    (home / "agently.toml").write_text("", encoding="utf-8")
    config = Config.load(env={}, cwd=home, overrides=settings or None)
    return create_agent(plugins=PluginManager(config).load())


class SharedAgents:
    """Docker-tier agents shared by the cases of one test module, one per set of options
    (a new container costs about half a second): ``mount(agent, **options)`` mounts the
    sandbox's action (``agent.enable_python``). A closed agent (a case closed it) is
    replaced; a worker a case broke is replaced by the manager's health check, as in use."""

    def __init__(self, home: Path, mount: Callable[..., Any]) -> None:
        self.home = home
        self.mount = mount
        self.agents: dict[str, Any] = {}
        self.made = 0
        self._test: str | None = None
        self._handed: set[str] = set()

    def get(self, test: str, settings: dict[str, Any], options: dict[str, Any]) -> Any:
        """The shared agent of ``options`` for ``test``, or None when this test already has
        it (a second agent of one case is its own)."""
        key = repr(sorted(options.items()))
        if test != self._test:
            self._test, self._handed = test, set()
        if key in self._handed:
            return None
        agent = self.agents.get(key)
        if agent is None or agent.closed:
            self.made += 1
            agent = configured_agent(self.home / f"agent-{self.made}", **settings)
            self.mount(agent, **options)
            self.agents[key] = agent
        self._handed.add(key)
        return agent

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()
        self.agents.clear()


def container_pid(resource: Any) -> int:
    """The host pid of the main process of a resource's container (a worker the ``docker``
    provider serves: its ``container``)."""
    container = resource.container
    state = container.engine.api.inspect_container(container.id)["State"]
    assert state.get("Running") and state.get("Pid"), state
    return int(state["Pid"])


def workdir_of(resource: Any, inside: str = "/work") -> Path:
    """Where the host sees a worker's (or sandbox's) working directory: the native
    ``workdir``, or for a container, its ``inside`` directory through the container's root
    as the host sees it (``/proc/<pid>/root``: root on the host reads and plants files there
    without entering the container)."""
    if getattr(resource, "container", None) is None:
        assert resource.workdir is not None, "the worker has no workspace (not started?)"
        return Path(resource.workdir)
    return Path(f"/proc/{container_pid(resource)}/root{inside}")


def only_resource(agent: Any, kind: str) -> Any:
    """The one live resource of ``kind`` the agent's manager holds (a worker, a sandbox)."""
    handles = agent.manager.list(kind=kind)
    assert len(handles) == 1, handles
    return agent.manager.resource(handles[0])


def next_call_works(agent: Any, action: str, kwargs: dict[str, Any]) -> None:
    """``action`` with ``kwargs`` (code that prints 42) still succeeds on ``agent``."""
    record = agent.action.execute_action(action, kwargs)
    assert record.status == "success", record.error
    assert record.result["stdout"] == "42\n"


def dump(record: Any) -> str:
    """The whole record as JSON, to search for what must not be in it."""
    return record.model_dump_json()


def events_of(agent: Any) -> list[str]:
    """The types of the agent's ``execution_environment.*`` events from now on, as they come."""
    seen: list[str] = []
    agent.manager.events.subscribe(lambda event: seen.append(event.type), "execution_environment.*")
    return seen


def assert_fresh_start(events: list[str]) -> None:
    """The manager found the worker unhealthy, let it go and started a new one."""
    assert events[:2] == ["execution_environment.unhealthy", "execution_environment.releasing"], events
    assert events.index("execution_environment.ready") > events.index("execution_environment.unhealthy")


def no_working_tier() -> dict[str, dict[str, Any]]:
    """A ``sandbox.tier_status`` for a machine where no isolating tier works."""
    return {
        "bubblewrap": {"ok": False, "detail": "bwrap is not installed"},
        "landlock": {"ok": False, "detail": "Landlock ABI 0"},
        "trusted_local": {"ok": True, "detail": "no isolation"},
    }


# -- fixtures (wrap with pytest.fixture in the test module) --------------------------------
def canary() -> Iterator[Canary]:
    """A :class:`Canary` in a new 0777 directory under /tmp; removed at teardown."""
    folder = Path(tempfile.mkdtemp(prefix="agently-canary-", dir="/tmp"))
    os.chmod(folder, 0o777)
    text = f"CANARY-{uuid.uuid4().hex}"
    file = folder / "canary.txt"
    file.write_text(text)
    os.chmod(file, 0o666)
    yield Canary(folder, file, text)
    shutil.rmtree(folder, ignore_errors=True)


def markers() -> Iterator[Callable[[], str]]:
    """``markers()``: a new :func:`sleep_marker`, so processes a test's code starts can be
    found by argv; whatever still carries one at teardown is ended by pid."""
    made: list[str] = []

    def make() -> str:
        made.append(sleep_marker())
        return made[-1]

    yield make
    kill_processes_with(*made)


def shared_agents(home: Path, mount: Callable[..., Any]) -> Iterator[SharedAgents]:
    """:class:`SharedAgents` for a module (``scope="module"``), closed at its end."""
    agents = SharedAgents(home, mount)
    yield agents
    agents.close()


def box() -> Iterator[Box]:
    """A :class:`Box` for one test, cleaned up at teardown."""
    helper = Box()
    yield helper
    helper.cleanup()
