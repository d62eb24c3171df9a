"""The attack suite of the isolation library: real sandboxes, real attacks, no mocks.

Every case runs in both real tiers, bubblewrap and Landlock + seccomp. A tier that does not
work on the machine fails the case: nothing here is skipped. Each case asserts a clear
outcome (the attack failed, or was stopped by a limit), that the host is unharmed (canary
files untouched, no process of the run left behind), and that the next run in the same
tier still works.

Against 93496c6 this suite caught (each case below now guards the fix): in the landlock tier,
detached or orphaned children and fork bombs outliving run(), connect() to host Unix-socket
services, every host process's command line readable through /proc; in both tiers, the
host's stdin inherited by the sandbox and sandbox uids shared between host processes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from agently_core_isolation import sandbox, testing
from agently_core_isolation.sandbox import Isolation, IsolationUnavailable, Limits, SandboxSpec, run
from agently_core_isolation.testing import PY, TIERS, Box, Canary, Ran, got_traffic

REPO = Path(__file__).resolve().parents[3]
canary = pytest.fixture(testing.canary)
box = pytest.fixture(testing.box)


def count_processes_of(uid: int) -> int:
    """Every process of ``uid``, zombies included (they count against its process limit)."""
    return sum(1 for entry in os.listdir("/proc")
               if entry.isdigit() and (testing.proc_status(entry) or (-1, ""))[0] == uid)


# == identity and secrets ==================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_runs_as_its_dedicated_non_root_uid_without_privileges(box: Box, tier: str) -> None:
    ran = box.py(tier, """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, self
        caps = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (x2)
        assert libc.syscall(125, header, caps) == 0, 'capget'  # SYS_capget
        print(os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), list(caps),
              libc.prctl(39, 0, 0, 0, 0))  # PR_GET_NO_NEW_PRIVS
    """)
    assert ran.result.exit_code == 0, ran.out
    assert ran.uid != 0
    uid = ran.uid
    # non-root uid and gid, no supplementary group, no capability at all, no new privileges
    assert ran.result.stdout == f"{uid} {uid} {uid} [] [0, 0, 0, 0, 0, 0] 1\n", ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_etc_shadow_is_unreadable(box: Box, tier: str) -> None:
    assert "root:" in Path("/etc/shadow").read_text()  # the host (root) can: the bait is real
    ran = box.py(tier, """
        try:
            print(open('/etc/shadow').read())
        except OSError as exc:
            print('DENIED', type(exc).__name__)
    """)
    assert ran.result.exit_code == 0, ran.out
    assert ran.result.stdout.startswith("DENIED"), ran.out
    assert "root:" not in ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_host_environment_is_not_inherited(box: Box, tier: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("ISOLATION_ATTACK_SECRET", secret)
    ran = box.py(tier, f"""
        import os
        for key, value in sorted(os.environ.items()):
            print(f'{{key}}={{value}}')
        for pid in ({os.getpid()}, os.getppid(), 1):
            try:
                print(open(f'/proc/{{pid}}/environ', 'rb').read())
            except OSError as exc:
                print('environ of', pid, 'DENIED', type(exc).__name__)
    """, env={"GIVEN_BY_POLICY": "yes"})
    assert ran.result.exit_code == 0, ran.out
    assert "GIVEN_BY_POLICY=yes" in ran.out  # the environment is built from the spec
    assert secret not in ran.out
    assert "ISOLATION_ATTACK_SECRET" not in ran.out
    assert f"environ of {os.getpid()} DENIED" in ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_host_stdin_is_not_inherited(box: Box, tier: str) -> None:
    secret = f"typed-at-the-host-{uuid.uuid4().hex}"
    saved = os.dup(0)
    read_end, write_end = os.pipe()
    os.write(write_end, (secret + "\n").encode())
    os.close(write_end)
    os.dup2(read_end, 0)  # the host's stdin holds input meant for the host
    os.close(read_end)
    try:
        ran = box.sh(tier, "head -c 200; echo; ls -l /proc/self/fd/0", limits=Limits(wall_seconds=5))
        left = os.read(0, 200).decode()
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert secret not in ran.out, "the sandbox read the host's stdin"
    assert left == secret + "\n"  # and nothing was consumed
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_host_command_lines_are_not_visible(box: Box, tier: str) -> None:
    secret = f"--token=argv-secret-{uuid.uuid4().hex}"
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", secret])
    try:
        ran = box.py(tier, """
            import os
            try:
                pids = os.listdir('/proc')
            except OSError as exc:
                pids = []
                print('proc DENIED', type(exc).__name__)
            for pid in pids:
                try:
                    line = open(f'/proc/{pid}/cmdline', 'rb').read()
                except OSError:
                    continue
                if b'--token=' in line:
                    print('SAW', pid, line)
            print('scanned')
        """)
    finally:
        victim.kill()
        victim.wait()
    assert "scanned" in ran.out
    assert secret not in ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_host_file_descriptors_are_not_inherited(box: Box, tier: str, canary: Canary) -> None:
    fd = os.open(canary.file, os.O_RDWR)
    os.set_inheritable(fd, True)  # even one the host forgot to mark close-on-exec
    try:
        ran = box.py(tier, f"""
            import errno, os
            try:
                print('READ', os.pread({fd}, 100, 0))
            except OSError as exc:
                print('fd DENIED', errno.errorcode[exc.errno])
            print(sorted(os.listdir('/proc/self/fd')))
        """)
    finally:
        os.close(fd)
    assert "fd DENIED EBADF" in ran.out, ran.out
    assert canary.text not in ran.out
    assert canary.untouched()
    box.contained(tier, ran)


# == the file system =======================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_repository_files_are_unreadable(box: Box, tier: str) -> None:
    target = REPO / "pyproject.toml"
    assert target.stat().st_mode & 0o004  # world-readable: only the isolation protects it
    ran = box.py(tier, f"""
        import os
        try:
            print(open({str(target)!r}).read())
        except OSError as exc:
            print('read DENIED', type(exc).__name__)
        try:
            print(os.listdir({str(REPO)!r}))
        except OSError as exc:
            print('list DENIED', type(exc).__name__)
    """)
    assert ran.result.exit_code == 0, ran.out
    assert "read DENIED" in ran.out and "list DENIED" in ran.out, ran.out
    assert 'name = "agently-core"' not in ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_root_home_is_unreadable(box: Box, tier: str) -> None:
    ran = box.py(tier, """
        import os
        for probe in (lambda: os.listdir('/root'), lambda: open('/root/.bashrc').read()):
            try:
                print(probe())
            except OSError as exc:
                print('DENIED', type(exc).__name__)
    """)
    assert ran.result.stdout.count("DENIED") == 2, ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_host_tmp_files_are_unreadable(box: Box, tier: str, canary: Canary) -> None:
    ran = box.py(tier, f"""
        import os
        try:
            print(open({str(canary.file)!r}).read())
        except OSError as exc:
            print('read DENIED', type(exc).__name__)
        try:
            print(os.listdir('/tmp'))
        except OSError as exc:
            print('list DENIED', type(exc).__name__)
    """)
    assert "read DENIED" in ran.out, ran.out
    assert canary.text not in ran.out
    assert canary.dir.name not in ran.out  # neither the host's /tmp listing
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_writing_outside_the_workspace_fails_and_leaves_nothing(box: Box, tier: str,
                                                                canary: Canary) -> None:
    name = f"agently-attack-{uuid.uuid4().hex[:8]}"
    targets = [canary.dir / name, canary.file, REPO / name, Path("/root") / name,
               Path("/usr") / name, Path("/etc") / name]
    ran = box.py(tier, f"""
        for path in {[str(t) for t in targets]!r}:
            try:
                with open(path, 'a') as handle:
                    handle.write('PWNED')
                print('WROTE', path)
            except OSError as exc:
                print('DENIED', path, type(exc).__name__)
        with open('inside.txt', 'w') as handle:
            handle.write('fine')
    """)
    assert ran.result.exit_code == 0, ran.out
    assert "WROTE" not in ran.out
    assert ran.result.stdout.count("DENIED") == len(targets)
    for target in targets:
        assert target == canary.file or not target.exists(), target
    assert canary.untouched()
    assert (ran.workdir / "inside.txt").read_text() == "fine"  # the workspace is writable
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_tmp_is_private(box: Box, tier: str) -> None:
    name = f"agently-attack-{uuid.uuid4().hex[:8]}"
    ran = box.py(tier, f"""
        try:
            with open('/tmp/{name}', 'w') as handle:
                handle.write('x')
            print('wrote a private file')
        except OSError as exc:
            print('DENIED', type(exc).__name__)
    """)
    assert ran.result.exit_code == 0, ran.out
    assert not Path("/tmp", name).exists()
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_dotdot_traversal_cannot_reach_host_files(box: Box, tier: str, canary: Canary) -> None:
    uid = box.uid()
    workdir = box.workdir(uid)
    relative = os.path.relpath(canary.file, workdir)  # ../../agently-canary-.../canary.txt
    deep = "../" * 12 + str(canary.file).lstrip("/")
    ran = box.py(tier, f"""
        for path in ({relative!r}, {deep!r}, '/work/' + {deep!r}):
            for mode in ('r', 'a'):
                try:
                    with open(path, mode) as handle:
                        print('GOT', handle.read() if mode == 'r' else handle.write('PWNED'))
                except OSError as exc:
                    print('DENIED', mode, type(exc).__name__)
    """, uid=uid, workdir=workdir)
    assert "GOT" not in ran.out
    assert ran.result.stdout.count("DENIED") == 6, ran.out
    assert canary.text not in ran.out
    assert canary.untouched()
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_symlink_planted_in_the_workspace_cannot_reach_its_target(box: Box, tier: str,
                                                                 canary: Canary) -> None:
    uid = box.uid()
    workdir = box.workdir(uid)
    (workdir / "link").symlink_to(canary.file)
    (workdir / "dirlink").symlink_to(canary.dir, target_is_directory=True)
    ran = box.py(tier, """
        for path, mode in (('link', 'r'), ('link', 'a'), ('link', 'w'), ('dirlink/canary.txt', 'r'),
                           ('dirlink/new.txt', 'w')):
            try:
                with open(path, mode) as handle:
                    print('GOT', handle.read() if mode == 'r' else handle.write('PWNED'))
            except OSError as exc:
                print('DENIED', path, mode, type(exc).__name__)
    """, uid=uid, workdir=workdir)
    assert "GOT" not in ran.out, ran.out
    assert ran.result.stdout.count("DENIED") == 5, ran.out
    assert canary.text not in ran.out
    assert canary.untouched()
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_symlinks_and_hard_links_made_inside_cannot_reach_host_files(box: Box, tier: str,
                                                                      canary: Canary) -> None:
    ran = box.py(tier, f"""
        import os
        target = {str(canary.file)!r}
        for name, make in (('soft', os.symlink), ('hard', os.link)):
            try:
                make(target, name)
            except OSError as exc:
                print('link DENIED', name, type(exc).__name__)
                continue
            for mode in ('r', 'a'):
                try:
                    with open(name, mode) as handle:
                        print('GOT', handle.read() if mode == 'r' else handle.write('PWNED'))
                except OSError as exc:
                    print('DENIED', name, mode, type(exc).__name__)
    """)
    assert "GOT" not in ran.out, ran.out
    assert "link DENIED hard" in ran.out  # never a hard link to a host file in the workspace
    assert canary.text not in ran.out
    assert canary.untouched()
    inode = canary.file.stat().st_ino
    assert all(p.lstat().st_ino != inode for p in ran.workdir.rglob("*"))
    box.contained(tier, ran)


# == the network ===========================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_tcp_to_a_host_loopback_listener_is_refused(box: Box, tier: str) -> None:
    with testing.tcp_listener() as server:
        port = server.getsockname()[1]
        ran = box.py(tier, f"""
            import socket
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=2)
                print('CONNECTED')
            except OSError as exc:
                print('REFUSED', type(exc).__name__)
        """)
        assert not got_traffic(server), "the host's listener saw a connection"
    assert ran.result.stdout.startswith("REFUSED"), ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_udp_to_a_host_loopback_socket_is_refused(box: Box, tier: str) -> None:
    with testing.udp_socket() as sink:
        port = sink.getsockname()[1]
        ran = box.py(tier, f"""
            import socket
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                for _ in range(5):
                    sock.sendto(b'exfiltrated', ('127.0.0.1', {port}))
                print('SENT')
            except OSError as exc:
                print('REFUSED', type(exc).__name__)
        """)
        assert not got_traffic(sink, 0.3), "the host's UDP socket received a datagram"
    assert "exfiltrated" not in ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_dns_resolution_fails(box: Box, tier: str) -> None:
    with contextlib.ExitStack() as stack:
        try:  # a fake resolver where glibc falls back to when it cannot read resolv.conf
            resolver = stack.enter_context(testing.udp_socket("127.0.0.1", 53))
        except OSError:
            resolver = None
        ran = box.py(tier, """
            import socket
            for name in ('example.com', 'pypi.org'):
                try:
                    print('RESOLVED', socket.getaddrinfo(name, 443))
                except OSError as exc:
                    print('FAILED', type(exc).__name__)
        """)
        if resolver is not None:
            assert not got_traffic(resolver, 0.2), "a DNS query reached the host"
    assert ran.result.stdout.count("FAILED gaierror") == 2, ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_host_unix_socket_services_are_unreachable(box: Box, tier: str, canary: Canary) -> None:
    path = canary.dir / "service.sock"
    with testing.unix_listener(path) as server:  # like PostgreSQL's socket: anybody may connect
        ran = box.py(tier, f"""
            import socket
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect({str(path)!r})
                sock.sendall(b'exfiltrated')
                print('CONNECTED')
            except OSError as exc:
                print('REFUSED', type(exc).__name__)
        """)
        assert not got_traffic(server), "a host Unix-socket service accepted the sandbox"
    assert ran.result.stdout.startswith("REFUSED"), ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_host_abstract_unix_sockets_are_unreachable(box: Box, tier: str) -> None:
    name = f"agently-attack-{uuid.uuid4().hex}"
    with testing.unix_listener("\0" + name) as server:
        ran = box.py(tier, f"""
            import socket
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect('\\0' + {name!r})
                print('CONNECTED')
            except OSError as exc:
                print('REFUSED', type(exc).__name__)
        """)
        assert not got_traffic(server), "the host's abstract socket accepted the sandbox"
    assert ran.result.stdout.startswith("REFUSED"), ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_a_sandbox_cannot_serve_on_the_host_loopback(box: Box, tier: str) -> None:
    with testing.tcp_listener() as probe:  # a free port number
        port = probe.getsockname()[1]
    outcome: dict[str, Any] = {}

    async def scenario() -> Ran:
        async with anyio.create_task_group() as group:
            async def serve() -> None:
                outcome["ran"] = await box.arun(tier, [*PY, textwrap.dedent(f"""
                    import socket, time
                    try:
                        server = socket.socket()
                        server.bind(('127.0.0.1', {port}))
                        server.listen(4)
                        print('LISTENING', flush=True)
                        time.sleep(0.6)
                    except OSError as exc:
                        print('REFUSED', type(exc).__name__)
                """)])

            group.start_soon(serve)
            await anyio.sleep(0.3)

            def knock() -> str:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return "connected"
                except OSError as exc:
                    return type(exc).__name__

            outcome["knock"] = await anyio.to_thread.run_sync(knock)
        return outcome["ran"]

    ran = anyio.run(scenario)
    assert outcome["knock"] == "ConnectionRefusedError", ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_raw_syscalls_do_not_bypass_the_network_block(box: Box, tier: str) -> None:
    with testing.tcp_listener() as server:
        port = server.getsockname()[1]
        ran = box.py(tier, f"""
            import ctypes, socket, struct
            libc = ctypes.CDLL(None, use_errno=True)
            addr = struct.pack('=H', 2) + struct.pack('!H', {port}) + socket.inet_aton('127.0.0.1') + bytes(8)
            for label, nr in (('native', 41), ('x32', 0x40000000 | 41)):
                fd = libc.syscall(nr, 2, 1, 0)
                print(label, 'socket ->', fd, ctypes.get_errno(), flush=True)
                if fd >= 0:
                    print(label, 'connect ->', libc.syscall(nr + 1, fd, addr, len(addr)), ctypes.get_errno())
            params = ctypes.create_string_buffer(120)
            print('io_uring_setup ->', libc.syscall(425, 8, params), flush=True)
        """)
        assert not got_traffic(server), "a raw socket syscall reached the host's listener"
    assert "native socket" in ran.out, ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_the_network_switch_works_both_ways(box: Box, tier: str) -> None:
    code = """
        import socket, sys
        try:
            socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2).sendall(b'hello')
            print('CONNECTED')
        except OSError as exc:
            print('REFUSED', type(exc).__name__)
    """
    with testing.tcp_listener() as server:
        port = str(server.getsockname()[1])
        closed = box.run(tier, [*PY, textwrap.dedent(code), port])
        assert closed.result.stdout.startswith("REFUSED"), closed.out
        assert not got_traffic(server)
        opened = box.run(tier, [*PY, textwrap.dedent(code), port], network=True)
        assert opened.result.stdout.startswith("CONNECTED"), opened.out
        assert got_traffic(server), "network=True did not reach the host's listener"
        conn, _ = server.accept()
        conn.settimeout(2)
        assert conn.recv(16) == b"hello"
        conn.close()
    box.contained(tier, closed, opened)


# == limits ================================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_fork_bomb_is_held_by_the_process_limit(box: Box, tier: str) -> None:
    limit = 8
    uid = box.uid()
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], count_processes_of(uid))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # the leader forks once and then spins on builtins only, so it never dies of a failed
        # fork itself (that variant is test_fork_bomb_whose_leader_exits_dies_with_the_run)
        ran = box.sh(tier, "b() { b & b & sleep 5; }; b & while :; do :; done", uid=uid,
                     limits=Limits(processes=limit, wall_seconds=0.8))
    finally:
        stop.set()
        watcher.join()
    assert "Cannot fork" in ran.result.stderr, ran.out  # the limit held it
    assert ran.result.timed_out and ran.result.duration_s < 2
    assert 2 <= peak[0] <= limit, f"{peak[0]} processes with a limit of {limit}"
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_fork_bomb_whose_leader_exits_dies_with_the_run(box: Box, tier: str) -> None:
    nap = box.sleep_arg()
    ran = box.sh(tier, f"b() {{ b & b & sleep {nap}; }}; (b) </dev/null >/dev/null 2>&1 & exit 0",
                 limits=Limits(processes=8, wall_seconds=5))
    assert ran.result.exit_code == 0 and not ran.result.timed_out, ran.out
    box.contained(tier, ran, extra_markers=[nap])


@pytest.mark.parametrize("tier", TIERS)
def test_memory_bomb_is_held_by_the_memory_limit(box: Box, tier: str) -> None:
    ran = box.py(tier, """
        try:
            huge = bytearray(8 << 30)
        except MemoryError:
            print('one huge allocation: MemoryError', flush=True)
        hoard = []
        while True:
            hoard.append(bytearray(4 << 20))
    """, limits=Limits(memory_bytes=128 << 20, wall_seconds=10))
    assert "one huge allocation: MemoryError" in ran.result.stdout, ran.out
    assert ran.result.exit_code not in (0, None) and not ran.result.timed_out, ran.out
    assert "MemoryError" in ran.result.stderr
    assert ran.result.duration_s < 5
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_cpu_spin_is_stopped_by_the_wall_timeout(box: Box, tier: str) -> None:
    ran = box.py(tier, "while True: pass", limits=Limits(wall_seconds=0.8))
    assert ran.result.timed_out and ran.result.killed == "wall timeout"
    assert ran.result.exit_code == -signal.SIGKILL
    assert 0.7 < ran.result.duration_s < 3
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_cpu_spin_is_stopped_by_the_cpu_limit(box: Box, tier: str) -> None:
    ran = box.py(tier, "while True: pass", limits=Limits(cpu_seconds=1, wall_seconds=10))
    assert not ran.result.timed_out
    # SIGXCPU at the soft limit (bubblewrap reports it as 128 + signal)
    assert ran.result.exit_code in (-signal.SIGXCPU, 128 + signal.SIGXCPU,
                                    -signal.SIGKILL, 128 + signal.SIGKILL), ran.result
    assert ran.result.duration_s < 4
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_endless_output_is_truncated_and_the_process_killed(box: Box, tier: str) -> None:
    limits = Limits(output_bytes=1000, artifact_bytes=100_000, wall_seconds=10)
    ran = box.run(tier, ["/usr/bin/yes"], limits=limits)
    result = ran.result
    assert result.killed == "output limit" and result.output_truncated and not result.timed_out
    assert "[... output truncated:" in result.stdout
    assert len(result.stdout.encode()) < 1000 + 100
    assert len(result.full_stdout.encode()) <= limits.artifact_bytes
    assert result.exit_code == -signal.SIGKILL
    assert result.duration_s < 5
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_huge_file_is_stopped_by_the_file_size_limit(box: Box, tier: str) -> None:
    limit = 1 << 20
    ran = box.py(tier, """
        import os
        try:
            with open('big', 'wb') as handle:
                for _ in range(100):
                    handle.write(b'x' * 100_000)
        except OSError as exc:
            print('write stopped', exc.errno)
        try:
            with open('sparse', 'wb') as handle:
                handle.truncate(10 << 30)
        except OSError as exc:
            print('truncate stopped', exc.errno)
    """, limits=Limits(file_bytes=limit, wall_seconds=10))
    assert "write stopped 27" in ran.out and "truncate stopped 27" in ran.out, ran.out  # EFBIG
    sizes = {p.name: p.stat().st_size for p in ran.workdir.iterdir() if p.is_file()}
    assert sizes and max(sizes.values()) <= limit, sizes
    box.contained(tier, ran)


# == processes that try to outlive the run, signals =========================================
@pytest.mark.parametrize("tier", TIERS)
def test_detached_setsid_child_is_gone_after_the_run(box: Box, tier: str) -> None:
    nap = box.sleep_arg()
    ran = box.sh(tier, f"setsid sh -c '(sleep {nap} &)' </dev/null >/dev/null 2>&1; echo started",
                 limits=Limits(wall_seconds=5))
    assert ran.result.stdout == "started\n", ran.out
    box.contained(tier, ran, extra_markers=[nap])


@pytest.mark.parametrize("tier", TIERS)
def test_background_child_is_gone_when_its_leader_exits(box: Box, tier: str) -> None:
    nap = box.sleep_arg()
    ran = box.sh(tier, f"nohup sleep {nap} </dev/null >/dev/null 2>&1 & echo started",
                 limits=Limits(wall_seconds=5))
    assert ran.result.stdout == "started\n", ran.out
    box.contained(tier, ran, extra_markers=[nap])


@pytest.mark.parametrize("tier", TIERS)
def test_background_child_holding_the_output_cannot_hold_the_run(box: Box, tier: str) -> None:
    inner = box.marker()
    ran = box.sh(tier, f"sh -c 'while :; do sleep 0.05; done' {inner} & echo started",
                 limits=Limits(wall_seconds=0.5))
    assert ran.result.stdout == "started\n", ran.out
    assert ran.result.duration_s < 2  # bubblewrap ends it with its leader, landlock at the wall time
    box.contained(tier, ran, extra_markers=[inner])


@pytest.mark.parametrize("tier", TIERS)
def test_signals_cannot_reach_the_host(box: Box, tier: str) -> None:
    hits: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: hits.append(signum))
    victim = subprocess.Popen(["sleep", box.sleep_arg()])  # a host process (root)
    try:
        ran = box.py(tier, f"""
            import os, signal
            for pid in ({os.getpid()}, {victim.pid}, -1):
                try:
                    os.kill(pid, signal.SIGTERM)
                    print('SIGNALLED', pid)
                except OSError as exc:
                    print('DENIED', pid, type(exc).__name__)
        """)
        time.sleep(0.1)
        assert not hits, "the sandbox signalled the test process"
        assert victim.poll() is None, "the sandbox killed a host process"
    finally:
        signal.signal(signal.SIGTERM, previous)
        victim.kill()
        victim.wait()
    assert f"DENIED {os.getpid()}" in ran.out and f"DENIED {victim.pid}" in ran.out, ran.out
    box.contained(tier, ran)


@pytest.mark.parametrize("tier", TIERS)
def test_a_sandbox_cannot_signal_another_sandbox(box: Box, tier: str) -> None:
    marker = box.marker()

    async def scenario() -> tuple[Ran, Ran]:
        runs: dict[str, Ran] = {}

        async def victim() -> None:
            runs["victim"] = await box.arun(tier, [*PY, "import time; time.sleep(0.6); print('survived')"],
                                            marker=marker)

        async with anyio.create_task_group() as group:
            group.start_soon(victim)
            pids: list[int] = []
            with anyio.fail_after(5):
                # One snapshot: a process seen mid-exec may be gone from a second scan.
                while not pids:
                    await anyio.sleep(0.02)
                    pids = [pid for pid, _ in testing.processes_with(marker)]
            runs["attacker"] = await box.arun(tier, [*PY, textwrap.dedent(f"""
                import os, signal
                for pid in {pids!r}:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        print('KILLED', pid)
                    except OSError as exc:
                        print('DENIED', pid, type(exc).__name__)
            """)])
        return runs["victim"], runs["attacker"]

    victim, attacker = anyio.run(scenario)
    assert "KILLED" not in attacker.out and "DENIED" in attacker.out, attacker.out
    assert victim.result.exit_code == 0 and victim.result.stdout == "survived\n", victim.out
    box.contained(tier, victim, attacker)


@pytest.mark.parametrize("tier", TIERS)
def test_cannot_trace_or_read_the_memory_of_the_host(box: Box, tier: str) -> None:
    ran = box.py(tier, f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print('ptrace', libc.ptrace(16, {os.getpid()}, 0, 0))  # PTRACE_ATTACH
        try:
            with open('/proc/{os.getpid()}/mem', 'rb') as handle:
                print('READ', handle.read(16))
        except OSError as exc:
            print('mem DENIED', type(exc).__name__)
    """)
    assert "ptrace -1" in ran.out and "mem DENIED" in ran.out, ran.out
    box.contained(tier, ran)


# == choosing a tier =======================================================================
@pytest.mark.parametrize("tier", TIERS)
def test_trusted_local_needs_the_explicit_opt_in(box: Box, tier: str) -> None:
    with pytest.raises(IsolationUnavailable, match="allow_trusted_local=True"):
        Isolation("trusted_local")
    assert Isolation().tier in TIERS  # the default never falls to trusted_local
    assert Isolation(allow_trusted_local=True).tier in TIERS  # a working tier still wins
    box.still_works(tier)


@pytest.mark.parametrize("tier", TIERS)
def test_no_working_tier_is_a_clear_error_and_nothing_runs(box: Box, tier: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "tier_status", testing.no_working_tier)
    uid = box.uid()
    workdir = box.workdir(uid)
    with pytest.raises(IsolationUnavailable) as caught:
        anyio.run(functools.partial(run, Isolation(), SandboxSpec(["/bin/sh", "-c", "touch RAN"], workdir),
                                    uid=uid))
    message = str(caught.value)
    assert "nothing will run" in message
    assert "apt-get install bubblewrap" in message and "allow_trusted_local=True" in message
    assert "bwrap is not installed" in message and "Landlock ABI 0" in message
    assert not (workdir / "RAN").exists()
    assert Isolation(allow_trusted_local=True).tier == "trusted_local"  # only by opt-in
    monkeypatch.undo()
    box.still_works(tier)


@pytest.mark.parametrize("tier", TIERS)
def test_sandboxes_of_different_host_processes_get_different_uids(box: Box, tier: str) -> None:
    script = textwrap.dedent(f"""
        import anyio, json
        from agently_core_isolation.sandbox import (Isolation, Limits, SandboxSpec, allocate_uid,
                                                    new_workdir, run)
        uid = allocate_uid()
        workdir = new_workdir(uid)
        spec = SandboxSpec(['/bin/sh', '-c', 'sleep 0.3; id -u'], workdir, limits=Limits(wall_seconds=10))
        result = anyio.run(lambda: run(Isolation({tier!r}), spec, uid=uid))
        print(json.dumps({{'uid': uid, 'inside': result.stdout.strip()}}))
        import shutil; shutil.rmtree(workdir)
    """)
    hosts = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    seen = [json.loads(host.communicate(timeout=30)[0]) for host in hosts]
    assert all(s["inside"] == str(s["uid"]) for s in seen), seen
    assert seen[0]["uid"] != seen[1]["uid"], f"two agents' sandboxes share uid {seen[0]['uid']}"
    box.still_works(tier)
