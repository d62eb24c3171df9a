"""Every registration hook, exercised for real by one plugin.

``PLUGIN`` below implements ten ``register_*`` hooks of :mod:`agently_core.hookspecs`
with small, working factories (``register_diagnostics`` has its own test module). The
test registers it in a plugin manager with autoload off, selects each registration by
configuration, and uses it: an action of kind ``echo``
from the plugin's action package runs through an agent whose runtime, flow and planner
come from the plugin, the plugin's approval handler decides, the plugin's observer sees
the events, the provider and workspace backend are created and driven through their
protocol methods, and the plugin's command runs from the command line's parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from agently_core import ActionDecision, ApprovalDecision, Config, PluginManager, create_agent
from agently_core.action_handlers import ActionPlanningRequest, ActionRunContext
from agently_core.hookspecs import hookimpl
from agently_core.models import ActionCall, FlowResult, FlowRound
from agently_core.protocols import (
    ActionExecutor,
    ActionFlow,
    ActionRuntime,
    ExecutionEnvironmentProvider,
    Planner,
    WorkspaceBackend,
)
from agently_core.workspace import REQUIRED_CAPABILITIES, VersionConflict

DIST = "agently-core-hooktest"

#: What the plugin's objects saw, reset for every test.
SEEN: dict[str, list[Any]] = {}


def _seen(key: str, value: Any) -> None:
    SEEN.setdefault(key, []).append(value)


# -- the factories ---------------------------------------------------------------------
class HookTestRuntime:
    """A tiny ActionRuntime: the planner answers ``{"calls": [...]}`` or a string."""

    name = "hooktest"
    planning_protocols = ("structured_plan",)

    async def plan(self, planner: Any, context: Mapping[str, Any],
                   request: Mapping[str, Any]) -> ActionDecision:
        _seen("runtime.plan", context["round_index"])
        raw = await planner.plan(context, request)
        return self.normalize(raw, protocol=request["planning_protocol"],
                              round_index=context["round_index"])

    def normalize(self, raw: Any, *, protocol: str = "structured_plan",
                  round_index: int | None = None) -> ActionDecision:
        if isinstance(raw, str):
            return ActionDecision(next_action="response", response=raw)
        calls = [ActionCall(action=c["action"], kwargs=c.get("kwargs", {}), source="model",
                            round_index=round_index) for c in raw["calls"]]
        return ActionDecision(next_action="execute", calls=calls)


class HookTestFlow:
    """A tiny ActionFlow: plan, dispatch the round through the dispatcher's gate, repeat."""

    name = "hooktest"

    async def run(self, run: Any) -> FlowResult:
        _seen("flow.run", run.request)
        result = FlowResult(request=run.request)
        for round_index in range(run.max_rounds):
            context = ActionRunContext(prompt=run.request, agent_name=run.agent_name,
                                       round_index=round_index, max_rounds=run.max_rounds,
                                       runtime=run.runtime)
            request = ActionPlanningRequest(action_list=run.action_list(),
                                            planning_protocol=run.planning_protocol)
            decision = await run.runtime.plan(run.planner, context, request)
            round_ = FlowRound(round_index=round_index, decision=decision)
            result.rounds.append(round_)
            if decision.next_action == "response":
                result.response = decision.response
                return result
            records = await run.dispatcher.dispatch_many(decision.calls,
                                                         concurrency=run.concurrency)
            round_.record_ids = [r.call_id for r in records]
            result.records.extend(records)
        result.stop_reason = "max_rounds"
        return result


class EchoExecutor:
    """Runs actions of kind ``echo``: returns the arguments and the spec's target."""

    kind = "echo"

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        _seen("executor.execute", spec.name)
        return {"echo": kwargs.get("text"), "target": context.target}


class ScratchProvider:
    """An environment provider of kind ``scratch``: a dict as the live resource."""

    kind = "scratch"

    async def ensure(self, requirement: Any) -> Any:
        _seen("provider.ensure", requirement.id)
        return {"requirement": requirement.id, "open": True}

    async def async_health_check(self, handle: Any) -> bool:
        return bool(handle.resource["open"])

    async def release(self, requirement: Any, resource: Any) -> None:
        resource["open"] = False
        _seen("provider.release", requirement.id)


class MemoryBackend:
    """An in-memory WorkspaceBackend."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.snapshots: dict[str, tuple[int, dict[str, Any]]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.closed = False

    def capabilities(self) -> frozenset[str]:
        return REQUIRED_CAPABILITIES

    async def put_record(self, collection: str, key: str, value: Mapping[str, Any]) -> None:
        self.records[(collection, key)] = dict(value)

    async def get_record(self, collection: str, key: str) -> dict[str, Any] | None:
        found = self.records.get((collection, key))
        return None if found is None else dict(found)

    async def read_snapshot(self, key: str) -> tuple[int, dict[str, Any]] | None:
        return self.snapshots.get(key)

    async def write_snapshot(self, key: str, value: Mapping[str, Any], *,
                             expected_state_version: int | None = None) -> int:
        current = self.snapshots.get(key, (0, {}))[0]
        if expected_state_version is not None and expected_state_version != current:
            raise VersionConflict(key, expected_state_version, current)
        self.snapshots[key] = (current + 1, dict(value))
        return current + 1

    async def append_event(self, execution_id: str, event_id: str,
                           payload: Mapping[str, Any]) -> int:
        log = self.events.setdefault(execution_id, [])
        for event in log:
            if event["event_id"] == event_id:
                return event["sequence"]
        log.append({"execution_id": execution_id, "event_id": event_id,
                    "sequence": len(log) + 1, "payload": dict(payload)})
        return len(log)

    async def read_events(self, execution_id: str, *, after: int = 0,
                          limit: int = 100) -> list[dict[str, Any]]:
        return [e for e in self.events.get(execution_id, []) if e["sequence"] > after][:limit]

    async def aclose(self) -> None:
        self.closed = True


def mount_echo_tools(agent: Any, **options: Any) -> list[str]:
    """The ``echo-tools`` action package: one ``echo`` action that needs approval."""
    _seen("package.mount", options)
    agent.action.register_action(
        {"name": "shout", "description": "Echo a text back.", "kind": "echo",
         "approval_required": True,
         "input_schema": {"type": "object", "properties": {"text": {"type": "string"}},
                          "required": ["text"], "additionalProperties": False}},
        target=options.get("target", "megaphone"),
    )
    return ["shout"]


def approver(context: Any, request: Any) -> Any:
    """Approves unless the text asks for a denial."""
    _seen("approval", (request.subject, request.details["kwargs"]))
    if request.details["kwargs"].get("text") == "deny me":
        return ApprovalDecision(request_id=request.id, decision="denied", reason="asked to")
    return "approved"


class HookTestPlanner:
    def __init__(self, **options: Any) -> None:
        self.options = options

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        _seen("planner.plan", [a["name"] for a in request["action_list"]])
        if context["round_index"] == 0:
            return {"calls": [{"action": "shout", "kwargs": {"text": "hello"}},
                              {"action": "shout", "kwargs": {"text": "deny me"}}]}
        return "finished"


def observer(event: Any) -> None:
    _seen("events", event.type)


def echo_command(parser: Any) -> Any:
    parser.add_argument("text", help="what to echo")

    def run(args: Any) -> int:
        _seen("command", args.text)
        return 7

    return run


# -- the plugin: ten hooks ----------------------------------------------------------
class AllHooksPlugin:
    @hookimpl
    def register_action_runtimes(self, register):
        register("hooktest", HookTestRuntime)

    @hookimpl
    def register_action_flows(self, register):
        register("hooktest", HookTestFlow)

    @hookimpl
    def register_action_executors(self, register):
        register("echo", EchoExecutor, kind="echo")

    @hookimpl
    def register_execution_environment_providers(self, register):
        register("scratch", f"{__name__}:ScratchProvider", kind="scratch")

    @hookimpl
    def register_workspace_backends(self, register):
        register("memory", MemoryBackend)

    @hookimpl
    def register_action_packages(self, register):
        register("echo-tools", mount_echo_tools, description="An echo action.")

    @hookimpl
    def register_policy_approval_handlers(self, register):
        register("hooktest-approver", approver)

    @hookimpl
    def register_planners(self, register):
        register("hooktest", HookTestPlanner)

    @hookimpl
    def register_event_observers(self, register):
        register("hooktest-observer", observer, events=("action.*", "policy.approval.*"))

    @hookimpl
    def register_commands(self, register):
        register("hooktest-echo", f"{__name__}:echo_command", help="echo a word")


PLUGIN = AllHooksPlugin()

ROLE_NAMES = {
    "action_runtime": "hooktest",
    "action_flow": "hooktest",
    "action_executor": "echo",
    "environment_provider": "scratch",
    "workspace_backend": "memory",
    "action_package": "echo-tools",
    "approval_handler": "hooktest-approver",
    "planner": "hooktest",
    "event_observer": "hooktest-observer",
    "command": "hooktest-echo",
}


@pytest.fixture
def pm(tmp_path):
    SEEN.clear()
    config = Config.load(env={}, cwd=tmp_path, overrides={
        "runtime": "hooktest", "flow": "hooktest", "planner": "hooktest",
        "approval_handler": "hooktest-approver", "workspace_backend": "memory",
        "providers": {"scratch": "scratch"},
    })
    manager = PluginManager(config, autoload=False)
    info = manager.register(PLUGIN, name="hooktest", distribution=DIST, version="0.0.1")
    assert info.status == "loaded", info.error
    return manager


def test_every_hook_registers(pm):
    info = pm.plugins["hooktest"]
    assert len(info.hooks) == 10
    for role, name in ROLE_NAMES.items():
        registration = pm.registrations(role)[name]
        assert registration.distribution == DIST
        assert registration.plugin == "hooktest"
    assert pm.registrations("action_executor")["echo"].kind == "echo"
    assert pm.registrations("environment_provider")["scratch"].kind == "scratch"
    assert pm.registrations("event_observer")["hooktest-observer"].options["events"] == (
        "action.*", "policy.approval.*")
    assert not pm.conflicts()


def test_runtime_flow_planner_package_executor_approval_observer(pm):
    agent = create_agent("hooks", plugins=pm)
    agent.use_actions("echo-tools", target="loudspeaker")
    assert [a["name"] for a in agent.action.get_action_info()] == ["shout"]
    assert SEEN["package.mount"] == [{"target": "loudspeaker"}]

    result = agent.run("say hello")

    assert isinstance(agent.runtime, HookTestRuntime)
    assert isinstance(agent.runtime, ActionRuntime)
    assert SEEN["flow.run"] == ["say hello"]
    assert SEEN["runtime.plan"] == [0, 1]
    assert SEEN["planner.plan"] == [["shout"], ["shout"]]
    assert result.response == "finished"

    hello, denied = result.records
    assert hello.status == "success", hello.error
    assert hello.result == {"echo": "hello", "target": "loudspeaker"}
    assert denied.status == "blocked"
    assert denied.error == "action 'shout' was denied: asked to"
    assert SEEN["executor.execute"] == ["shout"]  # the denied call never ran
    assert SEEN["approval"] == [("shout", {"text": "hello"}), ("shout", {"text": "deny me"})]
    assert agent.get_action_result() == result.records

    events = SEEN["events"]
    assert events.count("policy.approval.requested") == 2
    assert "policy.approval.approved" in events
    assert "policy.approval.denied" in events
    assert events.count("action.started") == 1
    assert events.count("action.completed") == 1
    assert agent.events.failures == []


def test_direct_call_uses_the_plugin_approver(pm):
    agent = create_agent(plugins=pm).use_actions("echo-tools")
    record = agent.action.execute_action("shout", {"text": "deny me"})
    assert record.status == "blocked"
    assert record.approval_request_id
    record = agent.action.execute_action("shout", {"text": "hi"})
    assert record.status == "success"
    assert record.result == {"echo": "hi", "target": "megaphone"}


def test_function_action_with_approval_required_goes_to_the_plugin_approver(pm):
    import agently_core_function.plugin

    pm.register(agently_core_function.plugin, name="function",
                distribution="agently-core-function")
    agent = create_agent(plugins=pm)

    @agent.action_func(approval_required=True)
    def remove(text: str) -> str:
        """Pretend to remove something."""
        return f"removed {text}"

    assert agent.action.execute_action("remove", {"text": "old"}).result == "removed old"
    assert agent.action.execute_action("remove", {"text": "deny me"}).status == "blocked"
    assert SEEN["approval"] == [("remove", {"text": "old"}), ("remove", {"text": "deny me"})]


def test_provider_from_the_plugin(pm):
    from agently_core import EnvironmentRequirement
    from agently_core.protocols import ProviderHandle

    provider = pm.create("environment_provider", kind="scratch")
    assert isinstance(provider, ScratchProvider)
    assert isinstance(provider, ExecutionEnvironmentProvider)
    requirement = EnvironmentRequirement(kind="scratch")

    async def lifecycle():
        resource = await provider.ensure(requirement)
        handle = ProviderHandle("envh_scratch", requirement, resource)
        assert await provider.async_health_check(handle)
        await provider.release(requirement, resource)
        assert not await provider.async_health_check(handle)

    anyio.run(lifecycle)
    assert SEEN["provider.ensure"] == SEEN["provider.release"] == [requirement.id]


def test_workspace_backend_from_the_plugin(pm):
    backend = pm.create("workspace_backend", path="/nowhere")
    assert isinstance(backend, MemoryBackend)
    assert isinstance(backend, WorkspaceBackend)
    assert backend.options == {"path": "/nowhere"}

    async def use():
        await backend.put_record("notes", "a", {"text": "hi"})
        assert await backend.get_record("notes", "a") == {"text": "hi"}
        assert await backend.get_record("notes", "missing") is None
        assert await backend.write_snapshot("s", {"v": 1}) == 1
        assert await backend.write_snapshot("s", {"v": 2}, expected_state_version=1) == 2
        with pytest.raises(VersionConflict):
            await backend.write_snapshot("s", {"v": 3}, expected_state_version=1)
        assert await backend.read_snapshot("s") == (2, {"v": 2})
        assert await backend.append_event("x", "e1", {"n": 1}) == 1
        assert await backend.append_event("x", "e1", {"n": 1}) == 1
        assert await backend.append_event("x", "e2", {"n": 2}) == 2
        assert [e["event_id"] for e in await backend.read_events("x", after=1)] == ["e2"]
        await backend.aclose()

    anyio.run(use)
    assert backend.closed
    assert backend.capabilities() >= REQUIRED_CAPABILITIES


def test_factories_satisfy_the_protocols(pm):
    assert isinstance(pm.create("action_runtime"), ActionRuntime)
    assert isinstance(pm.create("action_flow"), ActionFlow)
    assert isinstance(pm.create("action_executor", kind="echo"), ActionExecutor)
    assert isinstance(pm.create("planner"), Planner)


def test_command_from_the_plugin(pm):
    from agently_core.cli import build_parser

    args = build_parser(pm).parse_args(["hooktest-echo", "hi"])
    assert args.func(args) == 7
    assert SEEN["command"] == ["hi"]
