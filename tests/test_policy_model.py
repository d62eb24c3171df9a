"""Issue 3, point 4: the Policy model.

Every field validates; policy merges global -> agent -> spec -> call through a real agent
and the executor sees the effective policy; anything that comes from a model may only
narrow (host-only keys are ignored from a model altogether); and enforcement fails closed:
a constraint the executor does not enforce blocks the call instead of being ignored.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from agently_core import ActionCall, ActionSpec, Config, ConfigError, Policy
from agently_core.hookspecs import hookimpl

# -- helpers -----------------------------------------------------------------------------------

#: One restrictive value per constrainable field (what an executor must enforce).
RESTRICTIVE: dict[str, Any] = {
    "network": False,
    "workspace_roots": ["/srv/work"],
    "path_allow": ["*.txt"],
    "path_deny": ["*.key"],
    "command_allowlist": ["/usr/bin/ls"],
    "read_only": True,
    "allow_create": False,
    "allow_update": False,
    "allow_delete": False,
    "max_memory_bytes": 64 * 1024 * 1024,
    "max_cpu_seconds": 2.0,
    "max_processes": 4,
    "max_file_bytes": 1024,
    "max_workspace_bytes": 1 << 20,
    "env_passthrough": ["HOME"],
}
#: The value of each boolean constraint that grants rather than restricts.
PERMISSIVE: dict[str, Any] = {
    "network": True, "read_only": False, "allow_create": True, "allow_update": True,
    "allow_delete": True,
}


class EchoExecutor:
    """Executor for kind ``echo`` that enforces ``enforced_policy`` and records the policy
    and context of every call it runs."""

    kind = "echo"

    def __init__(self, enforced: frozenset[str] = frozenset({"network"})) -> None:
        self.enforced_policy = enforced
        self.calls: list[Any] = []

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        self.calls.append(context)
        return {"echo": kwargs, "network": context.policy.network}


class ExecutorPlugin:
    """A plugin *object* (not a module) registering named executors for their kinds."""

    def __init__(self, **executors: EchoExecutor) -> None:
        self.executors = executors

    @hookimpl
    def register_action_executors(self, register: Any) -> None:
        for name, executor in self.executors.items():
            register(name, (lambda e=executor: e), kind=name)


@pytest.fixture
def build(build_agent: Any) -> Any:
    """``build(*plugins, toml="", **create_agent_options)``: see ``build_agent`` in conftest."""
    return build_agent


def spy(agent: Any, name: str = "spy", **options: Any) -> list[Any]:
    """Register a function action that records the effective policy it receives."""
    seen: list[Any] = []

    def fn(action_context=None) -> str:
        seen.append(action_context.policy)
        return "ran"

    fn.__name__ = name
    agent.action_func(fn, name=name, **options)
    agent.use_actions(name)
    return seen


def echo_agent(build: Any, enforced: frozenset[str] = frozenset({"network"}), **options: Any
               ) -> tuple[Any, EchoExecutor]:
    executor = EchoExecutor(enforced)
    agent = build(ExecutorPlugin(echo=executor), **options)
    agent.action.register_action(ActionSpec(name="ping", kind="echo"), visible=True)
    return agent, executor


STRICT = frozenset(RESTRICTIVE)  # an executor that enforces every constraint


# -- every field validates ---------------------------------------------------------------------
BAD_VALUES: dict[str, list[Any]] = {
    "approval_mode": ["sometimes", "", 1, None, ["auto"]],
    "timeout_seconds": [0, -1, -0.5, "soon", [1], {"s": 1}, float("nan")],
    "max_output_bytes": [0, -5, 1.5, "lots", [10]],
    "network": ["maybe", 2, [True], {"on": True}],
    "workspace_roots": ["/srv", [1], [None], {"a": "/"}],
    "path_allow": ["*.txt", [1], [None]],
    "path_deny": ["*.key", [2], [None]],
    "command_allowlist": ["/bin/ls", [3], [None]],
    "read_only": ["maybe", 2, [True]],
    "allow_create": ["maybe", 2, [True]],
    "allow_update": ["maybe", 2, [True]],
    "allow_delete": ["maybe", 2, [True]],
    "max_memory_bytes": [0, -1, 1.5, "lots", [1]],
    "max_cpu_seconds": [0, -0.1, "long", [1]],
    "max_processes": [0, -3, 2.5, "many", [1]],
    "max_file_bytes": [0, -1, 0.5, "big", [1]],
    "max_workspace_bytes": [0, -1, 0.5, "huge", [1]],
    "env_passthrough": ["HOME", [1], [None], {"HOME": 1}],
}


def test_the_bad_value_table_covers_every_policy_field() -> None:
    assert set(BAD_VALUES) == set(Policy.model_fields)
    assert set(RESTRICTIVE) | Policy.DISPATCHER_ENFORCED == set(Policy.model_fields)


@pytest.mark.parametrize(("field", "value"),
                         [(f, v) for f, values in BAD_VALUES.items() for v in values])
def test_every_field_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Policy(**{field: value})
    with pytest.raises(ValueError):  # the host's merge validates the same way
        Policy().merge({field: value})


@pytest.mark.parametrize(("field", "value"), [*RESTRICTIVE.items(), *PERMISSIVE.items(),
                                              ("approval_mode", "always"),
                                              ("approval_mode", "never"),
                                              ("timeout_seconds", 0.01),
                                              ("max_output_bytes", 1)])
def test_every_field_accepts_good_values(field: str, value: Any) -> None:
    assert getattr(Policy(**{field: value}), field) == value
    assert getattr(Policy().merge({field: value}), field) == value


@pytest.mark.parametrize("field", ["timeout_seconds", "max_output_bytes", "max_memory_bytes",
                                   "max_cpu_seconds", "max_processes", "max_file_bytes"])
def test_numeric_limits_reject_booleans(field: str) -> None:
    with pytest.raises(ValidationError):
        Policy(**{field: True})


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Policy(sudo=True)
    with pytest.raises(ValueError, match="unknown policy key 'sudo'"):
        Policy().merge({"sudo": True})
    with pytest.raises(ValueError, match="unknown policy key 'sudo'"):
        Policy().merge({"sudo": True}, from_model=True)


def test_defaults_constrain_nothing() -> None:
    policy = Policy()
    assert policy.approval_mode == "auto"
    assert all(getattr(policy, f) is None for f in Policy.model_fields if f != "approval_mode")
    assert policy.constraints() == set()


def test_merge_returns_a_new_policy_and_never_mutates() -> None:
    base = Policy(timeout_seconds=5, path_deny=["*.key"])
    merged = base.merge({"timeout_seconds": 3, "path_deny": ["*.pem"]})
    assert merged is not base
    assert base.timeout_seconds == 5 and base.path_deny == ["*.key"]
    assert merged.timeout_seconds == 3 and merged.path_deny == ["*.key", "*.pem"]
    assert base.merge(None) is base and base.merge({}) is base
    narrowed = base.merge({"path_deny": ["*.pem"]}, from_model=True)
    assert base.path_deny == ["*.key"]  # the model's narrowing did not touch the base list
    assert narrowed.path_deny == ["*.key", "*.pem"]


def test_merge_accepts_a_policy_and_applies_only_its_set_fields() -> None:
    base = Policy(timeout_seconds=5, max_output_bytes=10)
    merged = base.merge(Policy(max_output_bytes=7))
    assert merged.timeout_seconds == 5 and merged.max_output_bytes == 7
    assert base.merge(Policy(max_output_bytes=99)).max_output_bytes == 10  # only narrows


# -- bad policies from the host fail where they are given ---------------------------------------
def test_bad_policy_in_configuration_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "agently.toml").write_text("[policy]\ntimeout_seconds = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid \\[policy\\]"):
        Config.load(env={}, cwd=tmp_path)
    (tmp_path / "agently.toml").write_text("[policy]\nsudo = true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sudo"):
        Config.load(env={}, cwd=tmp_path)


def test_bad_policy_given_to_the_agent_or_an_action_raises_at_once(build) -> None:
    with pytest.raises(ValueError):
        build(policy={"max_processes": 0})
    agent = build()
    with pytest.raises(ValueError):
        agent.action_func(lambda: 1, name="bad", policy={"network": "maybe"})
    with pytest.raises(ValueError):
        agent.action_func(lambda: 1, name="bad2", timeout=-3)
    with pytest.raises(ValueError):
        agent.action.register_action(ActionSpec(name="bad3", policy={"read_only": "x"}))
    with pytest.raises(ValueError):
        agent.set_policy(max_output_bytes=-1)
    assert "bad" not in agent.registry and "bad3" not in agent.registry


# -- merge global -> agent -> spec -> call ------------------------------------------------------
TOML = """
[policy]
timeout_seconds = 50
max_output_bytes = 5000
allow_delete = true
"""


def test_merge_order_global_agent_spec_call(build) -> None:
    agent = build(toml=TOML, policy={"timeout_seconds": 40, "max_output_bytes": 6000,
                                     "network": True})
    # the agent's layer narrows the configuration's; its permissive network grants nothing
    assert agent.policy == Policy(timeout_seconds=40, max_output_bytes=5000)
    seen = spy(agent, policy={"timeout_seconds": 30, "read_only": False})
    record = agent.action.execute_action("spy", timeout=20)
    assert record.status == "success", record.error
    effective = seen[-1]
    assert effective.timeout_seconds == 20  # call
    assert effective.read_only is False  # the package's own grant
    assert effective.max_output_bytes == 5000 and effective.network is None
    assert effective.allow_delete is None  # a permissive value in configuration grants nothing
    assert effective.approval_mode == "auto"  # default

    # without the call's override the spec's timeout applies; no layer widens an earlier one
    agent.action.execute_action("spy")
    assert seen[-1].timeout_seconds == 30
    wide = spy(agent, name="wide", timeout=120)
    agent.action.execute_action("wide")
    assert wide[-1].timeout_seconds == 40  # the agent's limit holds over the action's
    assert agent.action.execute_action("wide", timeout=200).status == "success"
    assert wide[-1].timeout_seconds == 40  # and over a host's call
    assert agent.action.execute_action("wide", timeout=3).status == "success"
    assert wide[-1].timeout_seconds == 3


def test_set_policy_applies_to_actions_already_called(build) -> None:
    agent = build(toml=TOML)
    seen = spy(agent)
    agent.action.execute_action("spy")
    assert seen[-1].timeout_seconds == 50
    agent.set_policy(timeout_seconds=7)
    agent.action.execute_action("spy")
    assert seen[-1].timeout_seconds == 7  # the cached merge was dropped


def test_the_effective_timeout_is_enforced(build) -> None:
    agent = build(toml=TOML)

    @agent.action_func(timeout=5)
    async def nap(seconds: float = 1.0) -> str:
        await anyio.sleep(seconds)
        return "woke"

    started = time.perf_counter()
    record = agent.action.execute_action("nap", {"seconds": 2}, timeout=0.05)
    assert record.status == "failed" and record.error_type == "TimeoutError"
    assert "0.05s" in record.error
    assert time.perf_counter() - started < 1.0


def test_executor_receives_the_effective_policy_in_its_context(build) -> None:
    agent, executor = echo_agent(build, toml=TOML, policy={"network": False})
    record = agent.action.execute_action("ping", {"x": 1}, timeout=3)
    assert record.status == "success", record.error
    assert record.result == {"echo": {"x": 1}, "network": False}
    context = executor.calls[-1]
    assert context.policy.network is False and context.policy.timeout_seconds == 3
    assert context.policy.max_output_bytes == 5000 and context.agent is agent
    assert context.call.id == record.call_id and context.spec.name == "ping"


# -- a model may only narrow --------------------------------------------------------------------
def narrowed(current: dict[str, Any], proposed: dict[str, Any]) -> Policy:
    return Policy(**current).merge(proposed, from_model=True)


@pytest.mark.parametrize("field", ["timeout_seconds", "max_output_bytes", "max_memory_bytes",
                                   "max_cpu_seconds", "max_processes", "max_file_bytes"])
def test_model_limits_take_the_minimum(field: str) -> None:
    assert getattr(narrowed({field: 10}, {field: 100}), field) == 10
    assert getattr(narrowed({field: 10}, {field: 3}), field) == 3
    assert getattr(narrowed({}, {field: 3}), field) == 3  # unset: the model may set a limit
    assert getattr(narrowed({field: 10}, {field: None}), field) == 10


def test_model_network_may_only_be_switched_off() -> None:
    assert narrowed({"network": True}, {"network": False}).network is False
    assert narrowed({"network": False}, {"network": True}).network is False
    assert narrowed({}, {"network": True}).network is None  # None -> True is a widening
    assert narrowed({}, {"network": False}).network is False
    assert narrowed({"network": True}, {"network": True}).network is True


def test_model_read_only_may_only_be_switched_on() -> None:
    assert narrowed({"read_only": False}, {"read_only": True}).read_only is True
    assert narrowed({"read_only": True}, {"read_only": False}).read_only is True
    assert narrowed({}, {"read_only": False}).read_only is None
    assert narrowed({}, {"read_only": True}).read_only is True


@pytest.mark.parametrize("field", ["allow_create", "allow_update", "allow_delete"])
def test_model_allow_flags_may_only_be_switched_off(field: str) -> None:
    assert getattr(narrowed({field: True}, {field: False}), field) is False
    assert getattr(narrowed({field: False}, {field: True}), field) is False
    assert getattr(narrowed({}, {field: True}), field) is None
    assert getattr(narrowed({}, {field: False}), field) is False


def test_model_path_deny_only_grows() -> None:
    assert narrowed({"path_deny": ["*.key"]}, {"path_deny": ["*.pem"]}).path_deny == [
        "*.key", "*.pem"]
    assert narrowed({"path_deny": ["*.key"]}, {"path_deny": []}).path_deny == ["*.key"]
    assert narrowed({"path_deny": ["*.key"]}, {"path_deny": ["*.key"]}).path_deny == ["*.key"]
    assert narrowed({}, {"path_deny": ["*.pem"]}).path_deny == ["*.pem"]


@pytest.mark.parametrize(("field", "value"), [
    ("approval_mode", "never"), ("approval_mode", "auto"), ("approval_mode", 42),
    ("workspace_roots", ["/"]), ("workspace_roots", None), ("workspace_roots", "garbage"),
    ("path_allow", ["**"]), ("path_allow", []), ("command_allowlist", ["/bin/sh"]),
    ("command_allowlist", None), ("env_passthrough", ["AWS_SECRET_ACCESS_KEY"]),
    ("env_passthrough", {"x": 1}),
])
def test_host_only_keys_are_ignored_from_a_model(field: str, value: Any) -> None:
    assert field in Policy.HOST_ONLY
    host = Policy(approval_mode="always", workspace_roots=["/srv"], path_allow=["*.txt"],
                  command_allowlist=["/usr/bin/ls"], env_passthrough=["HOME"])
    assert host.merge({field: value}, from_model=True) == host
    assert Policy().merge({field: value}, from_model=True) == Policy()  # not even to narrow


def test_host_only_set_is_what_the_issue_names() -> None:
    host_only = {"approval_mode", "workspace_roots", "path_allow", "command_allowlist",
                 "env_passthrough"}
    assert host_only == Policy.HOST_ONLY
    assert {"approval_mode", "timeout_seconds", "max_output_bytes"} == Policy.DISPATCHER_ENFORCED


@pytest.mark.parametrize("proposal", [
    {"timeout_seconds": "soon"}, {"timeout_seconds": -1}, {"timeout_seconds": 0},
    {"timeout_seconds": True}, {"timeout_seconds": [1]}, {"max_output_bytes": {"n": 1}},
    {"max_processes": 1.5}, {"max_memory_bytes": -10}, {"network": "no"}, {"network": 0},
    {"read_only": "yes"}, {"allow_delete": 1}, {"path_deny": "*.pem"}, {"path_deny": [1]},
    {"path_deny": {"a": 1}}, {"sudo": True},
])
def test_bad_model_values_are_rejected_by_merge(proposal: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Policy(timeout_seconds=5).merge(proposal, from_model=True)


# -- model narrowing through the dispatcher -----------------------------------------------------
@pytest.mark.anyio
async def test_model_call_narrowing_reaches_the_executor(build) -> None:
    agent, executor = echo_agent(
        build, STRICT,
        policy={"timeout_seconds": 10, "max_output_bytes": 1000, "network": True,
                "read_only": False, "allow_delete": True, "path_deny": ["*.key"],
                "max_memory_bytes": 1000, "workspace_roots": ["/srv"]})
    call = ActionCall(action="ping", source="model", policy={
        "timeout_seconds": 100, "max_output_bytes": 10, "network": False, "read_only": True,
        "allow_delete": False, "path_deny": ["*.pem"], "max_memory_bytes": 5000,
        "max_processes": 3,
        # host-only keys: ignored even though they look harmless
        "approval_mode": "never", "workspace_roots": ["/"], "path_allow": ["**"],
        "command_allowlist": ["/bin/sh"], "env_passthrough": ["AWS_SECRET_ACCESS_KEY"],
    })
    record = await agent.dispatcher.dispatch(call)
    assert record.status == "success", record.error
    policy = executor.calls[-1].policy
    assert policy.timeout_seconds == 10 and policy.max_output_bytes == 10
    assert policy.network is False and policy.read_only is True
    assert policy.allow_delete is False and policy.path_deny == ["*.key", "*.pem"]
    assert policy.max_memory_bytes == 1000 and policy.max_processes == 3
    assert policy.approval_mode == "auto" and policy.workspace_roots == ["/srv"]
    assert policy.path_allow is None and policy.command_allowlist is None
    assert policy.env_passthrough is None


@pytest.mark.anyio
async def test_model_call_cannot_widen_through_the_dispatcher(build) -> None:
    agent, executor = echo_agent(build, STRICT, policy={
        "network": False, "read_only": True, "allow_create": False, "timeout_seconds": 2,
        "path_deny": ["*.key"]})
    call = ActionCall(action="ping", source="model", policy={
        "network": True, "read_only": False, "allow_create": True, "timeout_seconds": 1e9,
        "path_deny": []})
    record = await agent.dispatcher.dispatch(call)
    assert record.status == "success", record.error
    policy = executor.calls[-1].policy
    assert policy.network is False and policy.read_only is True
    assert policy.allow_create is False and policy.timeout_seconds == 2
    assert policy.path_deny == ["*.key"]
    # a host's call cannot widen the layers above it either
    host = ActionCall(action="ping", source="host", policy={"network": True,
                                                            "timeout_seconds": 30})
    assert (await agent.dispatcher.dispatch(host)).status == "success"
    assert executor.calls[-1].policy.network is False
    assert executor.calls[-1].policy.timeout_seconds == 2


@pytest.mark.anyio
async def test_model_cannot_switch_network_on_from_unset(build) -> None:
    agent, executor = echo_agent(build)
    call = ActionCall(action="ping", source="model", policy={"network": True})
    assert (await agent.dispatcher.dispatch(call)).status == "success"
    assert executor.calls[-1].policy.network is None


@pytest.mark.anyio
async def test_model_cannot_lift_approval(build) -> None:
    agent = build(toml='approval_handler = "fail_closed"\n', policy={"approval_mode": "always"})
    seen = spy(agent)
    for mode in ("auto", "never"):
        call = ActionCall(action="spy", source="model", policy={"approval_mode": mode})
        record = await agent.dispatcher.dispatch(call)
        assert record.status == "approval_required"
    assert seen == []


@pytest.mark.anyio
@pytest.mark.parametrize("proposal", [
    {"timeout_seconds": "soon"}, {"timeout_seconds": -1}, {"timeout_seconds": 0},
    {"timeout_seconds": True}, {"max_processes": 2.5}, {"network": "off"}, {"network": 0},
    {"read_only": "yes"}, {"path_deny": "*.pem"}, {"path_deny": [None]}, {"sudo": True},
    {"max_output_bytes": {"n": 1}},
])
async def test_bad_model_policy_is_a_failed_record_never_an_exception(build, proposal) -> None:
    agent = build(policy={"timeout_seconds": 5})
    seen = spy(agent)
    events: list[str] = []
    agent.events.subscribe(lambda event: events.append(event.type))
    record = await agent.dispatcher.dispatch(
        ActionCall(action="spy", source="model", policy=proposal))
    assert record.status == "failed" and record.error_type == "PolicyError"
    assert "invalid policy for 'spy'" in record.error
    assert seen == [] and events == ["action.failed"]
    # the agent carries on
    assert (await agent.dispatcher.dispatch(ActionCall(action="spy"))).status == "success"


def test_model_policy_from_a_structured_plan_narrows(build) -> None:
    agent = build(policy={"timeout_seconds": 5})
    seen = spy(agent)

    @agent.action_func
    async def nap(seconds: float = 1.0) -> str:
        await anyio.sleep(seconds)
        return "woke"

    agent.use_actions("nap")
    agent.set_planner([{"next_action": "execute", "action_calls": [
        {"action_id": "spy", "action_input": {}, "policy": {
            "timeout_seconds": 100, "max_output_bytes": 50, "read_only": True,
            "approval_mode": "never", "workspace_roots": ["/"]}},
        {"action_id": "nap", "action_input": {"seconds": 2}, "policy": {"timeout_seconds": 0.05}},
        {"action_id": "spy", "action_input": {}, "policy": {"timeout_seconds": -1}},
    ]}])
    result = agent.run("go")
    narrowed_spy, napped, bad = result.records
    assert narrowed_spy.status == "blocked"
    assert narrowed_spy.error_type == "PolicyNotEnforceable"
    assert "read_only" in narrowed_spy.error  # the narrowing applied, and the function
    assert seen == []  # executor cannot enforce it: refused, not ignored
    assert napped.status == "failed" and napped.error_type == "TimeoutError"
    assert bad.status == "failed" and bad.error_type == "PolicyError"
    assert result.stop_reason == "response"


def test_model_policy_from_a_structured_plan_reaches_the_executor(build) -> None:
    agent, executor = echo_agent(build, policy={"network": True, "timeout_seconds": 5})
    agent.set_planner([{"next_action": "execute", "action_calls": [
        {"action_id": "ping", "action_input": {}, "policy": {
            "network": False, "timeout_seconds": 99, "approval_mode": "never"}},
    ]}])
    result = agent.run("go")
    assert [r.status for r in result.records] == ["success"]
    policy = executor.calls[-1].policy
    assert executor.calls[-1].call.source == "model"
    assert policy.network is False and policy.timeout_seconds == 5
    assert policy.approval_mode == "auto"


def test_scripted_plan_calls_carry_their_policy(build) -> None:
    agent, executor = echo_agent(build, policy={"network": True})
    agent.set_planner([[{"action": "ping", "kwargs": {}, "policy": {"network": False}}]])
    result = agent.run("go")
    assert [r.status for r in result.records] == ["success"]
    assert executor.calls[-1].policy.network is False


# -- fail closed: constraints the executor does not enforce block the call ----------------------
@pytest.mark.parametrize(("field", "value"), list(RESTRICTIVE.items()))
def test_function_action_with_an_unenforceable_constraint_is_blocked(build, field, value) -> None:
    agent = build(toml='approval_handler = "auto_approve"\n')
    seen = spy(agent, policy={field: value})
    events: list[str] = []
    agent.events.subscribe(lambda event: events.append(event.type))
    record = agent.action.execute_action("spy")
    assert record.status == "blocked"
    assert record.error_type == "PolicyNotEnforceable"
    assert field in record.error and "'function' executor" in record.error
    assert seen == []  # it never ran
    assert events == ["action.blocked"]


def test_blocked_record_names_every_unenforced_field(build) -> None:
    agent = build(policy={"network": False, "read_only": True, "max_memory_bytes": 1024,
                          "workspace_roots": ["/srv"], "timeout_seconds": 5})
    seen = spy(agent)
    record = agent.action.execute_action("spy")
    assert record.status == "blocked" and record.error_type == "PolicyNotEnforceable"
    for field in ("max_memory_bytes", "network", "read_only", "workspace_roots"):
        assert field in record.error
    assert "timeout_seconds" not in record.error  # enforced by the dispatcher
    assert seen == []


@pytest.mark.anyio
async def test_model_narrowing_to_an_unenforceable_constraint_is_blocked(build) -> None:
    agent = build()
    seen = spy(agent)
    record = await agent.dispatcher.dispatch(
        ActionCall(action="spy", source="model", policy={"network": False}))
    assert record.status == "blocked" and record.error_type == "PolicyNotEnforceable"
    assert "network" in record.error and seen == []
    assert (await agent.dispatcher.dispatch(ActionCall(action="spy", source="model"))
            ).status == "success"


def test_executor_that_enforces_network_runs_network_false(build) -> None:
    agent, executor = echo_agent(build, policy={"network": False})
    record = agent.action.execute_action("ping", {"q": 1})
    assert record.status == "success", record.error
    assert executor.calls[-1].policy.network is False
    assert record.result == {"echo": {"q": 1}, "network": False}
    # a constraint it does not claim is still refused
    agent.set_policy(read_only=True)
    record = agent.action.execute_action("ping")
    assert record.status == "blocked" and record.error_type == "PolicyNotEnforceable"
    assert "read_only" in record.error and "network" not in record.error
    assert "'echo' executor" in record.error
    assert len(executor.calls) == 1


@pytest.mark.parametrize(("field", "value"), [*PERMISSIVE.items(),
                                              ("timeout_seconds", 5),
                                              ("max_output_bytes", 1000),
                                              ("approval_mode", "auto")])
def test_permissive_values_are_not_constraints(build, field, value) -> None:
    agent = build(policy={field: value})
    seen = spy(agent)
    record = agent.action.execute_action("spy")
    assert record.status == "success", record.error
    # a permissive boolean from the agent's layer grants nothing (only a package's own
    # layer widens its executor's default); the rest arrive as set
    expected = None if field in PERMISSIVE else value
    assert getattr(seen[-1], field) == expected
    packaged = spy(agent, name="packaged", policy={field: value})
    assert agent.action.execute_action("packaged").status == "success"
    assert getattr(packaged[-1], field) == value


def test_a_later_layer_cannot_lift_a_constraint(build) -> None:
    agent = build(toml="[policy]\nnetwork = false\n")
    blocked = spy(agent, name="blocked")
    allowed = spy(agent, name="allowed", policy={"network": True})
    assert agent.action.execute_action("blocked").status == "blocked"
    # a later layer cannot lift an earlier layer's constraint: both are blocked
    assert agent.action.execute_action("allowed").status == "blocked"
    assert blocked == [] and allowed == []


# -- Policy.constraints() -----------------------------------------------------------------------
def test_constraints_of_each_restrictive_field() -> None:
    for field, value in RESTRICTIVE.items():
        assert Policy(**{field: value}).constraints() == {field}, field


def test_constraints_of_everything_restrictive() -> None:
    assert Policy(**RESTRICTIVE).constraints() == set(RESTRICTIVE)


def test_constraints_ignore_permissive_and_dispatcher_enforced_fields() -> None:
    assert Policy(**PERMISSIVE).constraints() == set()
    assert Policy(approval_mode="always", timeout_seconds=1,
                  max_output_bytes=1).constraints() == set()
    assert not Policy.DISPATCHER_ENFORCED & Policy(**RESTRICTIVE).constraints()


def test_empty_lists_still_constrain() -> None:
    # an empty allow list means "nothing": never treat it as "unconstrained"
    for field in ("workspace_roots", "path_allow", "command_allowlist", "env_passthrough"):
        assert Policy(**{field: []}).constraints() == {field}


def test_every_field_is_enforced_by_someone() -> None:
    """A field is enforced (by the dispatcher or, as a constraint, by the executor) or it
    does not exist: no field can be set to a restrictive value and silently ignored."""
    for field in Policy.model_fields:
        if field in Policy.DISPATCHER_ENFORCED:
            continue
        assert field in RESTRICTIVE, field
        assert field in Policy(**{field: RESTRICTIVE[field]}).constraints()
