"""The ``search`` action package: web search through the ``ddgs`` metasearch package.

``agent.use_actions(Search(backend="duckduckgo", timeout=10))`` (or
``agent.enable("search", ...)``) mounts one action, ``search(query, max_results?)``. It is
stateless: every option is set on the package by the host, never read from the
environment, and no execution environment is involved.

How a call runs: the selected ddgs engines (``backend``: ``"auto"``, one name or several)
are asked in waves of two, each engine's blocking request in its own thread
(:class:`~agently_core_web.blocking.Runner`), until ``max_results`` distinct results are in
or the engines run out; results are merged and ranked with ddgs's own aggregator and
ranker. The whole call has a hard deadline (``timeout``): it never hangs, and at most
:data:`MAX_ENGINE_THREADS` engine threads exist at once across all searches, however many
calls were abandoned.

The result: ``{"status": "success" | "partial_success", "success": true, "query",
"results": [{"title", "url", "snippet"}], "backends": [{"backend", "status", "results",
"error"?}]}``. An engine that answered with nothing is ``empty`` (no results is a
successful, empty search); an engine that raised or ran out of time is ``failed``. When
some engines failed and others answered, the status is ``partial_success``; when every
engine that was asked failed, the call is a failed record naming each failure.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

import anyio

from agently_core.errors import ActionError, ConfigError
from agently_core.models import ActionSpec

from .blocking import Busy, Overdue, Runner
from .executor import check_number

DEFAULTS: dict[str, Any] = {"backend": "auto", "region": "us-en", "safesearch": "moderate",
                            "timelimit": None, "timeout": 10.0, "max_results": 5,
                            "proxy": None, "verify": True, "snippet_chars": 300}
#: Engines asked at once within one search (ddgs asks two for ten results, too).
WAVE = 2
#: Engine threads alive at once across every search of the process, abandoned ones included.
MAX_ENGINE_THREADS = 8
MAX_QUERY_CHARS = 500
SAFESEARCH = ("on", "moderate", "off")
TIMELIMITS = ("d", "w", "m", "y")
RUNNER = Runner(MAX_ENGINE_THREADS, "agently-search")


class SearchFailed(ActionError):
    """Every search engine that was asked failed (the record lists why)."""


class SearchTimeout(SearchFailed):
    """No engine answered before the search's deadline."""


def text_engines() -> dict[str, Any]:
    """ddgs's text-search engines by name (imports ddgs)."""
    from ddgs.engines import ENGINES

    return dict(ENGINES["text"])


def backends_of(backend: str | Iterable[str]) -> list[str]:
    """The backend names a ``backend`` option selects (``auto``: every text engine)."""
    names = [backend] if isinstance(backend, str) else list(backend)
    wanted = [part.strip().lower() for name in names for part in str(name).split(",")
              if part.strip()]
    if not wanted:
        raise ConfigError("Search: backend is empty (use 'auto' or engine names)")
    engines = text_engines()
    if "auto" in wanted or "all" in wanted:
        return list(engines)
    unknown = [name for name in wanted if name not in engines]
    if unknown:
        raise ConfigError(f"Search: unknown backend {', '.join(map(repr, unknown))}; "
                          f"available: auto, {', '.join(sorted(engines))}")
    return list(dict.fromkeys(wanted))


class Searcher:
    """One mounted package's settings, and the search itself."""

    def __init__(self, settings: Mapping[str, Any], endpoints: Mapping[str, str]) -> None:
        self.settings = dict(settings)
        self.endpoints = dict(endpoints)
        self.auto = "auto" in str(settings["backend"]).lower()
        self.backends = backends_of(settings["backend"])

    def _order(self) -> list[str]:
        """The engines in the order they are asked: as given, or for ``auto`` ddgs's
        order (higher priority first, the rest shuffled)."""
        if not self.auto:
            return list(self.backends)
        engines = text_engines()
        names = list(self.backends)
        random.shuffle(names)
        return sorted(names, key=lambda name: getattr(engines[name], "priority", 1),
                      reverse=True)

    def _ask(self, name: str, query: str, timeout: float) -> list[Any] | None:
        """One engine's answer (blocking; runs in a runner thread)."""
        engine_class = text_engines()[name]
        settings = self.settings
        engine = engine_class(proxy=settings["proxy"], timeout=max(1, round(timeout)),
                              verify=settings["verify"])
        endpoint = self.endpoints.get(name)
        if endpoint:
            engine.search_url = endpoint
        return engine.search(query, region=settings["region"],
                             safesearch=settings["safesearch"],
                             timelimit=settings["timelimit"], page=1)

    async def search(self, query: str, max_results: int) -> dict[str, Any]:
        from ddgs.results import ResultsAggregator
        from ddgs.similarity import SimpleFilterRanker

        timeout = float(self.settings["timeout"])
        deadline = time.monotonic() + timeout
        engines = text_engines()
        merged: Any = ResultsAggregator({"href"})
        outcomes: list[dict[str, Any]] = []
        providers: set[str] = set()
        order = self._order()

        async def one(name: str) -> None:
            outcome: dict[str, Any] = {"backend": name}
            outcomes.append(outcome)
            remaining = deadline - time.monotonic()
            try:
                found = await RUNNER.run(self._ask, name, query, remaining, deadline=deadline)
            except Overdue:
                outcome.update(status="failed", results=0,
                               error=f"no answer within the {timeout:g}s timeout")
                return
            except Busy as exc:
                outcome.update(status="failed", results=0, error=str(exc))
                return
            except Exception as exc:
                outcome.update(status="failed", results=0, error=_describe(exc))
                return
            usable = [r for r in found or () if getattr(r, "href", "")]
            outcome.update(status="ok" if usable else "empty", results=len(usable))
            if usable:
                merged.extend(usable)
                providers.add(getattr(engines[name], "provider", name))

        while order and len(merged) < max_results and time.monotonic() < deadline:
            wave: list[str] = []
            while order and len(wave) < WAVE:
                name = order.pop(0)
                if getattr(engines[name], "provider", name) in providers:
                    continue  # that provider already answered through another engine
                wave.append(name)
            async with anyio.create_task_group() as group:
                for name in wave:
                    group.start_soon(one, name)
        results = SimpleFilterRanker().rank(merged.extract_dicts(), query)[:max_results]
        failed = [o for o in outcomes if o["status"] == "failed"]
        if not results and failed and len(failed) == len(outcomes):
            reasons = "; ".join(f"{o['backend']}: {_short(o['error'], 160)}" for o in failed)
            kind = SearchTimeout if all("timeout" in o["error"] for o in failed) \
                else SearchFailed
            raise kind(f"search for {_short(query)!r} failed: every backend failed "
                       f"({reasons})", result={"query": query, "backends": outcomes})
        cut = int(self.settings["snippet_chars"])
        return {
            "status": "partial_success" if failed else "success",
            "success": True,
            "query": query,
            "results": [{"title": r.get("title", ""), "url": r.get("href", ""),
                         "snippet": _cut(r.get("body", ""), cut)} for r in results],
            "backends": outcomes,
        }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__



def mount(agent: Any, *, backend: str | Iterable[str] = DEFAULTS["backend"],
          region: str = DEFAULTS["region"], safesearch: str = DEFAULTS["safesearch"],
          timelimit: str | None = DEFAULTS["timelimit"],
          timeout: float = DEFAULTS["timeout"], max_results: int = DEFAULTS["max_results"],
          proxy: str | None = DEFAULTS["proxy"], verify: bool | str = DEFAULTS["verify"],
          snippet_chars: int = DEFAULTS["snippet_chars"],
          endpoints: Mapping[str, str] | None = None, name: str = "search",
          preview_chars: int = 6000, policy: Mapping[str, Any] | None = None) -> list[str]:
    """Mount ``search`` (see the module docstring). Options: ``backend`` (``"auto"``, a
    ddgs engine name, a comma-separated list or a list), ``region`` (``"us-en"``),
    ``safesearch`` (on, moderate, off), ``timelimit`` (d, w, m, y or None), ``timeout``
    (seconds for the whole call, 10), ``max_results`` (5; the most a model may ask for),
    ``proxy`` (``http://``, ``https://`` or ``socks5://`` URL for every engine request),
    ``verify`` (TLS verification, or a PEM file), ``snippet_chars`` (300), ``endpoints``
    (``{engine: url}``: send that engine's request to another URL, such as a mirror or a
    recorded stand-in; a host setting only), ``preview_chars`` (how much of the results the
    record's digest, what the model reads, carries: 6,000). Returns the names mounted."""
    backends_of(backend)  # empty or unknown names fail at mount, naming what exists
    check_number("Search", "timeout", timeout, low=0.1)
    check_number("Search", "max_results", max_results, low=1, integer=True)
    check_number("Search", "snippet_chars", snippet_chars, low=20, integer=True)
    check_number("Search", "preview_chars", preview_chars, low=240, integer=True)
    if safesearch not in SAFESEARCH:
        raise ConfigError(f"Search: safesearch must be one of {', '.join(SAFESEARCH)}, "
                          f"got {safesearch!r}")
    if timelimit is not None and timelimit not in TIMELIMITS:
        raise ConfigError(f"Search: timelimit must be None or one of {', '.join(TIMELIMITS)}, "
                          f"got {timelimit!r}")
    if not isinstance(region, str) or region.count("-") != 1:
        raise ConfigError(f"Search: region must look like 'us-en' or 'wt-wt', got {region!r}")
    if proxy is not None and (not isinstance(proxy, str)
                              or ("://" not in proxy and not proxy.startswith("tb"))):
        raise ConfigError(f"Search: proxy must be a URL such as 'socks5://127.0.0.1:9050', "
                          f"got {proxy!r}")
    engines = text_engines()
    for engine, url in (endpoints or {}).items():
        if engine not in engines:
            raise ConfigError(f"Search: endpoints names an unknown backend {engine!r}")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"Search: the endpoint of {engine!r} must be an http(s) URL, "
                              f"got {url!r}")
    settings = {"backend": backend, "region": region, "safesearch": safesearch,
                "timelimit": timelimit, "timeout": float(timeout), "max_results": max_results,
                "proxy": proxy, "verify": verify, "snippet_chars": snippet_chars}
    searcher = Searcher(settings, endpoints or {})
    if proxy:
        agent.add_secrets(proxy)  # a proxy URL may carry credentials
    spec = ActionSpec(
        name=name,
        description=(
            "Search the web and get back a short list of results, each with its title, url "
            f"and a snippet (at most {max_results}). Give a plain search query; use the "
            "browse action, when there is one, to read a result's page. `status` is "
            "`partial_success` when some search backends failed and others answered."),
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS,
                          "description": "What to search for."},
                "max_results": {"type": "integer", "minimum": 1, "maximum": max_results,
                                "description": f"How many results (default {max_results})."},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        kind="web", tags=["web", "search"], policy=dict(policy or {}),
        meta={"instruction": "query", "preview_chars": preview_chars,
              "web": {"operation": "search"}})

    async def run(kwargs: dict[str, Any], context: Any) -> dict[str, Any]:
        query = " ".join(str(kwargs["query"]).split())
        if not query:
            raise SearchFailed("search needs a non-empty query")
        return await searcher.search(query, int(kwargs.get("max_results") or max_results))

    agent.action.register_action(spec, run)
    return [name]


__all__ = [
    "DEFAULTS",
    "MAX_ENGINE_THREADS",
    "SearchFailed",
    "SearchTimeout",
    "Searcher",
    "mount",
]
