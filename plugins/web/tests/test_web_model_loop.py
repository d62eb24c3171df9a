"""A model-driven loop against a loopback stand-in model: the model sees browse and
search with only their model-facing arguments, calls both, and gets back each record's
digest (the page and the result list stay artifacts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agently_core_web.testing import Site, page

from agently_core import create_agent
from agently_core.builtins.actions import Browse, Search

DATA = Path(__file__).parent / "data"
ARTICLE = ("<html><head><title>Otters</title></head><body><article><h1>River otters</h1>"
           "<p>River otters hunt fish along rivers and lakes; their dense fur keeps them "
           "warm in cold water, and they dig dens into river banks.</p></article></body></html>")


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    server = Site({"/html/": page((DATA / "duckduckgo_html.html").read_bytes()),
                   "/otters": page(ARTICLE)}).start()
    yield server
    server.stop()


def test_a_model_searches_then_browses_and_reads_digests(site: Site, monkeypatch) -> None:
    from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-test-key")
    replies = [Reply(tool_calls=[ToolCall("search", {"query": "river otter habitat"})]),
               Reply(tool_calls=[ToolCall("browse", {"url": site.url("/otters")})]),
               Reply(text="Otters live along rivers and lakes.")]
    with LoopbackModelServer(replies) as server:
        agent = create_agent(config={"planner": "openai_compatible", "planner_options": {
            "model": "stand-in", "base_url": server.base_url}})
        with agent:
            agent.use_actions(Search(backend="duckduckgo",
                                     endpoints={"duckduckgo": site.url("/html/")}))
            agent.use_actions(Browse(allow=[site.authority], timeout=5))
            result = agent.run("Where do river otters live?")
            bodies: list[dict[str, Any]] = [r.json for r in server.requests]
    assert result.stop_reason == "response", result
    assert [r.status for r in result.records] == ["success", "success"]
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in bodies[0]["tools"]}
    assert set(tools["browse"]["properties"]) == {"url", "format"}
    assert set(tools["search"]["properties"]) == {"query", "max_results"}
    # what the model got back for each call: the digest, not the whole result
    answers = [json.loads(m["content"]) for m in bodies[2]["messages"] if m["role"] == "tool"]
    searched, browsed = answers
    assert searched["status"] == "success" and "result" not in searched
    assert searched["digest"]["instruction_preview"] == "river otter habitat"
    assert "partial_success" not in searched["digest"]["result_preview"]
    assert browsed["digest"]["instruction_preview"] == site.url("/otters")
    preview = browsed["digest"]["result_preview"]
    assert preview.startswith('{"title": "River otters", "final_url": ')
    assert "River otters hunt fish" in preview
    # the whole (short) page reaches the model, not the first 240 characters of it
    assert "they dig dens into river banks" in preview and "more characters" not in preview
    assert "more characters" not in searched["digest"]["result_preview"]
    assert {ref["kind"] for ref in browsed["digest"]["artifact_refs"]} == {"instruction",
                                                                          "result"}
