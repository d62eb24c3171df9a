"""The reference documentation's own code samples run against agently-core.

Each sample below is the reference's code as published (its pages are in
``../shared/reference/``), written with the reference's imports. :func:`as_core` maps them
the way docs/reference.md says (``from agently import Agently`` -> ``import agently_core as
Agently``, ``agently.builtins`` / ``agently.types`` -> ``agently_core.builtins`` /
``agently_core.types``, a TriggerFlow ``flow`` -> an agent); nothing else in the sample is
changed. Where a sample leaves a value to the reader (``...``, ``requirement``, ``handler``)
the test gives one in ``setup`` and checks the outcome afterwards.

:func:`test_samples_are_the_reference_s` checks that every sample line appears in the
reference pages (found beside the checkout or beside the repository it was cloned from; under
CI their absence fails), so a sample here cannot drift into code the reference never showed.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from agently_core.testing import require
from agently_core.testing.model_servers import Reply, ToolCall

ROOT = Path(__file__).resolve().parents[1]


def _reference_dir() -> Path:
    """The reference pages: ``AGENTLY_REFERENCE_DIR``, else ``shared/reference`` beside this
    checkout, else beside the repository it was cloned from (a clean clone's origin)."""
    if "AGENTLY_REFERENCE_DIR" in os.environ:
        return Path(os.environ["AGENTLY_REFERENCE_DIR"])
    places = [ROOT.parent]
    origin = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"],
                            capture_output=True, text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        places.append(Path(origin).resolve().parent)
    for place in places:
        if (place / "shared" / "reference").is_dir():
            return place / "shared" / "reference"
    return ROOT.parent / "shared" / "reference"


REFERENCE = _reference_dir()
KEY = "sk-reference-samples-123456"

IMPORTS = [
    (r"^from agently import Agently$", "import agently_core as Agently"),
    (r"\bagently\.builtins\b", "agently_core.builtins"),
    (r"\bagently\.types\b", "agently_core.types"),
    (r"\bflow\.create_execution\(", "agent.create_execution("),
]


def as_core(sample: str) -> str:
    """The sample with the reference's names mapped to agently-core's."""
    lines = []
    for line in textwrap.dedent(sample).strip("\n").splitlines():
        for pattern, replacement in IMPORTS:
            line = re.sub(pattern, replacement, line)
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class Sample:
    page: str
    code: str
    setup: str = ""
    check: str = ""
    replies: list[Reply] = field(default_factory=list)
    #: The reference's own text this sample exercises, when the page shows the calls inline
    #: (``workspace.put_snapshot(..., expected_state_version=...)``) rather than as a block:
    #: checked against the page instead of the sample's lines.
    anchors: list[str] = field(default_factory=list)


SAMPLES: dict[str, Sample] = {
    "handler_types": Sample(
        "agently-action-runtime.txt",
        """
        from agently.types.plugins import (
            ActionExecutor,
            ActionRuntime,
            ActionFlow,
            ActionPlanningHandler,
            ActionExecutionHandler,
        )
        """,
        check="""
        assert ActionPlanningHandler is not None and ActionExecutionHandler is not None
        assert all(callable(getattr(t, "__instancecheck__", None))
                   for t in (ActionExecutor, ActionRuntime, ActionFlow))
        """,
    ),
    "action_func_and_auto_func": Sample(
        "agently-action-runtime.txt",
        """
        from agently import Agently
        agent = Agently.create_agent()
        @agent.action_func
        async def add(a: int, b: int) -> int:
            \"\"\"Add two integers.\"\"\"
            return a + b
        @agent.action_func
        async def python_code_executor(python_code: str):
            \"\"\"Execute Python code and return the result.\"\"\"
            ...
        agent.use_actions([add, python_code_executor])
        # Or register and run in one shot
        @agent.auto_func
        def calculate(formula: str) -> int:
            \"\"\"Compute {formula}. Use available actions.\"\"\"
            ...
        print(calculate("3333+6666=?"))
        """,
        check="""
        assert printed().strip() == "9999"
        assert [r.action for r in agent.get_action_result()] == ["add"]
        assert agent.get_action_result()[0]["result"] == 9999
        agent.close()
        """,
        replies=[Reply(tool_calls=[ToolCall("add", {"a": 3333, "b": 6666}, id="c1")]),
                 Reply(text="The sum is 9999."),
                 Reply(text='{"result": 9999}')],
    ),
    "read_action_artifact": Sample(
        "agently-action-runtime.txt",
        """
        records = agent.get_action_result()
        artifact_ref = records[0]["artifact_refs"][0]
        raw = agent.action.read_action_artifact(
            artifact_id=artifact_ref["artifact_id"],
            action_call_id=artifact_ref["action_call_id"],
        )
        """,
        setup="""
        import agently_core as Agently
        agent = Agently.create_agent()
        agent.enable_python()
        agent.input("print a greeting")
        """,
        check="""
        assert artifact_ref["action_call_id"] == records[0]["call_id"] == "call_py"
        assert "print('hello from the sandbox')" in str(raw)
        digest = records[0]["digest"]
        assert digest["call_id"] == "call_py"
        [result] = Agently.Action.to_action_results(records)
        assert result["digest"] == digest and "result" not in result
        assert "hello from the sandbox" in digest["result_preview"]
        agent.close()
        """,
        replies=[Reply(tool_calls=[ToolCall("run_python",
                                            {"python_code": "print('hello from the sandbox')"},
                                            id="call_py")]),
                 Reply(text="done")],
    ),
    "older_surface": Sample(
        "agently-action-runtime.txt",
        """
        @agent.tool_func
        def add(a: int, b: int) -> int:
            return a + b
        agent.use_tool(add)
        agent.use_tools([add])
        """,
        setup="""
        import warnings
        import agently_core as Agently
        agent = Agently.create_agent()
        warnings.simplefilter("ignore", DeprecationWarning)
        """,
        check="""
        assert "add" in [info["name"] for info in agent.action.get_tool_info()]
        assert agent.action.execute_action("add", {"a": 2, "b": 3}).result == 5
        agent.close()
        """,
    ),
    "handler_contract": Sample(
        "agently-action-runtime.txt",
        """
        async def planning_handler(
            context: ActionRunContext,
            request: ActionPlanningRequest,
        ) -> ActionDecision:
            ...
        async def execution_handler(
            context: ActionRunContext,
            request: ActionExecutionRequest,
        ) -> list[ActionResult]:
            ...
        """,
        setup="""
        from agently_core.types.plugins import (
            ActionExecutionRequest, ActionPlanningRequest, ActionResult, ActionRunContext)
        from agently_core import ActionDecision
        """,
        check="""
        import typing
        hints = typing.get_type_hints(planning_handler)
        assert hints["context"] is ActionRunContext and hints["return"] is ActionDecision
        assert typing.get_type_hints(execution_handler)["request"] is ActionExecutionRequest
        fields = set(ActionRunContext.model_fields) if hasattr(ActionRunContext, "model_fields") \\
            else set(ActionRunContext.__dataclass_fields__)
        assert {"prompt", "settings", "agent_name", "round_index", "max_rounds", "done_plans",
                "last_round_records", "action", "runtime"} <= fields
        """,
    ),
    "execution_environments_at_creation": Sample(
        "agently-execution-environment.txt",
        """
        execution = flow.create_execution(
            execution_environments=[
                {
                    "kind": "python",
                    "scope": "execution",
                    "resource_key": "sandbox",
                }
            ],
        )
        """,
        setup="""
        import agently_core as Agently
        agent = Agently.create_agent()
        """,
        check="""
        execution.start()
        assert execution.resources["sandbox"] is not None
        snapshot = execution.close()
        assert snapshot is not None
        assert Agently.execution_environment.list(scope="execution") == []
        agent.close()
        """,
    ),
    "manager_api": Sample(
        "agently-execution-environment.txt",
        """
        Agently.execution_environment.declare(requirement)
        Agently.execution_environment.ensure(requirement_or_id)
        await Agently.execution_environment.async_ensure(requirement_or_id)
        Agently.execution_environment.release(handle_or_id)
        Agently.execution_environment.release_scope("session", owner_id)
        Agently.execution_environment.inspect(id)
        Agently.execution_environment.list(scope="execution")
        Agently.policy_approval.register_handler("my_handler", handler)
        Agently.configure_policy_approval(handler="my_handler")
        """,
        setup="""
        import agently_core as Agently
        owner_id = "reference-session"
        requirement = {"kind": "python", "scope": "session", "owner_id": owner_id}
        declared = Agently.execution_environment.declare(requirement)
        requirement_or_id = declared.id
        handle_or_id = Agently.execution_environment.ensure(requirement_or_id)
        id = declared.id
        seen = []
        def handler(context, request):
            seen.append(request)
            return "approve"
        """,
        check="""
        assert all(h.owner_id != owner_id
                   for h in Agently.execution_environment.list(scope="session"))
        assert Agently.policy_approval.get_default() == "my_handler"
        Agently.configure_policy_approval(handler=None)
        """,
    ),
    "execution_lifecycle": Sample(
        "agently-glossary.txt",
        """
        await execution.async_seal()
        await execution.async_close()
        """,
        setup="""
        import agently_core as Agently
        execution = Agently.create_execution()
        """,
        check="""
        assert execution.state == "closed"
        """,
    ),
    "builtin_search_and_browse": Sample(
        "agently-action-runtime.txt",
        """
        from agently.builtins.actions import Browse, Search
        """,
        setup="""
        import agently_core as Agently
        """,
        check="""
        agent = Agently.create_agent()
        agent.use_actions(Search(timeout=15, backend="duckduckgo"))
        agent.use_actions(Browse())
        names = [info["name"] for info in agent.action.get_action_info()]
        assert "search" in names and "browse" in names
        agent.close()
        """,
    ),
    "shared_workspace": Sample(
        "agently-runtime-skill.txt",
        """
        from agently import Agently
        shared_workspace = Agently.create_workspace("local", root=root)
        agent = Agently.create_agent()
        agent.use_workspace(shared_workspace)
        execution = flow.create_execution(workspace=shared_workspace)
        detached = flow.create_execution(workspace=False)
        """,
        anchors=["Agently.create_workspace(...)", "agent.use_workspace(shared_workspace)",
                 "flow.create_execution(workspace=shared_workspace)",
                 "flow.create_execution(workspace=False)"],
        setup="""
        root = str(tmp / "shared")
        """,
        check="""
        assert agent.workspace is shared_workspace and execution.workspace is shared_workspace
        assert detached.workspace is None
        agent.close()
        shared_workspace.close()
        """,
    ),
    "workspace_provider": Sample(
        "agently-runtime-skill.txt",
        """
        Agently.workspace.register_backend_provider(name, factory)
        agent.use_workspace(root, provider=name, provider_options={"region": "eu"})
        """,
        anchors=["Agently.workspace.register_backend_provider(name, factory)",
                 "agent.use_workspace(root, provider=name, provider_options={...})"],
        setup="""
        import agently_core as Agently
        from agently_core.testing.memory_workspace import MemoryWorkspaceBackend
        made = []
        def factory(root, **options):
            made.append((root, options))
            return MemoryWorkspaceBackend()
        name, root = "remote-audit", "audit://bucket/run-1"
        agent = Agently.create_agent()
        """,
        check="""
        assert made == [("audit://bucket/run-1", {"region": "eu"})]
        assert isinstance(agent.workspace.backend, MemoryWorkspaceBackend)
        Agently.workspace.unregister_backend_provider(name)
        agent.workspace.close()
        agent.close()
        """,
    ),
    "workspace_durable_facts": Sample(
        "agently-runtime-skill.txt",
        """
        workspace = Agently.create_workspace("local", root=root)
        await workspace.put_record("observations", "o1", {"text": "3 tests fail"})
        await workspace.put_record("decisions", "d1", {"text": "fix the import first"})
        await workspace.link(("decisions", "d1"), ("observations", "o1"))
        await workspace.link_evidence(("decisions", "d1"), ("observations", "o1"),
                                      quote="3 tests fail")
        envelope = await workspace.ref_envelope("pytest output line\\n" * 2000)
        version = await workspace.put_snapshot("run-1", {"step": 1, "log": envelope})
        version = await workspace.put_snapshot("run-1", {"step": 2, "log": envelope},
                                               expected_state_version=version)
        await workspace.checkpoint("run-1", "after-step-2")
        latest = await workspace.latest_checkpoint("run-1")
        data = await workspace.get_data("run-1")
        lease = await workspace.claim_lease("run-1", ttl=30)
        lease = await workspace.heartbeat_lease(lease)
        released = await workspace.release_lease(lease)
        ref = await workspace.put_artifact_ref(b"a large durable payload")
        await workspace.append_runtime_event("exec-1", "evt-1",
                                             {"type": "step.done", "artifact_refs": [ref]})
        events = await workspace.query_runtime_events("exec-1")
        capabilities = workspace.capabilities()
        """,
        anchors=["workspace.link(...)", "workspace.link_evidence(...)",
                 "workspace.ref_envelope(...)", "workspace.latest_checkpoint(...)",
                 "workspace.get_data(...)", "workspace.capabilities()",
                 "workspace.put_snapshot(..., expected_state_version=...)",
                 "workspace.claim_lease(...)", "workspace.heartbeat_lease(...)",
                 "workspace.release_lease(...)", "workspace.put_artifact_ref(...)",
                 "workspace.append_runtime_event(...)", "workspace.query_runtime_events(...)"],
        setup="""
        import agently_core as Agently
        from agently_core.workspace import VersionConflict
        root = str(tmp / "facts")
        """,
        check="""
        assert envelope["size"] == len("pytest output line\\n") * 2000 and envelope["truncated"]
        assert data == {"step": 2, "log": envelope} and latest["label"] == "after-step-2"
        assert latest["data"] == data and released is True
        assert [e["payload"]["type"] for e in events] == ["step.done"]
        assert await workspace.read_artifact(ref) == b"a large durable payload"
        assert (await workspace.read_envelope(envelope)).count("pytest output line") == 2000
        assert [link["relation"] for link in await workspace.evidence(("decisions", "d1"))] \
            == ["evidence"]
        assert {"snapshots", "compare_and_set", "leases", "artifacts", "links"} <= capabilities
        try:
            await workspace.put_snapshot("run-1", {"step": 3}, expected_state_version=1)
        except VersionConflict:
            pass
        else:
            raise AssertionError("a stale expected_state_version must be refused")
        await workspace.aclose()
        """,
    ),
    "resume_ledger": Sample(
        "agently-runtime-skill.txt",
        """
        result = await execution.async_continue_with(
            "approved", resume_request_id="webhook-7f3a", actor="alice")
        """,
        anchors=["execution.async_continue_with(...)", "resume_request_id", "dispatch-failed"],
        setup="""
        import agently_core as Agently
        workspace = Agently.create_workspace("local", root=str(tmp / "ledger"))
        agent = Agently.create_agent()
        agent.approval.set_default("fail_closed")
        @agent.action_func(approval_required=True)
        def ship(version: str) -> str:
            \"\"\"Ship a release.\"\"\"
            return f"shipped {version}"
        agent.use_actions([ship])
        execution = agent.create_execution(workspace=workspace)
        paused = await agent.async_run("ship 1.2", execution=execution)
        assert paused.stop_reason == "approval_required"
        """,
        check="""
        assert result.stop_reason == "response"
        assert [r.result for r in result.records if r.action == "ship"][-1] == "shipped 1.2"
        ledger = await workspace.query_runtime_events(execution.id, limit=100)
        assert [(e["payload"]["phase"], e["payload"]["actor"]) for e in ledger
                if "phase" in e["payload"]] == [
            ("accepted", "alice"), ("dispatched", "alice"), ("completed", "alice")]
        again = await execution.async_continue_with("denied", resume_request_id="webhook-7f3a")
        assert again == result
        await agent.aclose()
        await workspace.aclose()
        """,
        replies=[Reply(tool_calls=[ToolCall("ship", {"version": "1.2"}, id="c1")]),
                 Reply(text="Shipped 1.2.")],
    ),
}


def _lines(code: str) -> list[str]:
    return [line.strip() for line in textwrap.dedent(code).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _reference_text() -> str:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.txt")))
    return re.sub(r"[ \t]+", " ", text)


def test_samples_are_the_reference_s() -> None:
    require(REFERENCE.is_dir(), f"the reference pages (shared/reference beside this checkout "
            f"or its origin, or AGENTLY_REFERENCE_DIR; looked at {REFERENCE})")
    text = _reference_text()
    for name, sample in SAMPLES.items():
        page = (REFERENCE / sample.page).read_text(encoding="utf-8")
        for anchor in sample.anchors:
            assert anchor in page, (name, sample.page, anchor)
        for line in [] if sample.anchors else _lines(sample.code):
            line = line.removeprefix("await ")
            assert re.sub(r"[ \t]+", " ", line) in text, (name, line)
            assert line.split("(")[0] in page, (name, sample.page, line)


async def _run(code: str, namespace: dict[str, Any]) -> None:
    compiled = compile(code, "<sample>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # the sample is this module's own text
    if result is not None:
        await result


def _program(sample: Sample) -> str:
    code = as_core(sample.code)
    if textwrap.dedent(sample.check).lstrip().startswith("except"):  # a sample that raises
        code = "try:\n" + textwrap.indent(code, "    ")
    return "\n".join([textwrap.dedent(sample.setup), code, textwrap.dedent(sample.check)])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_reference_sample_runs(name: str, agently_model_server, monkeypatch, capsys,
                               tmp_path) -> None:
    sample = SAMPLES[name]
    if sample.replies:
        server = agently_model_server(sample.replies)
        monkeypatch.setenv("AGENTLY_PLANNER", "openai_compatible")
        monkeypatch.setenv("AGENTLY_PLANNER_OPTION_MODEL", "m")
        monkeypatch.setenv("AGENTLY_PLANNER_OPTION_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": f"reference_{name}", "tmp": tmp_path,
                                 "printed": lambda: capsys.readouterr().out}
    program = _program(sample)
    if "await " in program:
        anyio.run(_run, program, namespace)
    else:
        exec(compile(program, f"<sample {name}>", "exec"), namespace)
