"""``run_nodejs`` served by the docker provider (``[providers] node = "docker"``): the same
action, executor and host-side worker class as the native Node.js sandbox, with the worker
program as the main process of a hardened container, talking over the container's stdin and
stdout. One agent (one container) serves the cases that leave it healthy."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from agently_core_docker.engine import LABEL
from agently_core_docker.testing import containers_of as owned
from agently_core_docker.testing import inspect_container as inspect
from agently_core_nodejs.sandbox import NODE_TASKS, NodeWorker, worker_source

import agently_core as Agently
from agently_core.testing import require

DOCKER = {"providers": {"node": "docker"}}
MEMORY_MB = 128
PROCESSES = 16
DISK_MB = 8


def run(agent: Any, code: str, **options: Any) -> Any:
    return agent.action.execute_action("run_nodejs", {"js_code": code}, **options)


def worker(agent: Any) -> Any:
    [handle] = agent.manager.list(kind="node")
    assert handle.provider == "docker"
    return agent.manager.resource(handle)






@pytest.fixture(scope="module")
def agent(docker_engine: str, docker_default_image: str) -> Iterator[Any]:
    made = Agently.create_agent(config=DOCKER)
    made.enable_nodejs(timeout=10, memory_mb=MEMORY_MB, processes=PROCESSES, disk_mb=DISK_MB,
                       env={"GREETING": "hello"})
    yield made
    made.close()


def test_globals_persist_and_console_output_is_captured(agent: Any) -> None:
    assert run(agent, "var counter = 41; globalThis.seen = ['a']").status == "success"
    record = run(agent, "console.log('to stdout', seen); console.error('to stderr');"
                        "process.stdout.write('raw-ish\\n'); counter += 1; counter")
    assert record.status == "success", record.error
    assert record.result["value"] == "42"
    assert record.result["stdout"] == "to stdout [ 'a' ]\nraw-ish\n"
    assert record.result["stderr"] == "to stderr\n"
    record = agent.action.execute_action(
        "run_nodejs", {"js_code": "await new Promise((r) => setTimeout(r, 10)); "
                                  "return args.n * 2", "args": {"n": 21}})
    assert record.status == "success" and record.result["value"] == "42", record.error
    assert isinstance(worker(agent), NodeWorker)  # the node executor runs it as its own


def test_the_worker_container_is_hardened(agent: Any, docker_engine: str) -> None:
    run(agent, "1")
    attrs = inspect(docker_engine, worker(agent).container.id)
    assert attrs is not None
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["Privileged"] is False
    assert host["Memory"] == MEMORY_MB << 20 and host["MemorySwap"] == MEMORY_MB << 20
    assert host["PidsLimit"] == PROCESSES + NODE_TASKS  # Node's own threads on top
    assert set(host["Tmpfs"]) == {"/work", "/tmp"}
    assert all(f"size={DISK_MB << 20}" in value for value in host["Tmpfs"].values())
    assert not host["Binds"] and attrs["Mounts"] == []
    assert host["LogConfig"]["Type"] == "none"  # the replies are not kept on the engine's disk
    uid = attrs["Config"]["User"].split(":")[0]
    assert uid != "0" and uid.isdigit()
    assert attrs["Config"]["Labels"][f"{LABEL}.kind"] == "node"
    env = dict(line.split("=", 1) for line in attrs["Config"]["Env"])
    assert env["GREETING"] == "hello"
    assert not any(name in env for name in ("AGENTLY_PROVIDER_NODE", "PYTEST_CURRENT_TEST"))
    # V8's old space is capped below the memory limit, which is Node's data limit too
    assert f"--max-old-space-size={(MEMORY_MB * 3) // 4}" in attrs["Config"]["Cmd"]
    assert str(MEMORY_MB << 10) in attrs["Config"]["Cmd"]


def test_from_inside_the_code_sees_a_container(agent: Any) -> None:
    record = run(agent, """
const fs = require('fs'), os = require('os'), net = require('net');
const found = { uid: process.getuid(), cwd: process.cwd(),
                greeting: process.env.GREETING === 'hello',
                pid1: fs.readFileSync('/proc/1/cmdline', 'utf8').split('\\0')[0],
                nets: Object.keys(os.networkInterfaces()),
                heap: require('v8').getHeapStatistics().heap_size_limit >> 20,
                data: fs.readFileSync('/proc/self/limits', 'utf8').split('\\n')
                  .find((line) => line.startsWith('Max data size')).split(/ +/)[3],
                stdin: fs.readFileSync(0).length };
for (const path of ['/etc/probe', '/work/probe']) {
  try { fs.writeFileSync(path, 'x'); found[path] = 'wrote'; } catch (e) { found[path] = e.code; }
}
found.net = await new Promise((resolve) => {
  const socket = net.connect({ host: '1.1.1.1', port: 53, timeout: 2000 });
  socket.on('connect', () => { socket.destroy(); resolve('connected'); });
  socket.on('error', (e) => resolve(e.code));
  socket.on('timeout', () => { socket.destroy(); resolve('timeout'); });
});
return JSON.stringify(found);
""")
    assert record.status == "success", record.error
    found = json.loads(record.result["value"][1:-1])  # a quoted JSON text
    assert found["uid"] != 0 and found["cwd"] == "/work" and found["greeting"] is True
    assert found["pid1"] in ("node", "/sbin/docker-init")  # the worker, or docker's init
    assert found["nets"] == ["lo"] and found["net"] != "connected"
    assert found["/etc/probe"] == "EROFS" and found["/work/probe"] == "wrote"
    assert found["stdin"] == 0  # fd 0 is /dev/null: the requests are out of the code's way
    assert found["heap"] <= MEMORY_MB and found["data"] == str(MEMORY_MB << 20)


def test_raw_fd_writes_cannot_corrupt_the_protocol(agent: Any) -> None:
    run(agent, "1")
    first = worker(agent).container.id
    # forged replies for this call and the next, on the raw fds and from a child process
    forged = json.dumps({"id": 10_000, "ok": True, "value": "'forged'"})
    code = f"""
const fs = require('fs');
for (let id = 0; id < 200; id++) {{
  fs.writeSync(1, JSON.stringify({{ id, ok: true, value: "'forged'" }}) + '\\n');
}}
fs.writeSync(1, 'not json at all\\n');
fs.writeSync(2, {json.dumps(forged + chr(10))});
require('child_process').execSync({json.dumps(f"echo '{forged}'")}, {{ stdio: 'inherit' }});
// far more than a pipe holds: the raw fds block until the host drains them (as a file
// would take it), they neither fail (EAGAIN) nor come back short
const chunk = 'r'.repeat(1 << 20);
let written = 0;
for (let i = 0; i < 4; i++) written += fs.writeSync(1, chunk) + fs.writeSync(2, chunk);
if (written !== 8 << 20) throw new Error(`only ${{written}} bytes written`);
'genuine'
"""
    record = run(agent, code)
    assert record.status == "success", record.error
    assert record.result["value"] == "'genuine'"
    assert record.result["stdout"] == "" and record.result["stderr"] == ""
    record = run(agent, "6 * 7")
    assert record.status == "success" and record.result["value"] == "42", record.error
    assert worker(agent).container.id == first  # the same worker, never confused


def test_the_process_limit_holds_and_the_worker_survives_it(agent: Any) -> None:
    """The pids limit counts Node's own threads too: they come on top of ``processes``, so
    the code may start that many children, and the next one fails inside the code."""
    record = agent.action.execute_action("run_nodejs", {"args": {"many": 3 * PROCESSES},
                                                        "js_code": """
const cp = require('child_process');
const kids = [], errors = new Set();
for (let i = 0; i < args.many; i++) {
  try {
    const kid = cp.spawn('sleep', ['30']);
    kid.on('error', (e) => errors.add(e.code));
    kids.push(kid);
  } catch (e) { errors.add(e.code); }
}
await new Promise((resolve) => setTimeout(resolve, 300));
const alive = kids.filter((kid) => kid.pid !== undefined).length;
kids.forEach((kid) => { try { kid.kill('SIGKILL'); } catch {} });
await new Promise((resolve) => setTimeout(resolve, 200));
return JSON.stringify({ alive, errors: [...errors] });
"""})
    assert record.status == "success", record.error
    found = json.loads(record.result["value"][1:-1])
    assert PROCESSES - 2 <= found["alive"] <= PROCESSES and found["errors"] == ["EAGAIN"], found
    assert run(agent, "6 * 7").result["value"] == "42"


def test_a_timeout_removes_the_container_and_the_next_call_gets_a_fresh_one(
        agent: Any, docker_engine: str) -> None:
    run(agent, "var kept = 1")
    first = worker(agent).container
    record = run(agent, "while (true) {}", timeout=1.5)
    assert record.status == "failed" and "timed out" in (record.error or "").lower(), record.error
    record = run(agent, "typeof kept")
    assert record.status == "success" and record.result["value"] == "'undefined'"  # fresh
    assert worker(agent).container.id != first.id
    assert first.removed and inspect(docker_engine, first.id) is None


def test_a_heap_bomb_fails_clearly_and_the_next_call_works(
        agent: Any, docker_engine: str) -> None:
    """Filling V8's heap ends the worker with V8's report of it and the memory limit."""
    run(agent, "1")
    first = worker(agent).container
    record = run(agent, "const hoard = []; while (true) hoard.push(new Array(1e6).fill(1.5))")
    assert record.status == "failed", record.error
    error = record.error or ""
    assert "Node.js worker died" in error and "next call gets a fresh one" in error, error
    # V8's own words when its heap cap is what is reached; when the data limit stops V8
    # first (Node 18 at 128 MB), a fatal V8 error and the limit
    assert "JavaScript heap out of memory" in error \
        or f"V8 stopped fatally; the worker's memory limit is {MEMORY_MB} MB" in error, error
    record = run(agent, "6 * 7")
    assert record.status == "success" and record.result["value"] == "42", record.error
    assert worker(agent).container.id != first.id
    assert inspect(docker_engine, first.id) is None


def test_a_buffer_bomb_fails_inside_the_code_and_the_worker_survives(agent: Any) -> None:
    """Buffer storage is held by Node's data limit, as natively: the allocation fails at
    once with a catchable error (the container's limit alone would let the code allocate
    memory it never touches until the call's timeout)."""
    run(agent, "var survivor = 'state'")
    first = worker(agent).container.id
    record = run(agent, "const hoard = []; while (true) hoard.push(Buffer.alloc(8 << 20))",
                 timeout=8)
    assert record.status == "failed" and record.result["error_type"] == "RangeError", \
        record.error
    assert "Array buffer allocation failed" in record.error
    assert run(agent, "survivor").result["value"] == "'state'"
    assert worker(agent).container.id == first


def test_the_container_memory_limit_is_named_when_it_ends_the_worker(
        docker_engine: str, docker_default_image: str) -> None:
    """tmpfs files count against the container's memory: a workspace allowed more than the
    memory limit fills the memory, the engine's out-of-memory killer ends the worker, and
    the error names that limit."""
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_nodejs(memory_mb=64, disk_mb=256)
        record = run(made, "const fs = require('fs'), mb = Buffer.alloc(1 << 20, 1);"
                           "for (let i = 0; i < 200; i++) fs.appendFileSync('fill', mb)")
        assert record.status == "failed", record.error
        assert "the container's memory limit (64 MB) was reached" in record.error, record.error
        assert run(made, "6 * 7").result["value"] == "42"
    finally:
        made.close()


def test_a_crashed_worker_is_replaced(agent: Any, docker_engine: str) -> None:
    run(agent, "1")
    first = worker(agent).container
    record = run(agent, "require('fs').writeSync(2, 'last words\\n'); process.exit(3)")
    assert record.status == "failed", record.error
    assert "exit status 3: last words" in (record.error or ""), record.error
    assert run(agent, "6 * 7").result["value"] == "42"
    assert worker(agent).container.id != first.id
    assert inspect(docker_engine, first.id) is None


def test_release_leaves_no_container(docker_engine: str, docker_default_image: str) -> None:
    made = Agently.create_agent(config=DOCKER)
    made.enable_nodejs()
    assert run(made, "1 + 1").result["value"] == "2"
    container = worker(made).container.id
    assert owned(docker_engine, made) == [container]
    made.close()
    assert inspect(docker_engine, container) is None and not owned(docker_engine, made)


def test_bad_settings_get_clear_errors(docker_engine: str, docker_default_image: str) -> None:
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_nodejs(memory_mb=32)
        record = run(made, "1")
        assert record.status == "failed" and "Node.js needs at least 64 MB" in record.error, \
            record.error
        assert not owned(docker_engine, made)  # refused before any container
    finally:
        made.close()
    made = Agently.create_agent(config=DOCKER)
    try:
        made.enable_nodejs(tier="landlock")
        record = run(made, "1")
        assert record.status == "failed" and "tier='landlock' picks a native" in record.error
    finally:
        made.close()


def test_the_native_provider_stays_the_default(agently_agent_factory: Any) -> None:
    made = agently_agent_factory()
    made.enable_nodejs()
    assert run(made, "1").status == "success"
    [handle] = made.manager.list(kind="node")
    assert handle.provider == "node"
    assert type(made.manager.resource(handle)) is NodeWorker


def _node() -> str:
    require(os.path.exists("/usr/bin/node"), "node is not installed at /usr/bin/node")
    return "/usr/bin/node"


def test_the_worker_program_talks_over_two_fds() -> None:
    """``worker.js IN,OUT``: requests read from one fd, replies written to another (the
    container's channel), with fd 1 kept out of the replies."""
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    argv = [_node(), "-e", worker_source(), f"{requests_r},{replies_w}"]
    done = subprocess.Popen(argv, pass_fds=(requests_r, replies_w), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    os.close(requests_r)
    os.close(replies_w)
    with os.fdopen(requests_w, "w") as send, os.fdopen(replies_r) as replies:
        assert json.loads(replies.readline())["ready"] is True
        send.write(json.dumps({"id": 1, "op": "run", "max_output": 100, "code":
                               "require('fs').writeSync(1, 'raw\\n'); console.log('hi'); 2"})
                   + "\n")
        send.flush()
        assert json.loads(replies.readline()) == {"id": 1, "started": True}
        reply = json.loads(replies.readline())
        assert reply["id"] == 1 and reply["value"] == "2" and reply["stdout"] == "hi\n"
    stdout, _ = done.communicate(timeout=10)
    assert done.returncode == 0 and stdout == b"raw\n"  # the host went away: a clean exit


@pytest.mark.parametrize("channel", ["3,x", "1,2,3", "3;4", ""])
def test_a_bad_channel_argument_is_refused(channel: str) -> None:
    done = subprocess.run([_node(), "-e", worker_source(), channel], capture_output=True,
                          timeout=10, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert b"must be an fd number or \"IN,OUT\"" in done.stderr
