"""Where ``serve-mcp`` listens: loopback unless the host passes ``--allow-remote``, and the
Host and Origin headers checked (DNS-rebinding protection) on every bind address, with the
accepted values derived from the address and the bound port."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from agently_core_mcp.server_bind import allowed_hosts, check_bind, is_loopback
from agently_core_mcp.server_testing import (
    TOKEN,
    HttpServe,
    modern_body,
    modern_headers,
    refused,
    workdir,
)

from agently_core.errors import ConfigError


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "every address of this machine"),
    (["--host", "::"], "every address of this machine"),
    (["--host", "192.0.2.10"], "not a loopback address"),
    (["--host", "example.com"], "not a loopback address"),
    (["--host", "0.0.0.0", "--allow-remote"], "--allowed-host"),
    (["--host", "0.0.0.0", "--allow-remote", "--allowed-host", "mcp.lan", "--no-auth"],
     "--no-auth is only allowed on a loopback address"),
    (["--allowed-host", "*"], "--allowed-host must be NAME"),
    (["--allowed-host", "http://evil.example"], "--allowed-host must be NAME"),
    (["--allowed-host", "a.example:70000"], "--allowed-host must be NAME"),
    (["--max-sessions", "0"], "--max-sessions must be"),
    (["--idle-timeout", "-1"], "--idle-timeout must be"),
    (["--idle-timeout", "nan"], "--idle-timeout must be"),
], ids=["0.0.0.0", "::", "lan-address", "name", "wildcard-without-names", "remote-no-auth",
        "star-host", "url-host", "bad-port", "no-sessions", "negative-idle", "nan-idle"])
def test_a_refused_command_line_exits_2_with_a_clear_error(tmp_path: Path, args: list[str],
                                                            message: str) -> None:
    done = refused(workdir(tmp_path), "--transport", "http", "--port", "0",
                   "--enable", "examples", *args, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "serving" not in done.stderr


def test_http_options_with_stdio_are_refused(tmp_path: Path) -> None:
    done = refused(workdir(tmp_path), "--enable", "examples", "--allow-remote", "--no-auth")
    assert done.returncode == 2
    assert "--allow-remote, --no-auth only apply to --transport http" in done.stderr


def test_the_rules_for_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost",
                                        "::ffff:127.0.0.1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "localhost.evil",
                                            "127.0.0.1.nip.io"))
    assert allowed_hosts("127.0.0.1", 8123) == ["127.0.0.1:8123", "localhost:8123"]
    assert allowed_hosts("::1", 8123) == ["[::1]:8123", "localhost:8123"]
    assert allowed_hosts("127.0.0.2", 8123) == ["127.0.0.2:8123"]
    assert allowed_hosts("0.0.0.0", 8123, ["mcp.lan", "proxy.lan:443"]) == [
        "127.0.0.1:8123", "localhost:8123", "[::1]:8123", "mcp.lan:8123", "proxy.lan:443"]
    assert allowed_hosts("127.0.0.1", 80) == ["127.0.0.1:80", "localhost:80", "127.0.0.1",
                                              "localhost"]
    assert check_bind("10.1.2.3", allow_remote=True, auth=True, allowed_hosts=["A.lan"]) == [
        "a.lan"]
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_bind("10.1.2.3", allow_remote=False, auth=True, allowed_hosts=[])


#: (bind address, extra arguments, the Host a legitimate client uses)
BINDS = [
    ("127.0.0.1", [], "127.0.0.1"),
    ("127.0.0.2", [], "127.0.0.2"),
    ("0.0.0.0", ["--allow-remote", "--allowed-host", "mcp.internal.example"],
     "mcp.internal.example"),
]


@pytest.mark.parametrize("bind, args, good", BINDS, ids=[b[0] for b in BINDS])
def test_host_and_origin_are_checked_on_every_bind_address(
        tmp_path: Path, bind: str, args: list[str], good: str) -> None:
    served = HttpServe(workdir(tmp_path), "examples", args=["--host", bind, *args])
    try:
        port = served.port
        target = f"http://{'127.0.0.1' if bind == '0.0.0.0' else bind}:{port}/mcp"
        body = modern_body("echo", {"message": "it-ran"})

        def post(**headers: str) -> httpx2.Response:
            with httpx2.Client(timeout=60) as http:
                return http.post(target, json=body, headers=modern_headers(
                    "echo", Authorization=f"Bearer {TOKEN}", **headers))

        # a DNS-rebinding page: the attacker's name resolves to this machine
        for host in (f"evil.example:{port}", "evil.example", f"{good}.evil.example:{port}",
                     f"{bind}:{port + 1}"):
            answer = post(Host=host)
            assert answer.status_code == 421, (host, answer.text)
            assert "it-ran" not in answer.text
        for origin in ("http://evil.example", f"http://evil.example:{port}",
                       f"http://{good}:{port + 1}", "null"):
            answer = post(Host=f"{good}:{port}", Origin=origin)
            assert answer.status_code == 403, (origin, answer.text)
            assert "it-ran" not in answer.text
        answer = post(Host=f"{good}:{port}", Origin=f"http://{good}:{port}")
        assert answer.status_code == 200 and "it-ran" in answer.text
    finally:
        served.stop()
