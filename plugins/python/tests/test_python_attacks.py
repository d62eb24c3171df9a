"""The attack suite of run_python, through a real agent (``agent.enable_python(tier=...)``),
in both real isolation tiers, and in the Docker tier (``run_python`` served by the docker
provider, ``[providers] python = "docker"``: the worker is a container's main process; a
case that looks at the worker's files reaches them through the container's root as the host
sees it, :func:`~agently_core_isolation.testing.workdir_of`).

Each case: the attack's record is failed or contained with a clear error or output, the host
is unharmed (canary files untouched, no host process signalled or spawned, nothing left
running), and the NEXT run_python call works. Against 93496c6 this suite caught (each case
now guards the fix): in the landlock tier a start_new_session child outliving its worker and
connect() to a host Unix-socket service; in both tiers a stopped call's buffered output
leaking into the next record, and a record cut to a JSON string by the output cap. In the
Docker tier it caught a memory bomb ending the worker through the container's out-of-memory
killer (an unclear "stream was closed" record) instead of raising MemoryError.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agently_core_isolation import testing
from agently_core_isolation.testing import ALL_TIERS, Canary, dump, got_traffic, processes_with
from agently_core_python.sandbox import PythonWorker

REPO = Path(__file__).resolve().parents[3]
canary = pytest.fixture(testing.canary)
markers = pytest.fixture(testing.markers)


# -- helpers -------------------------------------------------------------------------------
def call(agent: Any, code: str, **options: Any) -> Any:
    return agent.action.execute_action("run_python", {"python_code": textwrap.dedent(code)},
                                       **options)


def worker_of(agent: Any) -> PythonWorker:
    return testing.only_resource(agent, "python")


def next_call_works(agent: Any) -> None:
    testing.next_call_works(agent, "run_python", {"python_code": "print(6 * 7)"})


@pytest.fixture(scope="module")
def docker_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.SharedAgents]:
    """The Docker tier's agents, shared by the cases that allow it (a container each)."""
    yield from testing.shared_agents(tmp_path_factory.mktemp("docker-agents"),
                                     lambda agent, **options: agent.enable_python(**options))


@pytest.fixture
def attack_agent(python_agent: Callable[..., Any], request: pytest.FixtureRequest,
                 docker_agents: testing.SharedAgents) -> Callable[..., Any]:
    return testing.attack_agents(python_agent, kind="python", request=request,
                                 shared=docker_agents, **testing.ATTACK_LIMITS)


# == reading host secrets ==================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_etc_shadow(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, "open('/etc/shadow').read()")
    assert record.status == "failed"
    assert "PermissionError" in record.error or "FileNotFoundError" in record.error, record.error
    assert "root:" not in dump(record)
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_the_host_environment(attack_agent: Any, tier: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    monkeypatch.setenv("PAYMENTS_API_KEY", secret)
    agent = attack_agent(tier, fresh=True)  # started after the secret
    record = call(agent, f"""
        import os
        found = dict(os.environ)
        for pid in ({os.getpid()}, os.getppid(), 1):
            try:
                found[pid] = open(f'/proc/{{pid}}/environ', 'rb').read().decode()
            except OSError as exc:
                found[pid] = type(exc).__name__
        found
    """)
    assert record.status == "success", record.error
    assert secret not in dump(record) and "PAYMENTS_API_KEY" not in dump(record)
    assert "ProcessLookupError" not in record.result["value"]  # it ran, and was denied
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_a_host_file_outside_the_workspace(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, f"open({str(REPO / 'pyproject.toml')!r}).read()")
    assert record.status == "failed"
    assert "PermissionError" in record.error or "FileNotFoundError" in record.error, record.error
    assert 'name = \\"agently-core\\"' not in dump(record)
    next_call_works(agent)


# == writing outside, links ================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_write_outside_the_workspace(attack_agent: Any, tier: str, canary: Canary) -> None:
    agent = attack_agent(tier)
    name = f"agently-attack-{uuid.uuid4().hex[:8]}"
    targets = [str(canary.dir / name), str(canary.file), str(REPO / name), f"/tmp/{name}"]
    record = call(agent, f"""
        results = {{}}
        for path in {targets!r}:
            try:
                with open(path, 'a') as handle:
                    handle.write('PWNED')
                results[path] = 'WROTE'
            except OSError as exc:
                results[path] = type(exc).__name__
        results
    """)
    assert record.status == "success", record.error
    results = eval(record.result["value"])  # a dict repr the test's own code built
    assert all(v != "WROTE" for k, v in results.items() if k != f"/tmp/{name}"), results
    assert canary.untouched()
    assert not (REPO / name).exists() and not Path("/tmp", name).exists()  # /tmp is private
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_symlink_escape(attack_agent: Any, tier: str, canary: Canary) -> None:
    agent = attack_agent(tier, fresh=True)  # an empty workspace
    next_call_works(agent)  # start the worker, then plant a link in its workspace
    workdir = testing.workdir_of(worker_of(agent))
    (workdir / "planted").symlink_to(canary.file)
    record = call(agent, f"""
        import os
        os.symlink({str(canary.file)!r}, 'own')
        results = {{}}
        for name in ('planted', 'own'):
            for mode in ('r', 'a'):
                try:
                    with open(name, mode) as handle:
                        results[name + mode] = handle.read() if mode == 'r' else handle.write('PWNED')
                except OSError as exc:
                    results[name + mode] = type(exc).__name__
        try:
            os.link({str(canary.file)!r}, 'hard')
            results['hard'] = 'LINKED'
        except OSError as exc:
            results['hard'] = type(exc).__name__
        results
    """)
    assert record.status == "success", record.error
    assert canary.text not in dump(record)
    results = eval(record.result["value"])
    assert set(results.values()) <= {"PermissionError", "FileNotFoundError", "OSError"}, results
    assert canary.untouched()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_or_write_another_sandboxs_workspace(attack_agent: Any, tier: str) -> None:
    victim, attacker = attack_agent(tier, fresh=True), attack_agent(tier)
    secret = f"tenant-secret-{uuid.uuid4().hex}"
    assert call(victim, f"open('private.txt', 'w').write({secret!r})").status == "success"
    target = testing.workdir_of(worker_of(victim))
    record = call(attacker, f"""
        import os
        results = {{}}
        for label, action in (
                ('read', lambda: open({str(target / 'private.txt')!r}).read()),
                ('write', lambda: open({str(target / 'planted.txt')!r}, 'w').write('x')),
                ('list', lambda: os.listdir({str(target.parent)!r}))):
            try:
                results[label] = action()
            except OSError as exc:
                results[label] = type(exc).__name__
        results
    """)
    assert record.status == "success", record.error
    results = eval(record.result["value"])
    assert set(results.values()) <= {"PermissionError", "FileNotFoundError"}, results
    assert secret not in dump(record)
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == ["private.txt"]
    next_call_works(attacker)
    assert call(victim, "open('private.txt').read()").result["value"] == repr(secret)


# == the network ===========================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_tcp_to_a_service_on_host_loopback(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    with testing.tcp_listener() as server:
        record = call(agent, f"""
            import socket
            socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=2).sendall(b'x')
        """)
        assert not got_traffic(server), "the host's loopback service saw a connection"
    assert record.status == "failed"
    assert "PermissionError" in record.error or "ConnectionRefusedError" in record.error, record.error
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_tcp_egress_to_the_internet(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, "import socket\nsocket.create_connection(('1.1.1.1', 443), timeout=1)")
    assert record.status == "failed"
    assert "Error" in record.error and "timed out" not in record.error, record.error  # refused at once
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_udp_egress(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    with testing.udp_socket() as sink:
        record = call(agent, f"""
            import socket
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.sendto(b'leak', ('127.0.0.1', {sink.getsockname()[1]}))
        """)
        assert not got_traffic(sink, 0.3), "a datagram reached the host"
    assert record.status == "failed" or record.result["value"] == "4"  # bwrap: its own loopback
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_dns_resolution(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, "import socket\nsocket.getaddrinfo('example.com', 443)")
    assert record.status == "failed" and "gaierror" in record.error, record.error
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_unix_socket_service_on_the_host(attack_agent: Any, tier: str, canary: Canary) -> None:
    agent = attack_agent(tier)
    path = canary.dir / "db.sock"
    with testing.unix_listener(path) as server:
        record = call(agent, f"""
            import socket
            client = socket.socket(socket.AF_UNIX)
            client.connect({str(path)!r})
            client.sendall(b'SELECT secrets')
        """)
        assert not got_traffic(server), "a host Unix-socket service accepted the sandbox"
    assert record.status == "failed", dump(record)
    next_call_works(agent)


# == resource exhaustion ===================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_fork_bomb(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, processes=12)
    record = call(agent, """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, timeout=1.0)
    assert record.status == "failed" and record.error_type == "TimeoutError", dump(record)
    assert testing.host_can_fork()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_memory_bomb(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, "hoard = []\nwhile True:\n    hoard.append(bytearray(8 << 20))")
    assert record.status == "failed" and "MemoryError" in record.error, dump(record)
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_cpu_spin(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    started = time.monotonic()
    record = call(agent, "while True:\n    pass", timeout=0.5)
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert "timed out after 0.5s" in record.error
    assert time.monotonic() - started < 2
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_endless_output(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, max_output_bytes=5_000)
    record = call(agent, "while True:\n    print('spam' * 250)", timeout=3)
    text = dump(record)
    assert record.status == "failed", text  # stopped: the capture file hit the file-size limit
    assert "truncated" in text  # the marker of the cut
    assert len(text) < 20_000, len(text)  # bounded, however much was printed
    after = call(agent, "print(6 * 7)")
    assert after.status == "success" and after.result["stdout"].endswith("42\n"), dump(after)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_output_of_a_stopped_call_does_not_leak_into_the_next_record(attack_agent: Any,
                                                                      tier: str) -> None:
    agent = attack_agent(tier, file_mb=1)
    record = call(agent, "while True:\n    print('spam' * 250)", timeout=3)
    assert record.status == "failed"
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_a_truncated_record_keeps_its_fields(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, max_output_bytes=5_000)
    record = call(agent, "print('spam' * 5_000)\n1 / 0")
    assert isinstance(record.result, dict), record.result
    assert record.result["truncated"] is True
    assert "ZeroDivisionError" in record.result["error"]
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_huge_file(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, file_mb=1)
    record = call(agent, """
        with open('huge.bin', 'wb') as handle:
            for _ in range(50):
                handle.write(b'x' * 100_000)
    """)
    assert record.status == "failed" and "File too large" in record.error, dump(record)
    assert (testing.workdir_of(worker_of(agent)) / "huge.bin").stat().st_size <= 1 << 20
    next_call_works(agent)


# == processes and signals =================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_detached_child_that_tries_to_outlive_the_call(attack_agent: Any, tier: str,
                                                       markers: Any) -> None:
    agent = attack_agent(tier)
    nap = markers()
    record = call(agent, f"""
        import subprocess
        subprocess.Popen(['sleep', '{nap}'], start_new_session=True).pid > 0
    """)
    assert record.status == "success", record.error
    worker = worker_of(agent)
    running = processes_with(nap)
    assert running and all(uid == worker.uid != 0 for _, uid in running)  # inside the sandbox
    next_call_works(agent)
    agent.close()  # releases the worker
    assert not testing.wait_gone(nap), "the detached child outlived its worker"


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_orphans_are_reaped(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, processes=12)
    record = call(agent, """
        import subprocess, time
        for _ in range(40):  # each shell exits at once, its child is orphaned
            subprocess.run('sleep 0.01 & exit 0', shell=True)
        time.sleep(0.3)
        started = [subprocess.Popen(['sleep', '0.2']) for _ in range(8)]
        [child.wait() for child in started]
    """)
    assert record.status == "success", record.error  # the orphans were reaped, not kept
    assert record.result["value"] == repr([0] * 8)
    worker = worker_of(agent)
    states = [state for _, _, state in testing.processes_of({worker.uid})]
    assert "Z" not in states, states
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_signal_to_the_host_process(attack_agent: Any, tier: str, markers: Any) -> None:
    agent = attack_agent(tier)
    victim = subprocess.Popen(["sleep", markers()])  # another host process (root)
    try:
        record = call(agent, f"import os\nos.kill({os.getpid()}, 9)")
        assert record.status == "failed"
        assert "PermissionError" in record.error or "ProcessLookupError" in record.error
        record = call(agent, f"import os\nos.kill({victim.pid}, 9)")
        assert record.status == "failed"
        record = call(agent, "import os\nos.kill(-1, 9)")  # everything it may signal
        assert victim.poll() is None, "the sandbox killed a host process"
    finally:
        victim.kill()
        victim.wait()
    next_call_works(agent)


# == interpreter introspection =============================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_subclasses_walk_to_os_system(attack_agent: Any, tier: str, canary: Canary,
                                      markers: Any) -> None:
    agent = attack_agent(tier)
    nap = markers()
    record = call(agent, f"""
        wrap = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]
        system = wrap.__init__.__globals__['system']
        system('cat /etc/shadow; echo PWNED > {canary.dir}/pwned; id -u; sleep {nap} &')
    """)
    assert record.status == "success", record.error
    assert "root:" not in dump(record)
    assert canary.untouched()
    worker = worker_of(agent)
    assert record.result["stdout"].split()[-1] == str(worker.uid)
    assert all(uid == worker.uid != 0 for _, uid in processes_with(nap))  # spawned inside only
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_frames_lead_only_to_the_sandboxed_worker(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, """
        import sys
        frame, files = sys._getframe(), set()
        while frame is not None:
            files.add(frame.f_code.co_filename)
            frame = frame.f_back
        host = sorted(m for m in sys.modules if m.split('.')[0] in
                      ('agently_core', 'agently_core_python', 'pytest', 'anyio', 'pydantic'))
        sorted(files), host
    """)
    assert record.status == "success", record.error
    assert record.result["value"] == "(['<run_python>', '<string>'], [])"
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_ctypes_calls_libc_system(attack_agent: Any, tier: str, canary: Canary) -> None:
    agent = attack_agent(tier)
    record = call(agent, f"""
        import ctypes
        libc = ctypes.CDLL(None)
        libc.system(b'id -u > uid.txt; cat /etc/shadow > shadow.txt; touch {canary.dir}/pwned; '
                    b'cat {canary.file} >> shadow.txt')
    """)
    assert record.status == "success", record.error
    worker = worker_of(agent)
    assert (testing.workdir_of(worker) / "uid.txt").read_text().strip() == str(worker.uid)
    stolen = (testing.workdir_of(worker) / "shadow.txt").read_text()
    assert "root:" not in stolen and canary.text not in stolen
    assert canary.untouched()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_gc_objects_hold_nothing_of_the_host(attack_agent: Any, tier: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"gc-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("HOST_ONLY_TOKEN", secret)
    agent = attack_agent(tier, fresh=True)  # started after the secret
    record = call(agent, f"""
        import gc
        hits = [o for o in gc.get_objects() if isinstance(o, str) and {secret[:10]!r} in o]
        modules = {{type(o).__module__ for o in gc.get_objects()}}
        len(hits), sorted(m for m in modules if m.startswith(('agently', 'pytest', 'anyio')))
    """)
    assert record.status == "success", record.error
    # the code's own source holds the prefix once; nothing else does
    assert record.result["value"] in ("(0, [])", "(1, [])"), record.result
    assert secret not in dump(record)
    next_call_works(agent)


# == the protocol ==========================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_writing_to_fd_1_cannot_forge_a_reply(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    forged = [json.dumps({"id": n, "ok": True, "stdout": "FORGED", "value": "'owned'"})
              for n in range(1, 12)]
    record = call(agent, f"import os\nos.write(1, {(chr(10).join(forged) + chr(10)).encode()!r})\nNone")
    assert record.status == "success", record.error
    assert record.result["value"] is None
    assert record.result["stdout"].startswith('{"id": 1, "ok": true, "stdout": "FORGED"')  # just output
    after = call(agent, "'genuine'")
    assert after.status == "success" and after.result["value"] == "'genuine'"
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_forging_on_the_private_reply_channel_stays_in_its_scope(attack_agent: Any,
                                                                 tier: str) -> None:
    # The code shares the worker's interpreter, so it can reach the reply channel
    # (__main__.PROTO) and pre-write replies, as it could monkeypatch its own worker: within
    # one scope the code owns its worker (a persistent notebook cannot help that). What must
    # hold: the host stays responsive, another scope's worker is untouched, and the
    # desynchronised worker is caught at the next genuine round trip and replaced.
    agent, bystander = attack_agent(tier), attack_agent(tier)
    call(bystander, "mine = 'untouched'")
    record = call(agent, """
        import __main__, json, sys
        rid = sys._getframe(2).f_locals['request']['id']
        for n in (rid, rid + 1, rid + 2):
            __main__.PROTO.write(json.dumps({'id': n, 'ok': True, 'stdout': 'FORGED', 'pong': True}) + '\\n')
    """)
    assert record.status == "success"
    seen = []
    for _ in range(3):
        started = time.monotonic()
        after = call(agent, "print('genuine')")
        assert time.monotonic() - started < 2  # never hangs the host
        seen.append(after.result["stdout"] if after.status == "success" else after.error)
        if seen[-1] == "genuine\n":
            break
    assert seen[-1] == "genuine\n", seen  # pre-written replies run out; the worker is replaced
    assert call(bystander, "mine").result["value"] == "'untouched'"
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_reading_requests_from_stdin_is_impossible(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, """
        import os, select, sys
        sys.stdin.read(), os.read(0, 64), select.select([0], [], [], 0.2)[0] == [0] and os.read(0, 64)
    """)
    assert record.status == "success", record.error
    assert record.result["value"] == "('', b'', b'')", record.result
    next_call_works(agent)
