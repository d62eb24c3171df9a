"""Global-scope environments of the process-wide manager are released at interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys
    from agently_core import execution_environment
    from agently_core.hookspecs import hookimpl
    from agently_core.plugins import get_plugin_manager
    from agently_core.testing.tempdir_provider import TempdirProvider

    class Plugin:
        @hookimpl
        def register_execution_environment_providers(register):
            register("tempdir", TempdirProvider)

    get_plugin_manager().register(Plugin, name="exit-test")
    handle = execution_environment.ensure({"kind": "tempdir", "scope": "global",
                                           "config": {"base": sys.argv[1]}})
    path = execution_environment.get_manager().resource(handle)
    print(path, flush=True)
    assert path.is_dir()
    # no release: the interpreter exits with the resource still held
    """
)


def test_global_scope_is_released_at_interpreter_exit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path
    assert not path.exists(), "the global-scope directory outlived the process"


MANAGERS_ON_A_HOST_LOOP = textwrap.dedent(
    """
    import asyncio, gc, sys
    from agently_core.environments import ExecutionEnvironmentManager
    from agently_core.testing.tempdir_provider import TempdirProvider

    async def main():
        for _ in range(3):
            manager = ExecutionEnvironmentManager(providers={"tempdir": TempdirProvider()})
            await manager.async_ensure({"kind": "tempdir", "config": {"base": sys.argv[1]}})
            await manager.aclose()
            del manager
            gc.collect()
            await asyncio.sleep(0)
        print("done", flush=True)

    asyncio.run(main())
    """
)


def test_a_closed_manager_leaves_no_watch_pending_on_the_host_loop(tmp_path: Path) -> None:
    """A manager closed on the host's own loop ends its watch of that loop: collected while
    the loop runs, it used to leave a pending task that asyncio reported as destroyed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    done = subprocess.run([sys.executable, "-c", MANAGERS_ON_A_HOST_LOOP, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    assert "Task was destroyed but it is pending" not in done.stderr, done.stderr
    assert not list(tmp_path.iterdir())  # and every resource was released
