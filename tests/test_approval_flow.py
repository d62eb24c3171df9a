"""Issue 3, point 5, end to end: policy approval through a real agent.

Handlers registered in code, from a plugin and by configuration; the four built-ins;
``approval_mode`` always/never; and environment requirements that need approval going
through the same handlers as actions.
"""

from __future__ import annotations

import functools
import io
import sys
import time
from typing import Any

import pytest

from agently_core import (
    ActionCall,
    ActionSpec,
    ApprovalDecision,
    ApprovalRequest,
    EnvironmentRequirement,
)
from agently_core.testing import MemoryProvider, make_plugin

# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard input is a pipe that would answer "y" if anybody read it."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))


@pytest.fixture
def provider() -> MemoryProvider:
    return MemoryProvider()


@pytest.fixture
def build(build_agent: Any, provider: MemoryProvider, no_terminal: None) -> Any:
    """``build(*plugins, toml="", **options)``: an agent (see ``build_agent`` in conftest)
    with the test's :class:`MemoryProvider` as kind ``memory``."""
    return functools.partial(build_agent, providers={"memory": lambda: provider})


def mount(agent: Any) -> list[str]:
    """``guarded`` needs approval, ``harmless`` does not; returns the list of what ran."""
    ran: list[str] = []

    @agent.action_func(approval_required=True)
    def guarded(target: str = "all", api_key: str = "") -> str:
        ran.append("guarded")
        return f"deleted {target}"

    @agent.action_func
    def harmless() -> str:
        ran.append("harmless")
        return "ok"

    agent.use_actions(["guarded", "harmless"])
    return ran


def recorder(answer: Any) -> tuple[list[tuple[Any, ApprovalRequest]], Any]:
    asked: list[tuple[Any, ApprovalRequest]] = []

    def handler(context: Any, request: ApprovalRequest) -> Any:
        asked.append((context, request))
        return answer

    return asked, handler


def env_action(agent: Any, **requirement: Any) -> list[Any]:
    """``uses_env`` needs a ``memory`` environment; returns the resources it saw."""
    seen: list[Any] = []

    def uses_env(action_context=None) -> str:
        seen.append(action_context.execution_environment_resources["box"])
        return "used"

    agent.action.register_action(
        ActionSpec(name="uses_env", execution_environments=[EnvironmentRequirement(
            kind="memory", resource_key="box", **requirement)]),
        target=uses_env)
    agent.registry.require("uses_env").injects_context = True
    return seen


# -- registering handlers ------------------------------------------------------------------------
def test_register_handler_and_set_default(build) -> None:
    agent = build()
    ran = mount(agent)
    asked, handler = recorder("approved")
    agent.approval.register_handler("mine", handler)
    agent.approval.set_default("mine")
    assert agent.approval.default == "mine"
    record = agent.action.execute_action("guarded", {"target": "tmp", "api_key": "sk-123456"},
                                         purpose="clean up")
    assert record.status == "success" and ran == ["guarded"]
    [(context, request)] = asked
    assert context is agent  # handlers get (context, request), the context is the agent
    assert isinstance(request, ApprovalRequest)
    assert request.subject_type == "action" and request.subject == "guarded"
    assert request.subject_id == record.call_id and request.reason == "clean up"
    assert request.details["source"] == "host"
    assert request.details["kwargs"] == {"target": "tmp", "api_key": "***"}
    assert agent.action.execute_action("harmless").status == "success"
    assert len(asked) == 1  # harmless needs no approval


def test_set_default_rejects_unknown_handlers(build) -> None:
    from agently_core import ConfigError

    agent = build()
    with pytest.raises(ConfigError, match="unknown approval handler 'nope'"):
        agent.approval.set_default("nope")
    assert agent.approval.default == "input_timeout_fail"


def test_default_handler_comes_from_configuration(build) -> None:
    agent = build(toml='approval_handler = "auto_approve"\n')
    ran = mount(agent)
    assert agent.approval.default == "auto_approve"
    assert agent.action.execute_action("guarded").status == "success"
    assert ran == ["guarded"]


def test_configured_handler_may_come_from_a_plugin(build) -> None:
    asked, handler = recorder(ApprovalDecision(request_id="x", decision="denied",
                                               reason="change freeze"))
    plugin = make_plugin(approval_handler={"change_board": handler})
    agent = build(plugin, toml='approval_handler = "change_board"\n')
    ran = mount(agent)
    record = agent.action.execute_action("guarded")
    assert record.status == "blocked" and record.error_type == "ApprovalDenied"
    assert "change freeze" in record.error
    assert ran == [] and [c for c, _ in asked] == [agent]


def test_configured_unknown_handler_blocks_with_a_clear_error(build) -> None:
    agent = build(toml='approval_handler = "no_such_handler"\n')
    ran = mount(agent)
    record = agent.action.execute_action("guarded")
    assert record.status == "blocked"
    assert "unknown approval handler 'no_such_handler'" in record.error
    assert "auto_approve" in record.error  # it lists what is registered
    assert ran == []


@pytest.mark.anyio
async def test_async_handlers_are_awaited(build) -> None:
    agent = build()
    ran = mount(agent)

    async def later(context: Any, request: ApprovalRequest) -> bool:
        return context is agent

    agent.approval.register_handler("later", later)
    agent.approval.set_default("later")
    record = await agent.action.async_execute_action("guarded")
    assert record.status == "success" and ran == ["guarded"]


# -- the built-in handlers ---------------------------------------------------------------------
def test_input_timeout_fail_is_the_default_and_denies_at_once_without_a_terminal(build) -> None:
    agent = build(toml="approval_timeout = 60\n")  # a terminal would be given a minute
    ran = mount(agent)
    assert agent.approval.default == "input_timeout_fail"
    started = time.perf_counter()
    record = agent.action.execute_action("guarded")
    elapsed = time.perf_counter() - started
    assert record.status == "blocked" and record.error_type == "ApprovalDenied"
    assert elapsed < 0.5
    assert ran == []
    assert sys.stdin.read() == "y\n"  # nobody read the pipe


def test_input_timeout_fail_denies_when_there_is_no_stdin(build, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    agent = build()
    ran = mount(agent)
    started = time.perf_counter()
    assert agent.action.execute_action("guarded").status == "blocked"
    assert time.perf_counter() - started < 0.5 and ran == []


def test_auto_approve(build) -> None:
    agent = build(toml='approval_handler = "auto_approve"\n')
    ran = mount(agent)
    record = agent.action.execute_action("guarded", {"target": "x"})
    assert record.status == "success" and record.result == "deleted x"
    assert record.approval_request_id is None and ran == ["guarded"]


def test_fail_closed_gives_an_approval_required_record(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    ran = mount(agent)
    events: list[Any] = []
    agent.events.subscribe(events.append)
    record = agent.action.execute_action("guarded", {"target": "x", "api_key": "sk-123456"},
                                         purpose="tidy")
    assert record.status == "approval_required"
    assert record.error_type == "ApprovalRequired"
    assert record.approval_request_id and record.approval_request_id.startswith("apr_")
    request = ApprovalRequest.model_validate(record.meta["approval_request"])
    assert request.id == record.approval_request_id
    assert request.subject_type == "action" and request.subject == "guarded"
    assert request.subject_id == record.call_id
    assert request.details["kwargs"] == {"target": "x", "api_key": "***"}
    assert ran == []
    assert [e.type for e in events] == ["policy.approval.requested", "policy.approval.pending",
                                        "action.approval_required"]
    assert {e.payload.get("request_id") or e.payload.get("approval_request_id")
            for e in events} == {record.approval_request_id}
    record.model_dump_json()  # serialisable, approval request included


def test_input_is_pending_without_a_terminal(build) -> None:
    agent = build(toml='approval_handler = "input"\n')
    ran = mount(agent)
    started = time.perf_counter()
    record = agent.action.execute_action("guarded")
    assert time.perf_counter() - started < 0.5
    assert record.status == "approval_required" and record.approval_request_id
    assert ran == []
    assert sys.stdin.read() == "y\n"


def test_input_asks_a_terminal(build, monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("yes\n"))
    agent = build(toml='approval_handler = "input"\n')
    ran = mount(agent)
    assert agent.action.execute_action("guarded").status == "success"
    assert ran == ["guarded"]


# -- approval_mode -----------------------------------------------------------------------------
def test_approval_mode_always_asks_for_every_call(build) -> None:
    agent = build(policy={"approval_mode": "always"})
    ran = mount(agent)
    asked, handler = recorder(True)
    agent.approval.register_handler("yes", handler)
    agent.approval.set_default("yes")
    records = agent.action.execute_actions([{"action": "harmless"}, {"action": "harmless"},
                                            {"action": "guarded"}])
    assert [r.status for r in records] == ["success"] * 3
    assert [request.subject for _, request in asked] == ["harmless", "harmless", "guarded"]
    assert len({request.subject_id for _, request in asked}) == 3  # one request per call
    assert sorted(ran) == ["guarded", "harmless", "harmless"]


def test_approval_mode_always_from_an_action_spec(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')

    @agent.action_func(policy={"approval_mode": "always"})
    def careful() -> str:
        return "done"

    mount(agent)
    assert agent.action.execute_action("careful").status == "approval_required"
    assert agent.action.execute_action("harmless").status == "success"


@pytest.mark.anyio
async def test_approval_mode_always_holds_for_model_calls(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n', policy={"approval_mode": "always"})
    ran = mount(agent)
    record = await agent.dispatcher.dispatch(
        ActionCall(action="harmless", source="model", policy={"approval_mode": "never"}))
    assert record.status == "approval_required" and ran == []


def test_approval_mode_never_blocks_without_asking(build) -> None:
    agent = build(policy={"approval_mode": "never"})
    ran = mount(agent)
    asked, handler = recorder(True)
    agent.approval.register_handler("yes", handler)
    agent.approval.set_default("yes")
    record = agent.action.execute_action("guarded")
    assert record.status == "blocked" and record.error_type == "ApprovalDenied"
    assert "approval_mode is 'never'" in record.error
    assert asked == [] and ran == []
    assert agent.action.execute_action("harmless").status == "success"  # needs no approval
    assert ran == ["harmless"]


def test_denied_and_pending_in_a_flow(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    ran = mount(agent)
    agent.set_planner([[{"action": "harmless", "kwargs": {}},
                        {"action": "guarded", "kwargs": {"target": "db"}}]])
    result = agent.run("clean")
    assert result.stop_reason == "approval_required"
    statuses = {r.action: r.status for r in result.records}
    assert statuses == {"harmless": "success", "guarded": "approval_required"}
    assert ran == ["harmless"]
    waiting = next(r for r in result.records if r.action == "guarded")
    assert agent.last_execution.paused
    assert [r.id for r in agent.last_execution.pending] == [waiting.approval_request_id]


# -- environment requirements go through the same handlers -------------------------------------
def test_environment_approved_by_the_agents_handler_starts(build, provider) -> None:
    agent = build()
    seen = env_action(agent, approval_required=True)
    asked, handler = recorder("approved")
    agent.approval.register_handler("yes", handler)
    agent.approval.set_default("yes")
    record = agent.action.execute_action("uses_env")
    assert record.status == "success", record.error
    [(context, request)] = asked
    assert context is agent
    assert request.subject_type == "environment" and request.subject == "memory"
    assert len(provider.started) == 1 and seen == provider.started
    assert provider.live == []  # action_call scope: released after the call


def test_environment_approved_by_the_configured_handler_starts(build, provider) -> None:
    agent = build(toml='approval_handler = "auto_approve"\n')
    env_action(agent, approval_required=True)
    record = agent.action.execute_action("uses_env")
    assert record.status == "success", record.error
    assert len(provider.started) == 1


def test_environment_denied_by_the_agents_handler_is_blocked(build, provider) -> None:
    agent = build()
    seen = env_action(agent, approval_required=True)
    asked, handler = recorder(ApprovalDecision(request_id="x", decision="denied",
                                               reason="no sandboxes today"))
    agent.approval.register_handler("no", handler)
    agent.approval.set_default("no")
    record = agent.action.execute_action("uses_env")
    assert record.status == "blocked" and record.error_type == "EnvironmentBlocked"
    assert "no sandboxes today" in record.error
    assert [c for c, _ in asked] == [agent]
    assert provider.started == [] and seen == []


def test_environment_pending_gives_an_approval_required_record(build, provider) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n')
    seen = env_action(agent, approval_required=True)
    record = agent.action.execute_action("uses_env")
    assert record.status == "approval_required" and record.error_type == "ApprovalRequired"
    request = ApprovalRequest.model_validate(record.meta["approval_request"])
    assert request.id == record.approval_request_id
    assert request.subject_type == "environment" and request.subject == "memory"
    assert provider.started == [] and seen == []


def everywhere(agent: Any, name: str, handler: Any = None) -> None:
    """Make ``name`` the default of the agent's and of its manager's PolicyApproval (for
    an agent that owns its manager they are one object), so these tests check the outcomes
    whichever of the two decides."""
    for approval in (agent.approval, agent.manager.approval):
        if handler is not None:
            approval.register_handler(name, handler)
        approval.set_default(name)


def test_environment_approved_starts(build, provider) -> None:
    agent = build()
    seen = env_action(agent, approval_required=True)
    asked, handler = recorder("approved")
    everywhere(agent, "yes", handler)
    events: list[str] = []
    agent.events.subscribe(lambda event: events.append(event.type))
    record = agent.action.execute_action("uses_env")
    assert record.status == "success", record.error
    [(context, request)] = asked
    assert context is agent
    assert request.subject_type == "environment" and request.subject == "memory"
    assert request.details["resource_key"] == "box" and request.details["scope"] == "action_call"
    assert len(provider.started) == 1 and seen == provider.started and provider.live == []
    assert events[:4] == ["action.started", "policy.approval.requested",
                          "policy.approval.approved", "execution_environment.ensuring"]


def test_environment_denied_is_blocked(build, provider) -> None:
    agent = build()
    seen = env_action(agent, approval_required=True)
    asked, handler = recorder(ApprovalDecision(request_id="x", decision="denied",
                                               reason="no sandboxes today"))
    everywhere(agent, "no", handler)
    record = agent.action.execute_action("uses_env")
    assert record.status == "blocked" and record.error_type == "EnvironmentBlocked"
    assert "no sandboxes today" in record.error
    assert [c for c, _ in asked] == [agent]
    assert provider.started == [] and seen == [] and agent.manager.list() == []


@pytest.mark.anyio
async def test_environment_pending_gives_approval_required(build, provider) -> None:
    agent = build()
    seen = env_action(agent, approval_required=True)
    everywhere(agent, "fail_closed")
    call = ActionCall(action="uses_env")
    record = await agent.dispatcher.dispatch(call)
    assert record.status == "approval_required" and record.error_type == "ApprovalRequired"
    request = ApprovalRequest.model_validate(record.meta["approval_request"])
    assert request.id == record.approval_request_id
    assert request.subject_type == "environment" and request.subject == "memory"
    assert request.subject_id.endswith(f"@{call.id}")  # action_call scope: owned by the call
    assert provider.started == [] and seen == [] and agent.manager.list() == []
    # a person approves that call's environment: running the same call again starts it
    agent.manager.grant(request.subject_id)
    assert (await agent.dispatcher.dispatch(call)).status == "success"
    assert len(provider.started) == 1 and provider.live == []
    # a grant is for that requirement only: another call asks again
    assert (await agent.dispatcher.dispatch(ActionCall(action="uses_env"))
            ).status == "approval_required"


def test_environment_denied_by_default_without_a_terminal(build, provider) -> None:
    agent = build()
    seen = env_action(agent, approval_required=True)
    started = time.perf_counter()
    record = agent.action.execute_action("uses_env")
    assert time.perf_counter() - started < 0.5
    assert record.status == "blocked" and record.error_type == "EnvironmentBlocked"
    assert provider.started == [] and seen == []
    assert agent.manager.list() == []


def test_environment_without_approval_required_is_not_asked(build, provider) -> None:
    agent = build()
    seen = env_action(agent)
    asked, handler = recorder("denied")
    agent.approval.register_handler("no", handler)
    agent.approval.set_default("no")
    assert agent.action.execute_action("uses_env").status == "success"
    assert asked == [] and len(seen) == 1


def test_environment_policy_approval_mode_never_blocks(build, provider) -> None:
    agent = build(toml='approval_handler = "auto_approve"\n')
    env_action(agent, approval_required=True, policy={"approval_mode": "never"})
    record = agent.action.execute_action("uses_env")
    assert record.status == "blocked" and "approval_mode is 'never'" in record.error
    assert provider.started == []


def test_agent_approval_mode_never_blocks_environments_without_asking(build, provider) -> None:
    agent = build(policy={"approval_mode": "never"})
    env_action(agent, approval_required=True)
    asked, handler = recorder("approved")
    agent.approval.register_handler("yes", handler)
    agent.approval.set_default("yes")
    record = agent.action.execute_action("uses_env")
    assert record.status == "blocked" and "approval_mode is 'never'" in record.error
    assert asked == [] and provider.started == []


def test_execution_environments_go_through_the_agents_handlers(build, provider) -> None:
    from agently_core.testing import run_async

    agent = build()
    asked, handler = recorder("approved")
    agent.approval.register_handler("yes", handler)
    agent.approval.set_default("yes")

    async def run() -> Any:
        execution = agent.create_execution(execution_environments=[
            {"kind": "memory", "resource_key": "box", "approval_required": True}])
        await execution.async_start()
        resources = dict(execution.resources)
        await execution.async_close()
        return resources

    resources = run_async(run)
    assert [c for c, _ in asked] == [agent]
    assert resources["box"] is provider.started[0]


def test_action_approval_mode_never_blocks_its_environments(build, provider) -> None:
    agent = build()
    asked, handler = recorder("approved")
    everywhere(agent, "yes", handler)

    @agent.action_func(policy={"approval_mode": "never"}, execution_environments=[
        EnvironmentRequirement(kind="memory", approval_required=True)])
    def strict_env() -> str:
        return "ran"

    record = agent.action.execute_action("strict_env")
    assert record.status == "blocked" and "approval_mode is 'never'" in record.error
    assert asked == [] and provider.started == []
