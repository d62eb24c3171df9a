"""Loopback stand-in model servers: real HTTP/1.1 on 127.0.0.1, real wire formats.

:class:`LoopbackModelServer` answers, in a background thread, the three model APIs the
model planners speak, exactly as the providers put them on the wire:

* OpenAI Chat Completions: ``POST /v1/chat/completions``, JSON or SSE ``data: {...}``
  chunks ending with ``data: [DONE]`` (tool-call arguments split across chunks, the usage
  chunk when ``stream_options.include_usage`` asks for it);
* OpenAI Responses: ``POST /v1/responses``, JSON or typed SSE events
  (``response.created`` ... ``response.output_text.delta``,
  ``response.function_call_arguments.delta`` ... ``response.completed`` with usage);
* Anthropic Messages: ``POST /v1/messages``, JSON or SSE with ``event:`` lines
  (``message_start``, ``content_block_start``/``_delta``/``_stop`` with ``text_delta`` and
  ``input_json_delta``, ``message_delta`` with usage, ``message_stop``).

Routes match on the end of the path, so ``base_url`` works with and without ``/v1``
(the OpenAI SDK wants it, the Anthropic SDK adds it). ``GET .../models`` lists the model.

Script it with a list of :class:`Reply` (used in order, whatever the endpoint) or a
callable ``(request_json, headers) -> Reply | str``. A reply is text and/or tool calls and
usage, or a fault: a status code with the provider's error JSON (``Reply.failure(429,
retry_after=0.01)``), a hang (``Reply.hanging()``), a delay, a stream that stops or hangs
after some events, malformed tool-call arguments (a raw string). Every request is recorded
(:attr:`LoopbackModelServer.requests`: path, lower-cased headers, JSON body) for
assertions, such as where an API key went.

Standard library only (no SDK), so plugin authors, the demo, the examples and the bench
can all start one::

    with LoopbackModelServer([Reply(tool_calls=[ToolCall("add", {"a": 1, "b": 2})]),
                              Reply(text="3")]) as server:
        agent.set_planner("openai_compatible", model="stand-in", base_url=server.base_url)
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackModelServer", "RecordedRequest", "Reply", "ToolCall"]

Responder = Callable[[Any, Mapping[str, str]], Any]

#: Each kind of fault's status line and error JSON, per provider family.
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 408: "Request Timeout", 409: "Conflict",
            413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout", 529: "Overloaded"}
_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "The request is invalid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached; try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The server is overloaded."),
}
_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "The request is invalid."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this model."),
    404: ("not_found_error", "model: not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed size."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error."),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass(frozen=True)
class ToolCall:
    """One tool call in a reply. ``arguments`` is a mapping (sent as JSON) or a raw string
    sent as is (say ``'{"a": 1'`` to simulate a model's malformed arguments)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Reply:
    """What the server answers to one request.

    * ``text`` and ``tool_calls`` (:class:`ToolCall` or ``(name, arguments)`` pairs): the
      model's answer; both empty is an empty answer.
    * ``usage``: ``{"input_tokens": n, "output_tokens": m}``; ``None`` estimates it from the
      sizes (about 4 characters a token); ``False`` reports none.
    * ``status`` (not 200): an error with the provider's error JSON (``error`` overrides its
      message), ``retry_after`` seconds sent as ``retry-after-ms`` and ``retry-after``.
    * ``delay`` seconds before answering; ``hang``: never answer (until the server closes).
    * Streams: ``stop_after`` events are sent, then the connection is closed (``hang``:
      kept open, silent); ``chunk_chars`` is the size of each text or arguments piece;
      ``chunk_delay`` seconds pass between events (0: one write for the whole stream).
    * ``finish_reason`` overrides the provider's stop reason (``"length"``...); ``model``
      the model name echoed (default: the request's); ``headers`` are extra response
      headers; ``body`` (bytes or text) replaces the whole response body.
    """

    text: str | None = None
    tool_calls: Sequence[ToolCall | tuple[str, Any]] = ()
    usage: Mapping[str, int] | bool | None = None
    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    stop_after: int | None = None
    chunk_chars: int = 8
    chunk_delay: float = 0.0
    finish_reason: str | None = None
    model: str | None = None
    body: bytes | str | None = None

    @classmethod
    def failure(cls, status: int, error: str | None = None, *,
                retry_after: float | None = None, **options: Any) -> Reply:
        """An HTTP error with the provider's error JSON."""
        return cls(status=status, error=error, retry_after=retry_after, **options)

    @classmethod
    def hanging(cls) -> Reply:
        """Never answers: the client's timeout has to end the request."""
        return cls(hang=True)

    def calls(self) -> list[ToolCall]:
        return [c if isinstance(c, ToolCall) else ToolCall(c[0], c[1]) for c in self.tool_calls]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and bool(self.json.get("stream"))


class _Stopped(Exception):
    """The server is closing: a waiting handler gives up."""


class LoopbackModelServer:
    """A scripted model server on ``127.0.0.1`` (a free port), in a background thread.

    ``replies``: a list of :class:`Reply` (or strings: text replies) used in order; more can
    be added with :meth:`add`. ``responder``: a callable ``(request_json, headers)``
    returning a :class:`Reply` or a string, used when the list is empty. With neither
    left, the server answers 400 saying so (a test that asked once too often fails
    clearly). ``model`` is what ``GET /models`` lists.
    """

    def __init__(self, replies: Iterable[Reply | str] = (), *,
                 responder: Responder | None = None, model: str = "loopback-model") -> None:
        self._replies: list[Reply] = [_as_reply(r) for r in replies]
        self.responder = responder
        self.model = model
        self.requests: list[RecordedRequest] = []
        #: Numbers (1, 2, ...) of the requests whose client went away before the answer
        #: was complete (a cancelled stream, a client timeout).
        self.aborted: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> LoopbackModelServer:
        if self._httpd is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.owner = self
        self._httpd = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="loopback-model-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; hanging requests end with their connections closed."""
        server, self._httpd = self._httpd, None
        if server is None:
            return
        self._stop.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the Anthropic SDK's kind of base URL)."""
        if self._httpd is None:
            raise RuntimeError("the loopback model server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the OpenAI SDK's kind; the Anthropic SDK's works
        too, since routes match the end of the path)."""
        return self.url + "/v1"

    # -- scripting -------------------------------------------------------------------------
    def add(self, *replies: Reply | str) -> LoopbackModelServer:
        """Queue more replies."""
        with self._lock:
            self._replies.extend(_as_reply(r) for r in replies)
        return self

    @property
    def pending(self) -> int:
        """Replies queued and not used yet."""
        with self._lock:
            return len(self._replies)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self.requests[-1]

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        """The requests whose path ends with ``suffix`` (``"/chat/completions"``)."""
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0].endswith(suffix)]

    def _next(self, data: Any, headers: Mapping[str, str]) -> tuple[Reply | None, int]:
        """The reply to a request and the request's number (1, 2, ...)."""
        with self._lock:
            self._counter += 1
            number = self._counter
            if self._replies:
                return self._replies.pop(0), number
        if self.responder is None:
            return None, number
        return _as_reply(self.responder(data, headers)), number

    def _wait(self, seconds: float | None) -> None:
        """Sleep, or until the server closes (then raise :class:`_Stopped`)."""
        if self._stop.wait(seconds):
            raise _Stopped


def _as_reply(value: Any) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(text=value)
    if isinstance(value, Mapping):
        return Reply(**value)
    raise TypeError(f"a scripted reply must be a Reply, a string or a mapping, got {value!r}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: LoopbackModelServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        owner = self.server.owner
        with owner._lock:
            owner._connections.add(self.connection)

    def finish(self) -> None:
        owner = self.server.owner
        with owner._lock:
            owner._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is not the place for an access log."""

    # -- requests ------------------------------------------------------------------------
    def do_GET(self) -> None:
        owner = self.server.owner
        self._record(b"")
        if self.path.split("?")[0].rstrip("/").endswith("/models"):
            body = {"object": "list", "data": [{"id": owner.model, "object": "model",
                                                "created": 0, "owned_by": "loopback"}]}
            self._send(200, _json_bytes(body), "application/json")
        else:
            self._send(404, _json_bytes(_openai_error(404, f"no route GET {self.path}")),
                       "application/json")

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        data, headers = self._record(raw)
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/chat/completions"):
            kind = "chat"
        elif path.endswith("/responses"):
            kind = "responses"
        elif path.endswith("/messages"):
            kind = "anthropic"
        else:
            self._send(404, _json_bytes(_openai_error(404, f"no route POST {self.path}")),
                       "application/json")
            return
        number = 0
        if not isinstance(data, dict):
            reply: Reply | None = Reply.failure(400, "the request body is not a JSON object")
            data = {}
        else:
            try:
                reply, number = owner._next(data, headers)
            except Exception as exc:  # a responder that raised: a 500 naming it
                reply = Reply.failure(500, f"the loopback responder raised "
                                           f"{type(exc).__name__}: {exc}")
            if reply is None:
                reply = Reply.failure(400, "loopback model server: no scripted reply left "
                                           f"for request #{number} ({self.path})")
        try:
            self._answer(kind, reply, data, len(raw), number)
        except _Stopped:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            self.close_connection = True
            with owner._lock:
                owner.aborted.append(number)

    def _record(self, raw: bytes) -> tuple[Any, dict[str, str]]:
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        owner = self.server.owner
        entry = RecordedRequest(self.command, self.path, headers, raw, data, time.time())
        with owner._lock:
            owner.requests.append(entry)
        return data, headers

    def _answer(self, kind: str, reply: Reply, data: dict[str, Any], size: int,
                number: int) -> None:
        owner = self.server.owner
        if reply.delay:
            owner._wait(reply.delay)
        stream = bool(data.get("stream"))
        if reply.hang and (reply.stop_after is None or not stream):
            owner._wait(None)
        model = reply.model or str(data.get("model") or owner.model)
        if reply.status != 200:
            self._error(kind, reply, number)
            return
        if reply.body is not None:
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            media = "text/event-stream" if stream else "application/json"
            self._send(200, body, media, reply.headers)
            return
        usage = _usage(reply, size)
        if kind == "chat":
            if stream:
                include = bool((data.get("stream_options") or {}).get("include_usage"))
                self._stream(_chat_events(reply, model, number, usage if include else None), reply)
            else:
                self._send(200, _json_bytes(_chat_body(reply, model, number, usage)),
                           "application/json", reply.headers)
        elif kind == "responses":
            if stream:
                self._stream(_responses_events(reply, model, number, usage), reply)
            else:
                self._send(200, _json_bytes(_responses_body(reply, model, number, usage,
                                                            "completed")),
                           "application/json", reply.headers)
        elif stream:
            self._stream(_anthropic_events(reply, model, number, usage), reply)
        else:
            self._send(200, _json_bytes(_anthropic_body(reply, model, number, usage)),
                       "application/json", reply.headers)

    def _error(self, kind: str, reply: Reply, number: int) -> None:
        headers = dict(reply.headers)
        if reply.retry_after is not None:
            headers["retry-after-ms"] = str(int(reply.retry_after * 1000))
            headers["retry-after"] = str(max(0, math.ceil(reply.retry_after)))
        if reply.body is not None:
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        elif kind == "anthropic":
            kind_name, message = _ANTHROPIC_ERRORS.get(reply.status, ("api_error", "Error."))
            body = _json_bytes({"type": "error", "error": {"type": kind_name,
                                                           "message": reply.error or message},
                                "request_id": f"req_loopback{number}"})
        else:
            body = _json_bytes(_openai_error(reply.status, reply.error))
        self._send(reply.status, body, "application/json", headers)

    # -- writing -------------------------------------------------------------------------
    def _head(self, status: int, media: str, headers: Mapping[str, str], extra: str) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                 f"Content-Type: {media}", extra]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, status: int, body: bytes, media: str,
              headers: Mapping[str, str] | None = None) -> None:
        head = self._head(status, media, headers or {}, f"Content-Length: {len(body)}")
        self.wfile.write(head + body)

    def _stream(self, events: list[bytes], reply: Reply) -> None:
        owner = self.server.owner
        head = self._head(200, "text/event-stream; charset=utf-8",
                          {"Cache-Control": "no-cache", **reply.headers},
                          "Transfer-Encoding: chunked")
        cut = reply.stop_after is not None and reply.stop_after < len(events)
        sent = events[:reply.stop_after] if cut else events
        chunks = [b"%x\r\n%s\r\n" % (len(e), e) for e in sent]
        if not cut:
            chunks.append(b"0\r\n\r\n")
        if reply.chunk_delay <= 0:
            self.wfile.write(head + b"".join(chunks))
        else:
            self.wfile.write(head)
            for chunk in chunks:
                owner._wait(reply.chunk_delay)
                self.wfile.write(chunk)
        if cut:
            if reply.hang:
                owner._wait(None)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- wire formats ----------------------------------------------------------------------------
def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _usage(reply: Reply, request_size: int) -> dict[str, int] | None:
    if reply.usage is False:
        return None
    if isinstance(reply.usage, Mapping):
        return {"input_tokens": int(reply.usage.get("input_tokens", 0)),
                "output_tokens": int(reply.usage.get("output_tokens", 0))}
    produced = len(reply.text or "") + sum(len(c.name) + len(c.arguments_text())
                                           for c in reply.calls())
    return {"input_tokens": max(1, math.ceil(request_size / 4)),
            "output_tokens": max(1, math.ceil(produced / 4))}


def _openai_error(status: int, message: str | None) -> dict[str, Any]:
    kind, code, default = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500
                                                      else "invalid_request_error", None,
                                                      "Error."))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, bytes) else _json_bytes(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


# Chat Completions
def _chat_call_id(call: ToolCall, number: int, index: int) -> str:
    return call.id or f"call_lb{number}x{index}"


def _chat_finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _chat_usage(usage: dict[str, int]) -> dict[str, Any]:
    return {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _chat_body(reply: Reply, model: str, number: int, usage: dict[str, int] | None
               ) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None,
                               "annotations": []}
    calls = reply.calls()
    if calls:
        message["tool_calls"] = [
            {"id": _chat_call_id(c, number, i), "type": "function",
             "function": {"name": c.name, "arguments": c.arguments_text()}}
            for i, c in enumerate(calls)]
    body: dict[str, Any] = {
        "id": f"chatcmpl-lb{number}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "system_fingerprint": "fp_loopback",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _chat_finish(reply)}],
        "usage": None if usage is None else _chat_usage(usage),
    }
    return body


def _chat_events(reply: Reply, model: str, number: int, usage: dict[str, int] | None
                 ) -> list[bytes]:
    base = {"id": f"chatcmpl-lb{number}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_loopback"}
    extra = {"usage": None} if usage is not None else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish}], **extra})

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if reply.text:
        events += [chunk({"content": piece}) for piece in _pieces(reply.text, reply.chunk_chars)]
    for index, call in enumerate(reply.calls()):
        events.append(chunk({"tool_calls": [{
            "index": index, "id": _chat_call_id(call, number, index), "type": "function",
            "function": {"name": call.name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                   for piece in _pieces(call.arguments_text(), reply.chunk_chars) if piece]
    events.append(chunk({}, _chat_finish(reply)))
    if usage is not None:
        events.append(_sse({**base, "choices": [], "usage": _chat_usage(usage)}))
    events.append(b"data: [DONE]\n\n")
    return events


# Responses
def _responses_usage(usage: dict[str, int] | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _responses_items(reply: Reply, number: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if reply.text:
        items.append({"id": f"msg_lb{number}", "type": "message", "status": "completed",
                      "role": "assistant",
                      "content": [{"type": "output_text", "text": reply.text,
                                   "annotations": [], "logprobs": []}]})
    for index, call in enumerate(reply.calls()):
        items.append({"id": f"fc_lb{number}x{index}", "type": "function_call",
                      "status": "completed", "call_id": call.id or f"call_lb{number}x{index}",
                      "name": call.name, "arguments": call.arguments_text()})
    return items


def _responses_body(reply: Reply, model: str, number: int, usage: dict[str, int] | None,
                    status: str, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    incomplete = reply.finish_reason in ("length", "max_output_tokens") and status == "completed"
    return {
        "id": f"resp_lb{number}", "object": "response", "created_at": int(time.time()),
        "status": "incomplete" if incomplete else status, "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": None, "max_output_tokens": None, "model": model,
        "output": _responses_items(reply, number) if output is None else output,
        "parallel_tool_calls": True, "previous_response_id": None, "reasoning": None,
        "service_tier": "default", "store": False, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0, "truncation": "disabled",
        "usage": _responses_usage(usage) if status == "completed" else None,
        "user": None, "metadata": {},
    }


def _responses_events(reply: Reply, model: str, number: int, usage: dict[str, int] | None
                      ) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(_sse({"type": kind, "sequence_number": len(events), **fields}, kind))

    emit("response.created", response=_responses_body(reply, model, number, None,
                                                      "in_progress", []))
    emit("response.in_progress", response=_responses_body(reply, model, number, None,
                                                          "in_progress", []))
    items = _responses_items(reply, number)
    for index, item in enumerate(items):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            emit("response.content_part.added", item_id=item["id"], output_index=index,
                 content_index=0, part=part)
            for piece in _pieces(text, reply.chunk_chars):
                emit("response.output_text.delta", item_id=item["id"], output_index=index,
                     content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", item_id=item["id"], output_index=index,
                 content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", item_id=item["id"], output_index=index,
                 content_index=0, part={**part, "text": text})
        else:
            emit("response.output_item.added", output_index=index,
                 item={**item, "status": "in_progress", "arguments": ""})
            for piece in _pieces(item["arguments"], reply.chunk_chars):
                if piece:
                    emit("response.function_call_arguments.delta", item_id=item["id"],
                         output_index=index, delta=piece)
            emit("response.function_call_arguments.done", item_id=item["id"],
                 output_index=index, name=item["name"], arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    final = _responses_body(reply, model, number, usage, "completed", items)
    emit("response.incomplete" if final["status"] == "incomplete" else "response.completed",
         response=final)
    return events


# Anthropic Messages
def _anthropic_stop(reply: Reply) -> str:
    if reply.finish_reason:
        return {"length": "max_tokens", "stop": "end_turn"}.get(reply.finish_reason,
                                                                reply.finish_reason)
    return "tool_use" if reply.tool_calls else "end_turn"


def _anthropic_tool_id(call: ToolCall, number: int, index: int) -> str:
    return call.id or f"toolu_lb{number}x{index}"


def _anthropic_usage(usage: dict[str, int] | None, output: int | None = None) -> dict[str, Any]:
    usage = usage or {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": usage["input_tokens"], "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": usage["output_tokens"] if output is None else output,
            "service_tier": "standard"}


def _anthropic_body(reply: Reply, model: str, number: int, usage: dict[str, int] | None
                    ) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for index, call in enumerate(reply.calls()):
        content.append({"type": "tool_use", "id": _anthropic_tool_id(call, number, index),
                        "name": call.name,
                        "input": call.arguments if isinstance(call.arguments, str)
                        else dict(call.arguments)})
    return {"id": f"msg_lb{number}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": _anthropic_stop(reply), "stop_sequence": None,
            "usage": _anthropic_usage(usage)}


def _anthropic_events(reply: Reply, model: str, number: int, usage: dict[str, int] | None
                      ) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append(_sse({"type": kind, **fields}, kind))

    start = _anthropic_body(reply, model, number, usage)
    emit("message_start", message={**start, "content": [], "stop_reason": None,
                                   "usage": _anthropic_usage(usage, output=1)})
    emit("ping")
    index = 0
    if reply.text:
        emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
        for piece in _pieces(reply.text, reply.chunk_chars):
            emit("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        emit("content_block_stop", index=index)
        index += 1
    for n, call in enumerate(reply.calls()):
        emit("content_block_start", index=index, content_block={
            "type": "tool_use", "id": _anthropic_tool_id(call, number, n), "name": call.name,
            "input": {}})
        for piece in _pieces(call.arguments_text(), reply.chunk_chars):
            emit("content_block_delta", index=index,
                 delta={"type": "input_json_delta", "partial_json": piece})
        emit("content_block_stop", index=index)
        index += 1
    emit("message_delta", delta={"stop_reason": _anthropic_stop(reply), "stop_sequence": None},
         usage={"output_tokens": (usage or {}).get("output_tokens", 0)})
    emit("message_stop")
    return events
