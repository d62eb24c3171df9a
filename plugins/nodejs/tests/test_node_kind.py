"""Node.js is the environment (and executor) kind ``node``, as the reference names it; the
action package and its action keep their names (``nodejs``, ``run_nodejs``)."""

from __future__ import annotations

from typing import Any

import pytest

from agently_core import Config, NotInstalledError, PluginManager
from agently_core.testing import make_plugin_manager


def installed(**settings: Any) -> PluginManager:
    """Every installed plugin, on configuration that reads nothing from the machine."""
    config = Config.load(env={}, overrides=settings or None)
    manager = PluginManager(config)
    manager.load()
    return manager


def test_provider_and_executor_are_registered_under_kind_node() -> None:
    plugins = installed()
    provider = plugins.select("environment_provider", kind="node")
    executor = plugins.select("action_executor", kind="node")
    assert (provider.name, provider.distribution) == ("node", "agently-core-nodejs")
    assert (executor.name, executor.distribution) == ("node", "agently-core-nodejs")
    assert plugins.select("action_package", "nodejs").distribution == "agently-core-nodejs"
    with pytest.raises(NotInstalledError, match=r"no .* is installed for kind 'nodejs'"):
        plugins.select("environment_provider", kind="nodejs")


def test_the_providers_setting_names_the_kind_node() -> None:
    assert installed(providers={"node": "node"}).select(
        "environment_provider", kind="node").name == "node"
    with pytest.raises(NotInstalledError, match="'elsewhere'"):
        installed(providers={"node": "elsewhere"}).select("environment_provider", kind="node")


def test_a_missing_node_provider_names_the_distribution_to_install() -> None:
    with pytest.raises(NotInstalledError, match="pip install agently-core-nodejs"):
        make_plugin_manager().select("environment_provider", kind="node")
    with pytest.raises(NotInstalledError, match="pip install agently-core-nodejs"):
        make_plugin_manager().select("action_executor", kind="node")


def test_enable_nodejs_declares_and_runs_kind_node(node_agent: Any) -> None:
    agent = node_agent()
    spec = agent.registry.require("run_nodejs").spec
    assert spec.kind == "node"
    assert [(r.kind, r.resource_key) for r in spec.execution_environments] == [("node", "node")]
    record = agent.action.execute_action("run_nodejs", {"js_code": "6 * 7"})
    assert record.status == "success", record.error
    assert record.result["value"] == "42"
    [handle] = agent.manager.list(kind="node")
    assert (handle.kind, handle.provider, handle.resource_key) == ("node", "node", "node")
    assert agent.manager.list(kind="nodejs") == []
