"""``anthropic_compatible``: a planner on the Anthropic Messages API
(``anthropic.AsyncAnthropic``), for Claude and every Messages-compatible server.

The ``anthropic`` package is imported when the first request is made, not before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from agently_core.planning import (
    ModelError,
    ModelPlanner,
    RoundEvents,
    anthropic_tools,
    failure_message,
    mask,
    optional_bool,
    output_system_prompt,
    output_turns,
)

from .answer import Answer, StreamAssembler, read_message
from .messages import conversation, decision, output_messages

#: Where the SDK sends requests when ``base_url`` is not set.
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
#: ``max_tokens`` when the option is not set (the Messages API requires one).
DEFAULT_MAX_TOKENS = 8192
#: Statuses the SDK retries (with backoff) before giving up.
_RETRIED = {408, 409, 429}


class AnthropicCompatiblePlanner(ModelPlanner):
    """Plans with ``client.messages.create`` (streamed by default).

    Options: the common ones (see :data:`agently_core.planning.COMMON_OPTIONS`;
    ``api_key_env`` defaults to ``ANTHROPIC_API_KEY``, ``max_tokens`` to
    :data:`DEFAULT_MAX_TOKENS`) and ``parallel_tool_use`` (``false`` sends
    ``tool_choice.disable_parallel_tool_use``).

    Native tool calls send the actions as ``tools`` (``input_schema``) and read the
    answer's ``tool_use`` blocks. The structured plan asks for the plan's JSON in the
    system prompt and parses the answer tolerantly (fenced or chatty JSON): the Messages
    API's own JSON-schema output needs closed object schemas, which an action's free-form
    ``action_input`` is not, and Messages-compatible servers seldom offer it.

    The key is read from the variable named by ``api_key_env`` when the planner is
    created and passed to the SDK explicitly (so the SDK reads no credential of its own
    from the environment or disk); :meth:`bind` registers it with the agent's redactor.
    Without a key, requests to a ``base_url`` go without ``Authorization``; Anthropic's
    own API needs one (a :class:`ConfigError` at creation).
    """

    name = "anthropic_compatible"
    default_key_env = "ANTHROPIC_API_KEY"
    default_base_url = ANTHROPIC_BASE_URL
    provider = "Anthropic"
    extra_options: dict[str, tuple[Any, Any]] = {"parallel_tool_use": (optional_bool, None)}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.max_tokens = self.settings.max_tokens or DEFAULT_MAX_TOKENS

    def new_client(self) -> tuple[Any, dict[str, Any] | None]:
        """An ``AsyncAnthropic`` client, and headers dropping Authorization without a key."""
        import anthropic

        settings = self.settings
        # Our own HTTP client: the SDK's default one closes itself when collected by
        # scheduling the close on whatever loop runs then. No SDK spans (the run's model.*
        # events are the spans of agently-core-otel) and no trace headers.
        client = anthropic.AsyncAnthropic(
            api_key=self._key or "unset", base_url=self.base_url,
            timeout=settings.timeout, max_retries=settings.max_retries,
            default_headers=dict(settings.extra_headers) or None,
            http_client=anthropic.DefaultAsyncHttpxClient(timeout=settings.timeout),
            open_telemetry={"traces": False, "propagation": False})
        # No key: no Authorization header at all (the SDK would send the stand-in).
        return client, None if self._key else {"Authorization": anthropic.Omit()}

    # -- planning --------------------------------------------------------------------------
    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
        """One planning round: one Messages request, its answer as a raw decision. A
        failed request raises :class:`~agently_core.planning.ModelError`."""
        settings = self.settings
        given = self.round_input(context, request)
        protocol, names = given.protocol, given.names
        tools: list[dict[str, Any]] = []
        if protocol == "native_tool_calls" and given.action_list:
            tools = anthropic_tools(given.action_list, names)
        body: dict[str, Any] = {
            "model": settings.model, "max_tokens": self.max_tokens, "system": given.prompt,
            "messages": conversation(given.user, given.turns, protocol, names,
                                     tools=bool(tools))}
        if tools:
            body["tools"] = tools
            if settings.extra["parallel_tool_use"] is False:
                body["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
        answer = await self._ask(context, body, tools=len(tools))
        return decision(answer, protocol, names, settings.model)

    async def generate(self, context: Mapping[str, Any], request: Mapping[str, Any]
                       ) -> dict[str, Any]:
        """The value of an ``@agent.auto_func`` function: one request for JSON matching
        ``request["output_schema"]`` (the task, the action loop's calls and results, each
        earlier invalid attempt with its error: :func:`agently_core.planning.output_turns`),
        asked for in words, as the structured plan is. Returns ``{"text", "model",
        "usage"}``; the caller parses and checks the text."""
        settings = self.settings
        prompt = output_system_prompt(agent_name=context.get("agent_name"),
                                      env_state=context.get("env_state"),
                                      instructions=settings.instructions)
        turns = output_turns(context, request, max_result_chars=settings.max_result_chars,
                             max_context_chars=settings.max_context_chars)
        body = {"model": settings.model, "max_tokens": self.max_tokens, "system": prompt,
                "messages": output_messages(turns)}
        answer = await self._ask(context, body, tools=0)
        return {"text": answer.text or "", "model": answer.model or settings.model,
                "usage": answer.usage}

    # -- one request -----------------------------------------------------------------------
    async def _ask(self, context: Mapping[str, Any], body: dict[str, Any], *,
                   tools: int) -> Answer:
        """Send ``body`` (streamed or not, as the options say) with the round's
        ``model.*`` events; SDK failures become :class:`ModelError`."""
        settings = self.settings
        events = RoundEvents(self.name, settings.model, context, self._events)
        if settings.temperature is not None:
            # not a parameter of the SDK's messages.create: sent as a body field
            body["extra_body"] = {"temperature": settings.temperature}
        state = {"streaming": False}
        try:
            client = self.client()
            await events.request(messages=len(body["messages"]), tools=tools,
                                 stream=settings.stream)
            if settings.stream:
                on_text = events.delta if events.active else None
                answer = await self._streamed(client, body, state, on_text)
            else:
                answer = read_message(await client.messages.create(
                    **body, **self.request_options()))
        except ModelError as exc:
            await events.failed(str(exc))
            raise
        except Exception as exc:
            error = self.model_error(exc, streaming=state["streaming"])
            if error is None:
                raise
        else:
            await events.response(model=answer.model, usage=answer.usage,
                                  tool_calls=len(answer.calls), finish_reason=answer.stop_reason)
            return answer
        # Raised out here, the SDK's exception is not its context: a traceback or an error
        # tracker shows the message above, not the provider's body (which may echo the key).
        await events.failed(str(error))
        raise error


    async def _streamed(self, client: Any, body: dict[str, Any], state: dict[str, Any],
                        on_text: Callable[[str], Awaitable[None]] | None) -> Answer:
        """Run the stream: text deltas go to ``on_text`` (``model.delta`` events), tool
        inputs are assembled from their ``input_json_delta`` pieces."""
        stream = await client.messages.create(**body, stream=True, **self.request_options())
        state["streaming"] = True
        assembler = StreamAssembler(on_text)
        try:
            async for event in stream:
                await assembler.feed(event)
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()
        if not assembler.finished:
            raise ModelError(mask(failure_message(
                self.settings, kind="stream", base_url=self.base_url,
                detail="the stream ended before message_stop"), self._key), planner=self.name)
        return assembler.result()

    # -- failures --------------------------------------------------------------------------
    def model_error(self, exc: BaseException, *, streaming: bool = False) -> ModelError | None:
        """An SDK exception as a :class:`ModelError` a person can act on (the key masked),
        or ``None`` when ``exc`` is not the SDK's."""
        import anthropic

        settings, url = self.settings, self.base_url
        retries = 0 if streaming else settings.max_retries
        status = getattr(exc, "status_code", None)
        if isinstance(exc, anthropic.APITimeoutError):
            message = failure_message(settings, kind="timeout", base_url=url, retries=retries)
        elif isinstance(exc, anthropic.APIConnectionError):
            message = failure_message(settings, kind="stream" if streaming else "connection",
                                      base_url=url, detail=_cause(exc), retries=retries)
        elif isinstance(exc, anthropic.APIStatusError) and (status or 0) >= 400:
            again = settings.max_retries if (status in _RETRIED or status >= 500) else 0
            message = failure_message(settings, kind="status", base_url=url, status=status,
                                      detail=_detail(exc), key_set=self._key is not None,
                                      retries=again)
            if status == 404 and url.endswith("/v1"):
                message += ("; the Anthropic SDK adds /v1/messages to base_url: leave the /v1 "
                            "out of it")
        elif isinstance(exc, anthropic.APIError):  # an error event inside a stream
            message = failure_message(settings, kind="stream", base_url=url, detail=_detail(exc))
            status = None
        else:
            return None
        return ModelError(mask(message, self._key, *settings.extra_headers.values()),
                          planner=self.name, status=status)


def _detail(exc: Any) -> str:
    """The provider's own words for an error: ``error.type: error.message`` of its error
    JSON for a stream's error event, ``error.message`` for an HTTP error."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            message = str(inner["message"])
            kind = inner.get("type")
            status = getattr(exc, "status_code", None)
            return f"{kind}: {message}" if kind and (status or 0) < 400 else message
        if body.get("message"):
            return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body
    return str(getattr(exc, "message", "") or exc)


def _cause(exc: BaseException) -> str:
    """What broke a connection, in the SDK's words (never the request itself)."""
    text = str(exc)
    return "" if text in ("Connection error.", "") else text
