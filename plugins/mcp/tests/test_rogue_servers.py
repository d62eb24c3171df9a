"""Attacks by misbehaving MCP servers (``rogue_server.py``: raw JSON-RPC over stdio) on
``agent.use_mcp``: waits that never end, schemas nested past the parsers, oversized
listings, tools and results, catastrophic regexes, daemons left behind. Each one gets a
clear error (or is contained), nothing is left running, and the agent keeps working."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agently_core_mcp.testing import (
    connection,
    gone,
    processes_with,
    server_pids,
    state,
    supervisor_pids,
)

from agently_core.errors import ConfigError, EnvironmentStartError

ROGUE = Path(__file__).with_name("rogue_server.py")


def rogue(mode: str, n: int = 0) -> list[str]:
    return [sys.executable, str(ROGUE), mode, str(n)]


def call(agent: Any, name: str, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    return agent.action.execute_action(name, kwargs or {}, **options)


def still_works(agent: Any) -> None:
    """The agent mounts and calls a well-behaved server afterwards."""
    agent.use_mcp(rogue("echo"), name="fine", prefix="fine_")
    record = call(agent, "fine_echo", {"message": "still here"})
    assert record.status == "success", record.error
    assert record.result["text"] == "Echo: still here"


def session_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[3])


def no_server_left(before: set[int]) -> None:
    deadline = time.monotonic() + 10
    while set(server_pids()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(server_pids()) - before


# -- every wait of a start is bounded -------------------------------------------------------
@pytest.mark.parametrize(("mode", "n", "step"), [
    ("silent-list", 0, "did not answer tools/list within 1.5s (start_timeout)"),
    ("endless-pages", 200, "did not answer tools/list within 1.5s (start_timeout)"),
    ("silent-initialize", 0, "did not complete the MCP handshake: no answer to initialize "
     "within 1.5s (start_timeout)"),
])
def test_a_start_that_never_ends_fails_within_start_timeout(agent: Any, mode: str, n: int,
                                                            step: str) -> None:
    before = set(server_pids())
    started = time.monotonic()
    with pytest.raises(EnvironmentStartError) as failed:
        agent.use_mcp(rogue(mode, n), start_timeout=1.5)
    took = time.monotonic() - started
    assert f"MCP server 'rogue_server' {step}" in str(failed.value)
    assert took < 8, took
    no_server_left(before)
    still_works(agent)


def test_pages_that_never_end_are_an_error_not_a_silent_cut(agent: Any) -> None:
    with pytest.raises(EnvironmentStartError, match="answered tools/list with more than 1000 "
                       "pages"):
        agent.use_mcp(rogue("endless-pages", 0), start_timeout=60)
    still_works(agent)


def test_a_listing_nested_past_the_parser_fails_at_once(agent: Any) -> None:
    before = set(server_pids())
    started = time.monotonic()
    with pytest.raises(EnvironmentStartError) as failed:
        agent.use_mcp(rogue("deep-schema", 10_000), start_timeout=30)
    assert time.monotonic() - started < 10  # not after start_timeout
    message = str(failed.value)
    assert "MCP server 'rogue_server' failed tools/list" in message
    assert "could not be read" in message and "recursion limit" in message
    no_server_left(before)
    still_works(agent)


# -- limits on what a server lists ----------------------------------------------------------------
def test_too_many_tools_is_a_clear_error_and_the_limit_can_be_raised(agent: Any) -> None:
    started = time.monotonic()
    with pytest.raises(EnvironmentStartError, match=r"rogue_server.*listed 100000 tools in one "
                       r"answer, more than 1000 \(max_tools\)"):
        agent.use_mcp(rogue("many-tools", 100_000), start_timeout=30)
    assert time.monotonic() - started < 15
    names = agent.use_mcp(rogue("many-tools", 1500), max_tools=2000)
    assert len(names) == 1500 and names[-1] == "tool_1499"
    still_works(agent)


@pytest.mark.parametrize(("mode", "n", "tool", "limit", "raised"), [
    ("deep-schema", 40, "deep", "nested more than 64 levels (max_schema_depth)",
     {"max_schema_depth": 200}),
    ("long-description", 100_000, "wordy", "description is over 16384 bytes "
     "(max_description_bytes)", {"max_description_bytes": 200_000}),
    ("big-schema", 400_000, "bulky", "over 262144 (max_schema_bytes)",
     {"max_schema_bytes": 1_000_000}),
])
def test_a_tool_over_a_limit_is_left_out_the_others_work(agent: Any, mode: str, n: int,
                                                          tool: str, limit: str,
                                                          raised: dict[str, int]) -> None:
    events: list[Any] = []
    agent.events.subscribe(events.append, "mcp.tool_refused")
    assert agent.use_mcp(rogue(mode, n)) == ["echo"]
    refused = [e.payload for e in events]
    assert len(refused) == 1 and refused[0]["tool"] == tool and limit in refused[0]["reason"]
    assert call(agent, "echo", {"message": "x"}).result["text"] == "Echo: x"
    with pytest.raises(ConfigError, match=rf"the tool '{tool}' of MCP server 'rogue-{mode}' was "
                       rf"left out: .*{limit.split('(')[-1].rstrip(')')}"):
        agent.use_mcp(rogue(mode, n), tools=[tool], prefix="again_")
    assert tool in agent.use_mcp(rogue(mode, n), prefix=False, **raised)


def test_limits_are_checked_as_options(agent: Any) -> None:
    for option in ("max_tools", "max_schema_depth", "max_result_bytes"):
        with pytest.raises(ConfigError, match=option):
            agent.use_mcp(rogue("echo"), **{option: 0})
    with pytest.raises(ConfigError, match="max_result_bytes is at most"):
        agent.use_mcp(rogue("echo"), max_result_bytes=1 << 40)


# -- server regexes never run in the host -------------------------------------------------------
def test_a_catastrophic_pattern_never_runs_in_the_host(agent: Any) -> None:
    agent.use_mcp(rogue("redos"))
    evil = "a" * 40 + "!"

    async def main() -> tuple[list[Any], float, float]:
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        records = [await agent.action.async_execute_action("match", {"s": evil}, timeout=3),
                   await agent.action.async_execute_action("shape", {}, timeout=3)]
        took = time.monotonic() - started
        await asyncio.sleep(0.05)
        tick.cancel()
        return records, took, max(gaps)

    (matched, shaped), took, worst_gap = asyncio.run(main())
    assert matched.status == "success", matched.error  # the server decides on its pattern
    assert matched.result["text"] == f"matched {evil!r}"
    # the structured result under the same pattern in its output schema: not evaluated here
    assert shaped.status == "success", shaped.error
    assert shaped.result["structured_content"] == {"s": evil}
    assert took < 1.0, took
    assert worst_gap < 0.5, worst_gap  # the event loop kept running meanwhile
    # every other keyword of the schema is still checked before anything is sent
    record = call(agent, "match", {"s": 5})
    assert record.status == "failed" and record.error_type == "ArgumentsError"
    assert "5 is not of type 'string'" in record.error


# -- every call is bounded ------------------------------------------------------------------------
def test_a_call_never_answered_times_out_and_the_session_serves_on(agent: Any) -> None:
    agent.use_mcp(rogue("hang"))
    pid = connection(agent, "echo").pid
    started = time.monotonic()
    record = call(agent, "hang", timeout=1)
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert time.monotonic() - started < 4
    record = call(agent, "echo", {"message": "after"})
    assert record.status == "success", record.error
    assert connection(agent, "echo").pid == pid


def test_a_result_nested_past_the_parser_fails_its_call_at_once(agent: Any) -> None:
    agent.use_mcp(rogue("deep-result", 10_000))
    started = time.monotonic()
    record = call(agent, "nested", timeout=30)
    assert time.monotonic() - started < 5
    assert record.status == "failed" and record.error_type == "ActionError"
    assert "MCP tool 'nested' of 'rogue-deep-result' failed" in record.error
    assert "could not be read" in record.error
    assert call(agent, "echo", {"message": "ok"}).status == "success"


# -- results: size and memory -------------------------------------------------------------------
_MEASURE = """
import json, sys, time
from agently_core import create_agent
limit = json.loads(sys.argv[3])
agent = create_agent()
agent.use_mcp([sys.executable, sys.argv[1], "big-result", sys.argv[2]], **limit)
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = peak()
started = time.monotonic()
record = agent.action.execute_action("big", {}, timeout=120)
took = time.monotonic() - started
full = record.result.get("full_result") if isinstance(record.result, dict) else None
print(json.dumps({"status": record.status, "error": record.error, "before": before,
                  "peak": peak(), "took": took, "full": full,
                  "artifacts": len(record.artifact_refs), "size": len(record.model_dump_json())}))
agent.close()
"""


def measure(size: int, **limit: Any) -> dict[str, Any]:
    """A 'big' call of ``size`` bytes in a fresh interpreter: its record and peak RSS."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(ROGUE), str(size),
                           json.dumps(limit)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_result_over_max_result_bytes_is_refused_early_with_little_memory() -> None:
    size = 120_000_000
    got = measure(size)
    assert got["status"] == "failed"
    assert "MCP tool 'big' of 'rogue-big-result' failed: the MCP server sent a message over " \
           "33554432 bytes (max_result_bytes); it was dropped" in got["error"]
    assert got["peak"] - got["before"] < 96 * 2**20, got  # never held whole
    print(f"120 MB result refused: peak +{(got['peak'] - got['before']) / 2**20:.0f} MiB "
          f"in {got['took']:.2f}s")


def test_a_large_allowed_result_peaks_at_two_to_three_times_its_size() -> None:
    """The line and the parsed text at the peak: about 2x, up to 3x when a buffer's growth
    cannot extend in place and the allocator copies it (230, 283 and 343 MiB measured for
    the same code, depending on the heap's layout); before the fix it was about 5x."""
    size = 120_000_000
    got = measure(size, max_result_bytes=128 * 2**20)
    assert got["status"] == "success", got["error"]
    assert got["size"] < 200_000  # the record holds a capped copy
    full = got["full"]
    assert full["bytes"] > size and full["artifact_truncated"] is True and got["artifacts"] == 1
    growth = got["peak"] - got["before"]
    assert growth < 3.5 * size, got  # was about 5x (682 MB peak for 120 MB)
    print(f"120 MB result accepted: peak +{growth / 2**20:.0f} MiB ({growth / size:.2f}x) "
          f"in {got['took']:.2f}s")


# -- nothing a server starts outlives its session -----------------------------------------------
def test_a_setsid_daemon_ends_with_the_agent(agently_agent_factory: Any) -> None:
    agent = agently_agent_factory()
    marker = f"agently-mcp-daemon-{os.getpid()}-{time.monotonic_ns()}"
    agent.use_mcp(rogue("daemon"))
    record = call(agent, "spawn", {"marker": marker})
    assert record.status == "success", record.error
    daemon = int(record.result["text"])
    assert processes_with(marker) == [daemon]
    server = connection(agent, "spawn").pid
    assert session_of(daemon) != session_of(server)  # a daemon: a session of its own
    supervisors = supervisor_pids()
    agent.close()
    assert gone(daemon, 5), state(daemon)  # killed and reaped: no zombie either
    assert processes_with(marker) == []
    assert all(gone(pid, 5) for pid in supervisors)


def test_a_daemon_ends_with_a_crashed_server_too(agent: Any) -> None:
    marker = f"agently-mcp-daemon-{os.getpid()}-{time.monotonic_ns()}"
    agent.use_mcp(rogue("daemon"))
    daemon = int(call(agent, "spawn", {"marker": marker}).result["text"])
    server = connection(agent, "echo").pid
    os.kill(server, signal.SIGKILL)
    assert gone(server, 5) and gone(daemon, 5)
    assert processes_with(marker) == []
    record = call(agent, "echo", {"message": "new session"})
    assert record.status == "success", record.error


_ORPHAN = """
import json, os, sys, time
from agently_core import create_agent
agent = create_agent()
agent.use_mcp([sys.executable, sys.argv[1], "daemon"])
record = agent.action.execute_action("spawn", {"marker": os.environ["DAEMON_MARKER"]})
from agently_core_mcp.testing import connection
print(json.dumps({"daemon": int(record.result["text"]), "server": connection(agent, "spawn").pid}),
      flush=True)
time.sleep(600)
"""


def test_nothing_outlives_a_host_that_is_killed() -> None:
    # the host (agently-core's process) dies without closing anything: the supervisor
    # stops the server and everything it started
    marker = f"agently-mcp-daemon-{os.getpid()}-{time.monotonic_ns()}"
    host = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(ROGUE)],
                            env={**os.environ, "DAEMON_MARKER": marker},
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        started = json.loads(host.stdout.readline())
        assert processes_with(marker) == [started["daemon"]]
        assert state(started["server"]) not in (None, "Z")
    finally:
        os.killpg(host.pid, signal.SIGKILL)
        host.wait(10)
    deadline = time.monotonic() + 10
    while (processes_with(marker) or state(started["server"]) not in (None, "Z")) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []
    assert state(started["server"]) in (None, "Z")


# -- HTTP: the same bound on a message ----------------------------------------------------------
@pytest.fixture
def http_rogue() -> Any:
    from agently_core_mcp.testing import free_port

    made: list[subprocess.Popen[bytes]] = []

    def start(mode: str, n: int = 0) -> str:
        port = free_port()
        made.append(subprocess.Popen([*rogue(mode, n), "--http", str(port)],
                                     stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return f"http://127.0.0.1:{port}/mcp"
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the HTTP rogue server did not listen")

    yield start
    for process in made:
        process.kill()
        process.wait(10)


def test_an_http_answer_over_max_result_bytes_fails_its_call(agent: Any, http_rogue: Any) -> None:
    url = http_rogue("big-result", 40_000_000)
    agent.use_mcp(url)
    started = time.monotonic()
    record = call(agent, "big", timeout=60)
    assert time.monotonic() - started < 20
    assert record.status == "failed"
    assert "MCP tool 'big' of 'rogue-big-result' failed" in record.error
    assert "over 33554432 bytes (max_result_bytes)" in record.error
    assert call(agent, "echo", {"message": "on"}).result["text"] == "Echo: on"
    # raised: the same answer goes through
    agent.use_mcp(url, max_result_bytes=48 * 2**20, prefix="big_")
    record = call(agent, "big_big", timeout=60)
    assert record.status == "success", record.error
    assert record.result["truncated"] is True and record.result["full_result"]["bytes"] > 40e6
