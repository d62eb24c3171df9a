"""Agent environments (Env): the world an agent works in, as state and tools.

An :class:`Env` tells the planner where the agent is (:meth:`Env.get_state`, a string
put into every planning round's context; the model planners show it in their system
prompt) and what it can do there (:meth:`Env.get_tools`, actions mounted with
``agent.use_actions``). :meth:`Env.build` prepares it and :meth:`Env.cleanup` removes
what it made; the agent calls their async forms, building before its first planning
round and cleaning up when it closes.

Implementations are published by name through the ``register_envs`` hook: ``base``
(:class:`BaseEnv`, no state and no tools) comes with the core, ``shell_local``
(:class:`ShellLocalEnv`) with agently-core-bash, whose ``bash`` package gives it its
tool, ``browser`` (``BrowserEnv``, importable from here) with agently-core-browser.
:func:`get_env` picks one from the ``env`` setting::

    [env]
    name = "shell_local"

Importing this module is cheap: it imports no plugin.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError, NotInstalledError, PluginConflictError

__all__ = ["SHELL_INSTRUCTION", "BaseEnv", "Env", "ShellLocalEnv", "get_env"]

#: The instruction :class:`ShellLocalEnv`'s state ends with, word for word.
SHELL_INSTRUCTION = "You can only run bash commands in your workspace!!!"


class Env:
    """The interface of an agent environment; subclass it and override what you need.

    The defaults describe nothing and contribute nothing. Override the async forms
    (:meth:`async_build`, :meth:`async_get_state`, :meth:`async_cleanup`) when the work
    is asynchronous; the sync forms are what a caller outside an event loop uses.
    """

    #: The name it is registered under (informative).
    name: str = ""

    def get_state(self) -> str:
        """What the environment looks like now, for the planner (asked every round)."""
        return ""

    def get_tools(self) -> list[Any]:
        """The actions it contributes: anything ``agent.use_actions`` accepts (functions,
        :class:`~agently_core.agent.ActionPackage`, installed packages with options)."""
        return []

    def build(self) -> None:
        """Start what the environment needs (the agent calls :meth:`async_build`)."""

    def cleanup(self) -> None:
        """Remove what :meth:`build` made; safe to call twice or without a build."""

    async def async_build(self) -> None:
        self.build()

    async def async_get_state(self) -> str:
        return self.get_state()

    async def async_cleanup(self) -> None:
        self.cleanup()


class BaseEnv(Env):
    """The null environment: an empty state and no tools."""

    name = "base"


def _package(name: str, **options: Any) -> Any:
    """An installed action package with options, as ``agent.use_actions`` mounts it
    (looked up in the agent's plugin registry when mounted, never imported here)."""
    from .builtins.actions import BuiltinPackage, class_name

    cls = type(class_name(name), (BuiltinPackage,), {"action_package": name,
                                                       "__module__": __name__})
    return cls(**options)


class ShellLocalEnv(Env):
    """A unique workspace directory per run session, for the Bash sandbox.

    :meth:`build` creates the workspace (under ``base_dir``, default the system's
    temporary directory: a private ``agently-env-*`` directory nobody else can list, and in
    it the workspace under an unguessable name) and :meth:`cleanup` removes it with
    everything in it. The state
    holds the current time, the workspace's absolute path and :data:`SHELL_INSTRUCTION`.
    The tool is ``run_bash`` of the installed ``bash`` action package (agently-core-bash)
    rooted in the workspace: it can write there and nowhere else. ``shell_options`` go
    to that package (``commands``, ``timeout``, ``network``, ...); ``root`` is the
    environment's own.
    """

    name = "shell_local"

    def __init__(self, *, base_dir: str | os.PathLike[str] | None = None,
                 **shell_options: Any) -> None:
        if base_dir is not None and not isinstance(base_dir, (str, os.PathLike)):
            raise TypeError(f"base_dir must be a directory path, got {base_dir!r}")
        if "root" in shell_options:
            raise TypeError("ShellLocalEnv roots the shell in its own workspace; "
                            "give base_dir= to choose where workspaces are made")
        self.base_dir = None if base_dir is None else os.fspath(base_dir)
        self.shell_options = dict(shell_options)
        #: The workspace's absolute path while built, else None.
        self.workspace: str | None = None
        self._parent: str | None = None

    def build(self) -> None:
        if self.workspace is not None:
            return
        import tempfile

        if self.base_dir is not None and not os.path.isdir(self.base_dir):
            raise ConfigError(f"ShellLocalEnv: base_dir {self.base_dir!r} is not a directory")
        import secrets

        # the sandbox runs as a dedicated uid of its own: it must reach and write the
        # workspace, so that is writable by anyone; its parent is ours and cannot be
        # listed (0711), so nobody else finds the workspace's unguessable name
        parent = os.path.realpath(tempfile.mkdtemp(prefix="agently-env-", dir=self.base_dir))
        os.chmod(parent, 0o711)
        path = os.path.join(parent, secrets.token_hex(16))
        os.mkdir(path)
        os.chmod(path, 0o777)
        self._parent, self.workspace = parent, path

    def cleanup(self) -> None:
        parent, self._parent, self.workspace = self._parent, None, None
        if parent is not None:
            from .fs import remove_tree

            remove_tree(parent)

    def get_state(self) -> str:
        from datetime import datetime

        now = datetime.now().astimezone().isoformat(timespec="seconds")
        return (f"Current time: {now}\n"
                f"Workspace: {self._built()}\n"
                f"{SHELL_INSTRUCTION}")

    def get_tools(self) -> list[Any]:
        return [_package("bash", **self.shell_options, root=self._built())]

    def _built(self) -> str:
        if self.workspace is None:
            raise RuntimeError("ShellLocalEnv has no workspace yet: build() it first "
                               "(an agent builds its env before the first planning round)")
        return self.workspace


def __getattr__(name: str) -> Any:
    """``BrowserEnv`` is the class registered as the env ``browser`` (agently-core-browser
    registers it); looked up through the plugin registry on first use, so the core names no
    plugin module."""
    if name == "BrowserEnv":
        from .plugins import get_plugin_manager

        try:
            return get_plugin_manager().get("env", "browser").load()
        except (NotInstalledError, PluginConflictError) as exc:
            raise ImportError(f"BrowserEnv comes with agently-core-browser (pip install "
                              f"agently-core-browser): {exc}", name=name) from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_env(config: Any = None, *, plugins: Any = None) -> Env:
    """The Env the configuration names, created with its options.

    ``config``: a :class:`~agently_core.config.Config` (its ``env`` setting), a mapping
    ``{"name": ..., **options}``, a name, or ``None`` (the configuration of the working
    directory and environment). No name configured gives :class:`BaseEnv`. ``plugins``
    is the plugin manager to look names up in (default: the process-wide one). An
    unknown name or bad options raise :class:`~agently_core.errors.ConfigError` naming
    what is installed.
    """
    from .config import Config

    if config is None:
        config = Config.load()
    if isinstance(config, Config):
        name, options = config.env_name, dict(config.env_options)
        if plugins is None:
            from .plugins import PluginManager

            plugins = PluginManager(config).load()
    elif isinstance(config, str):
        name, options = config, {}
    elif isinstance(config, Mapping):
        options = dict(config)
        name = options.pop("name", None)
    else:
        raise TypeError(f"get_env() takes a Config, a mapping or a name, got {config!r}")
    if name is None:
        if options:
            raise ConfigError(f"env options {sorted(options)} given without an env name")
        return BaseEnv()
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"env name must be a non-empty string, got {name!r}")
    if plugins is None:
        from .plugins import get_plugin_manager

        plugins = get_plugin_manager()
    try:
        registration = plugins.get("env", name)
    except (NotInstalledError, PluginConflictError) as exc:
        raise ConfigError(f"env {name!r}: {exc}") from None
    factory = registration.load()
    try:
        env = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"env {name!r} from {registration.source}: bad options "
                          f"{options!r}: {exc}") from None
    if not all(callable(getattr(env, m, None)) for m in ("get_state", "get_tools")):
        raise ConfigError(f"env {name!r} from {registration.source} made {env!r}, which "
                          "has no get_state() and get_tools(): not an Env")
    return env
