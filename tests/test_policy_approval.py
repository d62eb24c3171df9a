"""PolicyApproval: built-in handlers, registration, and fail-closed handling of handlers
that raise or answer nonsense."""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest

from agently_core import ApprovalDecision, ApprovalRequest, ConfigError, PolicyApproval
from agently_core import policy_approval as pa


def request() -> ApprovalRequest:
    return ApprovalRequest(subject_type="action", subject="delete_everything", reason="cleanup")


class FakeTerminal(io.StringIO):
    """A stdin that claims to be a terminal; ``readline`` may wait before answering."""

    def __init__(self, answer: str, delay: float = 0.0) -> None:
        super().__init__(answer)
        self.delay = delay
        self.released = threading.Event()

    def isatty(self) -> bool:
        return True

    def readline(self, *args) -> str:  # type: ignore[override]
        if self.delay:
            self.released.wait(self.delay)
        return super().readline(*args)


def builtins(default: str | None = None) -> PolicyApproval:
    """A PolicyApproval holding the built-in handlers, as an agent's plugin manager gives."""
    return PolicyApproval(default, handlers=dict(pa.BUILTIN_HANDLERS))


@pytest.fixture
def no_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))


# -- built-in handlers -----------------------------------------------------------------------
@pytest.mark.anyio
async def test_default_is_input_timeout_fail_and_denies_without_a_terminal(no_terminal) -> None:
    approval = builtins()
    assert approval.default == "input_timeout_fail"
    started = time.perf_counter()
    decision = await approval.decide(request())
    assert decision.decision == "denied"
    assert decision.reason == ""  # a real answer, not a handler failure
    assert not decision.approved
    assert time.perf_counter() - started < 0.2  # at once, nobody is asked


@pytest.mark.anyio
async def test_input_timeout_fail_asks_a_terminal(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal("yes\n"))
    assert await pa.input_timeout_fail(None, request()) == "approved"
    assert "Approve action 'delete_everything'? cleanup [y/N]" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    assert await pa.input_timeout_fail(None, request()) == "denied"


@pytest.mark.anyio
async def test_input_timeout_fail_denies_when_nobody_answers(monkeypatch) -> None:
    terminal = FakeTerminal("y\n", delay=1.0)
    monkeypatch.setattr(sys, "stdin", terminal)

    class Context:
        approval_timeout = 0.1

    started = time.perf_counter()
    try:
        assert await pa.input_timeout_fail(Context(), request()) == "denied"
    finally:
        terminal.released.set()
    assert time.perf_counter() - started < 0.6


@pytest.mark.anyio
async def test_input_handler_leaves_it_pending_without_a_terminal(no_terminal) -> None:
    decision = await builtins("input").decide(request())
    assert decision.decision == "pending", decision.reason


@pytest.mark.anyio
async def test_input_handler_asks_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal("y\n"))
    decision = await builtins("input").decide(request())
    assert decision.decision == "approved", decision.reason


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "expected"), [("auto_approve", "approved"), ("fail_closed", "pending")]
)
async def test_named_builtin_handlers(name, expected) -> None:
    approval = builtins(name)
    req = request()
    decision = await approval.decide(req)
    assert decision.decision == expected
    assert decision.request_id == req.id


# -- registration ----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_register_handler_and_set_default() -> None:
    approval = PolicyApproval()
    seen = []

    def approve_reads(context, req):
        seen.append((req.subject, context))
        return req.subject.startswith("read")

    approval.register_handler("reads_only", approve_reads)
    approval.set_default("reads_only")
    assert approval.default == "reads_only"
    assert (await approval.decide(request(), "ctx")).decision == "denied"
    read = ApprovalRequest(subject_type="action", subject="read_file")
    assert (await approval.decide(read)).decision == "approved"
    assert seen == [("delete_everything", "ctx"), ("read_file", None)]


@pytest.mark.anyio
async def test_async_handler_and_explicit_handler_argument() -> None:
    approval = PolicyApproval()

    async def later(context, req):
        return "pending"

    approval.register_handler("later", later)
    assert (await approval.decide(request(), handler="later")).decision == "pending"
    assert (await approval.decide(request(), handler=lambda c, r: "approved")).approved


@pytest.mark.anyio
async def test_handler_may_return_a_full_decision() -> None:
    req = request()
    decision = ApprovalDecision(request_id=req.id, decision="denied", reason="policy 7",
                                actor="alice")
    approval = PolicyApproval(handlers={"h": lambda c, r: decision}, default="h")
    assert await approval.decide(req) is decision


@pytest.mark.anyio
async def test_standalone_policy_approval_knows_the_builtins() -> None:
    approval = PolicyApproval("auto_approve")
    assert approval.handler("auto_approve") is pa.auto_approve
    assert (await approval.decide(request())).approved


def test_register_handler_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="callable"):
        PolicyApproval().register_handler("bad", "not callable")


def test_unknown_handler_name() -> None:
    approval = PolicyApproval()
    with pytest.raises(ConfigError) as info:
        approval.handler("nobody")
    assert "nobody" in str(info.value) and "auto_approve" in str(info.value)
    with pytest.raises(ConfigError):
        approval.set_default("nobody")
    assert approval.default == "input_timeout_fail"


@pytest.mark.anyio
async def test_unknown_default_handler_denies() -> None:
    decision = await PolicyApproval("typo_handler").decide(request())
    assert decision.decision == "denied"
    assert "typo_handler" in decision.reason


@pytest.mark.anyio
async def test_resolver_is_consulted_once() -> None:
    asked = []

    def resolve(name):
        asked.append(name)
        return (lambda c, r: "approved") if name == "from_plugin" else None

    approval = PolicyApproval("from_plugin", resolve=resolve)
    assert (await approval.decide(request())).approved
    assert (await approval.decide(request())).approved
    assert asked == ["from_plugin"]


# -- failures --------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_handler_that_raises_denies_with_the_reason() -> None:
    def broken(context, req):
        raise RuntimeError("approval service down")

    approval = PolicyApproval(handlers={"broken": broken}, default="broken")
    decision = await approval.decide(request())
    assert decision.decision == "denied"
    assert decision.reason == "approval handler failed: RuntimeError: approval service down"


@pytest.mark.anyio
async def test_async_handler_that_raises_denies() -> None:
    async def broken(context, req):
        raise KeyError("k")

    decision = await PolicyApproval(handlers={"b": broken}, default="b").decide(request())
    assert decision.decision == "denied" and "KeyError" in decision.reason


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [
    None, 42, "yes", "APPROVED",
    ["approved"],
    {"ok": True},
])
async def test_nonsense_answers_deny(answer) -> None:
    approval = PolicyApproval(handlers={"odd": lambda c, r: answer}, default="odd")
    decision = await approval.decide(request())
    assert decision.decision == "denied"
    assert "treated as denied" in decision.reason
    assert repr(answer) in decision.reason


@pytest.mark.anyio
@pytest.mark.parametrize(("answer", "expected"), [(True, "approved"), (False, "denied"),
                                                  ("approved", "approved"),
                                                  ("denied", "denied"), ("pending", "pending")])
async def test_accepted_answers(answer, expected) -> None:
    approval = PolicyApproval(handlers={"h": lambda c, r: answer}, default="h")
    decision = await approval.decide(request())
    assert decision.decision == expected and decision.reason == ""


def test_decisions_are_serialisable() -> None:
    req = request()
    decision = ApprovalDecision(request_id=req.id, decision="approved")
    assert ApprovalRequest.model_validate_json(req.model_dump_json()) == req
    assert ApprovalDecision.model_validate_json(decision.model_dump_json()) == decision


# -- the process-wide registry -----------------------------------------------------------------
@pytest.fixture
def process_registry(monkeypatch):
    """The module's process-wide handlers and default, emptied for the test and restored."""
    monkeypatch.setattr(pa, "_registered", {})
    monkeypatch.setattr(pa, "_process_default", None)


@pytest.mark.anyio
async def test_process_wide_handlers_reach_every_approval(process_registry, make_agent) -> None:
    pa.register_handler("reviewer", lambda context, request: "pending")
    agent = make_agent()
    standalone = PolicyApproval()
    assert (await agent.approval.decide(request(), handler="reviewer")).decision == "pending"
    assert (await standalone.decide(request(), handler="reviewer")).decision == "pending"
    # an agent's own handler of the same name wins for that agent only
    agent.approval.register_handler("reviewer", lambda context, request: True)
    assert (await agent.approval.decide(request(), handler="reviewer")).decision == "approved"
    assert (await standalone.decide(request(), handler="reviewer")).decision == "pending"
    # a later process-wide registration replaces the earlier one everywhere it is used
    pa.register_handler("reviewer", lambda context, request: False)
    assert (await standalone.decide(request(), handler="reviewer")).decision == "denied"
    agent.close()


@pytest.mark.anyio
async def test_process_wide_default(process_registry, make_agent, no_terminal) -> None:
    assert pa.get_default() == "input_timeout_fail"
    pa.configure_policy_approval(handler="auto_approve")
    agent, configured = make_agent(), make_agent(approval_handler="fail_closed")
    assert pa.get_default() == agent.approval.default == agent.manager.approval.default == "auto_approve"
    assert (await agent.approval.decide(request())).decision == "approved"
    # configuration and an explicit set_default on the object win over the process default
    assert configured.approval.default == "fail_closed"
    assert (await configured.approval.decide(request())).decision == "pending"
    own = PolicyApproval()
    own.set_default("input")
    assert own.default == "input"
    pa.configure_policy_approval(handler=None)
    assert agent.approval.default == "input_timeout_fail"
    assert (await agent.approval.decide(request())).decision == "denied"  # no terminal
    agent.close()
    configured.close()


def test_process_wide_registration_rejects_bad_input(process_registry) -> None:
    with pytest.raises(ConfigError, match=r"unknown approval handler 'nobody'.*auto_approve"):
        pa.configure_policy_approval(handler="nobody")
    assert pa.get_default() == "input_timeout_fail"  # unchanged
    with pytest.raises(TypeError, match="must be callable"):
        pa.register_handler("x", "not callable")
    with pytest.raises(TypeError, match="non-empty name"):
        pa.register_handler("", auto_approve_like)
    assert pa._registered == {}


def auto_approve_like(context, request) -> bool:
    return True
