"""The Execution Environment surface under the reference's names, reached as
``import agently_core as Agently`` without importing any submodule first."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import agently_core as Agently
from agently_core import policy_approval as pa
from agently_core.errors import ConfigError


def run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_submodules_resolve_as_attributes_in_a_fresh_interpreter() -> None:
    out = run_fresh("""
        import sys
        import agently_core as Agently
        assert "agently_core.execution_environment" not in sys.modules
        assert "pydantic" not in sys.modules  # importing the package stays cheap
        env, approval = Agently.execution_environment, Agently.policy_approval
        print(env.__name__, approval.__name__)
        print(callable(Agently.configure_policy_approval), callable(Agently.create_workspace))
        print("execution_environment" in dir(Agently))
    """)
    assert out.split() == ["agently_core.execution_environment", "agently_core.policy_approval",
                           "True", "True", "True"]


def test_unknown_and_private_names_are_still_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_module'"):
        Agently.no_such_module  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute '_sync_nope'"):
        Agently._sync_nope  # noqa: B018
    assert not hasattr(Agently, "executionenvironment")


def test_execution_environment_offers_the_reference_manager_api() -> None:
    """Every call the reference lists, against the process-wide manager, with a real
    provider (the testing kit's ``tempdir``) registered through a plugin."""
    out = run_fresh("""
        import os
        import tempfile
        import agently_core as Agently
        from agently_core import hookimpl
        from agently_core.plugins import get_plugin_manager

        class TempdirPlugin:
            @hookimpl
            def register_execution_environment_providers(self, register):
                register("tempdir", "agently_core.testing.tempdir_provider:TempdirProvider")

        get_plugin_manager().register(TempdirPlugin(), name="tempdir-plugin")
        env = Agently.execution_environment
        base = tempfile.mkdtemp()
        requirement = env.declare({"kind": "tempdir", "scope": "session", "owner_id": "s1",
                                   "config": {"base": base}})
        assert env.inspect(requirement.id) is requirement  # declared, nothing started
        assert os.listdir(base) == []
        handle = env.ensure(requirement.id)
        again = env.ensure(requirement.id)
        print(handle.id == again.id, handle.status, len(os.listdir(base)))
        print([h.id for h in env.list(scope="session")] == [handle.id],
              env.list(scope="execution"))
        print(env.inspect(handle.id).ref_count)
        print(env.release(handle), env.release(handle))  # the second is a no-op
        print(env.release_scope("session", "s1"), os.listdir(base))

        import anyio

        async def main():
            other = await env.async_ensure({"kind": "tempdir", "config": {"base": base}})
            print(len(os.listdir(base)), await env.async_release(other), os.listdir(base))

        anyio.run(main)
    """)
    assert out.splitlines() == [
        "True ready 1",
        "True []",
        "3",  # two callers' leases and the session owner's pin
        "True False",
        "1 []",
        "1 True []",
    ]


def test_sync_and_async_calls_mix_in_one_async_program() -> None:
    """The reference's manager listing calls ``ensure`` and ``await async_ensure`` side by
    side. Inside a running loop, with a real Python sandbox: the sync calls run on the shared
    loop, and the async ones must touch the same resource there (before, the sync
    ``release_scope`` after an ``await async_ensure`` deadlocked the program)."""
    out = run_fresh("""
        import anyio
        import agently_core as Agently

        async def main():
            env = Agently.execution_environment
            requirement = env.declare({"kind": "python", "scope": "session",
                                       "owner_id": "mixed"})
            first = env.ensure(requirement.id)
            second = await env.async_ensure(requirement.id)
            print(first.id == second.id, env.inspect(first.id).ref_count)
            print(env.release(first), await env.async_release(second))
            print(env.release_scope("session", "mixed"), env.list(scope="session"))
            third = await env.async_ensure(requirement.id)  # a fresh start after release
            print(third.id != first.id, await env.async_release_scope("session", "mixed"))

        anyio.run(main)
    """)
    assert out.splitlines() == ["True 3", "True True", "1 []", "True 1"]


@pytest.fixture
def process_registry(monkeypatch):
    monkeypatch.setattr(pa, "_registered", {})
    monkeypatch.setattr(pa, "_process_default", None)


def test_register_handler_and_configure_policy_approval(process_registry, make_agent) -> None:
    def handler(context, request):
        return "approved"

    Agently.policy_approval.register_handler("my_handler", handler)
    Agently.configure_policy_approval(handler="my_handler")
    agent = make_agent()
    try:
        assert agent.approval.default == agent.manager.approval.default == "my_handler"
        assert Agently.policy_approval.get_default() == "my_handler"
        assert agent.approval.handler() is handler
    finally:
        agent.close()
    Agently.configure_policy_approval(handler=None)
    assert Agently.policy_approval.get_default() == "input_timeout_fail"


def test_configure_policy_approval_refuses_bad_input(process_registry) -> None:
    with pytest.raises(ConfigError, match="unknown approval handler 'nobody'"):
        Agently.configure_policy_approval(handler="nobody")
    with pytest.raises(TypeError, match=r"takes a handler.s name.*register_handler"):
        Agently.configure_policy_approval(handler=lambda context, request: True)
    with pytest.raises(TypeError):
        Agently.configure_policy_approval("auto_approve")  # keyword only, as the reference
    assert pa.get_default() == "input_timeout_fail"
    assert not hasattr(pa, "set_default")  # one name per concept


def test_create_workspace_is_exported(tmp_path) -> None:
    import agently_core.workspace as workspace_module

    assert Agently.create_workspace is workspace_module.create_workspace
    assert "create_workspace" in Agently.__all__
    workspace = Agently.create_workspace("local", path=str(tmp_path / "ws"))
    try:
        assert isinstance(workspace, Agently.Workspace)
        assert workspace.supports("search")
    finally:
        workspace.close()
    assert (tmp_path / "ws").is_dir()
