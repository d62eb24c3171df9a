"""The egress guard: where a web request made for a model may go.

Browse, Search and the managed browser fetch URLs that a model chose, so a model (or a page
it was sent to) must not reach what sits behind the host: loopback services, the private
network, link-local and cloud-metadata addresses. :class:`EgressGuard` decides, per request
and on every redirect:

* the URL's scheme must be one the caller allows (``http``/``https``, plus ``ws``/``wss``
  for a browser); ``file:``, ``chrome:``, ``view-source:``, ``data:`` and the rest never
  leave;
* the host name is resolved once, and **every** address it resolves to must be public
  (:func:`blocked_reason`) unless the host allow-lists it; the caller then connects to one
  of exactly those addresses (:meth:`EgressGuard.vet` returns them), so a name that
  resolves to a public address for the check and to ``127.0.0.1`` for the connection (DNS
  rebinding) has no window.

Allow-list entries are set by the host (package options, configuration), never by a model:
``"127.0.0.1:8123"`` (one address and port), ``"10.1.0.0/16"`` (a network, any port),
``"[::1]:8080"``, ``"intranet.example:443"`` or ``"intranet.example"`` (a host name, as
written in the URL; its addresses are then not checked). Nothing here imports more than the
standard library.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ActionError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``resolver(host, port) -> addresses`` (awaitable); the default asks the system resolver.
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: Schemes a plain HTTP client may fetch; a browser adds ``ws`` and ``wss``.
HTTP_SCHEMES = frozenset({"http", "https"})
BROWSER_SCHEMES = frozenset({"http", "https", "ws", "wss"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: Named ranges refused on top of what :mod:`ipaddress` flags as non-global.
_CLOUD_METADATA = (ipaddress.ip_network("169.254.169.254/32"),   # AWS, GCP, Azure, ...
                   ipaddress.ip_network("100.100.100.200/32"),   # Alibaba Cloud
                   ipaddress.ip_network("fd00:ec2::254/128"))    # AWS over IPv6
_SHARED = ipaddress.ip_network("100.64.0.0/10")   # carrier-grade NAT (RFC 6598)


class EgressRefused(ActionError):
    """A request the egress guard refused before anything was sent."""


def blocked_reason(address: Address) -> str | None:
    """Why ``address`` may not be reached without an allow-list entry (``None``: it is a
    public address). IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4, Teredo) are
    judged by the IPv4 address they carry."""
    if isinstance(address, ipaddress.IPv6Address) and not (address.is_loopback
                                                           or address.is_unspecified):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = blocked_reason(embedded)
            return f"{reason} (inside {address})" if reason else None
    if any(address in net for net in _CLOUD_METADATA):
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = address.packed
    if packed[:12] == bytes.fromhex("0064ff9b" + "00" * 8):      # NAT64 64:ff9b::/96
        return ipaddress.IPv4Address(packed[12:])
    if packed[:12] == bytes(12):                                # IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed[12:]) if any(packed[12:]) else None
    return None


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One host-set allow-list entry: a network (any or one port) or a host name."""

    network: Network | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """``"127.0.0.1:8123"``, ``"10.0.0.0/8"``, ``"[::1]:80"``, ``"::1"``,
        ``"name.example:443"`` or ``"name.example"``; :class:`ValueError` otherwise."""
        raw = str(text).strip()
        if not raw:
            raise ValueError("an empty egress allow-list entry")
        host, port = raw, None
        if raw.startswith("["):
            close = raw.find("]")
            if close < 0:
                raise ValueError(f"egress allow-list entry {raw!r}: unclosed '['")
            host, rest = raw[1:close], raw[close + 1:]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"egress allow-list entry {raw!r}: junk after ']'")
                port = _port(rest[1:], raw)
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
            port = _port(port_text, raw)
        try:
            return cls(network=ipaddress.ip_network(host, strict=False), port=port)
        except ValueError:
            pass
        name = host.lower().rstrip(".")
        if not name or any(c in name for c in "/ @?#") or not all(
                part and len(part) < 64 for part in name.split(".")):
            raise ValueError(f"egress allow-list entry {raw!r} is neither an address, a "
                             "network nor a host name") from None
        return cls(host=name, port=port)

    def allows_address(self, address: Address, port: int) -> bool:
        return (self.network is not None and address in self.network
                and self.port in (None, port))

    def allows_host(self, host: str, port: int) -> bool:
        return self.host is not None and self.host == host and self.port in (None, port)

    def __str__(self) -> str:
        where = self.host if self.host is not None else str(self.network)
        return where if self.port is None else f"{where}:{self.port}"


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"egress allow-list entry {raw!r}: bad port {text!r}")
    return int(text)


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's resolver (``getaddrinfo`` in a worker thread), every address once."""
    import anyio

    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise EgressRefused(f"cannot resolve {host!r}: {exc}") from None
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]).split("%")[0])
    return list(seen)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: scheme, host (lower case, brackets stripped) and port."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class EgressGuard:
    """The host's egress rules; see the module's docstring. ``allow`` takes entry strings
    (or parsed :class:`AllowEntry`); ``resolver`` replaces the system resolver (tests use a
    fake to play DNS rebinding)."""

    allow: tuple[AllowEntry, ...] = ()
    schemes: frozenset[str] = HTTP_SCHEMES
    resolver: Resolver | None = field(default=None, compare=False)

    @classmethod
    def build(cls, allow: Iterable[str | AllowEntry] | str | None = None, *,
              schemes: Iterable[str] = HTTP_SCHEMES,
              resolver: Resolver | None = None) -> EgressGuard:
        """A guard from host settings; a bad entry raises :class:`ValueError` naming it."""
        if isinstance(allow, str):
            allow = [part for part in allow.replace(",", " ").split() if part]
        entries = tuple(e if isinstance(e, AllowEntry) else AllowEntry.parse(e)
                        for e in (allow or ()))
        return cls(allow=entries, schemes=frozenset(s.lower() for s in schemes),
                   resolver=resolver)

    # -- the URL --------------------------------------------------------------------------
    def target(self, url: str) -> Target:
        """The checked target of ``url``; :class:`EgressRefused` for a scheme that may not
        leave, a URL without a host, credentials in the URL or a bad port."""
        text = str(url).strip()
        scheme = text.split(":", 1)[0].lower() if ":" in text else ""
        if scheme not in self.schemes:
            allowed = ", ".join(sorted(self.schemes))
            shown = f"{scheme}:" if scheme else "no scheme"
            raise EgressRefused(f"refused {_short(text)}: {shown} URLs may not be fetched "
                                f"(allowed: {allowed})")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"refused {_short(text)}: {exc}") from None
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise EgressRefused(f"refused {_short(text)}: the URL names no host")
        if parts.username is not None or parts.password is not None:
            raise EgressRefused(f"refused {_short(text)}: credentials in a URL are not sent")
        return Target(scheme, host, port if port is not None else DEFAULT_PORTS[scheme])

    # -- the addresses --------------------------------------------------------------------
    def literal(self, host: str) -> Address | None:
        """``host`` as an IP address when it is one (also the legacy forms ``0x7f.1``,
        ``2130706433`` and ``127.1`` that resolvers accept)."""
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            pass
        if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and any(
                c.isdigit() for c in host):
            try:
                return ipaddress.ip_address(socket.inet_aton(host))
            except OSError:
                return None
        return None

    def host_allowed(self, host: str, port: int) -> bool:
        """Does a host-name entry allow ``host:port`` outright?"""
        name = host.lower().rstrip(".")
        return any(entry.allows_host(name, port) for entry in self.allow)

    def check_address(self, address: Address | str, port: int, *, host: str = "") -> None:
        """:class:`EgressRefused` unless ``address`` is public or allow-listed."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address.split("%")[0])
        if any(entry.allows_address(address, port) for entry in self.allow):
            return
        reason = blocked_reason(address)
        if reason is not None:
            via = f"{host} resolves to " if host and host != str(address) else ""
            raise EgressRefused(f"refused {via}{address} port {port}: {reason}, which the "
                                "egress guard does not let a model reach (a host may "
                                "allow-list it)")

    async def vet(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host:port``, every one checked; the caller
        connects only to these (no second lookup). :class:`EgressRefused` when the name does
        not resolve or any address it resolves to is refused."""
        name = host.strip("[]").lower().rstrip(".")
        address = self.literal(name)
        if address is not None:
            self.check_address(address, port, host=name)
            return [str(address)]
        if self.host_allowed(name, port):
            return await self._resolve(name, port)
        addresses = await self._resolve(name, port)
        if not addresses:
            raise EgressRefused(f"refused {name}: it resolves to no address")
        for found in addresses:
            self.check_address(found, port, host=name)
        return addresses

    async def vet_url(self, url: str) -> tuple[Target, list[str]]:
        """:meth:`target` and :meth:`vet` in one: the checked target and its addresses."""
        target = self.target(url)
        return target, await self.vet(target.host, target.port)

    async def _resolve(self, host: str, port: int) -> list[str]:
        resolver = self.resolver or system_resolver
        try:
            return [str(a).split("%")[0] for a in await resolver(host, port)]
        except EgressRefused:
            raise
        except OSError as exc:
            raise EgressRefused(f"cannot resolve {host!r}: {exc}") from None


def _short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


__all__ = ["BROWSER_SCHEMES", "HTTP_SCHEMES", "AllowEntry", "EgressGuard", "EgressRefused",
           "Target", "blocked_reason", "system_resolver"]
