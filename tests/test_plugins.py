"""PluginManager: discovery through real entry points (fake *.dist-info folders on
sys.path), failure reporting, allow/block/autoload, lazy factories, conflicts, clear
"not installed" errors, and swapping the ActionRuntime by configuration alone."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import pytest

from agently_core import (
    Config,
    NotInstalledError,
    PluginConflictError,
    PluginError,
    PluginManager,
    create_agent,
)

# A real, small ActionRuntime. {tag} is filled in per distribution: the runtime marks every
# call's purpose and the final response with it, so a run shows which runtime planned it.
TAGGING_RUNTIME = '''
from agently_core.models import ActionCall, ActionDecision

TAG = "{tag}"


class TaggingRuntime:
    name = TAG
    planning_protocols = ("structured_plan",)

    async def plan(self, planner, context, request):
        raw = await planner.plan(context, request)
        return self.normalize(raw, protocol="structured_plan",
                              round_index=context.get("round_index"))

    def normalize(self, raw, *, protocol="structured_plan", round_index=None):
        if isinstance(raw, str):
            raw = {{"next_action": "response", "response": raw}}
        if raw.get("next_action") == "response":
            return ActionDecision(next_action="response", response=f"{{TAG}}:{{raw['response']}}",
                                  protocol=protocol)
        calls = [
            ActionCall(action=c["action_id"], kwargs=c.get("action_input", {{}}), source="model",
                       round_index=round_index, purpose=f"planned by {{TAG}}")
            for c in raw["action_calls"]
        ]
        return ActionDecision(next_action="execute", calls=calls, protocol=protocol)
'''

RUNTIME_PLUGIN = '''
from agently_core.hookspecs import hookimpl


@hookimpl
def register_action_runtimes(register):
    register("{name}", "{package}.runtime:TaggingRuntime")
'''


def install_runtime(install: Callable[..., Any], dist: str, package: str, name: str,
                    tag: str | None = None, entry_point: str | None = None) -> None:
    install(dist, entry_points={entry_point or package: f"{package}.plugin"}, modules={
        f"{package}.plugin": RUNTIME_PLUGIN.format(name=name, package=package),
        f"{package}.runtime": TAGGING_RUNTIME.format(tag=tag or name),
    })


# -- discovery ---------------------------------------------------------------------------
def test_installed_plugins_are_discovered(make_plugins) -> None:
    pm = make_plugins()
    plugins = {p.name: p for p in pm.iter_plugins()}
    assert plugins["runtime"].distribution == "agently-core-runtime"
    assert plugins["runtime"].status == "loaded"
    assert plugins["runtime"].registrations["action_runtime"] == ["agently"]
    assert plugins["function"].distribution == "agently-core-function"
    assert "register_action_executors" in plugins["function"].hooks
    assert plugins["agently-core"].status == "loaded"  # the core's own approval handlers
    assert set(pm.registrations("approval_handler")) >= {"auto_approve", "fail_closed",
                                                         "input_timeout_fail", "input"}


def test_fake_distribution_is_discovered_with_name_and_version(make_plugins,
                                                               fake_distributions) -> None:
    install_runtime(fake_distributions, "agently-core-alpha", "pt_alpha", "alpha")
    pm = make_plugins()
    info = pm.plugins["pt_alpha"]
    assert (info.distribution, info.version, info.status) == ("agently-core-alpha", "1.0.0",
                                                              "loaded")
    assert info.module == "pt_alpha.plugin"
    registration = pm.get("action_runtime", "alpha")
    assert registration.distribution == "agently-core-alpha"
    assert registration.source == "agently-core-alpha 1.0.0"
    row = next(r for r in pm.report() if r["name"] == "pt_alpha")
    assert row["roles"] == {"action_runtime": ["alpha"]}
    assert row["hooks"] == ["register_action_runtimes"]
    assert row["error"] is None


def test_plugin_that_fails_to_import_is_listed_and_others_load(make_plugins,
                                                               fake_distributions) -> None:
    fake_distributions("agently-core-broken", entry_points={"broken": "pt_broken.plugin"},
                       modules={"pt_broken.plugin": "raise ImportError('needs libfoo >= 9')\n"})
    fake_distributions("agently-core-missing", entry_points={"missing": "pt_not_there.plugin"})
    install_runtime(fake_distributions, "agently-core-alpha", "pt_alpha", "alpha")
    pm = make_plugins()
    broken = pm.plugins["broken"]
    assert broken.status == "failed"
    assert broken.distribution == "agently-core-broken"
    assert "ImportError" in broken.error and "needs libfoo >= 9" in broken.error
    missing = pm.plugins["missing"]
    assert missing.status == "failed" and "ModuleNotFoundError" in missing.error
    # every other plugin still loaded
    assert pm.plugins["pt_alpha"].status == "loaded"
    assert pm.plugins["runtime"].status == "loaded"
    assert pm.get("action_runtime", "alpha").distribution == "agently-core-alpha"
    rows = {r["name"]: r for r in pm.report()}
    assert rows["broken"]["status"] == "failed" and "libfoo" in rows["broken"]["error"]
    # and a "not installed" message mentions the plugin that failed to load
    with pytest.raises(NotInstalledError, match="failed to load: broken"):
        pm.get("action_runtime", "nope")


def test_hook_that_raises_is_reported_and_registers_nothing(make_plugins,
                                                            fake_distributions) -> None:
    fake_distributions("agently-core-raiser", entry_points={"raiser": "pt_raiser.plugin"},
                       modules={"pt_raiser.plugin": '''
from agently_core.hookspecs import hookimpl

@hookimpl
def register_planners(register):
    register("half-done", "pt_raiser.x:Planner")

@hookimpl
def register_action_runtimes(register):
    raise RuntimeError("kaboom")
'''})
    install_runtime(fake_distributions, "agently-core-alpha", "pt_alpha", "alpha")
    pm = make_plugins()
    info = pm.plugins["raiser"]
    assert info.status == "failed"
    assert info.distribution == "agently-core-raiser"
    assert "register_action_runtimes raised RuntimeError: kaboom" in info.error
    assert "half-done" not in pm.registrations("planner")  # nothing half-registered
    assert "alpha" in pm.registrations("action_runtime")


def test_bad_registration_is_reported(make_plugins, fake_distributions) -> None:
    fake_distributions("agently-core-sloppy", entry_points={"sloppy": "pt_sloppy.plugin"},
                       modules={"pt_sloppy.plugin": '''
from agently_core.hookspecs import hookimpl

@hookimpl
def register_planners(register):
    register("lazy", "no_colon_here")
'''})
    pm = make_plugins()
    assert pm.plugins["sloppy"].status == "failed"
    assert "module:attribute" in pm.plugins["sloppy"].error
    assert pm.plugins["runtime"].status == "loaded"


def test_load_is_idempotent(make_plugins) -> None:
    pm = make_plugins()
    before = dict(pm.plugins)
    assert pm.load() is pm
    assert pm.plugins == before


def test_register_in_code() -> None:
    from agently_core.hookspecs import hookimpl

    class Local:
        @hookimpl
        def register_planners(self, register):
            register("inline", lambda **kw: "a planner")

    pm = PluginManager(Config(), autoload=False).load()
    info = pm.register(Local(), name="local", distribution="my-app")
    assert info.status == "loaded"
    assert pm.create("planner", "inline") == "a planner"
    assert pm.get("planner", "inline").source == "my-app"


def test_unknown_role_is_an_error(make_plugins) -> None:
    with pytest.raises(PluginError, match="unknown role 'runtimes'"):
        make_plugins().get("runtimes", "agently")


# -- allow, block, autoload --------------------------------------------------------------
@pytest.fixture
def alpha_beta(fake_distributions):
    install_runtime(fake_distributions, "agently-core-alpha", "pt_alpha", "alpha",
                    entry_point="alpha")
    install_runtime(fake_distributions, "agently-core-beta", "pt_beta", "beta",
                    entry_point="beta")


def test_block_list_by_entry_point_name(make_plugins, alpha_beta) -> None:
    pm = make_plugins(env={"AGENTLY_PLUGINS_BLOCK": "beta"})
    assert pm.plugins["beta"].status == "blocked"
    assert "pt_beta" not in sys.modules  # a blocked plugin is not even imported
    assert set(pm.registrations("action_runtime")) == {"agently", "alpha"}
    with pytest.raises(NotInstalledError, match="blocked or not allowed: beta"):
        pm.get("action_runtime", "beta")


def test_block_list_by_distribution_name(make_plugins, alpha_beta) -> None:
    pm = make_plugins(plugins={"block": ["agently-core-alpha", "agently-core-function"]})
    assert pm.plugins["alpha"].status == "blocked"
    assert pm.plugins["function"].status == "blocked"
    assert pm.plugins["beta"].status == "loaded"
    assert "function" not in {r.kind for r in pm.registrations("action_executor").values()}


def test_allow_list_by_entry_point_name(make_plugins, alpha_beta) -> None:
    pm = make_plugins(env={"AGENTLY_PLUGINS_ALLOW": "alpha,function"})
    statuses = {name: info.status for name, info in pm.plugins.items()}
    assert statuses["alpha"] == "loaded" and statuses["function"] == "loaded"
    assert statuses["beta"] == "not_allowed" and statuses["runtime"] == "not_allowed"
    assert statuses["agently-core"] == "loaded"  # the core's own plugin is always there
    assert set(pm.registrations("action_runtime")) == {"alpha"}


def test_allow_list_by_distribution_name(make_plugins, alpha_beta) -> None:
    pm = make_plugins(plugins={"allow": ["agently-core-beta"]})
    assert pm.plugins["beta"].status == "loaded"
    assert pm.plugins["alpha"].status == "not_allowed"
    assert set(pm.registrations("action_runtime")) == {"beta"}


def test_block_beats_allow(make_plugins, alpha_beta) -> None:
    pm = make_plugins(env={"AGENTLY_PLUGINS_ALLOW": "alpha", "AGENTLY_PLUGINS_BLOCK": "alpha"})
    assert pm.plugins["alpha"].status == "blocked"


def test_constructor_arguments_override_config(load_config, alpha_beta) -> None:
    config = load_config(env={"AGENTLY_PLUGINS_BLOCK": "alpha"})
    pm = PluginManager(config, block=[], allow=["alpha"]).load()
    assert pm.plugins["alpha"].status == "loaded"
    assert pm.plugins["beta"].status == "not_allowed"


@pytest.mark.parametrize(
    ("env", "settings"),
    [
        ({"AGENTLY_PLUGINS_AUTOLOAD": "0"}, {}),
        ({"AGENTLY_DISABLE_PLUGIN_AUTOLOAD": "1"}, {}),
        ({}, {"plugins": {"autoload": False}}),
    ],
)
def test_autoload_off(make_plugins, alpha_beta, env, settings) -> None:
    pm = make_plugins(env=env, **settings)
    assert list(pm.plugins) == ["agently-core"]
    assert pm.registrations("action_runtime") == {}
    assert "pt_alpha" not in sys.modules


def test_block_list_matches_normalised_distribution_names(make_plugins, alpha_beta) -> None:
    pm = make_plugins(plugins={"block": ["Agently_Core_Alpha"]})
    assert pm.plugins["alpha"].status == "blocked"


# -- lazy factories ----------------------------------------------------------------------
def test_factories_are_lazy(make_plugins, fake_distributions) -> None:
    fake_distributions("agently-core-heavy", entry_points={"heavy": "pt_heavy.plugin"}, modules={
        "pt_heavy.sentinel": "IMPORTED = []\n",
        "pt_heavy.plugin": '''
from agently_core.hookspecs import hookimpl

@hookimpl
def register_action_executors(register):
    register("heavy", "pt_heavy.module:Thing", kind="heavy")
''',
        "pt_heavy.module": '''
from pt_heavy import sentinel
sentinel.IMPORTED.append(__name__)

class Thing:
    kind = "heavy"
    def __init__(self, **options):
        self.options = options
    async def execute(self, spec, kwargs, context):
        return "heavy"
''',
    })
    pm = make_plugins()
    from pt_heavy import sentinel

    assert pm.plugins["heavy"].status == "loaded"
    assert sentinel.IMPORTED == []
    assert "pt_heavy.module" not in sys.modules
    registration = pm.select("action_executor", kind="heavy")
    assert registration.kind == "heavy"
    assert sentinel.IMPORTED == []  # selecting a registration imports nothing either
    thing = pm.create("action_executor", kind="heavy", size=3)
    assert sentinel.IMPORTED == ["pt_heavy.module"]
    assert type(thing).__name__ == "Thing" and thing.options == {"size": 3}
    pm.create("action_executor", kind="heavy")
    assert sentinel.IMPORTED == ["pt_heavy.module"]  # imported once


def test_lazy_factory_that_fails_names_the_distribution(make_plugins, fake_distributions) -> None:
    fake_distributions("agently-core-ghost", entry_points={"ghost": "pt_ghost.plugin"}, modules={
        "pt_ghost.plugin": '''
from agently_core.hookspecs import hookimpl

@hookimpl
def register_planners(register):
    register("ghost", "pt_ghost.absent:Planner")
''',
    })
    pm = make_plugins()
    assert pm.plugins["ghost"].status == "loaded"  # discovery does not notice
    with pytest.raises(PluginError, match="agently-core-ghost") as info:
        pm.create("planner", "ghost")
    assert "pt_ghost.absent:Planner" in str(info.value)


def test_builtin_plugins_register_lazy_strings(make_plugins) -> None:
    pm = make_plugins()
    for role, name in [("action_runtime", "agently"), ("action_flow", "agently"),
                       ("planner", "scripted"), ("action_executor", "function"),
                       ("action_package", "examples")]:
        factory = pm.get(role, name).factory
        assert isinstance(factory, str) and ":" in factory, (role, name, factory)


# -- conflicts ---------------------------------------------------------------------------
def test_same_runtime_name_from_two_distributions_is_a_conflict(make_plugins,
                                                                 fake_distributions) -> None:
    install_runtime(fake_distributions, "agently-core-one", "pt_one", "twin", tag="one")
    install_runtime(fake_distributions, "agently-core-two", "pt_two", "twin", tag="two")
    pm = make_plugins()
    with pytest.raises(PluginConflictError) as info:
        pm.get("action_runtime", "twin")
    message = str(info.value)
    assert "agently-core-one" in message and "agently-core-two" in message
    assert "twin" in message
    assert "twin" not in pm.registrations("action_runtime")  # no silent shadowing
    assert ("action_runtime", "twin") in pm.conflicts()
    rows = {r["name"]: r for r in pm.report()}
    assert rows["pt_one"]["conflicts"] and rows["pt_two"]["conflicts"]
    # selecting it by configuration gives the same clear error
    agent = create_agent(plugins=make_plugins(runtime="twin"))
    with pytest.raises(PluginConflictError) as info:
        _ = agent.runtime
    assert "agently-core-one" in str(info.value) and "agently-core-two" in str(info.value)


def test_conflict_resolved_by_blocking_one(make_plugins, fake_distributions) -> None:
    install_runtime(fake_distributions, "agently-core-one", "pt_one", "twin", tag="one")
    install_runtime(fake_distributions, "agently-core-two", "pt_two", "twin", tag="two")
    pm = make_plugins(env={"AGENTLY_PLUGINS_BLOCK": "agently-core-one"}, runtime="twin")
    agent = create_agent(plugins=pm)
    assert type(agent.runtime).__module__ == "pt_two.runtime"


def test_three_way_conflict_names_all(make_plugins, fake_distributions) -> None:
    for tag in ("one", "two", "three"):
        install_runtime(fake_distributions, f"agently-core-{tag}", f"pt_{tag}", "twin", tag=tag)
    with pytest.raises(PluginConflictError) as info:
        make_plugins().get("action_runtime", "twin")
    assert all(f"agently-core-{tag}" in str(info.value) for tag in ("one", "two", "three"))


# -- unknown names -----------------------------------------------------------------------
def test_unknown_name_lists_what_is_installed(make_plugins, alpha_beta) -> None:
    pm = make_plugins()
    with pytest.raises(NotInstalledError) as info:
        pm.get("action_runtime", "gamma")
    message = str(info.value)
    assert "'gamma' is not installed" in message
    for installed in ("agently (agently-core-runtime", "alpha (agently-core-alpha",
                      "beta (agently-core-beta"):
        assert installed in message


def test_unknown_executor_kind_lists_executors(make_plugins) -> None:
    with pytest.raises(NotInstalledError) as info:
        make_plugins().select("action_executor", kind="cobol")
    assert "no ActionExecutor is installed for kind 'cobol'" in str(info.value)
    assert "function (kind function, agently-core-function" in str(info.value)


def test_configured_executor_serving_another_kind(make_plugins) -> None:
    pm = make_plugins(executors={"python": "function"})
    with pytest.raises(PluginError, match="serves kind 'function', not 'python'"):
        pm.select("action_executor", kind="python")


def test_several_runtimes_without_a_choice_is_an_error(make_plugins, alpha_beta) -> None:
    pm = make_plugins(env={"AGENTLY_PLUGINS_BLOCK": "runtime"})
    with pytest.raises(PluginError, match="several ActionRuntime") as info:
        pm.select("action_runtime")
    assert "alpha" in str(info.value) and "beta" in str(info.value)
    assert "AGENTLY_RUNTIME" in str(info.value)


def test_core_alone_says_which_distribution_to_install(load_config) -> None:
    pm = PluginManager(load_config(), autoload=False).load()
    with pytest.raises(NotInstalledError, match="pip install agently-core-runtime"):
        pm.get("action_runtime", "agently")
    with pytest.raises(NotInstalledError, match="pip install agently-core-runtime"):
        pm.get("action_flow", "agently")
    with pytest.raises(NotInstalledError, match="pip install agently-core-runtime"):
        pm.get("planner", "scripted")
    with pytest.raises(NotInstalledError, match="pip install agently-core-function"):
        pm.select("action_executor", kind="function")
    with pytest.raises(NotInstalledError, match="pip install agently-core-function"):
        pm.get("action_package", "examples")


def test_core_alone_agent_reports_missing_plugins(load_config) -> None:
    agent = create_agent(plugins=PluginManager(load_config(), autoload=False))

    @agent.action_func
    def ping() -> str:
        return "pong"

    record = agent.action.execute_action("ping")
    assert record.status == "failed"
    assert record.error_type == "NotInstalledError"
    assert "agently-core-function" in record.error


def test_core_alone_agent_runtime_names_the_distribution(load_config) -> None:
    agent = create_agent(plugins=PluginManager(load_config(), autoload=False))
    with pytest.raises(NotInstalledError, match="pip install agently-core-runtime"):
        _ = agent.runtime
    agent.set_planner(lambda context, request: "x")
    with pytest.raises(NotInstalledError, match="pip install agently-core-runtime"):
        agent.run("hello")


# -- event observers from a plugin ---------------------------------------------------------
def test_event_observer_plugin_receives_matching_events(make_agent, fake_distributions) -> None:
    fake_distributions("agently-core-watch", entry_points={"watch": "pt_watch.plugin"}, modules={
        "pt_watch.plugin": '''
from agently_core.hookspecs import hookimpl

SEEN = []

@hookimpl
def register_event_observers(register):
    register("recorder", "pt_watch.plugin:record", events=("action.completed",))

def record(event):
    SEEN.append((event.type, event.payload["action"]))
''',
    })
    agent = make_agent()

    @agent.action_func
    def ping() -> str:
        return "pong"

    assert agent.action.execute_action("ping").status == "success"
    from pt_watch.plugin import SEEN

    assert SEEN == [("action.completed", "ping")]


# -- swapping runtimes by configuration alone ----------------------------------------------
@pytest.fixture
def two_runtimes(fake_distributions):
    """Two ActionRuntime plugins, 'alpha' and 'beta', installed side by side."""
    install_runtime(fake_distributions, "agently-core-alpha", "swap_alpha", "alpha")
    install_runtime(fake_distributions, "agently-core-beta", "swap_beta", "beta")


def _run_same_program(agent) -> Any:
    """The application code: identical for every configuration."""

    @agent.action_func
    def shout(text: str) -> str:
        return text.upper()

    agent.use_actions(shout)
    agent.set_planner([[("shout", {"text": "hi"})]], response="finished")
    return agent.run("say hi")


def test_two_runtimes_swapped_by_configuration_alone(make_plugins, two_runtimes) -> None:
    results = {}
    for runtime in ("alpha", "beta"):
        agent = create_agent(plugins=make_plugins(runtime=runtime))
        assert agent.runtime.name == runtime
        assert type(agent.runtime).__module__ == f"swap_{runtime}.runtime"
        results[runtime] = _run_same_program(agent)
    for runtime, result in results.items():
        assert result.stop_reason == "response"
        assert result.response == f"{runtime}:finished"
        [record] = result.records
        assert record.status == "success" and record.result == "HI"
        assert record.purpose == f"planned by {runtime}"


def test_runtime_chosen_by_environment_variable(make_plugins, two_runtimes) -> None:
    for runtime in ("beta", "alpha"):
        agent = create_agent(plugins=make_plugins(env={"AGENTLY_RUNTIME": runtime}))
        assert agent.runtime.name == runtime
        assert _run_same_program(agent).response == f"{runtime}:finished"


def test_runtime_chosen_by_files_and_env_beats_file(tmp_path, two_runtimes) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (tmp_path / "agently.toml").write_text("")
    (project / "agently.toml").write_text('runtime = "alpha"\n')
    pm = PluginManager(Config.load(env={}, cwd=project)).load()
    assert create_agent(plugins=pm).runtime.name == "alpha"
    pm = PluginManager(Config.load(env={"AGENTLY_RUNTIME": "beta"}, cwd=project)).load()
    agent = create_agent(plugins=pm)
    assert agent.runtime.name == "beta"
    assert _run_same_program(agent).records[0].purpose == "planned by beta"


def test_default_runtime_is_agently_when_not_configured(make_plugins, two_runtimes) -> None:
    agent = create_agent(plugins=make_plugins())
    assert agent.runtime.name == "agently"
    result = _run_same_program(agent)
    assert result.response == "finished"
    assert result.records[0].purpose == ""


def test_configured_runtime_that_is_not_installed(make_plugins, two_runtimes) -> None:
    agent = create_agent(plugins=make_plugins(runtime="gamma"))
    with pytest.raises(NotInstalledError) as info:
        _ = agent.runtime
    assert "alpha" in str(info.value) and "beta" in str(info.value)


def test_runtime_chosen_by_a_config_object(two_runtimes) -> None:
    for runtime in ("alpha", "beta"):
        agent = create_agent(config=Config(runtime=runtime))
        assert agent.runtime.name == runtime
        assert _run_same_program(agent).response == f"{runtime}:finished"


def test_distribution_name_and_version_come_from_the_metadata_headers(tmp_path: Any) -> None:
    from importlib.metadata import PathDistribution

    from agently_core.plugins import _name_and_version

    info = tmp_path / "demo_plugin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nname: Demo-Plugin\nVersion: 1.2.3\nSummary: x\n\n"
        "Name: not-a-header (the body starts after the first empty line)\n")
    assert _name_and_version(PathDistribution(info)) == ("Demo-Plugin", "1.2.3")
    # no Version header before the body: importlib.metadata's own parse decides
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo\n\nVersion: 9\n")
    assert _name_and_version(PathDistribution(info)) == ("demo", None)
    assert _name_and_version(None) == (None, None)


def test_also_serves_kinds_are_served_only_when_chosen(make_plugins, fake_distributions) -> None:
    """A provider may serve further kinds (``also_serves=``), only when configuration names
    it: the kind's own provider stays the default, and with none a clear error says how."""
    fake_distributions("agently-core-boxes", entry_points={"boxes": "pt_boxes.plugin"},
                       modules={"pt_boxes.plugin": '''
from agently_core.hookspecs import hookimpl

@hookimpl
def register_execution_environment_providers(register):
    register("boxes", "pt_boxes.x:Provider", kind="boxes", also_serves=("python", "cobol"))
'''})
    pm = make_plugins()
    assert pm.get("environment_provider", "boxes").kinds == ("boxes", "python", "cobol")
    assert pm.select("environment_provider", kind="python").name == "python"
    with pytest.raises(PluginError, match=re.escape('boxes can serve it when chosen: '
                                                    '[providers] cobol = "boxes"')):
        pm.select("environment_provider", kind="cobol")
    chosen = make_plugins(providers={"python": "boxes", "cobol": "boxes"})
    assert chosen.select("environment_provider", kind="python").name == "boxes"
    assert chosen.select("environment_provider", kind="cobol").name == "boxes"
    with pytest.raises(PluginError, match="serves kind 'boxes' or 'python' or 'cobol', not 'node'"):
        make_plugins(providers={"node": "boxes"}).select("environment_provider", kind="node")


@pytest.mark.parametrize(("hook", "value", "expected"), [
    ("register_execution_environment_providers", '"python"', "a list of kind names"),
    ("register_execution_environment_providers", '[""]', "a list of kind names"),
    ("register_planners", '["python"]', "for executors and providers"),
])
def test_bad_also_serves_is_reported(make_plugins, fake_distributions, hook: str, value: str,
                                     expected: str) -> None:
    fake_distributions("agently-core-sloppy", entry_points={"sloppy": "pt_sloppy2.plugin"},
                       modules={"pt_sloppy2.plugin": f'''
from agently_core.hookspecs import hookimpl

@hookimpl
def {hook}(register):
    register("sloppy", "pt_sloppy2.x:Thing", also_serves={value})
'''})
    pm = make_plugins()
    assert pm.plugins["sloppy"].status == "failed"
    assert expected in pm.plugins["sloppy"].error
    assert pm.plugins["runtime"].status == "loaded"
