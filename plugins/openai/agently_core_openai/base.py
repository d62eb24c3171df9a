"""What both OpenAI planners share: options, the key, the SDK client, failures.

The ``openai`` package is imported when the first request is made, not before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from agently_core.planning import (
    ModelError,
    ModelPlanner,
    RoundEvents,
    failure_message,
    mask,
)

#: Where the SDK sends requests when ``base_url`` is not set.
OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Statuses the SDK retries (with backoff) before giving up.
_RETRIED = {408, 409, 429}


class OpenAIPlannerBase(ModelPlanner):
    """Options, key, client and failures of a planner on ``openai.AsyncOpenAI``.

    Subclasses set :attr:`name` and implement :meth:`_round`. The key is read from the
    variable named by ``api_key_env`` (default ``OPENAI_API_KEY``) when the planner is
    created; :meth:`bind` registers it with the agent's redactor. Without a key, requests
    to a ``base_url`` (a local server such as Ollama) go without ``Authorization``; the
    OpenAI API itself needs one (a :class:`ConfigError` at creation).
    """

    name = "openai"
    default_key_env = "OPENAI_API_KEY"
    default_base_url = OPENAI_BASE_URL
    provider = "OpenAI"
    keyless_servers = " (Ollama...)"

    def new_client(self) -> tuple[Any, dict[str, Any] | None]:
        """An ``AsyncOpenAI`` client, and headers dropping Authorization without a key."""
        import openai

        settings = self.settings
        # Our own HTTP client: the SDK's default one closes itself when collected by
        # scheduling the close on whatever loop runs then, which fails for a client of a
        # loop that has ended.
        client = openai.AsyncOpenAI(
            api_key=self._key or "unset", base_url=self.base_url,
            timeout=settings.timeout, max_retries=settings.max_retries,
            default_headers=dict(settings.extra_headers) or None,
            http_client=openai.DefaultAsyncHttpxClient(timeout=settings.timeout))
        # No key: no Authorization header at all (the SDK would send the stand-in).
        return client, None if self._key else {"Authorization": openai.Omit()}

    # -- a round ---------------------------------------------------------------------------
    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        """One planning round: one model request, its answer as a raw decision. A failed
        request raises :class:`~agently_core.planning.ModelError` (``model.failed``)."""
        return await self._guarded(self._round, context, request)

    async def generate(self, context: Mapping[str, Any],
                       request: Mapping[str, Any]) -> dict[str, Any]:
        """A value for ``@agent.auto_func``: one request for JSON matching
        ``request["output_schema"]`` (the provider's JSON-schema response format unless
        ``structured_output`` says otherwise). Returns ``{"text", "model", "usage"}``."""
        return await self._guarded(self._generate, context, request)

    async def _guarded(self, step: Any, context: Mapping[str, Any],
                       request: Mapping[str, Any]) -> dict[str, Any]:
        events = RoundEvents(self.name, self.settings.model, context, self._events)
        state = {"streaming": False}
        try:
            return await step(context, request, events, state)
        except ModelError as exc:
            await events.failed(str(exc))
            raise
        except Exception as exc:
            error = self.model_error(exc, streaming=state["streaming"])
            if error is None:
                raise
        # Raised out here, the SDK's exception is not its context: a traceback or an error
        # tracker shows the message above, not the provider's body (which may echo the key).
        await events.failed(str(error))
        raise error

    async def _round(self, context: Mapping[str, Any], request: Mapping[str, Any],
                     events: RoundEvents, state: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def _generate(self, context: Mapping[str, Any], request: Mapping[str, Any],
                        events: RoundEvents, state: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def model_error(self, exc: BaseException, *, streaming: bool = False) -> ModelError | None:
        """An SDK exception as a :class:`ModelError` a person can act on (the key masked),
        or ``None`` when ``exc`` is not the SDK's."""
        import openai

        settings, url = self.settings, self.base_url
        retries = settings.max_retries
        if isinstance(exc, openai.APITimeoutError):
            message = failure_message(settings, kind="timeout", base_url=url,
                                      retries=0 if streaming else retries)
        elif isinstance(exc, openai.APIConnectionError):
            detail = _cause(exc)
            message = failure_message(settings, kind="stream" if streaming else "connection",
                                      base_url=url, detail=detail,
                                      retries=0 if streaming else retries)
        elif isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            again = retries if (status in _RETRIED or status >= 500) else 0
            message = failure_message(settings, kind="status", base_url=url, status=status,
                                      detail=_detail(exc), key_set=self._key is not None,
                                      retries=again)
        elif isinstance(exc, openai.APIError):  # an error event inside a stream
            message = failure_message(settings, kind="stream", base_url=url, detail=_detail(exc))
        else:
            return None
        return ModelError(mask(message, self._key, *settings.extra_headers.values()),
                          planner=self.name, status=getattr(exc, "status_code", None))


def _detail(exc: Any) -> str:
    """The provider's own words for an error: the ``message`` of its error JSON."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body
    return str(getattr(exc, "message", "") or exc)


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return ""
    text = str(cause) or type(cause).__name__
    return f"{type(cause).__name__}: {text}" if text != type(cause).__name__ else text


def arguments_json(text: str) -> str:
    """Tool-call arguments as valid JSON to replay: the model's own text when it parses,
    else an object holding it (a provider may refuse a past call it cannot parse; the
    error in that call's result tells the model what went wrong)."""
    if not text:
        return "{}"
    try:
        json.loads(text)
    except ValueError:
        return json.dumps({"invalid_arguments": text[:4000]}, ensure_ascii=False)
    return text


def unique_id(wanted: str | None, seen: set[str]) -> str:
    """``wanted`` when it is a fresh id, else a new one (a server may send none, or the
    same twice)."""
    if wanted and wanted not in seen:
        seen.add(wanted)
        return wanted
    fresh = f"call_{os.urandom(8).hex()}"
    seen.add(fresh)
    return fresh


def usage_of(input_tokens: Any, output_tokens: Any) -> dict[str, int] | None:
    if input_tokens is None and output_tokens is None:
        return None
    return {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)}
