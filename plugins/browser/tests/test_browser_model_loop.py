"""A model-driven loop against a loopback stand-in model: the model opens a page, reads
the snapshot's refs from the digest it gets back, clicks by ref and types, and a page's
attempt to reach another loopback port is refused and reported to it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agently_core_browser.testing import PageServer, require_chromium

from agently_core import create_agent
from agently_core.builtins.actions import Browser


def _ref(snapshot: str, text: str) -> str:
    line = next(line for line in snapshot.splitlines() if text in line and "[ref=" in line)
    return line.split("[ref=", 1)[1].split("]", 1)[0]


def test_a_model_drives_a_page_by_the_refs_it_reads_in_digests(monkeypatch) -> None:
    from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

    require_chromium()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-test-key")
    forbidden = PageServer({"/": "secret"})
    site = PageServer({"/": "<title>Shop</title><label>Name <input id=n></label>"
                            "<button onclick=\"document.title = 'hello ' + "
                            "document.getElementById('n').value\">Greet</button>"
                            f"<img src='http://127.0.0.1:{forbidden.port}/pixel'>"})

    def tool_results(body: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]

    def responder(body: Any, headers: Mapping[str, str]) -> Reply:
        results = tool_results(body)
        if len(results) not in (2, 3):
            return Reply(text="done")
        # the model reads the snapshot (and its refs) in the snapshot call's digest
        snapshot = json.loads(results[1]["digest"]["result_preview"])["snapshot"]
        if len(results) == 2:
            return Reply(tool_calls=[ToolCall("type_text", {
                "ref": _ref(snapshot, 'textbox "Name"'), "text": "Ada"})])
        return Reply(tool_calls=[ToolCall("click_element",
                                          {"ref": _ref(snapshot, 'button "Greet"')})])

    replies = [Reply(tool_calls=[ToolCall("navigate_page", {"url": site.url("/")})]),
               Reply(tool_calls=[ToolCall("snapshot_page", {})])]
    try:
        with LoopbackModelServer(replies, responder=responder) as server:
            agent = create_agent(config={"planner": "openai_compatible", "planner_options": {
                "model": "stand-in", "base_url": server.base_url}})
            with agent:
                agent.use_actions(Browser(allow=[site.allow_entry]))
                result = agent.run("Greet Ada on the shop page.")
                bodies = [r.json for r in server.requests]
    finally:
        site.close()
        forbidden.close()
    assert result.stop_reason == "response", [(r.action, r.status, r.error)
                                              for r in result.records]
    assert [r.action for r in result.records] == ["navigate_page", "snapshot_page",
                                                  "type_text", "click_element"]
    assert all(r.status == "success" for r in result.records), result.records
    assert result.records[-1].result["title"] == "hello Ada"
    tools = {t["function"]["name"] for t in bodies[0]["tools"]}
    assert {"navigate_page", "snapshot_page", "click_element", "type_text"} <= tools
    opened = tool_results(bodies[1])[0]
    assert any(str(forbidden.port) in b["target"] for b in opened["result"]["blocked"])
    assert forbidden.hits == 0
    snapshot_answer = tool_results(bodies[2])[1]
    assert "result" not in snapshot_answer and "[ref=" in snapshot_answer["digest"]["result_preview"]
