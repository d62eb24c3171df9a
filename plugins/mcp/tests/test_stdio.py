"""The stdio transport (``agently_core_mcp.stdio``): line framing, malformed and oversized
lines, whole-line writes under concurrency, the inherited environment and the shutdown
order, against real processes; and a real server behind a noisy stdout."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from agently_core_mcp.stdio import (
    UNREADABLE_ANSWER,
    StdioReader,
    stdio_transport,
)
from agently_core_mcp.testing import gone, processes_with, state
from mcp.shared.message import SessionMessage


def request(n: int) -> SessionMessage:
    return SessionMessage(mcp_types.JSONRPCRequest(jsonrpc="2.0", id=n, method="ping"))


def line(n: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": n, "result": {}}).encode()


async def read_all(chunks: list[bytes], max_bytes: int = 1 << 20) -> list[Any]:
    send, receive = anyio.create_memory_object_stream[bytes](len(chunks) + 1)
    for chunk in chunks:
        send.send_nowait(chunk)
    send.close()
    return [item async for item in StdioReader(receive, max_bytes)]


def ids(items: list[Any]) -> list[Any]:
    return [item.message.id if isinstance(item, SessionMessage) else type(item).__name__
            for item in items]


# -- framing -----------------------------------------------------------------------------------
def test_lines_split_across_and_within_chunks() -> None:
    data = b"\n".join(line(n) for n in range(5)) + b"\n"
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)]  # cuts inside every message
    assert ids(anyio.run(read_all, chunks)) == [0, 1, 2, 3, 4]
    assert ids(anyio.run(read_all, [data])) == [0, 1, 2, 3, 4]  # all in one chunk


def test_blank_lines_crlf_and_a_cut_last_line() -> None:
    chunks = [b"\n\r\n" + line(1) + b"\r\n", b"   \n" + line(2) + b"\n" + line(3)[:10]]
    assert ids(anyio.run(read_all, chunks)) == [1, 2]  # the unfinished line is not a message


def test_a_malformed_line_is_reported_and_the_next_ones_still_arrive() -> None:
    chunks = [b"this is not json\n", b'{"jsonrpc": "2.0", "oops": 1}\n', line(7) + b"\n"]
    items = anyio.run(read_all, chunks)
    assert isinstance(items[0], ValueError) and isinstance(items[1], ValueError)
    assert ids(items[2:]) == [7]


def error_of(item: Any) -> tuple[Any, int, str] | str:
    """``(id, code, message)`` of an error answer, else the item's type name."""
    if isinstance(item, SessionMessage) and isinstance(item.message, mcp_types.JSONRPCError):
        return item.message.id, item.message.error.code, item.message.error.message
    return type(item).__name__


def test_an_oversized_line_is_dropped_without_buffering_it() -> None:
    big = b'{"jsonrpc": "2.0", "id": 1, "result": {"x": "' + b"a" * 5000 + b'"}}'
    chunks = [line(0) + b"\n" + big[:100], *[big[i:i + 512] for i in range(100, len(big), 512)],
              b"\n" + line(2) + b"\n"]
    items = anyio.run(read_all, chunks, 1000)
    # the request it answers fails with the client's own error, not after its timeout
    assert ids(items) == [0, 1, 2]
    assert error_of(items[1]) == (1, UNREADABLE_ANSWER, "the MCP server sent a message over "
                                  "1000 bytes (max_result_bytes); it was dropped")
    # the limit also holds when the long line ends within the chunk that crosses it
    items = anyio.run(read_all, [big[:900], big[900:] + b"\n" + line(3) + b"\n"], 1000)
    assert ids(items) == [1, 3]
    # and when the whole long line sits inside one chunk, between two good ones
    items = anyio.run(read_all, [line(4) + b"\n" + big + b"\n" + line(5) + b"\n"], 1000)
    assert ids(items) == [4, 1, 5]
    # an id at the end of the line (the TypeScript SDK's order), a string id
    tail_id = b'{"result": {"x": "' + b"a" * 5000 + b'"}, "jsonrpc": "2.0", "id": "r-7"}'
    items = anyio.run(read_all, [tail_id[i:i + 700] for i in range(0, len(tail_id), 700)]
                      + [b"\n" + line(6) + b"\n"], 1000)
    assert [error_of(items[0])[0], ids(items[1:])] == ["r-7", [6]]
    # no id to be seen: a MessageTooLarge, as any unreadable line
    anonymous = b'{"result": {"x": "' + b"a" * 5000 + b'"}}'
    items = anyio.run(read_all, [anonymous[:600], anonymous[600:] + b"\n" + line(8) + b"\n"],
                      1000)
    assert ids(items) == ["MessageTooLarge", 8] and "over 1000 bytes" in str(items[0])


def test_an_answer_nested_past_the_parser_fails_its_request_at_once() -> None:
    deep = (b'{"jsonrpc": "2.0", "id": 9, "result": {"content": [], "structuredContent": '
            + b"[" * 10_000 + b"]" * 10_000 + b"}}")
    items = anyio.run(read_all, [deep + b"\n" + line(10) + b"\n"])
    ident, code, message = error_of(items[0])
    assert (ident, code) == (9, UNREADABLE_ANSWER) and "recursion limit" in message
    assert ids(items[1:]) == [10]


def test_a_listing_over_max_tools_is_refused_before_the_sdk_checks_it() -> None:
    tools = [{"name": f"t{i}", "inputSchema": {"type": "object"}} for i in range(50)]
    listing = json.dumps({"jsonrpc": "2.0", "id": 3, "result": {"tools": tools}}).encode()

    async def main(max_tools: int) -> list[Any]:
        send, receive = anyio.create_memory_object_stream[bytes](2)
        send.send_nowait(listing + b"\n")
        send.close()
        return [item async for item in StdioReader(receive, 1 << 20, max_tools)]

    assert error_of(anyio.run(main, 10)[0]) == (
        3, UNREADABLE_ANSWER, "the MCP server listed 50 tools in one answer, more than 10 "
        "(max_tools)")
    assert ids(anyio.run(main, 50)) == [3]


# -- real processes ------------------------------------------------------------------------------
def test_concurrent_senders_write_whole_lines() -> None:
    async def main() -> list[Any]:
        async with stdio_transport("cat", []) as (read, write, _):
            async with anyio.create_task_group() as group:
                for n in range(200):
                    group.start_soon(write.send, request(n))
            got: list[Any] = []
            async for item in read:
                got.append(item)
                if len(got) == 200:
                    break
            return got

    items = anyio.run(main)
    assert sorted(ids(items)) == list(range(200))  # every line parsed: none interleaved


def test_the_server_inherits_only_the_sdk_default_environment(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    monkeypatch.setenv("HOST_SECRET_TOKEN", "do-not-leak")
    out = tmp_path / "env.json"
    script = f"import json, os; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"

    async def main() -> None:
        async with stdio_transport(sys.executable, ["-c", script], env={"GIVEN": "1"}) as (
                _, _, process):
            with anyio.fail_after(10):
                while process.returncode is None:
                    await anyio.sleep(0.02)

    anyio.run(main)
    seen = json.loads(out.read_text())
    assert "HOST_SECRET_TOKEN" not in seen and seen["GIVEN"] == "1"
    assert set(seen) <= {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "GIVEN", "LC_CTYPE"}


def test_a_server_ignoring_eof_and_sigterm_is_killed_with_its_group() -> None:
    # the server ignores SIGTERM and starts a child of its own in its process group
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']);"
              "print(child.pid, flush=True); time.sleep(60)")

    async def main() -> tuple[int, int, float, Any]:
        async with stdio_transport(sys.executable, ["-c", script]) as (_, _, process):
            child = int((await process.stdout.receive()).split()[0])
            started = time.monotonic()
        return process.pid, child, time.monotonic() - started, process.returncode

    pid, child, took, code = anyio.run(main)
    assert code == -signal.SIGKILL  # stdin closed, SIGTERM ignored: killed
    assert 3.5 < took < 10  # two grace periods of 2 s, then the kill
    deadline = time.monotonic() + 5
    while state(child) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state(child) in (None, "Z")  # the group's other process got the kill too
    assert state(pid) is None  # reaped


def test_a_server_flooding_stdout_is_drained_and_exits_by_itself() -> None:
    # writes 8 MB nobody reads, then exits when its stdin ends: only draining unblocks it
    script = "import sys; sys.stdout.write('x' * 8_000_000); sys.stdout.flush(); sys.stdin.read()"

    async def main() -> tuple[Any, float]:
        async with stdio_transport(sys.executable, ["-c", script]) as (_, _, process):
            await anyio.sleep(0.3)
            started = time.monotonic()
        return process.returncode, time.monotonic() - started

    code, took = anyio.run(main)
    assert code == 0 and took < 2  # exited on its own, within the first grace period


def test_a_write_to_a_gone_server_is_a_broken_stream_not_a_hang() -> None:
    async def main() -> None:
        async with stdio_transport(sys.executable, ["-c", "pass"]) as (_, write, process):
            with anyio.fail_after(10):
                while process.returncode is None:
                    await anyio.sleep(0.02)
            with pytest.raises(anyio.BrokenResourceError):
                for n in range(100):  # the first writes may still land in the pipe buffer
                    await write.send(request(n))
            await write.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await write.send(request(0))

    anyio.run(main)


def test_a_cancelled_caller_still_shuts_the_server_down() -> None:
    async def main() -> int:
        pid = 0
        with anyio.move_on_after(0.5):
            async with stdio_transport("cat", []) as (_, _, process):
                pid = process.pid
                await anyio.sleep(30)
        return pid

    pid = anyio.run(main)
    assert pid and state(pid) is None


def test_a_daemon_the_server_leaves_behind_ends_with_the_transport() -> None:
    # the server double-forks a setsid daemon (its own session and group), then exits
    script = ("import os, sys, time\n"
              "started, exec_done = os.pipe()\n"  # close-on-exec: EOF once the daemon runs
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        os.execv(sys.executable, [sys.executable, '-c', 'import time; "
              "time.sleep(600)', 'stdio-daemon-marker'])\n"
              "    os._exit(0)\n"
              "os.close(exec_done)\n"
              "os.wait()\n"
              "os.read(started, 1)\n"
              "print('ready', flush=True)\n"
              "sys.stdin.read()\n")

    async def main() -> tuple[list[int], int, int]:
        async with stdio_transport(sys.executable, ["-c", script]) as (_, _, process):
            assert (await process.stdout.receive()).startswith(b"ready")
            daemons = processes_with("stdio-daemon-marker")
            supervisor = process.supervisor
            assert supervisor != process.pid
        return daemons, process.pid, supervisor

    daemons, server, supervisor = anyio.run(main)
    assert len(daemons) == 1
    assert all(gone(pid, 5) for pid in (*daemons, server, supervisor))  # reaped too


def test_a_program_that_cannot_start_is_reported_by_the_supervisor(tmp_path: Path) -> None:
    async def main(command: str) -> None:
        async with stdio_transport(command, []):
            pass

    not_executable = tmp_path / "server"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    with pytest.raises(FileNotFoundError):
        anyio.run(main, "/nonexistent/mcp-server")
    with pytest.raises(PermissionError):
        anyio.run(main, str(not_executable))


def test_a_real_server_behind_a_noisy_stdout(agently_agent_factory: Any,
                                             time_server: list[str]) -> None:
    # a wrapper that prints a banner (not JSON-RPC) before the real server takes over
    command = ["/bin/sh", "-c", 'echo "starting the time server..."; exec "$0" "$@"', *time_server]
    agent = agently_agent_factory()
    try:
        agent.use_mcp(command)
        record = agent.action.execute_action("get_current_time", {"timezone": "UTC"})
        assert record.status == "success", record.error
        assert "UTC" in json.dumps(record.result)
    finally:
        agent.close()
