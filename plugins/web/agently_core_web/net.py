"""An httpx transport whose every TCP connection is vetted by the egress guard.

:class:`GuardedBackend` is an httpcore network backend: asked to connect to ``host:port``
it calls :meth:`EgressGuard.vet <agently_core.egress.EgressGuard.vet>` and connects only
to an address that call returned and checked, so the name is resolved exactly once per
connection (no DNS-rebinding window) and a redirect to another host is vetted again when
its connection opens. TLS still verifies the certificate against the host name in the URL.
:class:`GuardedTransport` puts it under an ``httpx.AsyncClient`` (HTTP/1.1, no proxies
from the environment: a proxy would make the guard vet the proxy instead of the target).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore
import httpx

from agently_core.egress import EgressGuard, EgressRefused


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the guard returned for the requested host and port."""

    def __init__(self, guard: EgressGuard) -> None:
        self.guard = guard
        self._inner = httpcore.AnyIOBackend()
        #: ``(host, port, address)`` of every connection opened, oldest first (for tests
        #: and diagnostics; bounded by the client's lifetime, one call).
        self.connections: list[tuple[str, int, str]] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        addresses = await self.guard.vet(host, port)  # EgressRefused: nothing is sent
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self.connections.append((host, port, address))
            return stream
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("the egress guard does not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport on an httpcore pool that connects through :class:`GuardedBackend`."""

    def __init__(self, guard: EgressGuard, *, verify: bool | ssl.SSLContext = True) -> None:
        self.backend = GuardedBackend(guard)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            http1=True, http2=False, retries=0, network_backend=self.backend)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        response = await self._pool.handle_async_request(core)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_Body(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


__all__ = ["GuardedBackend", "GuardedTransport"]
