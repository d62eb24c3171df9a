"""The egress guard refuses what sits behind the host, however the address is spelled."""

from __future__ import annotations

import ipaddress

import anyio
import pytest

from agently_core.egress import BROWSER_SCHEMES, AllowEntry, EgressGuard, EgressRefused, blocked_reason


def vet(guard: EgressGuard, url: str) -> list[str]:
    return anyio.run(guard.vet_url, url)[1]


def fake_resolver(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]
    return resolve


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.0.9",
    "169.254.169.254", "100.100.100.200", "fd00:ec2::254", "100.64.0.1", "0.0.0.0", "::",
    "224.0.0.1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "::127.0.0.1", "240.0.0.1", "255.255.255.255",
    "192.0.0.1", "198.18.0.1"])
def test_every_internal_address_is_refused(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None
    with pytest.raises(EgressRefused, match="refused"):
        vet(EgressGuard.build(), f"http://[{address}]/" if ":" in address
            else f"http://{address}/")


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.0.0.1", "127.1", "0177.0.0.1",
                                      "0x7f000001", "LOCALHOST", "localhost."])
def test_other_spellings_of_loopback_are_refused(spelling: str) -> None:
    guard = EgressGuard.build(resolver=fake_resolver({"localhost": ["127.0.0.1"]}))
    with pytest.raises(EgressRefused, match="loopback"):
        vet(guard, f"http://{spelling}:8080/x")


def test_ipv6_loopback_is_named_as_such() -> None:
    """``::1`` is not read as the IPv4-compatible ``0.0.0.1``."""
    assert blocked_reason(ipaddress.ip_address("::1")) == "a loopback address"
    assert blocked_reason(ipaddress.ip_address("::")) == "the unspecified address"


def test_metadata_is_named_as_such() -> None:
    with pytest.raises(EgressRefused, match="cloud metadata"):
        vet(EgressGuard.build(), "http://169.254.169.254/latest/meta-data/")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "chrome://settings", "view-source:http://x",
                                 "data:text/html,hi", "javascript:alert(1)", "ftp://x/",
                                 "about:blank", "gopher://x/", "//no-scheme", "ws://x/"])
def test_schemes_that_may_not_leave(url: str) -> None:
    with pytest.raises(EgressRefused, match="may not be fetched"):
        EgressGuard.build().target(url)


def test_the_browser_adds_websockets_only() -> None:
    guard = EgressGuard.build(schemes=BROWSER_SCHEMES)
    assert guard.target("wss://example.org/s").port == 443
    with pytest.raises(EgressRefused):
        guard.target("file:///etc/passwd")


def test_a_name_is_refused_when_any_address_is_internal() -> None:
    guard = EgressGuard.build(resolver=fake_resolver({"mixed.test": ["93.184.216.34", "10.0.0.5"]}))
    with pytest.raises(EgressRefused, match=r"mixed\.test resolves to 10\.0\.0\.5"):
        vet(guard, "https://mixed.test/")


def test_vet_returns_the_addresses_it_checked_so_the_caller_connects_to_those() -> None:
    """DNS rebinding: the second lookup would say loopback; the caller never does one."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    guard = EgressGuard.build(resolver=rebinding)
    assert vet(guard, "http://rebind.test/") == ["93.184.216.34"]
    with pytest.raises(EgressRefused, match="loopback"):
        vet(guard, "http://rebind.test/")


def test_allow_entries_open_exactly_what_they_name() -> None:
    guard = EgressGuard.build(["127.0.0.1:8123", "10.1.0.0/16", "[::1]:9000", "intra.test:443"],
                              resolver=fake_resolver({"intra.test": ["10.9.9.9"]}))
    assert vet(guard, "http://127.0.0.1:8123/") == ["127.0.0.1"]
    assert vet(guard, "http://10.1.200.3:1/") == ["10.1.200.3"]
    assert vet(guard, "http://[::1]:9000/") == ["::1"]
    assert vet(guard, "https://intra.test/") == ["10.9.9.9"]
    for refused in ["http://127.0.0.1:8124/", "http://10.2.0.1/", "http://[::1]:9001/",
                    "http://intra.test/", "http://127.0.0.2:8123/"]:
        with pytest.raises(EgressRefused):
            vet(guard, refused)


@pytest.mark.parametrize("entry", ["", "127.0.0.1:0", "127.0.0.1:99999", "[::1", "a b",
                                   "x:y", "http://x/"])
def test_bad_allow_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match="entry"):
        AllowEntry.parse(entry)


def test_credentials_and_unresolvable_names() -> None:
    guard = EgressGuard.build(resolver=fake_resolver({}))
    with pytest.raises(EgressRefused, match="credentials"):
        guard.target("http://user:pw@example.org/")
    with pytest.raises(EgressRefused, match=r"cannot resolve .nowhere\.test."):
        vet(guard, "http://nowhere.test/")
