"""``serve-mcp`` over HTTP keeps its MCP sessions apart and bounded: each session has its
own sandboxes (client B never sees client A's Python variables or files), released when
the session ends (DELETE, idle expiry); open sessions are bounded in number, so 10,000
idle sessions do not pile up in memory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from agently_core_mcp.server_testing import (
    ACCEPT,
    HttpServe,
    descendants,
    initialize_body,
    modern_body,
    modern_headers,
    rss_mb,
    sdk_session,
    workdir,
)
from agently_core_mcp.testing import gone

SET_A = ("secret = 'value-of-A'\n"
         "with open('notes-of-A.txt', 'w') as f:\n"
         "    f.write('file-of-A')\n"
         "import os\nprint(os.getcwd())")
READ_VARIABLE = "print(secret)"
READ_FILE = "print(open({path!r}).read())"


def _stdout(result: Any) -> str:
    return result.structured_content.get("stdout") or ""


def _wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_client_b_sees_neither_the_variables_nor_the_files_of_client_a(tmp_path: Path) -> None:
    served = HttpServe(workdir(tmp_path), "python")
    try:
        async def main() -> None:
            async with sdk_session(served.url, served.headers) as a, \
                    sdk_session(served.url, served.headers) as b:
                result = await a.call_tool("run_python", {"python_code": SET_A})
                assert not result.is_error, result
                cwd = _stdout(result).strip()
                file_a = f"{cwd}/notes-of-A.txt"
                # A keeps its state from call to call
                result = await a.call_tool("run_python", {"python_code": READ_VARIABLE})
                assert _stdout(result) == "value-of-A\n"
                # B: neither the variable, nor the file (by name or by A's full path)
                result = await b.call_tool("run_python", {"python_code": READ_VARIABLE})
                assert result.is_error and "NameError" in result.content[0].text
                for path in ("notes-of-A.txt", file_a):
                    result = await b.call_tool("run_python",
                                               {"python_code": READ_FILE.format(path=path)})
                    assert result.is_error, _stdout(result)
                    assert "file-of-A" not in json.dumps(result.structured_content)
                    assert "FileNotFoundError" in result.content[0].text
                # and A still has both
                result = await a.call_tool("run_python",
                                           {"python_code": READ_FILE.format(path=file_a)})
                assert _stdout(result) == "file-of-A\n"

        anyio.run(main)
    finally:
        served.stop()


def test_a_session_s_sandbox_is_released_when_the_session_ends(tmp_path: Path) -> None:
    """DELETE (the SDK client closing) releases the session's sandbox: its worker process
    is gone, while another live session's sandbox stays."""
    served = HttpServe(workdir(tmp_path), "python")
    try:
        async def main() -> None:
            async with sdk_session(served.url, served.headers) as keeper:
                await keeper.call_tool("run_python", {"python_code": "kept = 1"})
                kept = set(descendants(served.process.pid))
                assert kept
                async with sdk_session(served.url, served.headers) as leaving:
                    result = await leaving.call_tool("run_python", {"python_code": "x = 2"})
                    assert not result.is_error
                    mine = set(descendants(served.process.pid)) - kept
                    assert mine  # the leaving session's own worker
                # the client sent DELETE: its worker goes, the keeper's stays
                assert all(gone(pid) for pid in mine)
                assert kept <= set(descendants(served.process.pid))
                result = await keeper.call_tool("run_python", {"python_code": "print(kept)"})
                assert _stdout(result) == "1\n"

        anyio.run(main)
    finally:
        served.stop()


def test_an_idle_session_expires_and_its_sandbox_with_it(tmp_path: Path) -> None:
    served = HttpServe(workdir(tmp_path), "python", args=["--idle-timeout", "1"])
    try:
        async def main() -> list[int]:
            async with sdk_session(served.url, served.headers,
                                   terminate_on_close=False) as session:
                await session.call_tool("run_python", {"python_code": "x = 1"})
                return descendants(served.process.pid)

        workers = anyio.run(main)  # left without DELETE
        assert workers
        assert all(gone(pid, timeout=20) for pid in workers)
    finally:
        served.stop()


def test_session_less_requests_each_get_a_fresh_sandbox(tmp_path: Path) -> None:
    """The 2026-07-28 protocol has no sessions: every request is its own session, so one
    request's variables are not there for the next, and nothing stays behind."""
    served = HttpServe(workdir(tmp_path), "python")
    try:
        headers = modern_headers("run_python", **served.headers)
        with httpx2.Client(timeout=60) as http:
            answer = http.post(served.url, headers=headers,
                               json=modern_body("run_python", {"python_code": "left = 1"}))
            assert answer.status_code == 200, answer.text
            assert _wait_for(lambda: not descendants(served.process.pid))
            answer = http.post(served.url, headers=headers,
                               json=modern_body("run_python", {"python_code": "print(left)"}))
            assert answer.status_code == 200
            assert "NameError" in answer.json()["result"]["content"][0]["text"]
    finally:
        served.stop()


def test_10000_idle_sessions_stay_bounded(tmp_path: Path) -> None:
    """10,000 clients that open a session and go idle: at most --max-sessions (default
    100) are admitted, the rest get 503 at once; memory stays flat (before the bound,
    the same run held about 370 MB more). The admitted sessions keep working."""
    served = HttpServe(workdir(tmp_path), "examples")
    try:
        headers = {"Accept": ACCEPT, "Content-Type": "application/json", **served.headers}
        codes: dict[int, int] = {}
        with httpx2.Client(timeout=60) as http:
            first = http.post(served.url, headers=headers, json=initialize_body())
            session = first.headers["mcp-session-id"]
            time.sleep(0.5)
            before = rss_mb(served.process.pid)
            for _ in range(10_000):
                answer = http.post(served.url, headers=headers, json=initialize_body())
                codes[answer.status_code] = codes.get(answer.status_code, 0) + 1
                if answer.status_code == 503:
                    assert "Too many open sessions" in answer.text
            after = rss_mb(served.process.pid)
            assert codes == {200: 99, 503: 9_901}, codes
            assert after - before < 40, (before, after)
            # an admitted session still works; deleting it makes room for a new one
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}
            session_headers = {**headers, "mcp-session-id": session,
                               "mcp-protocol-version": "2025-06-18"}
            http.post(served.url, headers=session_headers,
                      json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            answer = http.post(served.url, headers=session_headers, json=call)
            assert answer.status_code == 200 and '"result":3.0' in answer.text.replace(" ", "")
            assert http.delete(served.url, headers=session_headers).status_code == 200
            assert http.post(served.url, headers=headers,
                             json=initialize_body()).status_code == 200
    finally:
        served.stop()
