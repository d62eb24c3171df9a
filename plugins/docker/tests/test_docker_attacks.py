"""Container-specific attacks on the Docker tier, from both ways a model reaches a container:
``run_python`` served by the docker provider (``[providers] python = "docker"``: the worker
is the container's main process) and ``run_in_container`` (a command ``docker exec``'d into
the host's image). The shared attack kit's cases run in the Docker tier from the sandboxes'
own suites (``testing.DOCKER``); these are what only a container has: the Docker socket, the
host's ``/proc/1``, mounting and namespaces, privileges a model asks for, an image a model
chooses, setuid binaries, the read-only root and the capped ``/work``.

Each probe is Python run inside (the default image has python3 for ``run_in_container``)
that reports what it managed as one JSON line, so the assertions read facts. One agent per
way (one container each) serves the probes that leave it healthy; the refusals use fresh
agents, which start no container at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from agently_core_docker.engine import DEFAULT_SOCKET
from agently_core_docker.images import DEFAULT_IMAGE
from agently_core_docker.testing import containers_of
from agently_core_docker.testing import inspect_container as inspect
from agently_core_isolation import testing
from agently_core_isolation.testing import dump

from agently_core import Config, PluginManager, create_agent
from agently_core.models import ActionCall

REPO = Path(__file__).resolve().parents[3]
SURFACES = ["run_python", "run_in_container"]
DISK = 2 << 20  # the /work cap of both containers
MEMORY = 256 << 20
PROCESSES = 32
markers = pytest.fixture(testing.markers)

#: Put before every probe: ``attempt(fn)`` is fn's value (``'DONE'`` for None) or the errno
#: name (else the exception's type) of what it raised; ``report(x)`` prints x as JSON.
PRELUDE = """\
import ctypes, errno, json, os, socket, stat, subprocess, time
def attempt(fn):
    try:
        value = fn()
        return 'DONE' if value is None else value
    except OSError as exc:
        return errno.errorcode.get(exc.errno) or type(exc).__name__
def report(x):
    print(json.dumps(x))
"""


# -- agents --------------------------------------------------------------------------------
def new_agent(home: Path, **settings: Any) -> Any:
    """An agent on ``settings`` only (no environment variable, no file outside ``home``)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "agently.toml").write_text("", encoding="utf-8")
    config = Config.load(env={}, cwd=home, overrides=settings or None)
    return create_agent(plugins=PluginManager(config).load())


def with_run_python(home: Path) -> Any:
    agent = new_agent(home, providers={"python": "docker"})
    agent.enable_python(timeout=20, memory_mb=MEMORY >> 20, processes=PROCESSES, file_mb=4,
                        disk_mb=DISK >> 20)
    return agent


def with_run_in_container(home: Path) -> Any:
    agent = new_agent(home)
    agent.enable("docker", image=DEFAULT_IMAGE, approval=False, timeout=20,
                 memory_bytes=MEMORY, processes=PROCESSES, tmpfs_bytes=DISK)
    return agent


@pytest.fixture(scope="module")
def agents(docker_default_image: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """One agent per surface, shared by the probes that leave their container healthy."""
    home = tmp_path_factory.mktemp("docker-attacks")
    made = {"run_python": with_run_python(home / "python"),
            "run_in_container": with_run_in_container(home / "container")}
    yield made
    for agent in made.values():
        agent.close()


def execute(agent: Any, surface: str, code: str, **options: Any) -> Any:
    code = PRELUDE + textwrap.dedent(code)
    if surface == "run_python":
        return agent.action.execute_action("run_python", {"python_code": code}, **options)
    return agent.action.execute_action("run_in_container",
                                       {"cmd": ["python3", "-I", "-c", code]}, **options)


def probe(agent: Any, surface: str, code: str) -> Any:
    """What ``code`` reported (its last line of output, JSON)."""
    record = execute(agent, surface, code)
    assert record.status == "success", dump(record)
    if surface == "run_in_container":
        assert record.result["exit_code"] == 0, record.result
    return json.loads(record.result["stdout"].strip().splitlines()[-1])


def next_call_works(agent: Any, surface: str) -> None:
    assert probe(agent, surface, "report(6 * 7)") == 42


def container_id(agent: Any, surface: str) -> str:
    [handle] = agent.manager.list(kind="python" if surface == "run_python" else "docker")
    assert handle.provider == "docker"
    resource = agent.manager.resource(handle)
    return getattr(resource, "container", resource).id






# == the Docker socket =====================================================================
@pytest.mark.parametrize("surface", SURFACES)
def test_the_docker_socket_is_not_reachable_from_inside(agents: dict[str, Any], surface: str,
                                                        docker_engine: str) -> None:
    host_socket = docker_engine.removeprefix("unix://")
    assert Path(host_socket).is_socket(), "the engine is reached through a host socket"
    paths = sorted({host_socket, DEFAULT_SOCKET, "/run/docker.sock",
                    "/run/containerd/containerd.sock", "/run/podman/podman.sock"})
    seen = probe(agents[surface], surface, f"""
        def connect(path):
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(2)
            try:
                client.connect(path)
                client.sendall(b'GET /containers/json HTTP/1.0\\r\\n\\r\\n')
                return client.recv(200).decode(errors='replace') or 'CONNECTED'
            finally:
                client.close()
        def tcp(address):
            return socket.create_connection(address, timeout=1).close()
        sockets = []
        for root, dirs, files in os.walk('/'):
            if root == '/':
                dirs[:] = [d for d in dirs if d not in ('proc', 'sys')]
            for name in dirs + files:
                try:
                    if stat.S_ISSOCK(os.lstat(os.path.join(root, name)).st_mode):
                        sockets.append(os.path.join(root, name))
                except OSError:
                    pass
        report({{'unix': {{p: attempt(lambda: connect(p)) for p in {paths!r}}},
                 'tcp': [attempt(lambda: tcp(a)) for a in
                         (('127.0.0.1', 2375), ('172.17.0.1', 2375), ('172.17.0.1', 2376))],
                 'sockets': sockets}})
    """)
    assert seen["unix"] == {path: "ENOENT" for path in paths}, seen
    assert seen["sockets"] == [], seen  # no Unix socket anywhere in its file system
    assert set(seen["tcp"]) <= {"ENETUNREACH", "ECONNREFUSED"}, seen  # at once, no network
    next_call_works(agents[surface], surface)


# == the host's processes ==================================================================
@pytest.mark.parametrize("surface", SURFACES)
def test_proc_1_is_the_containers_own(agents: dict[str, Any], surface: str,
                                      markers: Any) -> None:
    nap = markers()
    host_process = subprocess.Popen(["sleep", nap])  # a host process it must not see
    try:
        seen = probe(agents[surface], surface, f"""
            def read(path):
                try:
                    return open(path, 'rb').read().decode(errors='replace')
                except OSError as exc:
                    return errno.errorcode.get(exc.errno) or type(exc).__name__
            pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
            report({{'pids': pids, 'me': os.getpid(),
                     'cmdlines': {{p: read(f'/proc/{{p}}/cmdline') for p in pids}},
                     'environ1': read('/proc/1/environ'),
                     'root1_is_mine': attempt(lambda: os.stat('/proc/1/root/').st_ino
                                              == os.stat('/').st_ino),
                     'host_repo': attempt(lambda: os.stat('/proc/1/root' + {str(REPO)!r})
                                          and 'FOUND'),
                     'host_pytest': read('/proc/{os.getpid()}/cmdline')}})
        """)
    finally:
        host_process.kill()
        host_process.wait()
    host_init = Path("/proc/1/cmdline").read_bytes().decode(errors="replace")
    own = ("python3\0-I\0-S\0-u\0-c\0" if surface == "run_python"
           else "sleep\x002147483647\0")
    cmdlines = seen["cmdlines"]
    # docker's init (it reaps orphans), then the worker (or ``sleep``) under it
    assert cmdlines["1"].startswith("/sbin/docker-init\0--\0" + own), cmdlines["1"][:80]
    assert seen["pids"][0] == 1 and len(seen["pids"]) <= 4, seen["pids"]  # its own few
    assert host_init not in cmdlines.values()
    others = [line for pid, line in cmdlines.items() if pid != str(seen["me"])]  # not the probe
    assert not any(nap in line or "pytest" in line for line in others), others
    assert seen["host_pytest"] in ("ENOENT", "ESRCH") or "pytest" not in seen["host_pytest"]
    assert seen["root1_is_mine"] is True and seen["host_repo"] == "ENOENT", seen
    if "=" in seen["environ1"]:  # readable (the same uid): the container's own
        assert "HOME=/work" in seen["environ1"] or "HOSTNAME=" in seen["environ1"], seen
        try:
            host_environ = Path("/proc/1/environ").read_bytes().decode(errors="replace")
        except PermissionError:  # some hosts keep even root out of their init's environment
            host_environ = ""
        private = [v for v in host_environ.split("\0") if "=" in v
                   and not v.startswith(("PATH=", "HOME=", "TERM=", "HOSTNAME=", "SHLVL="))]
        assert not any(v in seen["environ1"] for v in private)
    next_call_works(agents[surface], surface)


def test_orphans_of_a_command_are_reaped(agents: dict[str, Any]) -> None:
    # an exec'd command's orphans go to the container's PID 1: unreaped, each would hold a
    # pid until the pids limit refuses every new process for the container's life
    agent = agents["run_in_container"]
    seen = probe(agent, "run_in_container", f"""
        for _ in range({PROCESSES + 8}):  # each shell exits at once, its child is orphaned
            subprocess.run('sleep 0.01 & exit 0', shell=True)
        time.sleep(0.3)
        zombies = [p for p in os.listdir('/proc') if p.isdigit()
                   and attempt(lambda: open(f'/proc/{{p}}/stat').read().rsplit(')', 1)[1].split()[0])
                   == 'Z']
        started = [attempt(lambda: subprocess.Popen(['sleep', '0.2'])) for _ in range(8)]
        report({{'zombies': zombies,
                 'started': [s if isinstance(s, str) else s.wait() for s in started]}})
    """)
    assert seen == {"zombies": [], "started": [0] * 8}, seen
    next_call_works(agent, "run_in_container")


# == mounting and namespaces ===============================================================
@pytest.mark.parametrize("surface", SURFACES)
def test_mount_umount_and_unshare_fail(agents: dict[str, Any], surface: str) -> None:
    seen = probe(agents[surface], surface, """
        libc = ctypes.CDLL(None, use_errno=True)
        def syscall(fn, *args):
            return 'DONE' if fn(*args) == 0 else errno.errorcode.get(ctypes.get_errno())
        MS_REMOUNT, MS_BIND = 32, 4096
        CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x20000, 0x10000000, 0x20000000
        before = open('/proc/self/mountinfo').read()
        calls = {
            'mount tmpfs on /work': syscall(libc.mount, b'none', b'/work', b'tmpfs', 0, None),
            'mount proc': syscall(libc.mount, b'proc', b'/work', b'proc', 0, None),
            'remount / rw': syscall(libc.mount, None, b'/', None, MS_REMOUNT, None),
            'bind / on /work': syscall(libc.mount, b'/', b'/work', None, MS_BIND, None),
            'umount /work': syscall(libc.umount2, b'/work', 2),
            'umount /proc': syscall(libc.umount2, b'/proc', 2),
            'unshare user': syscall(libc.unshare, CLONE_NEWUSER),
            'unshare mount': syscall(libc.unshare, CLONE_NEWNS),
            'unshare user+mount': syscall(libc.unshare, CLONE_NEWUSER | CLONE_NEWNS),
            'unshare pid': syscall(libc.unshare, CLONE_NEWPID),
            'chroot': syscall(libc.chroot, b'/work'),
        }
        commands = {' '.join(argv): subprocess.run(argv, capture_output=True).returncode
                    for argv in (['mount', '-t', 'tmpfs', 'none', '/work'],
                                 ['umount', '-l', '/work'], ['unshare', '-r', 'true'],
                                 ['unshare', '-m', 'true'])}
        status = dict(line.split(':\\t', 1) for line in open('/proc/self/status').read().splitlines()
                      if line.startswith(('Cap', 'NoNewPrivs', 'Seccomp:')))
        report({'calls': calls, 'commands': commands, 'status': status,
                'mounts_unchanged': open('/proc/self/mountinfo').read() == before})
    """)
    assert set(seen["calls"].values()) <= {"EPERM", "EACCES"}, seen["calls"]
    assert all(code != 0 for code in seen["commands"].values()), seen["commands"]
    status = seen["status"]
    assert {status[f"Cap{k}"] for k in ("Inh", "Prm", "Eff", "Bnd", "Amb")} == {"0000000000000000"}
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status  # filter on
    assert seen["mounts_unchanged"] is True
    next_call_works(agents[surface], surface)


# == setuid binaries =======================================================================
@pytest.mark.parametrize("surface", SURFACES)
def test_a_setuid_binary_does_not_elevate(agents: dict[str, Any], surface: str) -> None:
    seen = probe(agents[surface], surface, """
        su = '/usr/bin/su'
        info = os.stat(su)
        child = subprocess.Popen([su, 'root', '-c', 'cat /etc/shadow'], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ids = None
        for _ in range(300):  # once it runs su (it then waits for a password on stdin)
            try:
                text = open(f'/proc/{child.pid}/status').read()
            except OSError:
                break
            if 'Name:\\tsu\\n' in text:
                ids = {line.split(':')[0]: line.split()[1:] for line in text.splitlines()
                       if line.startswith(('Uid:', 'Gid:'))}
                break
            time.sleep(0.01)
        child.kill()
        child.wait()
        report({'setuid_root': bool(info.st_mode & stat.S_ISUID) and info.st_uid == 0,
                'ids': ids, 'me': [str(os.getuid()), str(os.getgid())],
                'shadow': attempt(lambda: open('/etc/shadow').read()[:5])})
    """)
    assert seen["setuid_root"] is True, "the image has a setuid-root su to try"
    uid, gid = seen["me"]
    assert uid != "0"
    # real, effective, saved and file-system ids: all the caller's (no-new-privileges)
    assert seen["ids"] == {"Uid": [uid] * 4, "Gid": [gid] * 4}, seen
    assert seen["shadow"] == "EACCES"
    next_call_works(agents[surface], surface)


# == the file system =======================================================================
@pytest.mark.parametrize("surface", SURFACES)
def test_the_root_is_read_only_and_work_is_capped(agents: dict[str, Any], surface: str) -> None:
    agent = agents[surface]
    seen = probe(agent, surface, """
        def write(path):
            with open(path, 'w') as handle:
                handle.write('PWNED')
        outside = {p: attempt(lambda: write(p)) for p in
                   ('/pwned', '/etc/pwned', '/usr/bin/pwned', '/var/pwned', '/home/pwned',
                    '/etc/passwd')}
        os.makedirs('/work/fill', exist_ok=True)
        written, error = 0, None
        for n in range(64):  # 512 KiB files, each well within the file-size limit
            try:
                with open(f'/work/fill/{n}', 'wb') as handle:
                    handle.write(b'x' * (512 << 10))
                written += 512 << 10
            except OSError as exc:
                error = errno.errorcode.get(exc.errno)
                break
        writable = []
        for root, dirs, files in os.walk('/'):
            if root == '/':
                dirs[:] = [d for d in dirs if d not in ('proc', 'sys')]
            if os.access(root, os.W_OK):  # (access() says EROFS on a read-only mount too)
                writable.append(root)
                dirs[:] = []
        report({'outside': outside, 'written': written, 'error': error, 'writable': writable})
    """)
    assert set(seen["outside"].values()) == {"EROFS"}, seen["outside"]
    # besides the capped /work (and the worker's capped /tmp), only the kernel's IPC mounts
    # (a 64 MiB /dev/shm, counted against the memory limit, and /dev/mqueue)
    tmp = ["/tmp"] if surface == "run_python" else []
    assert sorted(seen["writable"]) == ["/dev/mqueue", "/dev/shm", *tmp, "/work"], seen
    assert seen["error"] == "ENOSPC", seen
    assert DISK // 2 <= seen["written"] <= DISK, seen
    next_call_works(agent, surface)  # with /work full
    again = probe(agent, surface, """
        import shutil
        shutil.rmtree('/work/fill')
        report(attempt(lambda: open('/work/after', 'wb').write(b'x' * (1 << 20))))
    """)
    assert again == 1 << 20  # the space is back once the files are gone
    probe(agent, surface, "os.remove('/work/after'); report(0)")


# == what a model asks for =================================================================
#: Container options a model might put in a call: none is an input of either action.
ASKED = [{"privileged": True}, {"volumes": {"/": {"bind": "/host", "mode": "rw"}}},
         {"network": "host"}, {"network_mode": "host"}, {"cap_add": ["SYS_ADMIN"]},
         {"user": "0:0"}, {"security_opt": ["seccomp=unconfined"]}, {"pid_mode": "host"},
         {"devices": ["/dev/vda:/dev/vda"]}, {"entrypoint": ["/bin/sh"]}]


@pytest.mark.parametrize("surface", SURFACES)
def test_privileges_a_model_asks_for_are_refused(surface: str, docker_engine: str,
                                                 tmp_path: Path) -> None:
    agent = (with_run_python if surface == "run_python" else with_run_in_container)(tmp_path)
    code = {"run_python": {"python_code": "import os; os.getuid()"},
            "run_in_container": {"cmd": "id"}}[surface]
    try:
        for asked in ASKED:
            [record] = agent.action.execute_actions([ActionCall(
                action=surface, kwargs={**code, **asked}, source="model")])
            assert record.status == "failed", (asked, dump(record))
            [key] = asked
            assert key in record.error, (asked, record.error)
            assert record.result is None
        assert agent.manager.list() == [] and containers_of(docker_engine, agent) == []
    finally:
        agent.close()


@pytest.mark.parametrize("image", ["evil/rootkit:latest", "agently-core/busybox:test",
                                   "agently-core/default:latest", "docker.io/library/debian",
                                   "Not An Image", "", "../../host"])
def test_an_image_chosen_by_a_model_is_refused(image: str, agents: dict[str, Any],
                                               docker_engine: str, docker_test_image: str) -> None:
    agent = agents["run_in_container"]
    client = docker.DockerClient(base_url=docker_engine, version="auto")
    try:
        before = sorted(i.id for i in client.images.list(all=True))
        [record] = agent.action.execute_actions([ActionCall(
            action="run_in_container", kwargs={"cmd": "id", "image": image}, source="model")])
        assert record.status == "failed" and record.result is None, dump(record)
        # refused with the arguments, before any container starts: only the host's image
        # ever runs (the warm container of the module's earlier cases, if any)
        assert f"image: {image!r} is not one of [{DEFAULT_IMAGE!r}]" in record.error, record.error
        assert {inspect(docker_engine, c)["Config"]["Image"]
                for c in containers_of(docker_engine, agent)} <= {DEFAULT_IMAGE}
        assert sorted(i.id for i in client.images.list(all=True)) == before  # nothing pulled
    finally:
        client.close()
    next_call_works(agent, "run_in_container")


def test_run_python_takes_no_image(docker_engine: str, tmp_path: Path) -> None:
    agent = with_run_python(tmp_path)
    try:
        [record] = agent.action.execute_actions([ActionCall(
            action="run_python", kwargs={"python_code": "1", "image": "evil/rootkit:latest"},
            source="model")])
        assert record.status == "failed" and "image" in record.error, dump(record)
        assert agent.manager.list() == [] and containers_of(docker_engine, agent) == []
    finally:
        agent.close()


@pytest.mark.parametrize("surface", SURFACES)
def test_a_model_cannot_widen_the_container(agents: dict[str, Any], surface: str,
                                            docker_engine: str) -> None:
    agent = agents[surface]
    next_call_works(agent, surface)
    ident = container_id(agent, surface)
    code = PRELUDE + textwrap.dedent("""
        import resource
        report({'interfaces': sorted(line.split(':')[0].strip() for line in
                                     open('/proc/net/dev').read().splitlines()[2:]),
                'egress': attempt(lambda: socket.create_connection(('1.1.1.1', 443), timeout=1)
                                  .close()),
                'fsize': resource.getrlimit(resource.RLIMIT_FSIZE)[0]})
    """)
    kwargs = ({"python_code": code} if surface == "run_python"
              else {"cmd": ["python3", "-I", "-c", code]})
    wider = {"network": True, "max_memory_bytes": 1 << 40, "max_processes": 100_000,
             "timeout_seconds": 3600}
    if surface == "run_python":  # (run_in_container blocks the policy fields it cannot hold)
        wider |= {"max_file_bytes": 1 << 40, "max_workspace_bytes": 1 << 40}
    [record] = agent.action.execute_actions([ActionCall(
        action=surface, kwargs=kwargs, source="model", policy=wider)])
    assert record.status == "success", dump(record)
    seen = json.loads(record.result["stdout"].strip().splitlines()[-1])
    assert seen["interfaces"] == ["lo"] and seen["egress"] == "ENETUNREACH", seen
    if surface == "run_python":
        assert seen["fsize"] == 4 << 20, seen
    assert container_id(agent, surface) == ident  # the same container, not a wider one
    host = inspect(docker_engine, ident)["HostConfig"]
    assert host["NetworkMode"] == "none" and host["Privileged"] is False
    assert host["Memory"] == MEMORY and host["PidsLimit"] <= PROCESSES + 16, host["PidsLimit"]
