"""Execution digests and artifacts: what an instruction-heavy call keeps, how it is
redacted and bounded, how it is read back, and what the next planning round sees."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from agently_core.actions import ActionContext
from agently_core.artifacts import ArtifactNotFound, ArtifactStore, preview
from agently_core.models import ActionSpec

CODE_SCHEMA = {"type": "object", "required": ["code"],
               "properties": {"code": {"type": "string"}}}


def interpreter(agent: Any, *, name: str = "interpret", policy: dict[str, Any] | None = None,
                keep_output: bool = False, meta: dict[str, Any] | None = None) -> None:
    """An instruction-heavy function action: it 'runs' ``code`` by echoing it back."""

    def run(code: str, action_context: ActionContext) -> dict[str, Any]:
        if code == "boom":
            raise RuntimeError("the code failed on purpose")
        output = f"ran: {code}\n" * (200 if "long" in code else 1)
        if keep_output:
            action_context.add_artifact("stdout", output)
        return {"stdout": output[:64] if keep_output else output, "exit_code": 0}

    agent.action.register_action(
        ActionSpec(name=name, description="Interpret code. Returns its output.",
                   input_schema=CODE_SCHEMA, policy=policy or {},
                   meta={"instruction": "code", **(meta or {})}),
        run)


@pytest.fixture
def agent(build_agent: Callable[..., Any]) -> Any:
    made = build_agent()
    interpreter(made)
    return made


# -- the store ------------------------------------------------------------------------
def test_the_store_keeps_and_returns_artifacts() -> None:
    store = ArtifactStore()
    text = store.put("call_1", "act", "stdout", "hello")
    data = store.put("call_1", "act", "result", {"rows": [1, 2]}, media_type="application/json")
    assert store.get(text.id).content == "hello"
    assert store.get(data.id, "call_1").content == {"rows": [1, 2]}
    assert [a.id for a in store.for_call("call_1")] == [text.id, data.id]
    assert store.total_bytes == text.size + data.size


def test_bytes_are_kept_as_text() -> None:
    store = ArtifactStore()
    artifact = store.put("c", "a", "stdout", b"ok \xff")
    assert artifact.content == "ok \ufffd"


def test_retention_by_count_drops_the_oldest() -> None:
    store = ArtifactStore(max_artifacts=3)
    ids = [store.put("c", "a", "k", str(n)).id for n in range(5)]
    assert len(store) == 3 and store.evicted == 2
    for gone in ids[:2]:
        with pytest.raises(ArtifactNotFound, match="retention"):
            store.get(gone)
    assert store.get(ids[-1]).content == "4"


def test_retention_by_total_bytes() -> None:
    store = ArtifactStore(max_total_bytes=100)
    first = store.put("c", "a", "k", "x" * 60)
    second = store.put("c", "a", "k", "y" * 60)
    assert store.total_bytes <= 100
    with pytest.raises(ArtifactNotFound):
        store.get(first.id)
    assert store.get(second.id).content == "y" * 60


def test_retention_by_age() -> None:
    store = ArtifactStore(max_age_seconds=0.05)
    old = store.put("c", "a", "k", "old")
    time.sleep(0.08)
    with pytest.raises(ArtifactNotFound):
        store.get(old.id)
    assert len(store) == 0


def test_one_huge_artifact_is_cut_not_refused() -> None:
    store = ArtifactStore(max_artifact_bytes=1000)
    artifact = store.put("c", "a", "stdout", "z" * 5000)
    assert artifact.truncated and artifact.content.startswith("z" * 1000)
    assert "artifact truncated: 4000 bytes omitted" in artifact.content
    rows = store.put("c", "a", "rows", [{"v": "w" * 50}] * 100)
    assert rows.truncated and isinstance(rows.content, str)


def test_an_artifact_of_another_call_is_refused() -> None:
    store = ArtifactStore()
    artifact = store.put("call_a", "act", "k", "secret plan")
    with pytest.raises(ArtifactNotFound, match="does not belong to action call 'call_b'"):
        store.get(artifact.id, "call_b")


def test_preview_marks_what_it_cut() -> None:
    assert preview("short") == "short"
    assert preview("x" * 300, 10) == "x" * 10 + "... [290 more characters]"
    assert preview(None) == ""


def test_a_spec_may_ask_for_a_longer_result_preview(build_agent: Callable[..., Any]) -> None:
    """A page's text or a snapshot *is* what the model asked for: ``preview_chars`` lets
    its digest carry that much of it (bounded; bad values fall back to the default)."""
    made = build_agent()
    interpreter(made, name="read_page", meta={"preview_chars": 5000})
    interpreter(made, name="huge", meta={"preview_chars": 10**9})
    interpreter(made, name="odd", meta={"preview_chars": "lots"})
    kwargs = {"code": "long"}   # 200 lines of "ran: long\n", 2,200 characters
    longer = made.action.execute_action("read_page", kwargs).digest["result_preview"]
    assert longer.count("ran: long") == 200 and "more characters" not in longer
    default = made.action.execute_action("odd", kwargs).digest["result_preview"]
    assert len(default) < 300 and "more characters" in default
    assert made.action.execute_action("huge", {"code": "long " * 5000}).digest[
        "result_preview"].endswith("more characters]")


# -- through the dispatcher -----------------------------------------------------------
def test_an_instruction_heavy_call_gets_a_digest_and_artifacts(agent: Any) -> None:
    record = agent.action.execute_action("interpret", {"code": "print(1)"}, purpose="check it")
    assert record.status == "success"
    digest = record.digest
    assert digest["action"] == "interpret" and digest["status"] == "success"
    assert digest["call_id"] == record.call_id
    assert digest["purpose"] == "check it"
    assert digest["instruction_preview"] == "print(1)"
    assert "ran: print(1)" in digest["result_preview"]
    assert digest["redaction_notes"] == []
    assert digest["artifact_refs"] == record.artifact_refs and len(record.artifact_refs) == 2
    assert {ref["action_call_id"] for ref in record.artifact_refs} == {record.call_id}
    kinds = {ref["kind"]: ref["artifact_id"] for ref in record.artifact_refs}
    assert set(kinds) == {"instruction", "result"}
    assert agent.action.read_action_artifact(kinds["instruction"])["content"] == "print(1)"
    assert agent.action.read_action_artifact(
        kinds["result"], action_call_id=record.call_id)["content"]["exit_code"] == 0


def test_without_a_purpose_the_digest_says_what_the_action_does(agent: Any) -> None:
    record = agent.action.execute_action("interpret", {"code": "x"})
    assert record.digest["purpose"] == "Interpret code"


def test_a_plain_action_gets_neither(build_agent: Callable[..., Any]) -> None:
    agent = build_agent()

    @agent.action_func
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    record = agent.action.execute_action("add", {"a": 1, "b": 2})
    assert record.digest is None and record.artifact_refs == []
    assert agent.action.read_action_artifact(action_call_id=record.call_id) == []


def test_a_failed_call_still_has_a_digest_with_its_error(agent: Any) -> None:
    record = agent.action.execute_action("interpret", {"code": "boom"})
    assert record.status == "failed"
    assert record.digest["status"] == "failed"
    assert "the code failed on purpose" in record.digest["result_preview"]
    assert [agent.action.read_action_artifact(a["artifact_id"])["kind"]
            for a in record.artifact_refs] == ["instruction"]


def test_the_full_result_survives_the_output_cap(build_agent: Callable[..., Any]) -> None:
    agent = build_agent()
    interpreter(agent, policy={"max_output_bytes": 300})
    record = agent.action.execute_action("interpret", {"code": "long"})
    assert record.meta.get("truncated") and len(str(record.result)) < 1000
    assert any("max_output_bytes" in note for note in record.digest["redaction_notes"])
    full = next(a for a in agent.action.read_action_artifact(action_call_id=record.call_id)
                if a["kind"] == "result")
    assert full["content"]["stdout"] == "ran: long\n" * 200


def test_executor_artifacts_are_kept_and_redacted(build_agent: Callable[..., Any]) -> None:
    agent = build_agent()
    interpreter(agent, keep_output=True)
    agent.add_secrets("hunter2-secret-value")
    record = agent.action.execute_action("interpret", {"code": "echo hunter2-secret-value"})
    artifacts = agent.action.read_action_artifact(action_call_id=record.call_id)
    assert [a["kind"] for a in artifacts] == ["instruction", "result", "stdout"]
    for artifact in artifacts:
        assert "hunter2-secret-value" not in str(artifact["content"])
        assert "***" in str(artifact["content"])
    assert "hunter2-secret-value" not in str(record.digest)
    assert "secret values were masked in the instruction" in record.digest["redaction_notes"]
    assert "secret values were masked in the output" in record.digest["redaction_notes"]


def test_secret_arguments_are_masked_in_artifacts(build_agent: Callable[..., Any]) -> None:
    agent = build_agent()

    def run(code: str, api_key: str) -> str:
        return f"used {api_key} for {code}"

    agent.action.register_action(ActionSpec(
        name="keyed", input_schema={"type": "object", "properties": {
            "code": {"type": "string"}, "api_key": {"type": "string"}}},
        meta={"instruction": "code"}), run)
    record = agent.action.execute_action("keyed", {"code": "go", "api_key": "sk-live-123456"})
    contents = str(agent.action.read_action_artifact(action_call_id=record.call_id))
    assert "sk-live-123456" not in contents and "sk-live-123456" not in str(record.digest)


def test_reading_bad_ids_is_a_clear_error(agent: Any) -> None:
    record = agent.action.execute_action("interpret", {"code": "a"})
    other = agent.action.execute_action("interpret", {"code": "b"})
    with pytest.raises(ArtifactNotFound, match="no artifact 'art_nope'"):
        agent.action.read_action_artifact("art_nope")
    with pytest.raises(ArtifactNotFound, match="does not belong"):
        agent.action.read_action_artifact(record.artifact_refs[0]["artifact_id"],
                                          action_call_id=other.call_id)
    with pytest.raises(TypeError, match="artifact_id or action_call_id"):
        agent.action.read_action_artifact()
    # nothing is lost: both calls' artifacts are still there
    assert agent.action.read_action_artifact(
        record.artifact_refs[0]["artifact_id"])["content"] == "a"


def test_agents_do_not_share_artifacts(build_agent: Callable[..., Any], agent: Any) -> None:
    record = agent.action.execute_action("interpret", {"code": "mine"})
    stranger = build_agent()
    with pytest.raises(ArtifactNotFound):
        stranger.action.read_action_artifact(record.artifact_refs[0]["artifact_id"])


def test_the_next_round_sees_the_digest_not_the_whole_output(agent: Any) -> None:
    seen: list[Any] = []

    def second(context: dict[str, Any], request: dict[str, Any]) -> str:
        seen.extend(context["last_round_records"])
        return "done"

    agent.set_planner("scripted", steps=[[{"action": "interpret", "kwargs": {"code": "long"}}],
                                         second])
    result = agent.run("go")
    assert result.stop_reason == "response", result.error
    (entry,) = seen
    assert "result" not in entry and "kwargs" not in entry
    assert entry["digest"]["instruction_preview"] == "long"
    assert len(entry["digest"]["result_preview"]) < 400
    ref = entry["digest"]["artifact_refs"][1]
    assert ref["action_call_id"] == entry["call_id"] == entry["digest"]["call_id"]
    full = agent.action.read_action_artifact(artifact_id=ref["artifact_id"],
                                             action_call_id=ref["action_call_id"])
    assert full["content"]["stdout"].count("ran: long") == 200


def test_an_instruction_with_a_lone_surrogate_is_a_record_not_an_exception() -> None:
    import agently_core

    agent = agently_core.create_agent(config={"providers": {}})

    @agent.action_func
    def run(code: str) -> str:
        """Run code."""
        return code

    entry = agent.registry.get("run")
    entry.spec.meta["instruction"] = "code"
    record = agent.action.execute_action("run", {"code": "SELECT '\ud800'" + "x" * 100})
    assert record.status == "success", record.error
    assert record.artifact_refs  # stored, not raised
    text = agent.action.read_action_artifact(record.artifact_refs[0]["artifact_id"],
                                             action_call_id=record.call_id)
    assert "SELECT" in str(text)
    agent.close()


def test_records_read_as_the_reference_uses_them(agent: Any) -> None:
    """``records[0]["artifact_refs"][0]`` holds ``artifact_id`` and ``action_call_id``,
    and those two read the artifact back."""
    agent.action.execute_action("interpret", {"code": "print(2)"})
    records = agent.get_action_result()
    ref = records[0]["artifact_refs"][0]
    raw = agent.action.read_action_artifact(artifact_id=ref["artifact_id"],
                                            action_call_id=ref["action_call_id"])
    assert ref["action_call_id"] == records[0]["call_id"] == records[0].call_id
    assert raw["content"] == "print(2)" and raw["kind"] == ref["kind"] == "instruction"
    assert records[0].get("nope", "fallback") == "fallback" and "digest" in records[0]
    assert dict(records[0])["digest"] == records[0].digest
    with pytest.raises(KeyError):
        records[0]["nope"]
    with pytest.raises(KeyError):
        records[0][0]


def test_the_digest_carries_every_field_the_reference_lists(agent: Any) -> None:
    record = agent.action.execute_action("interpret", {"code": "print(3)"}, purpose="three")
    assert list(record.digest) == ["action", "call_id", "purpose", "status",
                                   "instruction_preview", "result_preview", "redaction_notes",
                                   "artifact_refs"]
    assert record.digest["call_id"] == record.call_id
    assert all(set(ref) >= {"artifact_id", "action_call_id"}
               for ref in record.digest["artifact_refs"])
