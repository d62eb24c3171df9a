"""Where ``serve-mcp`` may listen over HTTP, and which ``Host`` and ``Origin`` headers it
then accepts (DNS-rebinding protection, on for every bind address).

* A loopback address (``127.0.0.0/8``, ``::1``, ``localhost``) is the default and needs
  nothing more. Any other address, the wildcard ``0.0.0.0`` and ``::`` included, is refused
  unless the host passes ``allow_remote`` (``--allow-remote``).
* The accepted ``Host`` values are derived from the bind address and the bound port:
  ``127.0.0.1`` and ``::1`` also accept ``localhost``; another address accepts itself. A
  wildcard bind accepts the loopback names, and needs ``--allowed-host`` for the names
  remote clients use (a wildcard has no name of its own). ``--allowed-host NAME[:PORT]``
  adds names to any bind (the bound port when none is given).
* An ``Origin`` header, when a client sends one, must be ``http://`` or ``https://`` with an
  accepted ``Host`` value.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any

_NAME = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
                   r"(?::(\d{1,5}))?")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    address = _ip(host)
    return address is not None and address.is_loopback


def is_wildcard(host: str) -> bool:
    """Whether ``host`` is ``0.0.0.0`` or ``::`` (every address of the machine)."""
    address = _ip(host)
    return address is not None and address.is_unspecified


def check_bind(host: str, *, allow_remote: bool, auth: bool, allowed_hosts: Iterable[str]
               ) -> list[str]:
    """Refuse a bind address the options do not allow (``ConfigError``); return the extra
    ``Host`` values, normalised (``NAME`` or ``NAME:PORT``, lower case)."""
    from agently_core.errors import ConfigError

    if not isinstance(host, str) or not host.strip():
        raise ConfigError("serve-mcp: --host must be an address to listen on")
    extra = [parse_allowed_host(value) for value in allowed_hosts]
    if is_loopback(host):
        return extra
    what = ("every address of this machine" if is_wildcard(host)
            else f"{host}, which is not a loopback address")
    if not allow_remote:
        raise ConfigError(f"serve-mcp: refusing to listen on {what}: other machines could "
                          "reach the served actions. Pass --allow-remote to mean it (the "
                          "bearer token stays required)")
    if not auth:
        raise ConfigError("serve-mcp: --no-auth is only allowed on a loopback address; a "
                          "server other machines can reach always requires the bearer token")
    if is_wildcard(host) and not extra:
        raise ConfigError(f"serve-mcp: listening on {host} needs the names clients will use, "
                          "as --allowed-host NAME[:PORT] (repeatable); Host headers are "
                          "checked on every bind address (DNS-rebinding protection)")
    return extra


def parse_allowed_host(value: Any) -> str:
    """``NAME``, ``NAME:PORT``, ``IPV4[:PORT]`` or ``[IPV6][:PORT]``, lower-cased; anything
    else (a wildcard, a scheme, a path) is a ``ConfigError``."""
    from agently_core.errors import ConfigError

    text = value.strip().lower() if isinstance(value, str) else ""
    found = _NAME.fullmatch(text)
    if found is None or (found.group(1) is not None and not 0 < int(found.group(1)) < 65536):
        raise ConfigError(f"serve-mcp: --allowed-host must be NAME or NAME:PORT (an IPv6 "
                          f"address in brackets), got {value!r}")
    return text


def host_literal(host: str) -> str:
    """``host`` as it appears in a URL or a Host header (an IPv6 address in brackets)."""
    address = _ip(host)
    if address is not None and address.version == 6 and not host.startswith("["):
        return f"[{host}]"
    return host


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> list[str]:
    """The ``Host`` header values accepted for a server bound to ``host``:``port``."""
    address = _ip(host)
    if host.lower() == "localhost" or (address is not None and str(address) == "127.0.0.1"):
        names = ["127.0.0.1", "localhost"]
    elif address is not None and address.version == 6 and address == ipaddress.ip_address("::1"):
        names = ["[::1]", "localhost"]
    elif address is not None and address.is_unspecified:
        names = ["127.0.0.1", "localhost", "[::1]"]
    else:
        names = [host_literal(host).lower()]
    accepted = [f"{name}:{port}" for name in names]
    if port == 80:
        accepted += names
    for value in extra:
        found = _NAME.fullmatch(value)
        accepted.append(value if found is not None and found.group(1) else f"{value}:{port}")
    return list(dict.fromkeys(accepted))


def security_settings(host: str, port: int, extra: Iterable[str] = ()) -> Any:
    """The MCP SDK's ``TransportSecuritySettings`` for this bind: DNS-rebinding protection
    on, the derived Host values, and their ``http``/``https`` origins."""
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = allowed_hosts(host, port, extra)
    origins = [f"{scheme}://{name}" for name in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=hosts, allowed_origins=origins)


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (``localhost`` is ``127.0.0.1``), for the
    HTTP server to listen on; ``ConfigError`` when the address cannot be bound."""
    from agently_core.errors import ConfigError

    target = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            target, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"serve-mcp: could not listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"serve-mcp: could not listen on {host}:{port}: {exc}") from None
    return sock
