"""The file actions enforce the policy fields they declare (``path_allow``, ``path_deny``,
``read_only``, ``allow_create``, ``allow_update``, ``max_workspace_bytes``) on every path
they touch, through a real agent and its dispatcher; a model's call cannot widen them."""

from __future__ import annotations

from pathlib import Path

import agently_core_function.plugin as function_plugin
import agently_core_workspace_local.plugin as local_plugin
import pytest
from agently_core_workspace_local.file_actions import ENFORCED_POLICY

from agently_core.testing import make_agent, make_plugin_manager

TREE = {
    "README.md": "needle in the readme",
    "notes.txt": "needle in notes",
    "docs/guide.md": "needle in the guide",
    "docs/draft.txt": "needle in a draft",
    "docs/secret-plan.md": "needle in a secret",
    "docs/deep/more.md": "needle deeper",
    "src/app.py": "needle = 'in code'",
    "src/key.pem": "needle in a key",
}
ACTIONS = ["list_files", "read_file", "search_files", "write_file"]


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "files"
    for path, text in TREE.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


@pytest.fixture
def make(root):
    agents = []

    def make(**policy):
        agent = make_agent(make_plugin_manager(function_plugin, local_plugin))
        agent.enable_workspace_file_actions(root=root, write=True)
        if policy:
            agent.set_policy(**policy)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def test_the_actions_declare_exactly_the_fields_they_enforce(make):
    agent = make()
    for name in ACTIONS:
        assert agent.registry.require(name).spec.meta["enforced_policy"] == list(
            ENFORCED_POLICY)
    assert set(ENFORCED_POLICY) == {"path_allow", "path_deny", "read_only", "allow_create",
                                    "allow_update", "allow_delete", "max_workspace_bytes"}
    # an agent that forbids deleting still reads and writes files: none of them deletes
    agent = make(allow_delete=False)
    assert agent.action.execute_action("list_files", {"path": "."}).status == "success"


def test_path_allow_and_path_deny_on_every_action(make, root, file_calls):
    """Before: any path_allow/path_deny blocked every file action (no executor enforced
    them). Now they run and enforce them."""
    call, refused = file_calls
    agent = make(path_allow=["docs/*", "*.md"], path_deny=["*secret*", "*.pem"])
    assert call(agent, "read_file", path="docs/guide.md").result["content"] == "needle in the guide"
    assert call(agent, "read_file", path="./docs//deep/more.md").status == "success"
    assert call(agent, "read_file", path="README.md").status == "success"
    refused(agent, "read_file", "none of the policy's path_allow", path="notes.txt")
    refused(agent, "read_file", "none of the policy's path_allow", path="src/app.py")
    refused(agent, "read_file", "path_deny pattern '*secret*'", path="docs/secret-plan.md")

    listed = call(agent, "list_files").result
    # '*' also matches '/' (Policy.path_allowed): src may hold a *.md, so it is listed
    assert [e["path"] for e in listed["entries"]] == ["README.md", "docs", "src"]
    assert listed["hidden_by_policy"] == 1  # notes.txt
    deep = call(agent, "list_files", path="docs", recursive=True).result
    assert [e["path"] for e in deep["entries"]] == [
        "docs/deep", "docs/deep/more.md", "docs/draft.txt", "docs/guide.md"]
    assert deep["hidden_by_policy"] == 1
    assert call(agent, "list_files", path="src").result["hidden_by_policy"] == 2

    found = call(agent, "search_files", query="needle").result
    assert sorted(m["path"] for m in found["matches"]) == [
        "README.md", "docs/deep/more.md", "docs/draft.txt", "docs/guide.md"]
    assert found["hidden_by_policy"] == 4  # notes.txt, the secret plan, both in src

    assert call(agent, "write_file", path="docs/new.txt", content="ok").status == "success"
    refused(agent, "write_file", "path_allow", path="src/new.py", content="x")
    refused(agent, "write_file", "path_deny", path="docs/secret-2.md", content="x")
    refused(agent, "write_file", "'..'", path="docs/../src/x", content="x")
    assert not (root / "src" / "new.py").exists()
    assert not (root / "docs" / "secret-2.md").exists()


def test_a_denied_directory_denies_everything_below(make, file_calls):
    call, refused = file_calls
    agent = make(path_deny=["src"])
    refused(agent, "read_file", "path_deny pattern 'src' (through 'src')", path="src/app.py")
    refused(agent, "list_files", "path_deny", path="src")
    refused(agent, "write_file", "path_deny", path="src/sub/new.py", content="x")
    entries = call(agent, "list_files", recursive=True).result["entries"]
    assert not [e for e in entries if e["path"].startswith("src")]
    found = call(agent, "search_files", query="needle").result["matches"]
    assert len(found) == 6 and not [m for m in found if m["path"].startswith("src")]


def test_listing_walks_only_towards_allowed_paths(make, file_calls):
    call, refused = file_calls
    agent = make(path_allow=["docs/*.md"])
    top = call(agent, "list_files").result
    assert [e["path"] for e in top["entries"]] == ["docs"] and top["hidden_by_policy"] == 3
    inside = call(agent, "list_files", path="docs", recursive=True).result
    # '*' crosses '/': docs/deep/more.md matches docs/*.md (Policy.path_allowed)
    assert [e["path"] for e in inside["entries"]] == [
        "docs/deep", "docs/deep/more.md", "docs/guide.md", "docs/secret-plan.md"]
    refused(agent, "read_file", "path_allow", path="docs/draft.txt")
    refused(agent, "list_files", "path_allow", path="src")


def test_read_only_allow_create_allow_update(make, root, file_calls):
    call, refused = file_calls
    agent = make(read_only=True)
    refused(agent, "write_file", "policy is read-only", path="notes.txt", content="x")
    refused(agent, "write_file", "policy is read-only", path="brand-new.txt", content="x")
    assert call(agent, "read_file", path="notes.txt").result["content"] == "needle in notes"

    agent = make(allow_create=False)
    refused(agent, "write_file", "allow_create", path="brand-new.txt", content="x")
    refused(agent, "write_file", "allow_create", path="new-dir/brand-new.txt", content="x")
    assert not (root / "new-dir").exists()  # not even the directory
    assert call(agent, "write_file", path="notes.txt", content="updated").status == "success"

    agent = make(allow_update=False)
    refused(agent, "write_file", "allow_update", path="notes.txt", content="again")
    assert (root / "notes.txt").read_text() == "updated"
    assert call(agent, "write_file", path="brand-new.txt", content="x").status == "success"


def test_a_models_call_cannot_widen_the_host_policy(make, root):
    agent = make(path_allow=["docs/*"], path_deny=["docs/secret*"], allow_update=False)
    wider = {"path_allow": ["*"], "path_deny": [], "allow_update": True, "read_only": False}
    records = agent.action.execute_actions([
        {"action": "read_file", "kwargs": {"path": "src/app.py"}, "source": "model",
         "policy": wider},
        {"action": "read_file", "kwargs": {"path": "docs/secret-plan.md"}, "source": "model",
         "policy": wider},
        {"action": "write_file", "kwargs": {"path": "docs/guide.md", "content": "pwned"},
         "source": "model", "policy": wider},
        {"action": "search_files", "kwargs": {"query": "needle"}, "source": "model",
         "policy": wider},
        # narrowing is fine: one more deny pattern, read-only
        {"action": "read_file", "kwargs": {"path": "docs/guide.md"}, "source": "model",
         "policy": {"path_deny": ["*guide*"]}},
        {"action": "write_file", "kwargs": {"path": "docs/other.txt", "content": "x"},
         "source": "model", "policy": {"read_only": True}},
    ])
    statuses = [(r.status, r.error_type) for r in records]
    assert statuses == [("failed", "FileAccessRefused")] * 3 + [("success", None)] + [
        ("failed", "FileAccessRefused")] * 2, [r.error for r in records]
    assert sorted(m["path"] for m in records[3].result["matches"]) == [
        "docs/deep/more.md", "docs/draft.txt", "docs/guide.md"]
    assert (root / "docs" / "guide.md").read_text() == "needle in the guide"
    assert not (root / "docs" / "other.txt").exists()


def test_a_workspace_bytes_limit_in_the_policy(make, root, file_calls):
    call, refused = file_calls
    used = sum(len(text.encode()) for text in TREE.values())
    agent = make(max_workspace_bytes=used + 100)
    assert call(agent, "write_file", path="a.txt", content="x" * 100).status == "success"
    record = refused(agent, "write_file", "max_workspace_bytes", path="b.txt", content="y")
    assert f"limit of {used + 100} bytes" in record.error
    # a model's smaller limit narrows; its larger one does not widen
    records = agent.action.execute_actions([
        {"action": "write_file", "kwargs": {"path": "a.txt", "content": "x" * 50},
         "source": "model", "policy": {"max_workspace_bytes": used + 10}},
        {"action": "write_file", "kwargs": {"path": "a.txt", "content": "x" * 200},
         "source": "model", "policy": {"max_workspace_bytes": 10 ** 9}},
    ])
    assert [r.status for r in records] == ["failed", "failed"], [r.error for r in records]
    assert (root / "a.txt").read_text() == "x" * 100


def test_bad_patterns_and_the_agent_carries_on(make, file_calls):
    call, _ = file_calls
    agent = make(path_allow=["/etc/*", "../*"])  # match nothing relative to the root
    record = call(agent, "read_file", path="README.md")
    assert record.status == "failed" and "path_allow" in record.error
    other = make(path_deny=["["])  # an unclosed class matches only itself
    assert call(other, "read_file", path="README.md").status == "success"
