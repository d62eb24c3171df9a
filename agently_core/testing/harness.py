"""Helpers the conformance suites use, and that plugin tests can use directly.

* :func:`make_plugin` builds an in-code plugin (a module object with ``@hookimpl``
  registration hooks) from plain mappings, and :func:`make_plugin_manager` registers such
  plugins in a :class:`~agently_core.plugins.PluginManager` that does not autoload entry
  points and ignores the environment's configuration, so a test sees exactly what it set up.
* :func:`installed_plugin` loads an installed plugin by its entry-point name, to put in
  such a manager (``make_plugin_manager(installed_plugin("function"))``).
* :func:`make_agent` builds an agent on such a manager.
* :func:`mounted_specs` gives the action specs an action package's ``mount`` registers.
* :func:`run_async` runs a coroutine function on a fresh event loop (anyio).
* :class:`Heartbeat` measures how long the event loop was blocked while a block ran.

Nothing here imports pytest.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..agent import Agent
    from ..config import Config
    from ..plugins import PluginManager

T = TypeVar("T")

_counter = itertools.count(1)


def run_async(fn: Callable[..., Awaitable[T]], *args: Any, backend: str = "asyncio",
              backend_options: Mapping[str, Any] | None = None) -> T:
    """``anyio.run(fn, *args)`` on ``backend`` (``"asyncio"`` or ``"trio"``)."""
    import anyio

    return anyio.run(fn, *args, backend=backend, backend_options=dict(backend_options or {}))


def make_plugin(name: str | None = None, **roles: Mapping[str, Any]) -> types.ModuleType:
    """An in-code plugin that registers the given factories.

    Each keyword is a role key of :data:`agently_core.plugins.ROLES` (``action_executor``,
    ``environment_provider``, ``action_runtime``, ``action_flow``, ``workspace_backend``,
    ``planner``, ``action_package``, ``approval_handler``, ``event_observer``) mapping
    registration names to a factory, or to ``(factory, options)``::

        plugin = make_plugin(action_executor={"fast": (FastExecutor, {"kind": "function"})})
    """
    from ..hookspecs import hookimpl
    from ..plugins import ROLES

    module = types.ModuleType(name or f"agently_core_inline_plugin_{next(_counter)}")
    for role, entries in roles.items():
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        items = [
            (key, *(value if isinstance(value, tuple) else (value, {})))
            for key, value in dict(entries).items()
        ]
        setattr(module, ROLES[role].hook, hookimpl(_registration_hook(ROLES[role].hook, items)))
    return module


def _registration_hook(hook_name: str,
                       items: list[tuple[str, Any, Mapping[str, Any]]]) -> Callable[[Any], None]:
    def hook(register: Any) -> None:
        for key, factory, options in items:
            register(key, factory, **dict(options))

    hook.__name__ = hook_name
    return hook


def make_plugin_manager(*plugins: Any, config: Config | None = None,
                        builtins: bool = True) -> PluginManager:
    """A loaded :class:`~agently_core.plugins.PluginManager` holding exactly ``plugins``
    (and the core's built-in approval handlers unless ``builtins=False``).

    Entry points are not read and, unless ``config`` is given, neither are configuration
    files nor ``AGENTLY_*`` variables, so the test is isolated from the machine it runs on.
    """
    from ..config import Config
    from ..plugins import PluginManager

    manager = PluginManager(config if config is not None else Config(), autoload=False,
                            allow=None, block=(), builtins=builtins)
    manager.load()
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or f"plugin_{next(_counter)}"
        info = manager.register(plugin, name=name, distribution="agently-core-conformance")
        if info.status == "failed":
            raise RuntimeError(f"plugin {name} failed to register: {info.error}")
    return manager


def installed_plugin(name: str) -> Any:
    """The plugin module an installed distribution registers under ``name`` in the
    ``agently_core`` entry-point group (``"function"``, ``"runtime"``, ...). Raises
    :class:`~agently_core.errors.NotInstalledError` naming it when none is installed."""
    from importlib.metadata import entry_points

    from .. import hookspecs
    from ..errors import NotInstalledError

    for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP, name=name):
        return ep.load()
    raise NotInstalledError(f"no installed plugin registers the entry point {name!r} in the "
                            f"{hookspecs.ENTRY_POINT_GROUP!r} group (pip install "
                            f"agently-core-{name})")


def make_agent(plugins: PluginManager, name: str = "conformance", **options: Any) -> Agent:
    """An :class:`~agently_core.agent.Agent` on ``plugins``."""
    from ..agent import Agent

    return Agent(name, plugins=plugins, **options)


class _Recorder:
    """Stands in for an agent in a package's ``mount``: records what it registers."""

    def __init__(self) -> None:
        self.action = self
        self.registered: list[Any] = []

    def register_action(self, spec: Any, target: Any = None) -> None:
        from ..models import ActionSpec

        self.registered.append(spec if isinstance(spec, ActionSpec)
                               else ActionSpec.model_validate(dict(spec)))


def mounted_specs(mount: Callable[..., Any], *args: Any, **options: Any) -> list[Any]:
    """The :class:`~agently_core.models.ActionSpec` objects an action package's ``mount``
    registers with ``args`` and ``options`` (its ``agent.action.register_action(spec)``
    calls, recorded), e.g. to run :class:`~agently_core.testing.ExecutorConformance` on
    exactly the actions users get::

        [spec] = mounted_specs(agently_core_python.package.mount, name="echo")
    """
    recorder = _Recorder()
    mount(recorder, *args, **options)
    return recorder.registered


class Heartbeat:
    """Ticks every ``interval`` seconds while the block runs and records the longest gap
    between ticks: a blocked event loop shows up as a long gap.

    ::

        async with Heartbeat() as beat:
            await something()
        assert beat.max_gap < 0.25
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.max_gap = 0.0
        self.ticks = 0
        self._group: Any = None

    async def _run(self) -> None:
        import anyio

        last = anyio.current_time()
        while True:
            await anyio.sleep(self.interval)
            now = anyio.current_time()
            self.max_gap = max(self.max_gap, now - last - self.interval)
            self.ticks += 1
            last = now

    async def __aenter__(self) -> Heartbeat:
        import anyio

        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._run)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._group.cancel_scope.cancel()
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                return False  # the block's own exception propagates unchanged
            raise
        return False


__all__ = ["Heartbeat", "make_agent", "make_plugin", "make_plugin_manager", "mounted_specs",
           "run_async"]
