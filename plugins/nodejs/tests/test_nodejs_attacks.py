"""The attack suite of run_nodejs, through a real agent (``agent.enable_nodejs(tier=...)``),
in both real isolation tiers, and in the Docker tier (``run_nodejs`` served by the docker
provider, ``[providers] node = "docker"``: the worker is a container's main process; a case
that looks at the worker's files reaches them through the container's root as the host sees
it, :func:`~agently_core_isolation.testing.workdir_of`).

Each case: the attack's record is failed or contained with a clear error or output, the host
is unharmed (canary files untouched, no host process signalled or reached, nothing left
running), and the NEXT run_nodejs call works. The attack code reports what it managed as a
JSON line on stdout (``report(...)``), so the assertions read facts, not prose.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agently_core_isolation import testing
from agently_core_isolation.testing import ALL_TIERS, Canary, dump, got_traffic, processes_with
from agently_core_nodejs.sandbox import NodeWorker

REPO = Path(__file__).resolve().parents[3]
DENIED = {"EACCES", "ENOENT", "EPERM", "EXDEV", "ELOOP", "EROFS"}
canary = pytest.fixture(testing.canary)
markers = pytest.fixture(testing.markers)

#: Put before every attack: ``attempt(fn)`` is fn's value or the code of what it threw;
#: ``attemptAsync`` the same for a promise; ``report(x)`` prints x as one JSON line.
PRELUDE = """\
var fs = require('fs'), net = require('net'), cp = require('child_process');
var attempt = (fn) => { try { const r = fn(); return r === undefined ? 'DONE' : r }
                        catch (e) { return e.code || e.name } };
var attemptAsync = async (fn) => { try { const r = await fn(); return r === undefined ? 'DONE' : r }
                                   catch (e) { return e.code || e.name } };
var report = (x) => console.log(JSON.stringify(x));
"""


# -- helpers -------------------------------------------------------------------------------
def call(agent: Any, code: str, **options: Any) -> Any:
    return agent.action.execute_action("run_nodejs", {"js_code": code}, **options)


def reported(record: Any) -> Any:
    assert record.status == "success", record.error
    return json.loads(record.result["stdout"].strip().splitlines()[-1])


def worker_of(agent: Any) -> NodeWorker:
    return testing.only_resource(agent, "node")


def next_call_works(agent: Any) -> None:
    testing.next_call_works(agent, "run_nodejs", {"js_code": "console.log(6 * 7)"})


def processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid and \
                        Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(entry))
            except (OSError, IndexError):
                continue
    return pids


@pytest.fixture(scope="module")
def docker_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.SharedAgents]:
    """The Docker tier's agents, shared by the cases that allow it (a container each)."""
    yield from testing.shared_agents(tmp_path_factory.mktemp("docker-agents"),
                                     lambda agent, **options: agent.enable_nodejs(**options))


@pytest.fixture
def attack_agent(node_agent: Callable[..., Any], request: pytest.FixtureRequest,
                 docker_agents: testing.SharedAgents) -> Callable[..., Any]:
    return testing.attack_agents(node_agent, kind="node", request=request,
                                 shared=docker_agents, **testing.ATTACK_LIMITS)


# == reading host secrets ==================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_etc_shadow(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, "require('fs').readFileSync('/etc/shadow', 'utf8')")
    assert record.status == "failed"
    assert "EACCES" in record.error or "ENOENT" in record.error, record.error
    assert "root:" not in dump(record)
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_the_host_environment(attack_agent: Any, tier: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    monkeypatch.setenv("PAYMENTS_API_KEY", secret)
    agent = attack_agent(tier, fresh=True)  # started after the secret
    record = call(agent, PRELUDE + f"""
        const found = {{ env: process.env, execArgv: process.execArgv }};
        for (const pid of [{os.getpid()}, process.ppid, 1]) {{
            found[pid] = attempt(() => fs.readFileSync(`/proc/${{pid}}/environ`, 'latin1'));
        }}
        report(found)
    """)
    found = reported(record)
    assert secret not in dump(record) and "PAYMENTS_API_KEY" not in dump(record)
    assert str(os.getpid()) in found  # it ran, and was denied
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_a_host_file_outside_the_workspace(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, f"require('fs').readFileSync({json.dumps(str(REPO / 'pyproject.toml'))}, 'utf8')")
    assert record.status == "failed"
    assert "EACCES" in record.error or "ENOENT" in record.error, record.error
    assert 'name = \\"agently-core\\"' not in dump(record)
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_host_processes_are_out_of_sight(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, fresh=True)  # its own processes only
    record = call(agent, PRELUDE + """
        const listing = attempt(() => fs.readdirSync('/proc').filter((e) => /^\\d+$/.test(e)));
        const programs = Array.isArray(listing) ? listing.map((pid) =>
            attempt(() => fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\\0')[0])) : listing;
        const ps = attempt(() => cp.execSync('ps -eo comm 2>&1', { encoding: 'utf8' }));
        report({ programs, ps: typeof ps === 'string' ? ps.split('\\n') : ps })
    """)
    seen = reported(record)
    assert not {"pytest", "python", "python3", "/usr/bin/python3"} & set(seen["programs"]), seen
    host = {line.strip() for line in seen["ps"]} if isinstance(seen["ps"], list) else set()
    assert not {"pytest", "python", "python3"} & host, seen
    assert isinstance(seen["programs"], str) or len(seen["programs"]) < 6, seen  # its own only
    next_call_works(agent)


# == writing outside, links ================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_write_outside_the_workspace(attack_agent: Any, tier: str, canary: Canary) -> None:
    agent = attack_agent(tier)
    name = f"agently-attack-{uuid.uuid4().hex[:8]}"
    targets = [str(canary.dir / name), str(canary.file), str(REPO / name), f"/tmp/{name}",
               f"/usr/{name}"]
    record = call(agent, PRELUDE + f"""
        const results = {{}};
        for (const path of {json.dumps(targets)}) {{
            results[path] = attempt(() => {{ fs.appendFileSync(path, 'PWNED'); return 'WROTE' }});
        }}
        report(results)
    """)
    results = reported(record)
    assert all(v != "WROTE" for k, v in results.items() if k != f"/tmp/{name}"), results
    assert set(results.values()) - {"WROTE"} <= DENIED, results
    assert canary.untouched()
    assert not (REPO / name).exists() and not Path("/tmp", name).exists()  # /tmp is private
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_symlink_and_dotdot_escapes(attack_agent: Any, tier: str, canary: Canary) -> None:
    agent = attack_agent(tier, fresh=True)  # an empty workspace
    next_call_works(agent)  # start the worker, then plant a link in its workspace
    workdir = testing.workdir_of(worker_of(agent))
    (workdir / "planted").symlink_to(canary.file)
    up = "../" * 12 + str(canary.file).lstrip("/")
    record = call(agent, PRELUDE + f"""
        const target = {json.dumps(str(canary.file))};
        attempt(() => fs.symlinkSync(target, 'own'));
        const results = {{}};
        for (const name of ['planted', 'own', {json.dumps(up)}]) {{
            results[name + ':read'] = attempt(() => fs.readFileSync(name, 'utf8'));
            results[name + ':write'] = attempt(() => {{ fs.appendFileSync(name, 'PWNED'); return 'WROTE' }});
        }}
        results.hard = attempt(() => {{ fs.linkSync(target, 'hard'); return 'LINKED' }});
        results.rename = attempt(() => {{ fs.renameSync(target, 'moved'); return 'MOVED' }});
        report(results)
    """)
    results = reported(record)
    assert canary.text not in dump(record)
    assert set(results.values()) <= DENIED, results
    assert canary.untouched()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_read_or_write_another_sandboxs_workspace(attack_agent: Any, tier: str) -> None:
    victim, attacker = attack_agent(tier, fresh=True), attack_agent(tier)
    secret = f"tenant-secret-{uuid.uuid4().hex}"
    assert call(victim, f"require('fs').writeFileSync('private.txt', '{secret}')").status == "success"
    target = testing.workdir_of(worker_of(victim))
    record = call(attacker, PRELUDE + f"""
        report({{
            read: attempt(() => fs.readFileSync({json.dumps(str(target / 'private.txt'))}, 'utf8')),
            write: attempt(() => fs.writeFileSync({json.dumps(str(target / 'planted.txt'))}, 'x')),
            list: attempt(() => fs.readdirSync({json.dumps(str(target.parent))})),
        }})
    """)
    results = reported(record)
    assert set(results.values()) <= DENIED, results
    assert secret not in dump(record)
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == ["private.txt"]
    next_call_works(attacker)
    assert call(victim, "require('fs').readFileSync('private.txt', 'utf8')").result["value"] == repr(secret)


# == the network ===========================================================================
CONNECT = """
const connect = (options) => new Promise((resolve) => {
    const socket = net.connect(options);
    socket.setTimeout(1500, () => { socket.destroy(); resolve('TIMEOUT') });
    socket.on('connect', () => { socket.end('x'); resolve('CONNECTED') });
    socket.on('error', (e) => resolve(e.code || e.name));
});
"""


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_tcp_to_a_service_on_host_loopback(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    with testing.tcp_listener() as server:
        record = call(agent, PRELUDE + CONNECT +
                      f"report(await connect({{ host: '127.0.0.1', port: {server.getsockname()[1]} }}))")
        assert not got_traffic(server), "the host's loopback service saw a connection"
    assert reported(record) in {"ECONNREFUSED", "EACCES", "EPERM"}, dump(record)
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_tcp_egress_to_the_internet(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    started = time.monotonic()
    record = call(agent, PRELUDE + CONNECT + "report(await connect({ host: '1.1.1.1', port: 443 }))")
    assert reported(record) in {"ENETUNREACH", "EACCES", "EPERM"}, dump(record)  # refused at once
    assert time.monotonic() - started < 1.5
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_udp_egress(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    with testing.udp_socket() as sink:
        record = call(agent, PRELUDE + f"""
            const udp = require('dgram').createSocket('udp4');
            const sent = await new Promise((resolve) => {{
                udp.on('error', (e) => resolve(e.code || e.name));
                udp.send('leak', {sink.getsockname()[1]}, '127.0.0.1', (e) => resolve(e ? e.code : 'SENT'));
            }});
            attempt(() => udp.close());
            report(sent)
        """)
        assert not got_traffic(sink, 0.3), "a datagram reached the host"
    assert reported(record) in {"SENT", "EACCES", "EPERM"}  # bubblewrap: its own loopback
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_dns_resolution(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, PRELUDE + """
        const dns = require('dns').promises;
        report({ lookup: await attemptAsync(() => dns.lookup('example.com')),
                 resolve: await attemptAsync(() => dns.resolve4('example.com')) })
    """)
    results = reported(record)
    assert all(isinstance(v, str) and v.startswith("E") for v in results.values()), results
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_unix_socket_service_on_the_host(attack_agent: Any, tier: str, canary: Canary) -> None:
    agent = attack_agent(tier)
    path = canary.dir / "db.sock"
    with testing.unix_listener(path) as server:
        record = call(agent, PRELUDE + CONNECT +
                      f"report(await connect({{ path: {json.dumps(str(path))} }}))")
        assert not got_traffic(server), "a host Unix-socket service accepted the sandbox"
    assert reported(record) in DENIED, dump(record)
    next_call_works(agent)


# == resource exhaustion ===================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_spawning_many_processes(attack_agent: Any, tier: str, markers: Any) -> None:
    agent = attack_agent(tier, processes=8)
    nap = markers()
    record = call(agent, PRELUDE + f"""
        let started = 0, refused = 0;
        for (let i = 0; i < 60; i++) {{
            const outcome = attempt(() => cp.spawnSync('sh', ['-c', 'sleep {nap} >/dev/null 2>&1 & echo $!'],
                                                       {{ encoding: 'utf8' }}));
            if (outcome && outcome.stdout && outcome.stdout.trim()) started += 1; else refused += 1;
        }}
        report({{ started, refused }})
    """)
    counts = reported(record)
    assert counts["started"] <= 8 and counts["refused"] >= 50, counts
    worker = worker_of(agent)
    assert all(uid == worker.uid for _, uid in processes_with(nap))
    assert testing.host_can_fork()
    next_call_works(agent)
    agent.close()
    assert not testing.wait_gone(nap)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_fork_bomb(attack_agent: Any, tier: str, markers: Any) -> None:
    agent = attack_agent(tier, processes=12)
    next_call_works(agent)
    uid = worker_of(agent).uid
    nap = markers()
    # a shell fork bomb (dash gives up when a fork fails, so it may end the call as an
    # error), then a spawner that keeps the pressure on after the call returned
    record = call(agent, f"""
        try {{
            cp.execSync('bomb() {{ bomb | bomb & }}; bomb', {{ shell: '/bin/sh', stdio: 'ignore' }});
        }} catch (e) {{ console.log('the shell gave up:', e.message.split('\\n')[0]) }}
        globalThis.spawner = setInterval(() => attempt(() => cp.spawn('sleep', ['{nap}'],
            {{ stdio: 'ignore' }}).on('error', () => {{}})), 2);
        await new Promise((r) => setTimeout(r, 500));
        return 'detonated'
    """.replace("try {", PRELUDE + "try {", 1))
    assert record.status == "success", dump(record)
    deadline = time.monotonic() + 3  # landlock: the bomb's orphans count until the host's
    while not processes_with(nap) and time.monotonic() < deadline:  # init reaps them
        time.sleep(0.05)
    assert 0 < len(processes_with(nap)) <= 12  # the process limit holds it
    assert len(processes_of(uid)) <= 12 + 3  # with node (and bubblewrap's two)
    assert testing.host_can_fork()
    next_call_works(agent)  # the worker still answers beside the bomb
    agent.close()
    deadline = time.monotonic() + 2
    while processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_of(uid), "the bomb outlived its worker"
    assert testing.host_can_fork()


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_buffer_memory_bomb(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    call(agent, "var kept = 'state'")
    record = call(agent, "{ const hoard = []; while (true) hoard.push(Buffer.alloc(8 << 20)) }")
    assert record.status == "failed", dump(record)
    if record.result is not None:  # the allocation failed inside the code: catchable
        assert record.result["error_type"] == "RangeError" and "allocation failed" in record.error
        assert call(agent, "kept").result["value"] == "'state'"  # the worker survived
    else:  # V8 ran out first (it needs memory to collect garbage): the worker ended
        assert "worker died" in record.error and "heap out of memory" in record.error, record.error
    assert testing.host_can_fork()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_heap_memory_bomb_ends_the_worker_clearly(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, "const hoard = []; while (true) hoard.push(new Array(1e6).fill(1.5))")
    assert record.status == "failed", dump(record)
    assert "worker died" in record.error and "heap out of memory" in record.error, record.error
    assert testing.host_can_fork()
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_cpu_spin_is_killed_and_other_agents_are_unaffected(attack_agent: Any, tier: str) -> None:
    agent, bystander = attack_agent(tier), attack_agent(tier)
    next_call_works(agent)
    next_call_works(bystander)
    outcome: dict[str, Any] = {}

    def spin() -> None:
        started = time.monotonic()
        outcome["record"] = call(agent, "while (true) {}", timeout=1.0)
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.3)  # the spinner is busy now
    quick = []
    for _ in range(3):
        started = time.monotonic()
        next_call_works(bystander)
        quick.append(time.monotonic() - started)
    thread.join(10)
    record = outcome["record"]
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert "timed out after 1s" in record.error
    assert outcome["took"] < 2.5
    assert max(quick) < 0.5, quick  # the bystander's worker answered meanwhile
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_endless_output(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, max_output_bytes=5_000)
    record = call(agent, "while (true) console.log('spam'.repeat(250))", timeout=1.5)
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert len(dump(record)) < 20_000
    flood = call(agent, "for (let i = 0; i < 20000; i++) console.log('spam'.repeat(250))\n"
                 "process.stderr.write('e'.repeat(10_000_000))\n'survived'")
    text = dump(flood)
    assert flood.status == "success", text
    assert flood.result["truncated"] is True and "truncated" in text
    assert len(text) < 20_000, len(text)  # bounded, however much was printed
    kept = agent.action.read_action_artifact(action_call_id=flood.call_id)
    assert all(len(a["content"]) <= (4 << 20) + 1000 for a in kept if a["kind"] in ("stdout", "stderr"))
    # the raw fds go to a host-side log bounded by the file-size limit, not to any record;
    # in a container they are its stderr, of which the host keeps only the end (for a dead
    # worker's reason, attach.STDERR_KEEP), so no file fills and the writes succeed
    raw = call(agent, "const chunk = 'r'.repeat(1 << 20)\n"
               "for (let i = 0; i < 10; i++) require('fs').writeSync(1, chunk)")
    if tier == testing.DOCKER:
        assert raw.status == "success" and raw.result["stdout"] == "", dump(raw)
    else:
        assert raw.status == "failed" and "EFBIG" in raw.error, dump(raw)
    assert "rrrr" not in dump(raw)
    next_call_works(agent)
    next_call_works(agent)  # the log was emptied; raw writes work again
    assert call(agent, "require('fs').writeSync(2, 'x'.repeat(1000))").status == "success"


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_huge_file(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier, file_mb=1)
    record = call(agent, "const out = require('fs').openSync('huge.bin', 'w')\n"
                  "for (let i = 0; i < 50; i++) require('fs').writeSync(out, Buffer.alloc(100_000))")
    assert record.status == "failed" and "EFBIG" in record.error, dump(record)
    assert (testing.workdir_of(worker_of(agent)) / "huge.bin").stat().st_size <= 1 << 20
    next_call_works(agent)


# == processes and signals =================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_detached_child_that_tries_to_outlive_the_worker(attack_agent: Any, tier: str,
                                                         markers: Any) -> None:
    agent = attack_agent(tier)
    nap = markers()
    record = call(agent, f"""
        const child = require('child_process').spawn('sleep', ['{nap}'],
                                                     {{ detached: true, stdio: 'ignore' }});
        child.unref();
        child.pid > 0
    """)
    assert record.status == "success", record.error
    worker = worker_of(agent)
    running = processes_with(nap)
    assert running and all(uid == worker.uid != 0 for _, uid in running)  # inside the sandbox
    next_call_works(agent)
    agent.close()  # releases the worker
    assert not testing.wait_gone(nap), "the detached child outlived its worker"


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_signals_to_host_processes(attack_agent: Any, tier: str, markers: Any) -> None:
    agent = attack_agent(tier)
    victim = subprocess.Popen(["sleep", markers()])  # another host process (root)
    try:
        record = call(agent, PRELUDE + f"""
            report({{
                host: attempt(() => process.kill({os.getpid()}, 'SIGKILL')),
                victim: attempt(() => process.kill({victim.pid}, 'SIGKILL')),
                group: attempt(() => process.kill(-{os.getpgid(0)}, 'SIGKILL')),
                init: attempt(() => process.kill(1, 'SIGKILL')),
            }})
        """)
        results = reported(record)
        init = results.pop("init")  # bubblewrap: its own namespace's init, which ignores it
        assert set(results.values()) <= {"EPERM", "ESRCH"}, results
        assert init in ({"EPERM", "ESRCH"} if tier == "landlock" else {True, "EPERM"}), init
        everything = call(agent, "process.kill(-1, 'SIGKILL')")  # everything it may signal
        assert victim.poll() is None, "the sandbox killed a host process"
        assert everything.status in ("success", "failed")
    finally:
        victim.kill()
        victim.wait()
    next_call_works(agent)


# == the protocol ==========================================================================
@pytest.mark.parametrize("tier", ALL_TIERS)
def test_writing_to_stdout_cannot_forge_a_reply(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    forged = "".join(json.dumps({"id": n, "ok": True, "stdout": "FORGED", "value": "'owned'"}) + "\n"
                     for n in range(1, 40))
    record = call(agent, f"const forged = {json.dumps(forged)}\n"
                  "process.stdout.write(forged)\nconsole.log(forged)\nrequire('fs').writeSync(1, forged)\n"
                  "undefined")
    assert record.status == "success", record.error
    assert record.result["value"] is None
    assert record.result["stdout"].startswith('{"id": 1, "ok": true, "stdout": "FORGED"')  # output
    after = call(agent, "'genuine'")
    assert after.status == "success" and after.result["value"] == "'genuine'"
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_forging_on_the_private_socket_stays_in_its_scope(attack_agent: Any, tier: str) -> None:
    # The code shares the worker's process, so it can write on the reply socket (its fd is
    # in process.argv), as it could rewrite its own worker: within one scope the code owns
    # its worker. What must hold: the host stays responsive, another scope's worker is
    # untouched, and the desynchronised worker is caught and replaced.
    agent, bystander = attack_agent(tier), attack_agent(tier)
    call(bystander, "var mine = 'untouched'")
    record = call(agent, """
        const fd = Number(process.argv[1]);
        for (let n = 1; n <= 3; n++) {  // its own id (its worker's first request) and two more
            const forged = { id: n, ok: true, stdout: 'FORGED', pong: true };
            require('fs').writeSync(fd, JSON.stringify(forged) + '\\n');
        }
    """)
    assert record.status in ("success", "failed")
    seen = []
    for _ in range(3):
        started = time.monotonic()
        after = call(agent, "console.log('genuine')")
        assert time.monotonic() - started < 2  # never hangs the host
        seen.append(after.result["stdout"] if after.status == "success" else after.error)
        if seen[-1] == "genuine\n":
            break
    assert seen[-1] == "genuine\n", seen
    assert call(bystander, "mine").result["value"] == "'untouched'"
    next_call_works(agent)


@pytest.mark.parametrize("tier", ALL_TIERS)
def test_stdin_is_empty(attack_agent: Any, tier: str) -> None:
    agent = attack_agent(tier)
    record = call(agent, "require('fs').readFileSync(0, 'utf8').length")
    assert record.status == "success", record.error
    assert record.result["value"] == "0"
    next_call_works(agent)
