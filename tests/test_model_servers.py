"""The loopback stand-in model servers (agently_core.testing.model_servers), checked by
the official SDKs' own parsers and accumulators: what they accept is the real wire format."""

from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest

from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

pytestmark = pytest.mark.anyio
KEY = "sk-loopback-test-key-123456"
TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}]


@pytest.fixture
def server(agently_model_server):
    return agently_model_server


@pytest.fixture
async def clients():
    """Makes SDK clients and closes them at the end of the test (a client left to the
    garbage collector closes itself on whatever loop runs then)."""
    made = []

    class Clients:
        def openai(self, srv, **options):
            made.append(openai.AsyncOpenAI(api_key=KEY, base_url=srv.base_url, **options))
            return made[-1]

        def anthropic(self, srv, base_url=None, **options):
            made.append(anthropic.AsyncAnthropic(api_key=KEY, base_url=base_url or srv.url,
                                                 **options))
            return made[-1]

    yield Clients()
    for client in made:
        await client.close()


REPLY = Reply(text="Let me add them.", tool_calls=[ToolCall("add", {"a": 1, "b": 2}),
                                                   ToolCall("add", {"a": 30, "b": 12})],
              usage={"input_tokens": 21, "output_tokens": 9}, chunk_chars=2)


async def test_chat_completions_stream_accumulated_by_the_sdk(server, clients) -> None:
    srv = server([REPLY])
    async with clients.openai(srv).chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
            stream_options={"include_usage": True}) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me add them."
    assert [(c.id, c.function.name, json.loads(c.function.arguments))
            for c in message.tool_calls] == [("call_lb1x0", "add", {"a": 1, "b": 2}),
                                             ("call_lb1x1", "add", {"a": 30, "b": 12})]
    assert final.choices[0].finish_reason == "tool_calls"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (21, 9)


async def test_chat_completions_stream_pieces_and_the_usage_chunk(server, clients) -> None:
    srv = server([REPLY, REPLY])
    client = clients.openai(srv)
    chunks = [c async for c in await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})]
    pieces = [t.function.arguments for c in chunks if c.choices
              for t in c.choices[0].delta.tool_calls or () if t.function.arguments]
    assert pieces == ['{"', 'a"', ':1', ',"', 'b"', ':2', '}', '{"', 'a"', ':3', '0,', '"b',
                      '":', '12', '}']
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 30
    plain = [c async for c in await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True)]
    assert all(c.usage is None for c in plain)  # no usage chunk unless asked for
    assert srv.requests[1].stream and "stream_options" not in srv.requests[1].json


async def test_chat_completions_json(server, clients) -> None:
    srv = server([REPLY])
    completion = await clients.openai(srv).chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "gpt-x" and completion.object == "chat.completion"
    assert completion.choices[0].message.tool_calls[1].function.arguments == '{"a":30,"b":12}'
    assert completion.usage.prompt_tokens == 21


async def test_responses_stream_accumulated_by_the_sdk(server, clients) -> None:
    srv = server([REPLY])
    async with clients.openai(srv).responses.stream(model="m", input="hi") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.function_call_arguments.delta") == 15
    assert final.output_text == "Let me add them."
    calls = [i for i in final.output if i.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_lb1x0", "add", {"a": 1, "b": 2}), ("call_lb1x1", "add", {"a": 30, "b": 12})]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (21, 9)


async def test_responses_json(server, clients) -> None:
    srv = server([REPLY])
    response = await clients.openai(srv).responses.create(model="m", input="hi")
    assert response.status == "completed" and response.output_text == "Let me add them."
    assert response.usage.total_tokens == 30


@pytest.mark.parametrize("base", ["url", "base_url"])
async def test_anthropic_stream_accumulated_by_the_sdk(server, clients, base) -> None:
    srv = server([REPLY])
    client = clients.anthropic(srv, getattr(srv, base))
    async with client.messages.stream(model="claude-x", max_tokens=100,
                                      messages=[{"role": "user", "content": "hi"}]) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Let me add them."
    assert [(b.id, b.input) for b in final.content[1:]] == [
        ("toolu_lb1x0", {"a": 1, "b": 2}), ("toolu_lb1x1", {"a": 30, "b": 12})]
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (21, 9)
    assert KEY in (srv.last_request.headers.get("x-api-key"),  # the SDK's choice of header
                   srv.last_request.headers.get("authorization", "").removeprefix("Bearer "))


async def test_anthropic_json(server, clients) -> None:
    srv = server([Reply(text="hello")])
    message = await clients.anthropic(srv).messages.create(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "hello" and message.stop_reason == "end_turn"


async def test_provider_error_shapes(server, clients) -> None:
    srv = server([Reply.failure(401), Reply.failure(401), Reply.failure(400, "too long")])
    with pytest.raises(openai.AuthenticationError) as failed:
        await clients.openai(srv).chat.completions.create(model="m", messages=[])
    assert failed.value.body == {"message": "Incorrect API key provided.",
                                 "type": "invalid_request_error", "param": None,
                                 "code": "invalid_api_key"}
    with pytest.raises(anthropic.AuthenticationError) as refused:
        await clients.anthropic(srv).messages.create(model="m", max_tokens=1, messages=[])
    assert refused.value.body["error"] == {"type": "authentication_error",
                                           "message": "invalid x-api-key"}
    with pytest.raises(openai.BadRequestError, match="too long"):
        await clients.openai(srv).responses.create(model="m", input="hi")


async def test_429_with_retry_after_is_retried_by_both_sdks(server, clients) -> None:
    srv = server([Reply.failure(429, retry_after=0.01), Reply(text="ok"),
                  Reply.failure(429, retry_after=0.01), Reply(text="ok too")])
    started = time.monotonic()
    completion = await clients.openai(srv).chat.completions.create(model="m", messages=[])
    message = await clients.anthropic(srv).messages.create(model="m", max_tokens=1, messages=[])
    assert completion.choices[0].message.content == "ok" and message.content[0].text == "ok too"
    assert time.monotonic() - started < 2  # retry-after-ms, not the SDKs' default backoff
    assert [r.headers.get("x-stainless-retry-count") for r in srv.requests] == ["0", "1", "0", "1"]


async def test_a_hang_delay_and_a_cut_stream(server, clients) -> None:
    srv = server([Reply.hanging(), Reply(text="late", delay=0.2),
                  Reply(text="cut short here", stop_after=3),
                  Reply(text="cut short here", stop_after=3)])
    client = clients.openai(srv, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=[])
    started = time.monotonic()
    late = await client.chat.completions.create(model="m", messages=[])
    assert late.choices[0].message.content == "late" and time.monotonic() - started >= 0.2
    with pytest.raises(openai.APIConnectionError):
        async for _ in await client.chat.completions.create(model="m", messages=[], stream=True):
            pass
    with pytest.raises(anthropic.APIConnectionError):
        async for _ in await clients.anthropic(srv, max_retries=0).messages.create(
                model="m", max_tokens=1, messages=[], stream=True):
            pass


async def test_a_responder_and_the_recorded_requests(server, clients) -> None:
    seen = []

    def responder(body, headers):
        seen.append((body["model"], headers["x-team"]))
        return f"echo {body['messages'][-1]['content']}"

    srv = server([Reply(text="scripted first")], responder=responder)
    client = clients.openai(srv, default_headers={"X-Team": "blue"})
    texts = [(await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": word}])).choices[0].message.content
        for word in ("a", "b")]
    assert texts == ["scripted first", "echo b"]
    assert seen == [("m", "blue")]
    [first, second] = srv.requests
    assert first.method == "POST" and first.path == "/v1/chat/completions"
    assert first.json["messages"] == [{"role": "user", "content": "a"}]
    assert second.headers["authorization"] == f"Bearer {KEY}"
    assert srv.requests_to("/responses") == []


async def test_no_reply_left_is_a_clear_400(server, clients) -> None:
    srv = server([])
    with pytest.raises(openai.BadRequestError, match="no scripted reply left for request #1"):
        await clients.openai(srv).chat.completions.create(model="m", messages=[])


async def test_models_list_and_unknown_routes(server, clients) -> None:
    srv = server([], model="stand-in")
    client = clients.openai(srv)
    assert [m.id async for m in client.models.list()] == ["stand-in"]
    with pytest.raises(openai.NotFoundError):
        await client.post("/embeddings", cast_to=object, body={})


def test_close_ends_a_hanging_request_and_frees_the_port() -> None:
    import socket
    import threading

    srv = LoopbackModelServer([Reply.hanging()]).start()
    port = int(srv.url.rsplit(":", 1)[1])
    outcome = []

    def ask() -> None:
        import urllib.request

        request = urllib.request.Request(srv.base_url + "/chat/completions", method="POST",
                                         data=b'{"model": "m", "messages": []}',
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10)
        except Exception as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=ask)
    thread.start()
    while not srv.requests:
        time.sleep(0.01)
    started = time.monotonic()
    srv.close()
    thread.join(5)
    assert not thread.is_alive() and outcome and time.monotonic() - started < 2
    with socket.socket() as again:  # the port is free again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
