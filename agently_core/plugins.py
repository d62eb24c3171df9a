"""Plugin discovery and the registries of named factories it fills.

Discovery reads the ``agently_core`` entry-point group with :mod:`importlib.metadata`,
imports each plugin's (light) module, and calls its registration hooks one plugin at a
time, so every registration is attributed to a distribution and a failing plugin is
reported without stopping the others. Factories given as ``"module:attr"`` strings are
imported only when selected.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .config import Config
from .errors import NotInstalledError, PluginConflictError, PluginError


@dataclass(frozen=True)
class Role:
    """One kind of thing plugins register."""

    key: str
    hook: str
    title: str
    keyed_by_kind: bool = False


ROLES: dict[str, Role] = {
    role.key: role
    for role in (
        Role("action_runtime", "register_action_runtimes", "ActionRuntime"),
        Role("action_flow", "register_action_flows", "ActionFlow"),
        Role("action_executor", "register_action_executors", "ActionExecutor", True),
        Role(
            "environment_provider",
            "register_execution_environment_providers",
            "ExecutionEnvironmentProvider",
            True,
        ),
        Role("workspace_backend", "register_workspace_backends", "WorkspaceBackend"),
        Role("action_package", "register_action_packages", "action package"),
        Role("approval_handler", "register_policy_approval_handlers", "policy-approval handler"),
        Role("planner", "register_planners", "Planner"),
        Role("env", "register_envs", "Env"),
        Role("event_observer", "register_event_observers", "event observer"),
        Role("diagnostic", "register_diagnostics", "doctor check"),
        Role("command", "register_commands", "CLI command"),
    )
}

#: Which distribution provides the built-in names, for "install X" messages.
KNOWN_DISTRIBUTIONS: dict[tuple[str, str], str] = {
    ("action_runtime", "agently"): "agently-core-runtime",
    ("action_flow", "agently"): "agently-core-runtime",
    ("planner", "scripted"): "agently-core-runtime",
    ("planner", "openai_compatible"): "agently-core-openai",
    ("planner", "openai_responses"): "agently-core-openai",
    ("planner", "anthropic_compatible"): "agently-core-anthropic",
    ("action_executor", "function"): "agently-core-function",
    ("action_package", "examples"): "agently-core-function",
    ("action_package", "python"): "agently-core-python",
    ("action_package", "bash"): "agently-core-bash",
    ("action_package", "nodejs"): "agently-core-nodejs",
    ("action_package", "sqlite"): "agently-core-sqlite",
    ("action_executor", "python"): "agently-core-python",
    ("action_executor", "sqlite"): "agently-core-sqlite",
    ("action_package", "mcp"): "agently-core-mcp",
    ("command", "serve-mcp"): "agently-core-mcp",
    ("action_executor", "mcp"): "agently-core-mcp",
    ("environment_provider", "mcp"): "agently-core-mcp",
    ("workspace_backend", "local"): "agently-core-workspace-local",
    ("workspace_backend", "postgres"): "agently-core-workspace-postgres",
    ("action_package", "workspace_files"): "agently-core-workspace-local",
    ("action_executor", "bash"): "agently-core-bash",
    ("action_executor", "node"): "agently-core-nodejs",
    ("environment_provider", "bash"): "agently-core-bash",
    ("environment_provider", "node"): "agently-core-nodejs",
    ("environment_provider", "python"): "agently-core-python",
    ("environment_provider", "sqlite"): "agently-core-sqlite",
    ("env", "shell_local"): "agently-core-bash",
}


@dataclass
class Registration:
    """A named factory one plugin registered for one role."""

    role: str
    name: str
    factory: Any
    plugin: str
    distribution: str | None
    version: str | None
    options: dict[str, Any] = field(default_factory=dict)
    _loaded: Any = field(default=None, repr=False)

    @property
    def kind(self) -> str | None:
        return self.options.get("kind", self.name) if ROLES[self.role].keyed_by_kind else None

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind it serves: its own ``kind``, then the ``also_serves`` kinds, which it
        serves only when chosen by name (``[providers] python = "docker"``)."""
        if self.kind is None:
            return ()
        return (self.kind, *self.options.get("also_serves", ()))

    @property
    def source(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version or ''}".strip()
        return f"plugin {self.plugin!r}"

    def load(self) -> Any:
        """The factory itself, importing a ``"module:attr"`` string on first use."""
        if self._loaded is None:
            factory = self.factory
            if isinstance(factory, str):
                factory = _import_string(factory, self)
            self._loaded = factory
        return self._loaded


@dataclass
class PluginInfo:
    """What the manager knows about one plugin, for ``agently-core plugins``."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    status: str = "loaded"  # loaded | failed | blocked | not_allowed | disabled
    hooks: list[str] = field(default_factory=list)
    registrations: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "hooks": list(self.hooks),
            "roles": {role: list(names) for role, names in self.registrations.items()},
            "error": self.error,
        }


def _import_string(path: str, registration: Registration) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except Exception as exc:
        raise PluginError(
            f"{ROLES[registration.role].title} {registration.name!r} from "
            f"{registration.source} could not be loaded from {path!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return obj


def load_fix(registration: Registration, exc: BaseException) -> str:
    """How to fix a registration whose factory could not be loaded (``exc``, raised by
    :meth:`Registration.load`): the misspelt part of its ``"module:attr"`` string, the
    missing distribution, or a reinstall."""
    path = registration.factory if isinstance(registration.factory, str) else ""
    module_name, _, attr = path.partition(":")
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    where = f"the register({registration.name!r}, {path!r}) call of plugin {registration.plugin!r}"
    if path and isinstance(cause, ModuleNotFoundError) and cause.name:
        missing = cause.name
        if module_name == missing or module_name.startswith(missing + "."):
            parent, _, last = missing.rpartition(".")
            close = _close(last, _submodules(parent))
            if parent and _importable(parent):
                return f"correct the misspelt module {last!r} in {where}{close}"
            return (f"correct the module {missing!r} in {where}{close}, or install the "
                    f"distribution that provides it (pip install {missing}?)")
        top = missing.split(".")[0]
        return f"install the distribution that provides module {top!r} (pip install {top}?)"
    if path and isinstance(cause, AttributeError):
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception:
            obj = None
        for part in attr.split(".") if obj is not None else ():
            if not hasattr(obj, part):
                close = _close(part, [n for n in dir(obj) if not n.startswith("_")])
                return f"correct the misspelt name {part!r} in {where}{close}"
            obj = getattr(obj, part)
    dist = registration.distribution
    return f"pip install --force-reinstall {dist}" if dist else "fix the plugin"


def _close(word: str, candidates: Iterable[str]) -> str:
    import difflib

    found = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _submodules(package: str) -> list[str]:
    import pkgutil

    if not package:
        return []
    try:
        paths = importlib.import_module(package).__path__
    except Exception:
        return []
    return [info.name for info in pkgutil.iter_modules(paths)]


class PluginManager:
    """Discovers plugins and holds their registrations, role by role.

    ``autoload``, ``allow`` and ``block`` default to the :class:`Config` values (which read
    ``AGENTLY_PLUGINS_AUTOLOAD``/``AGENTLY_DISABLE_PLUGIN_AUTOLOAD``,
    ``AGENTLY_PLUGINS_ALLOW`` and ``AGENTLY_PLUGINS_BLOCK``). Names in allow/block lists
    match an entry-point name or a distribution name.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        autoload: bool | None = None,
        allow: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        builtins: bool = True,
    ) -> None:
        self.config = config if config is not None else Config.load()
        self.autoload = self.config.autoload if autoload is None else autoload
        allow_list = self.config.plugins_allow if allow is None else tuple(allow)
        self.allow = None if allow_list is None else frozenset(map(_normalize, allow_list))
        self.block = frozenset(map(_normalize, self.config.plugins_block if block is None else block))
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registry: dict[str, dict[str, Registration]] = {role: {} for role in ROLES}
        self._conflicts: dict[tuple[str, str], list[Registration]] = {}
        self._lock = threading.RLock()
        self._loaded = False
        self._builtins = builtins

    # -- discovery -------------------------------------------------------------------
    def load(self) -> PluginManager:
        """Discover and register plugins once; later calls return at once."""
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self
            if self._builtins:
                from . import __version__, _builtin

                self.register(_builtin, name="agently-core", distribution="agently-core",
                              version=__version__)
            if self.autoload:
                self._load_entry_points()
            self._loaded = True
        return self

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        seen: set[tuple[str, str | None]] = set()
        for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist_name, dist_version = _name_and_version(ep.dist)
            if (ep.name, dist_name) in seen:
                continue  # the same distribution visible twice on sys.path
            seen.add((ep.name, dist_name))
            name = ep.name if ep.name not in self.plugins else f"{ep.name}@{dist_name}"
            info = PluginInfo(
                name=name,
                distribution=dist_name,
                version=dist_version,
                module=ep.value,
            )
            self.plugins[name] = info
            names = {_normalize(ep.name), _normalize(info.distribution or "")}
            if self.block & names:
                info.status = "blocked"
                continue
            if self.allow is not None and not self.allow & names:
                info.status = "not_allowed"
                continue
            try:
                module = ep.load()
            except Exception as exc:
                info.status = "failed"
                info.error = f"import failed: {type(exc).__name__}: {exc}"
                continue
            self._register_module(module, info)

    def register(
        self,
        plugin: Any,
        *,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin object or module in code (tests, applications)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name=name, distribution=distribution, version=version,
                          module=getattr(plugin, "__name__", None))
        self.plugins[name] = info
        self._register_module(plugin, info)
        return info

    def _register_module(self, module: Any, info: PluginInfo) -> None:
        try:
            self._pm.register(module, name=info.name)
        except Exception as exc:
            info.status = "failed"
            info.error = f"registration failed: {type(exc).__name__}: {exc}"
            return
        unknown = _unknown_hooks(module)
        if unknown:
            info.status = "failed"
            info.error = "; ".join(unknown)
            self._pm.unregister(module)
            return
        impls = [
            (hook_name, impl)
            for hook_name in ROLES_BY_HOOK
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls()
            if impl.plugin is module
        ]
        info.hooks = sorted(hook for hook, _ in impls)
        staged: list[Registration] = []
        for hook_name, impl in impls:
            role = ROLES_BY_HOOK[hook_name]
            try:
                impl.function(register=self._collector(role, info, staged))
            except Exception as exc:
                info.status = "failed"
                info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                self._pm.unregister(module)
                return
        for registration in staged:
            self._add(registration)
            info.registrations.setdefault(registration.role, []).append(registration.name)

    def _collector(self, role: str, info: PluginInfo, staged: list[Registration]):
        def register(name: str, factory: Any, /, **options: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"{ROLES[role].title} name must be a non-empty string")
            if factory is None:
                raise PluginError(f"{ROLES[role].title} {name!r} has no factory")
            if isinstance(factory, str) and ":" not in factory:
                raise PluginError(
                    f"{ROLES[role].title} {name!r}: lazy factory {factory!r} must look like "
                    "'package.module:attribute'"
                )
            if role == "command":
                _check_command(name, options)
            if "also_serves" in options:
                options["also_serves"] = _check_also_serves(role, name, options["also_serves"])
            staged.append(
                Registration(role, name, factory, info.name, info.distribution, info.version,
                             dict(options))
            )

        return register

    def _add(self, registration: Registration) -> None:
        table = self._registry[registration.role]
        key = (registration.role, registration.name)
        if key in self._conflicts:
            self._conflicts[key].append(registration)
            return
        existing = table.get(registration.name)
        if existing is not None:
            self._conflicts[key] = [existing, registration]
            del table[registration.name]
            return
        table[registration.name] = registration

    # -- lookup ----------------------------------------------------------------------
    def registrations(self, role: str) -> dict[str, Registration]:
        """Every usable registration for ``role`` (conflicted names excluded)."""
        self.load()
        return dict(self._registry[_role(role)])

    def conflicts(self) -> dict[tuple[str, str], list[Registration]]:
        self.load()
        return dict(self._conflicts)

    def get(self, role: str, name: str) -> Registration:
        """The registration named ``name``, or a clear error naming what is installed."""
        self.load()
        role = _role(role)
        found = self._registry[role].get(name)
        if found is not None:
            return found
        conflict = self._conflicts.get((role, name))
        if conflict:
            raise PluginConflictError(conflict_message(role, name, conflict))
        raise NotInstalledError(self._missing_message(role, name))

    def select_default(self, role: str, default: str, *, kind: str | None = None) -> Registration:
        """Like :meth:`select`, but prefer ``default`` when nothing is configured and it is
        installed (how an agent picks its runtime and flow)."""
        name = self.configured_name(role, kind)
        if name is None and kind is None:
            installed = self.registrations(role)
            if default in installed or not installed:
                name = default  # when nothing is installed, the error names what to install
        return self.select(role, name, kind=kind)

    def select(self, role: str, name: str | None = None, *, kind: str | None = None) -> Registration:
        """Pick the registration for a role, by explicit name, configuration, or uniqueness."""
        self.load()
        role = _role(role)
        spec = ROLES[role]
        if name is None:
            name = self.configured_name(role, kind)
        if name is not None:
            found = self.get(role, name)
            if kind is not None and kind not in found.kinds:
                served = " or ".join(repr(k) for k in found.kinds)
                raise PluginError(
                    f"{spec.title} {name!r} from {found.source} serves kind {served}, "
                    f"not {kind!r}"
                )
            return found
        candidates = [r for r in self._registry[role].values() if kind is None or r.kind == kind]
        conflicted = [
            regs for (r, n), regs in self._conflicts.items()
            if r == role and (kind is None or regs[0].kind == kind)
        ]
        if len(candidates) == 1 and not conflicted:
            return candidates[0]
        if conflicted and not candidates:
            raise PluginConflictError(conflict_message(role, conflicted[0][0].name, conflicted[0]))
        what = f"{spec.title} for kind {kind!r}" if kind else spec.title
        if not candidates:
            also = [r.name for r in self._registry[role].values() if kind in r.kinds]
            if also:  # served only when chosen by name
                raise PluginError(
                    f"no {spec.title} has kind {kind!r} as its own; {', '.join(also)} can "
                    f"serve it when chosen: {_setting_hint(role, kind).replace('NAME', also[0])}")
            raise NotInstalledError(self._missing_message(role, None, kind=kind))
        listing = ", ".join(f"{r.name} ({r.source})" for r in candidates)
        setting = _setting_hint(role, kind)
        raise PluginError(f"several {what} are installed: {listing}; choose one with {setting}")

    def configured_name(self, role: str, kind: str | None = None) -> str | None:
        """The name configuration selects for ``role`` (and ``kind``), if any."""
        config = self.config
        if kind:
            kind = kind.strip().lower().replace("-", "_")
        if role == "action_executor" and kind:
            return config.executors.get(kind)
        if role == "environment_provider" and kind:
            return config.providers.get(kind)
        return {
            "action_runtime": config.runtime,
            "action_flow": config.flow,
            "planner": config.planner,
            "workspace_backend": config.workspace_backend,
            "env": config.env_name,
        }.get(role)

    def _missing_message(self, role: str, name: str | None, *,
                         kind: str | None = None) -> str:
        """Why ``name`` (or, with ``name=None``, any registration) of ``role`` cannot be
        had; it never shows an empty name."""
        spec = ROLES[role]
        installed = self._registry[role]
        if kind is not None:
            listing = ", ".join(
                f"{r.name} (kind {r.kind}, {r.source})" for r in installed.values()
            ) or "none"
            what = f"no {spec.title} is installed for kind {kind!r}"
        else:
            listing = ", ".join(f"{n} ({r.source})" for n, r in installed.items()) or "none"
            what = (f"{spec.title} {name!r} is not installed" if name
                    else f"no {spec.title} is installed")
        hint = KNOWN_DISTRIBUTIONS.get((role, kind or name or ""))
        install = f"; install it with: pip install {hint}" if hint else ""
        blocked = [p.name for p in self.plugins.values() if p.status in {"blocked", "not_allowed"}]
        note = f"; blocked or not allowed: {', '.join(blocked)}" if blocked else ""
        failed = [f"{p.name}: {p.error}" for p in self.plugins.values() if p.status == "failed"]
        broken = f"; plugins that failed to load: {'; '.join(failed)}" if failed else ""
        return f"{what}. Installed: {listing}{install}{note}{broken}"

    def create(self, role: str, name: str | None = None, *, kind: str | None = None,
               **kwargs: Any) -> Any:
        """Select a registration and call its factory with ``kwargs``."""
        registration = self.select(role, name, kind=kind)
        return registration.load()(**kwargs)

    def iter_plugins(self) -> Iterator[PluginInfo]:
        self.load()
        yield from self.plugins.values()

    def report(self) -> list[dict[str, Any]]:
        """Plugins with their status and error, plus one row per naming conflict."""
        rows = [info.as_dict() for info in self.iter_plugins()]
        for (role, name), regs in self._conflicts.items():
            for info in rows:
                if info["name"] in {r.plugin for r in regs}:
                    info.setdefault("conflicts", []).append(conflict_message(role, name, regs))
        return rows


ROLES_BY_HOOK = {role.hook: key for key, role in ROLES.items()}


def _normalize(name: str) -> str:
    """Compare plugin and distribution names the way packaging does (PEP 503)."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _name_and_version(dist: Any) -> tuple[str | None, str | None]:
    """A distribution's ``Name`` and ``Version`` from the header lines of its METADATA.
    ``dist.name`` and ``dist.version`` each read and parse the whole file as an email
    message; discovery needs two single-line headers of every plugin distribution."""
    if dist is None:
        return None, None
    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    except OSError:
        text = ""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first empty line
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
        if name is not None and version is not None:
            return name, version
    metadata = dist.metadata  # unusual layout: let importlib.metadata parse it
    return name or metadata["Name"], version or metadata["Version"]


def _unknown_hooks(plugin: Any) -> list[str]:
    """Hook implementations whose names match no hookspec (usually a typo)."""
    import difflib

    marker = f"{hookspecs.PROJECT_NAME}_impl"
    problems = []
    for attr in dir(plugin):
        if attr in ROLES_BY_HOOK or not hasattr(getattr(plugin, attr, None), marker):
            continue
        close = difflib.get_close_matches(attr, ROLES_BY_HOOK, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"unknown hook {attr!r}{hint}")
    return problems


def _check_command(name: str, options: dict[str, Any]) -> None:
    """A CLI command needs a word for a name (``serve-mcp``) and a line of help."""
    import re

    if not re.fullmatch(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*", name):
        raise PluginError(f"CLI command {name!r}: a name is lowercase words joined by '-', "
                          "such as 'serve-mcp'")
    help_text = options.get("help")
    if not isinstance(help_text, str) or not help_text.strip():
        raise PluginError(f"CLI command {name!r} needs help=\"one line saying what it does\"")
    unknown = sorted(set(options) - {"help", "description"})
    if unknown:
        raise PluginError(f"CLI command {name!r}: unknown option(s) {', '.join(unknown)}; "
                          "a command takes help= and description=")


def _check_also_serves(role: str, name: str, kinds: Any) -> tuple[str, ...]:
    """``also_serves=`` of an executor or provider: further kind names (served when chosen
    by name)."""
    if not ROLES[role].keyed_by_kind:
        raise PluginError(f"{ROLES[role].title} {name!r}: also_serves= is for executors and "
                          "providers, which serve kinds")
    if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)) \
            or not all(isinstance(k, str) and k for k in kinds):
        raise PluginError(f"{ROLES[role].title} {name!r}: also_serves= is a list of kind "
                          f"names, got {kinds!r}")
    return tuple(kinds)


def _role(role: str) -> str:
    if role not in ROLES:
        raise PluginError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def _setting_hint(role: str, kind: str | None) -> str:
    if role == "action_executor" and kind:
        return f"[executors] {kind} = \"NAME\" or AGENTLY_EXECUTOR_{kind.upper()}=NAME"
    if role == "environment_provider" and kind:
        return f"[providers] {kind} = \"NAME\" or AGENTLY_PROVIDER_{kind.upper()}=NAME"
    setting = {"action_runtime": "runtime", "action_flow": "flow"}.get(role, role)
    return f"{setting} = \"NAME\" or AGENTLY_{setting.upper()}=NAME"


def conflict_message(role: str, name: str, regs: list[Registration]) -> str:
    """The error text for a naming conflict; it names every distribution involved."""
    sources = " and ".join(r.source for r in regs)
    return (
        f"{ROLES[role].title} {name!r} is registered by both {sources}; block one with "
        f"AGENTLY_PLUGINS_BLOCK=<plugin> or [plugins] block = [...]"
    )


_default: PluginManager | None = None
_default_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created and loaded on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PluginManager().load()
    return _default


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests, or after installing plugins at run time)."""
    global _default
    with _default_lock:
        _default = None
