"""The Planner conformance suite itself: a planner that keeps the contract, a key
included, passes it whole; planners that break one part of it fail the check for that
part (so the suite can fail, and says why)."""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from typing import Any

import pytest

from agently_core.hookspecs import hookimpl
from agently_core.testing import PlannerConformance, StandIn
from agently_core.testing.model_servers import Reply
from agently_core.testing.planner_suite import NATIVE, CallableModel


class KeyedPlanner:
    """A planner with a key, driven by a CallableModel: what a model planner does
    without the HTTP. ``flaw`` breaks one part of the contract."""

    name = "keyed"

    def __init__(self, *, model: CallableModel, api_key_env: str = "KEYED_KEY",
                 planning_protocol: str = NATIVE, flaw: str | None = None) -> None:
        self.model = model
        self.key = os.environ[api_key_env]
        self.planning_protocol = planning_protocol
        self.flaw = flaw

    def bind(self, agent: Any) -> None:
        if self.flaw != "no_bind":
            agent.redactor.add(self.key)

    def __repr__(self) -> str:
        shown = self.key if self.flaw == "repr_leaks" else "***"
        return f"KeyedPlanner(key={shown})"

    async def plan(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        if self.flaw == "forgets_history":
            context = {**context, "history": []}
        try:
            raw = self.model.plan(context, {**request,
                                            "planning_protocol": self.planning_protocol})
        except Exception as exc:
            if self.flaw == "raw_errors":
                raise RuntimeError(f"HTTP failure: {exc}") from None
            raise
        if self.flaw == "renames_ids":
            for n, call in enumerate(raw.get("tool_calls") or ()):
                call["id"] = f"mine_{n}"
        return raw

    async def generate(self, context: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
        return self.model.generate(context, request)


def keyed_plugin(flaw: str | None) -> Any:
    def factory(**options: Any) -> KeyedPlanner:
        return KeyedPlanner(flaw=flaw, **options)

    plugin = types.ModuleType(f"keyed_plugin_{flaw}")

    @hookimpl
    def register_planners(register: Any) -> None:
        register("keyed", factory)

    plugin.register_planners = register_planners
    return plugin


class KeyedSuite(PlannerConformance):
    __test__ = False
    planner_name = "keyed"
    planner_plugin = keyed_plugin(None)
    api_key_env = "KEYED_CONFORMANCE_KEY"

    def start_model(self, replies: list[Reply]) -> StandIn:
        model = CallableModel(replies, name="keyed", api_key_env=self.api_key_env)
        return StandIn(options={"model": model, "api_key_env": self.api_key_env},
                       inputs=model.inputs)


class TestKeyedPlannerPassesTheSuite(KeyedSuite):
    """Collected: every check of the suite runs (the key checks included)."""

    __test__ = True


def check(flaw: str, test: str, monkeypatch: pytest.MonkeyPatch, *args: Any) -> None:
    """Run one check of the suite against a planner with ``flaw``."""
    suite_class = type(f"Flawed_{flaw}", (KeyedSuite,), {"planner_plugin": keyed_plugin(flaw)})
    suite = suite_class()
    suite.secret = "sk-conformance-" + os.urandom(8).hex()
    monkeypatch.setenv(KeyedSuite.api_key_env, suite.secret)
    getattr(suite, test)(*args)


def test_a_sound_planner_passes_the_checks_run_by_hand(monkeypatch) -> None:
    check("none", "test_the_key_is_bound_and_never_leaks", monkeypatch)
    check("none", "test_the_history_is_replayed_every_round", monkeypatch)


@pytest.mark.parametrize(("flaw", "test", "args", "needle"), [
    ("no_bind", "test_the_key_is_bound_and_never_leaks", (), "bind(agent) did not register"),
    ("repr_leaks", "test_the_key_is_bound_and_never_leaks", (), "the key is in repr"),
    ("forgets_history", "test_the_history_is_replayed_every_round", (),
     "is missing from the third request"),
    ("forgets_history", "test_the_history_survives_a_durable_resume", (),
     "is missing after the resume"),
    ("raw_errors", "test_a_model_failure_fails_the_run_clearly", ("unauthorized",),
     "something else than ModelError"),
    ("renames_ids", "test_calls_run_and_results_reach_the_model", (NATIVE,), "call_conf_1"),
])
def test_a_flawed_planner_fails_the_check_for_its_flaw(monkeypatch, flaw: str, test: str,
                                                       args: tuple[Any, ...],
                                                       needle: str) -> None:
    with pytest.raises(AssertionError) as caught:
        check(flaw, test, monkeypatch, *args)
    assert needle in str(caught.value)
