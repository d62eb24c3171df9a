"""The executor conformance suite itself: an executor backed by an environment that runs
no code (an MCP-like session executor on the counting ``memory`` provider) passes it with
its provider, and executors or providers with a flaw fail the case for that flaw."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from agently_core.errors import ActionError
from agently_core.models import ActionSpec, EnvironmentRequirement
from agently_core.testing import ExecutorConformance, MemoryProvider
from agently_core.testing.memory_provider import MemoryResource

SCHEMAS = {
    "echo": {"message": {"type": "string"}},
    "raises": {"message": {"type": "string"}},
    "slow": {"seconds": {"type": "number"}},
    "concurrent": {"seconds": {"type": "number"}, "message": {"type": "string"}},
}


class SessionExecutor:
    """Calls a "tool" of the session its environment holds, like an MCP executor: the
    tool is ``spec.meta["tool"]``; nothing is run as code."""

    kind = "session"

    async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
        session = context.execution_environment_resources.get("session")
        if not isinstance(session, MemoryResource):
            raise ActionError(f"{spec.name!r} has no session")
        tool = spec.meta["tool"]
        if tool == "echo":
            return kwargs["message"]
        if tool == "raises":
            raise ActionError(kwargs["message"])
        await anyio.sleep(kwargs["seconds"])
        return kwargs.get("message", "finished")


def session_action(scenario: str, scope: str, **config: Any) -> tuple[ActionSpec, None]:
    schema = {"type": "object", "properties": SCHEMAS[scenario],
              "required": sorted(SCHEMAS[scenario]), "additionalProperties": False}
    requirement = EnvironmentRequirement(kind="memory", scope=scope, resource_key="session",
                                         config=config)
    return ActionSpec(name=f"tool_{scenario}", kind="session", input_schema=schema,
                      execution_environments=[requirement], meta={"tool": scenario}), None


class TestSessionExecutorConformance(ExecutorConformance):
    """One session per agent, reused by every call."""

    kind = "session"
    scope: ClassVar[str] = "agent"

    def make_executor(self) -> SessionExecutor:
        return SessionExecutor()

    def make_provider(self) -> MemoryProvider:
        return MemoryProvider()

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        return session_action(scenario, self.scope)


class TestPerCallSessionExecutorConformance(TestSessionExecutorConformance):
    """A session per call, released when the call ends (or is cancelled)."""

    scope = "action_call"


# -- flawed executors and providers fail the case for their flaw ------------------------------
def run_case(suite: type[ExecutorConformance], case: str, tmp_path: Path) -> None:
    instance = suite()
    instance.tmp_path = tmp_path
    getattr(instance, case)()


def fails(suite: type[ExecutorConformance], case: str, tmp_path: Path) -> str:
    with pytest.raises((AssertionError, pytest.fail.Exception)) as caught:
        run_case(suite, case, tmp_path)
    return str(caught.value)


class BlocksTheLoop(TestSessionExecutorConformance):
    """Sleeps in ``execute`` without awaiting: cancellation cannot reach it."""

    __test__ = False
    slow_seconds = 1.5
    timeout_seconds = 0.2
    deadline_grace = 0.5

    def make_executor(self) -> Any:
        class Blocking(SessionExecutor):
            async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
                if spec.meta["tool"] == "slow":
                    time.sleep(kwargs["seconds"])
                    return "finished"
                return await super().execute(spec, kwargs, context)

        return Blocking()


def test_an_executor_that_ignores_cancellation_fails(tmp_path: Path) -> None:
    message = fails(BlocksTheLoop, "test_a_caller_that_gives_up_ends_the_call", tmp_path)
    assert "does not honour cancellation" in message


class AcceptsAnything(TestSessionExecutorConformance):
    """No input schema, and an echo that answers whatever it is given."""

    __test__ = False

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        spec, _ = super().make_action(scenario)
        return spec.model_copy(update={"input_schema": {"type": "object"}}), None

    def make_executor(self) -> Any:
        class Lenient(SessionExecutor):
            async def execute(self, spec: Any, kwargs: dict[str, Any], context: Any) -> Any:
                if spec.meta["tool"] == "echo":
                    return kwargs.get("message", "")
                return await super().execute(spec, kwargs, context)

        return Lenient()


def test_an_action_that_takes_any_arguments_fails(tmp_path: Path) -> None:
    message = fails(AcceptsAnything, "test_bad_kwargs_give_a_clear_error", tmp_path)
    assert "without its arguments ['message'] gave success" in message


class NeverHealthy(TestSessionExecutorConformance):
    """A provider whose health check fails a live resource: every reuse restarts it."""

    __test__ = False

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        return session_action(scenario, self.scope, unhealthy=True)


def test_a_provider_that_fails_its_health_check_fails(tmp_path: Path) -> None:
    message = fails(NeverHealthy, "test_environments_are_reused_and_released", tmp_path)
    assert "failed their health check on reuse" in message


class ReleaseFails(TestSessionExecutorConformance):
    """A provider whose ``release`` raises."""

    __test__ = False

    def make_provider(self) -> Any:
        class Broken(MemoryProvider):
            async def release(self, requirement: Any, resource: Any) -> None:
                raise RuntimeError("cannot close the session")

        return Broken()


def test_a_provider_whose_release_fails_fails(tmp_path: Path) -> None:
    message = fails(ReleaseFails, "test_environments_are_reused_and_released", tmp_path)
    assert "cannot close the session" in message


class NoProvider(ExecutorConformance):
    """Actions that declare an environment, and no provider for it."""

    __test__ = False
    kind = "session"

    def make_executor(self) -> SessionExecutor:
        return SessionExecutor()

    def make_action(self, scenario: str) -> tuple[ActionSpec, None]:
        return session_action(scenario, "agent")


def test_environment_actions_without_their_provider_fail_clearly(tmp_path: Path) -> None:
    message = fails(NoProvider, "test_round_trip_through_dispatcher", tmp_path)
    assert "make_provider()" in message
    assert NoProvider.test_environments_are_reused_and_released is None  # not generated


class EchoOnly(TestSessionExecutorConformance):
    __test__ = False
    scenarios = ("echo",)


def test_the_required_scenarios_are_checked(tmp_path: Path) -> None:
    message = fails(EchoOnly, "test_exception_becomes_failed_record", tmp_path)
    assert "must include ['raises']" in message


class NoSlowScenario(TestSessionExecutorConformance):
    __test__ = False
    scenarios = ("echo", "raises", "concurrent")


def test_cases_for_missing_scenarios_are_not_generated(tmp_path: Path) -> None:
    assert NoSlowScenario.test_timeout_holds is None
    assert NoSlowScenario.test_a_caller_that_gives_up_ends_the_call is None
    run_case(NoSlowScenario, "test_concurrent_calls_do_not_block_each_other", tmp_path)
