"""The bearer token ``serve-mcp`` requires over HTTP, and the ASGI middleware that checks it.

The token comes from ``AGENTLY_MCP_TOKEN`` (removed from the environment once read, so no
sandbox or stdio MCP server started later inherits it), else is generated for the run.
Every HTTP request must carry ``Authorization: Bearer <token>``; anything else (no header,
another scheme, a wrong token, the token in the query string) gets ``401`` with a
``WWW-Authenticate`` challenge before the MCP transport sees the request, so nothing runs.
The comparison takes the same time whatever the token given.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from typing import Any

TOKEN_ENV = "AGENTLY_MCP_TOKEN"
#: The shortest token accepted from the environment (a generated one has 43 characters).
MIN_TOKEN_LENGTH = 16
REALM = "agently-core serve-mcp"


def resolve_token(token: str | None = None) -> tuple[str, bool]:
    """The token to require and whether it was generated here: ``token`` itself, else
    ``AGENTLY_MCP_TOKEN`` (popped from ``os.environ``), else ``secrets.token_urlsafe(32)``.
    A token that is too short or holds characters a header cannot carry is a
    ``ConfigError``."""
    source = "the token given"
    if token is None:
        token = os.environ.pop(TOKEN_ENV, None)
        source = TOKEN_ENV
    if token is None:
        return secrets.token_urlsafe(32), True
    check_token(token, source)
    return token, False


def check_token(token: Any, source: str = "the token") -> None:
    """Refuse a token that is not a string of at least :data:`MIN_TOKEN_LENGTH` visible
    ASCII characters (no spaces)."""
    from agently_core.errors import ConfigError

    if not isinstance(token, str):
        raise ConfigError(f"serve-mcp: {source} must be a string")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"serve-mcp: {source} is too short ({len(token)} characters; at "
                          f"least {MIN_TOKEN_LENGTH}); unset it to have one generated")
    if not all(33 <= ord(char) <= 126 for char in token):
        raise ConfigError(f"serve-mcp: {source} may hold only visible ASCII characters "
                          "(no spaces), as an HTTP header must")


class BearerTokenMiddleware:
    """ASGI middleware: an HTTP request goes on to ``app`` only with the right bearer
    token; lifespan messages always do."""

    def __init__(self, app: Any, token: str) -> None:
        check_token(token)
        self.app = app
        self._digest = _digest(token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = [value for name, value in scope.get("headers", ())
                 if name.lower() == b"authorization"]
        problem = self._problem(given)
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await _refuse(send, *problem)

    def _problem(self, given: list[bytes]) -> tuple[str | None, str] | None:
        """``None`` for a good token, else (the RFC 6750 error code, a description)."""
        if not given:
            return None, "this server requires 'Authorization: Bearer <token>'"
        if len(given) > 1:
            return "invalid_request", "more than one Authorization header"
        scheme, _, credential = given[0].partition(b" ")
        if scheme.lower() != b"bearer" or not credential.strip():
            return "invalid_request", "the Authorization header must be 'Bearer <token>'"
        if not hmac.compare_digest(_digest(credential.strip()), self._digest):
            return "invalid_token", "the bearer token is not this server's token"
        return None


def _digest(token: str | bytes) -> bytes:
    """A fixed-length digest, so comparing takes the same time whatever the length given."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


async def _refuse(send: Any, error: str | None, description: str) -> None:
    challenge = f'Bearer realm="{REALM}"'
    if error is not None:
        challenge += f', error="{error}", error_description="{description}"'
    body = json.dumps({"error": error or "unauthorized", "error_description": description})
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"www-authenticate", challenge.encode()),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})
