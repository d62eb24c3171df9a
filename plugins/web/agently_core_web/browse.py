"""The ``browse`` action package: read a web page as markdown or text.

``agent.use_actions(Browse(allow=["127.0.0.1:8080"], timeout=10))`` (or
``agent.enable("browse", ...)``) mounts one action, ``browse(url, format?)``. The model
gives only the URL (and, if it wants, ``markdown`` or ``text``); everything else is the
host's: the egress allow-list, the timeout, the size cap, the user agent, the default
format and whether pages are rendered in the managed browser.

Over HTTP (the default) the page is fetched with httpx under the egress guard
(:mod:`agently_core.egress`): the URL and every redirect hop are checked before a request
is built, every connection goes only to an address the guard resolved and checked, at most
``max_redirects`` hops are followed, the body is read up to ``max_bytes`` (decompressed
size) and the whole fetch has ``timeout`` seconds. HTML becomes readable text with
trafilatura (:mod:`.extract`). With ``use_browser=True`` the page is rendered by the
managed Chromium of agently-core-browser (its own guard covers every request the page
makes) and the rendered HTML goes through the same extraction.

The result is ``{"title", "final_url", "content", "url", "status_code", "content_type",
"format", "truncated", "redirects"}``. ``browse`` is instruction-heavy: its record carries a
digest (a preview of the page) for later planning rounds and keeps the full result as an
artifact (``agent.action.read_action_artifact``).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from agently_core.egress import EgressGuard, Resolver
from agently_core.errors import ConfigError
from agently_core.models import ActionSpec, EnvironmentRequirement

from .executor import check_number
from .extract import FORMATS

DEFAULTS: dict[str, Any] = {"timeout": 15.0, "max_bytes": 2 << 20, "max_redirects": 5,
                            "format": "markdown", "preview_chars": 8000,
                            "user_agent": "agently-core-web/0.1 (browse; +https://pypi.org/"
                                          "project/agently-core-web/)"}
MAX_URL_CHARS = 4096



def _shown(entry: Any) -> str:
    """An allow-list entry as a model reads it: ``127.0.0.1:8080``, ``10.0.0.0/8``."""
    network = entry.network
    if network is None or network.prefixlen != network.max_prefixlen:
        return str(entry)
    address = str(network.network_address)
    address = f"[{address}]" if ":" in address and entry.port is not None else address
    return address if entry.port is None else f"{address}:{entry.port}"


class Browser:
    """One mounted package's settings, and the browse itself."""

    def __init__(self, guard: EgressGuard, settings: Mapping[str, Any]) -> None:
        self.guard = guard
        self.settings = dict(settings)
        self._tls: ssl.SSLContext | None = None

    def tls(self) -> ssl.SSLContext:
        """The TLS context of every fetch, made once (loading the CA bundle costs tens of
        milliseconds, more than a loopback fetch)."""
        if self._tls is None:
            import httpx

            self._tls = httpx.create_ssl_context(verify=self.settings["verify"],
                                                 trust_env=False)
        return self._tls

    async def browse(self, url: str, fmt: str, context: Any) -> dict[str, Any]:
        import anyio

        from .extract import readable
        from .fetch import BrowseError, fetch

        settings = self.settings
        if settings.get("use_browser"):
            from .rendered import render

            fetched = await render(url, self.guard, context, settings)
        else:
            fetched = await fetch(url, self.guard, timeout=settings["timeout"],
                                  max_bytes=settings["max_bytes"],
                                  max_redirects=settings["max_redirects"],
                                  user_agent=settings["user_agent"],
                                  verify=self.tls())
        summary = {"url": url, "final_url": fetched.final_url,
                   "status_code": fetched.status_code, "content_type": fetched.content_type}
        if fetched.status_code >= 400:
            raise BrowseError(f"{fetched.final_url} answered HTTP {fetched.status_code} "
                              f"{fetched.reason}".rstrip(), result=summary)
        page = await anyio.to_thread.run_sync(
            lambda: readable(fetched.body, fetched.content_type, fetched.charset,
                             url=fetched.final_url, fmt=fmt))
        # title, final URL and content first: the digest's preview shows the start
        return {"title": page.title, "final_url": fetched.final_url, "content": page.content,
                **summary, "format": fmt if page.kind == "html" else "text",
                "truncated": fetched.truncated, "redirects": fetched.redirects}


def mount(agent: Any, *, allow: Iterable[str] | str | None = None,
          timeout: float = DEFAULTS["timeout"], max_bytes: int = DEFAULTS["max_bytes"],
          max_redirects: int = DEFAULTS["max_redirects"],
          user_agent: str = DEFAULTS["user_agent"], format: str = DEFAULTS["format"],
          use_browser: bool = False, verify: bool | str | ssl.SSLContext = True,
          resolver: Resolver | None = None, scope: str = "agent", name: str = "browse",
          preview_chars: int = DEFAULTS["preview_chars"],
          policy: Mapping[str, Any] | None = None) -> list[str]:
    """Mount ``browse`` (see the module docstring). Options: ``allow`` (egress allow-list
    entries such as ``"127.0.0.1:8080"`` or ``"10.0.0.0/8"``: addresses a model may reach
    that the guard otherwise refuses), ``timeout`` (seconds for the whole fetch, 15),
    ``max_bytes`` (body cap after decompression, 2 MiB), ``max_redirects`` (5),
    ``user_agent``, ``format`` (``markdown`` or ``text``, the default when the model gives
    none), ``use_browser`` (render in the managed browser of agently-core-browser, whose
    environment lives for ``scope``), ``verify`` (TLS verification: ``False``, a CA bundle
    path or an ``ssl.SSLContext``), ``resolver`` (replace the system resolver: an async
    ``(host, port) -> [addresses]``), ``preview_chars`` (how much of the page the record's
    digest, what the model reads, carries: 8,000; the whole page is an artifact). Returns
    the names mounted."""
    check_number("Browse", "timeout", timeout, low=0.1)
    check_number("Browse", "preview_chars", preview_chars, low=240, integer=True)
    check_number("Browse", "max_bytes", max_bytes, low=1024, integer=True)
    check_number("Browse", "max_redirects", max_redirects, low=0, integer=True)
    if format not in FORMATS:
        raise ConfigError(f"Browse: format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not isinstance(user_agent, str) or not user_agent.strip() or "\n" in user_agent:
        raise ConfigError(f"Browse: user_agent must be a one-line string, got {user_agent!r}")
    if not isinstance(use_browser, bool):
        raise ConfigError(f"Browse: use_browser must be True or False, got {use_browser!r}")
    try:
        guard = EgressGuard.build(allow, resolver=resolver)
    except ValueError as exc:
        raise ConfigError(f"Browse: {exc}") from None
    if isinstance(verify, str):
        verify = ssl.create_default_context(cafile=verify)
    settings = {"timeout": float(timeout), "max_bytes": max_bytes,
                "max_redirects": max_redirects, "user_agent": user_agent,
                "use_browser": use_browser, "verify": verify}
    requirements: list[EnvironmentRequirement] = []
    if use_browser:
        from .rendered import requirement

        requirements.append(requirement(guard, scope, settings))
    browser = Browser(guard, settings)
    allowed = ", ".join(_shown(entry) for entry in guard.allow)
    spec = ActionSpec(
        name=name,
        description=(
            "Open a web page by its URL and read it: the page's main text comes back as "
            f"{format} (or plain text, with format='text'), with its title and final URL "
            "after redirects. Only http(s) URLs of public sites"
            + (f" and of {allowed}" if allowed else "") + " can be read; "
            f"pages larger than {max_bytes} bytes are cut, and a page that does not load "
            f"within {timeout:g}s fails."),
        input_schema={
            "type": "object",
            "properties": {
                "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS,
                        "description": "The http:// or https:// URL of the page."},
                "format": {"type": "string", "enum": list(FORMATS),
                           "description": f"How to return the page (default {format})."},
            },
            "required": ["url"],
            "additionalProperties": False,
        },
        kind="web", tags=["web", "browse"], policy=dict(policy or {}),
        execution_environments=requirements,
        meta={"instruction": "url", "preview_chars": preview_chars,
              "web": {"operation": "browse"}})

    async def run(kwargs: dict[str, Any], context: Any) -> dict[str, Any]:
        return await browser.browse(str(kwargs["url"]).strip(), kwargs.get("format") or format,
                                    context)

    agent.action.register_action(spec, run)
    return [name]


__all__ = ["DEFAULTS", "Browser", "mount"]
