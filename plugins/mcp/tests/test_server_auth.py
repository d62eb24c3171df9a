"""``serve-mcp`` over HTTP requires a bearer token: without the right one a request gets
401 with a ``WWW-Authenticate`` challenge and nothing runs (no sandbox starts). The token
comes from ``AGENTLY_MCP_TOKEN`` or is generated and printed once; it never shows in a
record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from agently_core_mcp.server_testing import (
    ACCEPT,
    LEGACY,
    TOKEN,
    HttpServe,
    clean_env,
    descendants,
    initialize_body,
    modern_body,
    modern_headers,
    refused,
    sdk_session,
    workdir,
)

#: Python that would leave a process behind if it ever ran: the proof that nothing ran.
PAYLOAD = {"python_code": "import subprocess\nsubprocess.Popen(['sleep', '300'])\nprint('ran')"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServe]:
    server = HttpServe(workdir(tmp_path_factory.mktemp("auth")), "python", token=TOKEN)
    yield server
    server.stop()


def _post(served: HttpServe, **headers: str) -> Any:
    with httpx2.Client(timeout=60) as http:
        return http.post(served.url, json=modern_body("run_python", PAYLOAD),
                         headers=modern_headers("run_python", **headers))


@pytest.mark.parametrize("headers, error", [
    ({}, None),
    ({"Authorization": "Bearer wrong-token-0123456789-abcdefghijkl"}, "invalid_token"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "invalid_token"),
    ({"Authorization": f"Basic {TOKEN}"}, "invalid_request"),
    ({"Authorization": "Bearer"}, "invalid_request"),
    ({"Authorization": TOKEN}, "invalid_request"),
    ({"X-Api-Key": TOKEN}, None),
    ({"Cookie": f"token={TOKEN}"}, None),
], ids=["none", "wrong", "truncated", "basic", "empty", "bare", "other-header", "cookie"])
def test_a_request_without_the_right_token_is_refused_and_runs_nothing(
        served: HttpServe, headers: dict[str, str], error: str | None) -> None:
    answer = _post(served, **headers)
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="agently-core serve-mcp"')
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)
    assert "ran" not in answer.text and TOKEN not in answer.text
    assert descendants(served.process.pid) == []  # no sandbox was even started


@pytest.mark.parametrize("query", ["access_token", "token", "authorization"])
def test_the_token_in_the_query_string_is_not_accepted(served: HttpServe, query: str) -> None:
    with httpx2.Client(timeout=60) as http:
        answer = http.post(f"{served.url}?{query}={TOKEN}",
                           json=modern_body("run_python", PAYLOAD),
                           headers=modern_headers("run_python"))
    assert answer.status_code == 401
    assert descendants(served.process.pid) == []


def test_two_authorization_headers_are_refused(served: HttpServe) -> None:
    with httpx2.Client(timeout=60) as http:
        request = http.build_request("POST", served.url, json=modern_body("run_python", PAYLOAD),
                                     headers=modern_headers("run_python"))
        request.headers = httpx2.Headers([*request.headers.multi_items(),
                                          ("Authorization", f"Bearer {TOKEN}"),
                                          ("Authorization", "Bearer other")])
        answer = http.send(request)
    assert answer.status_code == 401 and "invalid_request" in answer.headers["www-authenticate"]
    assert descendants(served.process.pid) == []


def test_the_sdk_client_without_the_token_cannot_connect(served: HttpServe) -> None:
    async def main() -> None:
        async with sdk_session(served.url, {}) as session:
            await session.call_tool("run_python", PAYLOAD)

    with pytest.raises(BaseException) as caught:
        anyio.run(main)
    assert "MCPError" in _messages(caught.value)  # the SDK reports the 401 as an error
    assert descendants(served.process.pid) == []


def _messages(exc: BaseException) -> str:
    """Every message in ``exc``, its exception groups and causes."""
    found = [repr(exc)]
    for inner in getattr(exc, "exceptions", ()):
        found.append(_messages(inner))
    if exc.__cause__ is not None:
        found.append(_messages(exc.__cause__))
    return " ".join(found)


def test_with_the_token_the_call_runs_and_the_token_is_masked_in_results(
        served: HttpServe) -> None:
    code = f"import os\nprint({TOKEN!r})\nprint(os.environ.get('AGENTLY_MCP_TOKEN'))"

    async def main() -> Any:
        async with sdk_session(served.url, served.headers) as session:
            return await session.call_tool("run_python", {"python_code": code})

    result = anyio.run(main)
    assert not result.is_error
    assert result.structured_content["stdout"] == "***\nNone\n"  # masked; not inherited
    assert TOKEN not in json.dumps(result.model_dump(mode="json"))
    assert TOKEN not in served.stderr()  # a token from the environment is never printed


def test_a_generated_token_is_printed_once_and_works(tmp_path: Path) -> None:
    server = HttpServe(workdir(tmp_path), "examples", token=None)
    try:
        token = server.token
        assert token is not None and len(token) >= 43
        assert server.stderr().count(token) == 1
        assert f"Authorization: Bearer {token}" in server.stderr()

        async def main() -> Any:
            async with sdk_session(server.url, server.headers) as session:
                return await session.call_tool("echo", {"message": token})

        result = anyio.run(main)
        assert result.structured_content == {"result": "***"}
        with httpx2.Client(timeout=60) as http:
            answer = http.post(server.url, json=modern_body("echo", {"message": "x"}),
                               headers=modern_headers("echo"))
        assert answer.status_code == 401
    finally:
        server.stop()
    assert server.stderr().count(token) == 1


@pytest.mark.parametrize("token, message", [
    ("short", "too short"),
    ("has a space inside 0123456789", "visible ASCII"),
    ("", "too short"),
])
def test_a_bad_token_from_the_environment_is_refused(tmp_path: Path, token: str,
                                                     message: str) -> None:
    done = refused(workdir(tmp_path), "--transport", "http", "--port", "0", "--enable",
                   "examples", env=clean_env(AGENTLY_MCP_TOKEN=token))
    assert done.returncode == 2, done.stderr
    assert "AGENTLY_MCP_TOKEN" in done.stderr and message in done.stderr
    assert "serving" not in done.stderr


def test_no_auth_only_with_a_loud_warning(tmp_path: Path) -> None:
    server = HttpServe(workdir(tmp_path), "examples", args=["--no-auth"], token=None)
    try:
        assert "WARNING: --no-auth" in server.stderr()
        with httpx2.Client(timeout=60) as http:
            answer = http.post(server.url, json=modern_body("echo", {"message": "x"}),
                               headers=modern_headers("echo"))
        assert answer.status_code == 200
    finally:
        server.stop()


def test_a_session_cannot_be_ended_or_listened_to_without_the_token(served: HttpServe) -> None:
    """Knowing another client's Mcp-Session-Id is not enough: DELETE and the GET stream
    need the token too, and the session carries on."""
    base = {"Accept": ACCEPT, "Content-Type": "application/json"}
    with httpx2.Client(timeout=60) as http:
        opened = http.post(served.url, json=initialize_body(), headers={**base, **served.headers})
        assert opened.status_code == 200
        session = {"mcp-session-id": opened.headers["mcp-session-id"],
                   "mcp-protocol-version": LEGACY}
        assert http.delete(served.url, headers={**base, **session}).status_code == 401
        assert http.get(served.url, headers={"Accept": "text/event-stream",
                                             **session}).status_code == 401
        mine = {**base, **session, **served.headers}
        http.post(served.url, headers=mine,
                  json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        listed = http.post(served.url, headers=mine,
                           json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert listed.status_code == 200 and "run_python" in listed.text
        assert http.delete(served.url, headers=mine).status_code == 200
