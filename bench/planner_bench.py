"""Model planners: one planning round beside the bare SDK call it makes.

    python bench/planner_bench.py [--json] [--repeat N]

``planner_figures(repeat)`` returns rows shaped like bench/run.py's (``{"name", "value",
"unit", "baseline", "ratio"}``; figures are medians of blocks that alternate between the
planner and its baseline, so machine noise hits both alike):

* ``planner_overhead_ratio_<planner>_<streamed|whole>``: ``await planner.plan(context,
  request)`` for the third round of a run (two earlier rounds with a parallel call each in
  its history, one action) against a loopback server (agently_core.testing.model_servers),
  beside the bare ``AsyncOpenAI().chat.completions.create`` (``responses.create``,
  ``AsyncAnthropic().messages.create``) of the very body the planner sent, on the same
  server, streamed and not (a stream read to its end, as the planner does). The value and
  the baseline are milliseconds per round; the ratio is the figure (target <= 1.10).
* ``loop_overhead_ms_per_round``: a whole model-driven round of ``agent.async_run``
  through ``openai_compatible`` (streamed) against the loopback server, minus the model's
  time (each request as the planner timed it around the SDK call: ``latency_ms`` of its
  ``model.response`` event) and the action's own time (nil: an async function that
  returns at once):
  what the flow, the runtime, the planner's own work on the request and answer, the
  dispatch and the records cost per round (target <= 2 ms). Its baseline is the model's
  time per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

BLOCK = 40
KEY = "sk-bench-0123456789abcdef"
ACTION = {"name": "run_python", "description": "Run Python code in a sandbox.",
          "kwargs": {"type": "object", "properties": {"python_code": {"type": "string"}},
                     "required": ["python_code"]}}


def _row(name: str, value: float, unit: str, baseline: float | None) -> dict[str, Any]:
    return {"name": name, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None}


def _history() -> list[dict[str, Any]]:
    rounds = []
    for i in range(2):
        ids = [f"call_{i}a", f"call_{i}b"]
        calls = [{"id": c, "action": "run_python", "kwargs": {"python_code": f"print({i})"}}
                 for c in ids]
        refs = [{"artifact_id": a, "action_call_id": ids[0], "kind": "result"}
                for a in ("art_1", "art_2")]
        digest = {"action": "run_python", "call_id": ids[0], "purpose": "run code",
                  "status": "success", "instruction_preview": f"print({i})",
                  "result_preview": f'{{"stdout": "{i}"}}', "redaction_notes": [],
                  "artifact_refs": refs}
        rounds.append({
            "round_index": i, "model_message": None, "response": "Running code.",
            "calls": calls, "invalid": [],
            "records": [{"call_id": c, "action": "run_python", "status": "success",
                         "result": {"stdout": f"{i}\n"}, "digest": digest,
                         "artifact_refs": refs} for c in ids]})
    return rounds


async def _one(planner_name: str, stream: bool, repeat: int) -> dict[str, Any]:
    from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

    if planner_name == "anthropic_compatible":
        from agently_core_anthropic.planner import AnthropicCompatiblePlanner as Planner
    elif planner_name == "openai_compatible":
        from agently_core_openai.chat import OpenAICompatiblePlanner as Planner
    else:
        from agently_core_openai.responses import OpenAIResponsesPlanner as Planner
    reply = Reply(text="Let me check that with Python.",
                  tool_calls=[ToolCall("run_python", {"python_code": "print(sum(range(10)))"})],
                  usage={"input_tokens": 400, "output_tokens": 30}, chunk_chars=12)
    with LoopbackModelServer(responder=lambda body, headers: reply) as server:
        url = server.url if planner_name == "anthropic_compatible" else server.base_url
        planner = Planner(model="bench-model", base_url=url, stream=stream)
        context = {"agent_name": "bench", "round_index": 2, "max_rounds": 10,
                   "run_id": "run_bench", "history": _history(), "events": None}
        request = {"input": "What is the sum of 0..9? Use Python.", "action_list": [ACTION],
                   "planning_protocol": "native_tool_calls"}
        await planner.plan(context, request)  # warm: client made, connection open
        body = dict(server.last_request.json)
        client, create = _bare_client(planner_name, url)

        async def bare() -> None:
            answer = await create(**body)
            if stream:
                async for _ in answer:
                    pass

        async def planned() -> None:
            await planner.plan(context, request)

        await bare()
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(repeat):
            for target, into in ((planned, ours), (bare, theirs)):
                started = time.perf_counter()
                for _ in range(BLOCK):
                    await target()
                into.append((time.perf_counter() - started) * 1000 / BLOCK)
        await client.close()
        await planner.aclose()
    kind = "streamed" if stream else "whole"
    return _row(f"planner_overhead_ratio_{planner_name}_{kind}", statistics.median(ours),
                "ms", statistics.median(theirs))


def _bare_client(planner_name: str, url: str) -> tuple[Any, Any]:
    """The SDK client of the baseline and its create method (the Anthropic client with
    the planner's own client options: no SDK spans, no trace headers)."""
    if planner_name == "anthropic_compatible":
        import anthropic

        client = anthropic.AsyncAnthropic(
            api_key=KEY, base_url=url, http_client=anthropic.DefaultAsyncHttpxClient(),
            open_telemetry={"traces": False, "propagation": False})
        return client, client.messages.create
    import openai

    client = openai.AsyncOpenAI(api_key=KEY, base_url=url,
                                http_client=openai.DefaultAsyncHttpxClient())
    return client, (client.chat.completions.create if planner_name == "openai_compatible"
                    else client.responses.create)


async def loop_figure(repeat: int, rounds: int = 6) -> dict[str, Any]:
    """``loop_overhead_ms_per_round`` (see the module docstring)."""
    import agently_core
    from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

    call = Reply(text="One more.", tool_calls=[ToolCall("noop", {"n": 1})],
                 usage={"input_tokens": 300, "output_tokens": 20}, chunk_chars=12)
    done = Reply(text="Done.", usage={"input_tokens": 300, "output_tokens": 5})

    def answer(body: Any, headers: Any) -> Reply:
        turns = sum(1 for m in body.get("messages", ()) if m.get("role") == "tool")
        return call if turns < rounds - 1 else done

    with LoopbackModelServer(responder=answer) as server:
        agent = agently_core.create_agent(config={"providers": {}})

        @agent.action_func
        async def noop(n: int) -> int:
            """Return n."""
            return n  # returns at once: the action's own time is nil

        agent.use_actions(["noop"])
        agent.set_planner("openai_compatible", model="bench-model", base_url=server.base_url)
        latencies: list[float] = []
        agent.events.subscribe(lambda e: latencies.append(e.payload.get("latency_ms") or 0.0),
                               "model.response")
        overheads, models = [], []
        for index in range(repeat + 1):
            latencies.clear()
            started = time.perf_counter()
            result = await agent.async_run("Call noop until told to stop.",
                                           max_rounds=rounds + 1)
            wall = (time.perf_counter() - started) * 1000
            assert result.stop_reason == "response", result.error
            count = len(result.rounds)
            if index:  # the first run warms the client and the connection
                overheads.append((wall - sum(latencies)) / count)
                models.append(sum(latencies) / count)
        await agent.aclose()
    return _row("loop_overhead_ms_per_round", statistics.median(overheads), "ms",
                statistics.median(models))


async def planner_figures(repeat: int = 10) -> list[dict[str, Any]]:
    os.environ.setdefault("OPENAI_API_KEY", KEY)
    os.environ.setdefault("ANTHROPIC_API_KEY", KEY)
    rows = []
    for name in ("openai_compatible", "openai_responses", "anthropic_compatible"):
        for stream in (True, False):
            rows.append(await _one(name, stream, repeat))
    rows.append(await loop_figure(repeat))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    rows = asyncio.run(planner_figures(args.repeat))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return
    for row in rows:
        print(f"{row['name']:<52} {row['value']:>8.3f} ms  bare {row['baseline']:>8.3f} ms  "
              f"ratio {row['ratio']:.3f}")


if __name__ == "__main__":
    main()
