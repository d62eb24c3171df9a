"""The installed built-in action packages, by class name::

    from agently_core.builtins.actions import Python, Sqlite

    agent.use_actions(Python(timeout=10))   # as agent.enable("python", timeout=10)
    agent.use_actions(Sqlite(database="app.db"))

Every action package an installed plugin registers (``register_action_packages``) is
here under its name in CamelCase (``python`` -> ``Python``, ``workspace_files`` ->
``WorkspaceFiles``): calling the class with the package's options gives what
``agent.use_actions(...)`` mounts (the class itself mounts it without options). Nothing
is looked up until a name is asked for: importing this module loads no plugin.

The reference's ``Search`` and ``Browse`` packages come from agently-core-web: without
it, importing them raises :class:`BuiltinNotInstalled` (an ``ImportError`` and a
:class:`~agently_core.errors.NotInstalledError`) naming the distribution to install.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from ..errors import NotInstalledError

__all__ = ["BuiltinNotInstalled", "BuiltinPackage"]

#: Built-in packages the reference documents that an optional plugin provides:
#: class name -> action package name.
REFERENCE_PACKAGES = {"Search": "search", "Browse": "browse"}
#: The distribution that provides them.
REFERENCE_DISTRIBUTION = "agently-core-web"


class BuiltinNotInstalled(NotInstalledError, ImportError):
    """A built-in action package is asked for that no installed plugin provides."""


class BuiltinPackage:
    """An installed action package with its options, for ``agent.use_actions(...)``."""

    #: The action package's registered name (``agent.enable(action_package, **options)``).
    action_package: ClassVar[str] = ""
    options: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, **options: Any) -> None:
        self.options = MappingProxyType(dict(options))

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({given})"


def class_name(package: str) -> str:
    """The class name of an action package: its name in CamelCase."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", package)
                   if part)


_CLASSES: dict[str, type[BuiltinPackage]] = {}


def _installed() -> dict[str, str]:
    """Class name -> action package name, for every installed action package."""
    from ..plugins import get_plugin_manager

    return {class_name(name): name
            for name in get_plugin_manager().registrations("action_package")}


def _package_class(name: str, package: str, source: str) -> type[BuiltinPackage]:
    found = _CLASSES.get(name)
    if found is None or found.action_package != package:
        found = type(name, (BuiltinPackage,), {
            "action_package": package, "__module__": __name__,
            "__doc__": f"The action package {package!r} (from {source}); "
                       f"``agent.use_actions({name}(**options))`` mounts it."})
        _CLASSES[name] = found
    return found


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    installed = _installed()
    package = installed.get(name)
    if package is not None:
        from ..plugins import get_plugin_manager

        source = get_plugin_manager().get("action_package", package).source
        return _package_class(name, package, source)
    known = ", ".join(sorted(installed)) or "none"
    if name in REFERENCE_PACKAGES:
        raise BuiltinNotInstalled(
            f"agently_core.builtins.actions.{name} is not installed: no installed plugin "
            f"provides the action package {REFERENCE_PACKAGES[name]!r} (install "
            f"{REFERENCE_DISTRIBUTION} for the built-in {name} package); installed built-in "
            f"packages: {known}", name=name, path=__name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; installed "
                         f"built-in packages: {known}")


def __dir__() -> list[str]:
    return sorted({*__all__, "REFERENCE_PACKAGES", "class_name", *_installed()})
