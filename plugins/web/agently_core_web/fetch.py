"""One guarded HTTP GET: redirects followed hop by hop, the body capped, a hard deadline.

:func:`fetch` checks every URL (the first and each redirect's) with
:meth:`EgressGuard.target <agently_core.egress.EgressGuard.target>` before a request is
built, and the transport (:mod:`.net`) vets every connection's addresses, so neither a
redirect nor a name that changes its answer reaches an address the guard refuses. The body
is read up to ``max_bytes`` *decoded* bytes: gzip and deflate are decompressed here with a
bound on the output, so a compression bomb costs at most the cap.
"""

from __future__ import annotations

import ssl
import zlib
from dataclasses import dataclass, field

import anyio
import httpcore
import httpx

from agently_core.egress import EgressGuard, EgressRefused
from agently_core.errors import ActionError

from .net import GuardedTransport

_CHUNK = 64 << 10


class BrowseError(ActionError):
    """A page could not be fetched or read (the record says why)."""


class FetchTimeout(BrowseError):
    """The fetch did not finish within its timeout."""


@dataclass(slots=True)
class Fetched:
    """What came back: the final URL, status, headers' content type and the body."""

    url: str
    final_url: str
    status_code: int
    reason: str
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool
    redirects: list[str] = field(default_factory=list)


def _decoder(encoding: str):
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj()
    raise BrowseError(f"the server sent a body in the {encoding!r} encoding, which browse "
                      "does not decode (only gzip and deflate)")


async def _read(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most ``max_bytes`` decoded bytes of the body, and whether more was there."""
    encoding = response.headers.get("content-encoding", "")
    decoder = _decoder(encoding.split(",")[-1]) if encoding else None
    out = bytearray()
    async for raw in response.aiter_raw(_CHUNK):
        if decoder is None:
            out += raw
        else:
            try:
                out += decoder.decompress(raw, max_bytes + 1 - len(out))
            except zlib.error as exc:
                raise BrowseError(f"the {encoding} body is corrupt: {exc}") from None
        if len(out) > max_bytes:
            return bytes(out[:max_bytes]), True
    if decoder is not None and len(out) <= max_bytes:
        try:
            out += decoder.flush()
        except zlib.error:
            pass
    if len(out) > max_bytes:
        return bytes(out[:max_bytes]), True
    return bytes(out), False


async def fetch(url: str, guard: EgressGuard, *, timeout: float, max_bytes: int,
                max_redirects: int, user_agent: str, verify: bool | ssl.SSLContext = True,
                transport: GuardedTransport | None = None) -> Fetched:
    """GET ``url`` under ``guard``; :class:`EgressRefused` for a refused URL or address,
    :class:`FetchTimeout` past ``timeout`` seconds (all hops together), :class:`BrowseError`
    for anything else that stops the fetch."""
    current = url
    guard.target(current)  # a scheme or URL the guard refuses is refused before anything
    redirects: list[str] = []
    transport = transport or GuardedTransport(guard, verify=verify)
    headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate",
               "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5"}
    try:
        with anyio.fail_after(timeout):
            async with httpx.AsyncClient(transport=transport, follow_redirects=False,
                                         trust_env=False, headers=headers,
                                         timeout=httpx.Timeout(timeout)) as client:
                request = client.build_request("GET", current)
                while True:
                    response = await client.send(request, stream=True)
                    try:
                        next_request = response.next_request
                        if next_request is not None:
                            if len(redirects) >= max_redirects:
                                raise BrowseError(
                                    f"too many redirects: more than {max_redirects} from "
                                    f"{url} (last to {next_request.url})")
                            current = str(next_request.url)
                            guard.target(current)
                            redirects.append(current)
                            request = next_request
                            continue
                        body, truncated = await _read(response, max_bytes)
                    finally:
                        await response.aclose()
                    kind = response.headers.get("content-type", "")
                    media = kind.split(";")[0].strip().lower()
                    return Fetched(url=url, final_url=current,
                                   status_code=response.status_code,
                                   reason=response.reason_phrase, content_type=media,
                                   charset=response.charset_encoding, body=body,
                                   truncated=truncated, redirects=redirects)
    except TimeoutError:
        raise FetchTimeout(f"fetching {current} did not finish within {timeout:g}s") from None
    except (EgressRefused, BrowseError):
        raise
    except (httpx.TimeoutException, httpcore.TimeoutException):
        raise FetchTimeout(f"fetching {current} timed out after {timeout:g}s") from None
    except (httpx.HTTPError, httpcore.ProtocolError, httpcore.NetworkError,
            httpx.InvalidURL, OSError) as exc:
        raise BrowseError(f"fetching {current} failed: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["BrowseError", "FetchTimeout", "Fetched", "fetch"]
