"""Configuration: which runtime, flow, planner, executors and providers to use.

Sources, highest precedence first:

1. arguments passed in code (``create_agent(config={...})``, ``Config.load(overrides=...)``);
2. ``AGENTLY_*`` environment variables;
3. ``agently.toml`` (or the file named by ``AGENTLY_CONFIG``);
4. ``[tool.agently-core]`` in ``pyproject.toml``.

The files are looked up in the working directory and its parents; the nearest directory
that holds either one wins. Tables merge key by key, so ``[executors]`` from pyproject.toml
and ``AGENTLY_EXECUTOR_PYTHON`` combine, and so do ``[planner_options]`` and
``AGENTLY_PLANNER_OPTION_<KEY>`` (the key lower-cased, the value parsed as JSON when it
parses, else kept as a string).

A planner's key is never a setting: a model planner reads it from the environment
variable its ``api_key_env`` option names. :meth:`Config.to_dict` and ``repr`` mask the
value of every secret-named planner option all the same (an ``Authorization`` entry of
``extra_headers``, say).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

_SCALARS = {
    "runtime": str,
    "flow": str,
    "planner": str,
    "workspace_backend": str,
    "approval_handler": str,
    "approval_timeout": float,
    "runtime.show_deprecation_warnings": bool,
    "otel": bool,
}
#: The Config field of each dotted setting (``[runtime] show_deprecation_warnings``).
_FIELDS = {"runtime.show_deprecation_warnings": "show_deprecation_warnings"}
#: Keys of a ``[runtime]`` table: ``name`` is the ActionRuntime (``runtime = "NAME"``).
_RUNTIME_KEYS = ("name", "show_deprecation_warnings")
_TABLES = ("executors", "providers", "plugins", "policy", "action", "planner_options", "env",
           "ray")
_PLUGIN_KEYS = {"allow", "block", "autoload"}
_ACTION_KEYS = {"max_rounds", "concurrency", "planning_protocol"}
PLANNING_PROTOCOLS = ("structured_plan", "native_tool_calls")


@dataclass(frozen=True)
class Config:
    """Resolved settings. Build one with :meth:`Config.load`."""

    runtime: str | None = None
    flow: str | None = None
    planner: str | None = None
    workspace_backend: str | None = None
    approval_handler: str | None = None
    approval_timeout: float | None = None
    #: The ``runtime.show_deprecation_warnings`` setting: warn (once per API per process)
    #: when the older surface (``tool_func``, ``use_tool(s)``, ``use_sandbox``,
    #: ``tool_logs``) is used.
    show_deprecation_warnings: bool = True
    #: Turn on the event observers registered for the ``otel`` setting (agently-core-otel).
    otel: bool = False
    executors: Mapping[str, str] = field(default_factory=dict)
    providers: Mapping[str, str] = field(default_factory=dict)
    plugins_allow: tuple[str, ...] | None = None
    plugins_block: tuple[str, ...] = ()
    autoload: bool = True
    policy: Mapping[str, Any] = field(default_factory=dict)
    action: Mapping[str, Any] = field(default_factory=dict)
    #: Options of the configured planner (``[planner_options]``), given to its factory.
    planner_options: Mapping[str, Any] = field(default_factory=dict)
    #: The agent environment (``[env] name``, see :func:`agently_core.env.get_env`).
    env_name: str | None = None
    #: The other ``[env]`` keys: options given to the Env's factory.
    env_options: Mapping[str, Any] = field(default_factory=dict)
    #: The ``[ray]`` table: settings of the ``ray`` provider (agently-core-ray).
    ray: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain data, for a configuration dump: the values of
        secret-named planner options are masked (see :func:`masked_options`)."""
        return {
            "runtime": self.runtime, "flow": self.flow, "planner": self.planner,
            "workspace_backend": self.workspace_backend,
            "approval_handler": self.approval_handler,
            "approval_timeout": self.approval_timeout,
            "runtime.show_deprecation_warnings": self.show_deprecation_warnings,
            "otel": self.otel,
            "executors": dict(self.executors), "providers": dict(self.providers),
            "plugins_allow": None if self.plugins_allow is None else list(self.plugins_allow),
            "plugins_block": list(self.plugins_block), "autoload": self.autoload,
            "policy": dict(self.policy), "action": dict(self.action),
            "planner_options": masked_options(self.planner_options),
            "env": {"name": self.env_name, **masked_options(self.env_options)},
            "ray": masked_options(self.ray),
            "sources": list(self.sources),
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.to_dict().items())
        return f"Config({fields})"

    @classmethod
    def load(
        cls,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        """Read every source and merge them by precedence."""
        env = os.environ if env is None else env
        layers: list[tuple[str, dict[str, Any]]] = []
        for name, data in _file_layers(Path(cwd) if cwd else Path.cwd(), env):
            layers.append((name, _env_table(_runtime_table(name, data))))
        env_layer = _env_layer(env)
        if env_layer:
            layers.append(("environment", env_layer))
        if overrides:
            layers.append(("arguments", _env_table(_runtime_table("arguments",
                                                                   dict(overrides)))))
        merged: dict[str, Any] = {}
        for source, data in layers:
            _check(source, data)
            for key, value in data.items():
                if key == "planner_options":
                    value = {_option_key(k): v for k, v in value.items()}
                if key == "env":
                    before = merged.get("env", {}).get("name")
                    if value.get("name", before) != before:
                        merged.pop("env", None)  # another env: the options below were its own
                    value = {_option_key(k): v for k, v in value.items()}
                if key in _TABLES and isinstance(value, Mapping):
                    merged.setdefault(key, {}).update(value)
                else:
                    merged[key] = value
        return cls._from_dict(merged, tuple(source for source, _ in layers))

    @classmethod
    def _from_dict(cls, data: dict[str, Any], sources: tuple[str, ...]) -> Config:
        plugins = data.get("plugins", {})
        allow = plugins.get("allow")
        return cls(
            **{_FIELDS.get(key, key): data[key] for key in _SCALARS if key in data},
            executors={_kind(k): v for k, v in data.get("executors", {}).items()},
            providers={_kind(k): v for k, v in data.get("providers", {}).items()},
            plugins_allow=None if allow is None else tuple(_names(allow)),
            plugins_block=tuple(_names(plugins.get("block", ()))),
            autoload=bool(plugins.get("autoload", True)),
            policy=dict(data.get("policy", {})),
            action=dict(data.get("action", {})),
            planner_options=dict(data.get("planner_options", {})),
            env_name=data.get("env", {}).get("name"),
            env_options={k: v for k, v in data.get("env", {}).items() if k != "name"},
            ray=dict(data.get("ray", {})),
            sources=sources,
        )


def _runtime_table(source: str, data: dict[str, Any]) -> dict[str, Any]:
    """A ``[runtime]`` table (``name``, ``show_deprecation_warnings``) as the settings it
    holds: ``runtime`` (the ActionRuntime's name) and ``runtime.show_deprecation_warnings``.
    ``runtime = "NAME"`` stays as it is."""
    table = data.get("runtime")
    if not isinstance(table, Mapping):
        return data
    unknown = set(table) - set(_RUNTIME_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [runtime]: {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(_RUNTIME_KEYS)}")
    data = {key: value for key, value in data.items() if key != "runtime"}
    if "name" in table:
        data["runtime"] = table["name"]
    for key in _RUNTIME_KEYS[1:]:
        if key in table:
            dotted = f"runtime.{key}"
            if dotted in data and data[dotted] != table[key]:
                raise ConfigError(f"{source}: {dotted} is set twice, to {data[dotted]!r} and "
                                  f"{table[key]!r}")
            data[dotted] = table[key]
    return data


def _env_table(data: dict[str, Any]) -> dict[str, Any]:
    """``env = "NAME"`` as the table ``[env] name = "NAME"``."""
    if isinstance(data.get("env"), str):
        data = {**data, "env": {"name": data["env"]}}
    return data


def masked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for display: the value of every secret-named key, nested ones too
    (``extra_headers.Authorization``), masked by the redactor's key rules. A key ending in
    ``_env`` names an environment variable (``api_key_env``) and is shown as it is."""
    from .redaction import Redactor

    redactor = Redactor()
    return {key: value if key.endswith("_env") and isinstance(value, str)
            else redactor.redact({key: value})[key] for key, value in options.items()}


def _option_key(name: str) -> str:
    return name.strip().replace("-", "_")


def _kind(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v and v.strip()]


def _check(source: str, data: Mapping[str, Any]) -> None:
    """Reject unknown settings and values of the wrong type, naming the source."""
    for key, value in data.items():
        if key in _SCALARS:
            _check_scalar(source, key, value, _SCALARS[key])
        elif key in _TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: [{key}] must be a table, got {value!r}")
            allowed = {"plugins": _PLUGIN_KEYS, "action": _ACTION_KEYS}.get(key)
            unknown = set(value) - allowed if allowed else set()
            if unknown:
                raise ConfigError(
                    f"{source}: unknown key(s) in [{key}]: {', '.join(sorted(unknown))}; "
                    f"known: {', '.join(sorted(allowed or ()))}"
                )
            _check_table(source, key, value)
        else:
            known = ", ".join(sorted([*_SCALARS, *_TABLES]))
            raise ConfigError(f"{source}: unknown setting {key!r}; known settings: {known}")


def _check_scalar(source: str, key: str, value: Any, expected: type) -> None:
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        if not ok:
            raise ConfigError(f"{source}: {key!r} must be a positive number, got {value!r}")
    elif not isinstance(value, expected):
        raise ConfigError(f"{source}: {key!r} must be a {expected.__name__}, got {value!r}")
    elif expected is str and not value.strip():
        raise ConfigError(f"{source}: {key!r} must not be empty")


def _check_table(source: str, key: str, table: Mapping[str, Any]) -> None:
    if key in {"executors", "providers"}:
        for kind, name in table.items():
            _check_scalar(source, f"[{key}] {kind}", name, str)
    elif key == "plugins":
        for field_name in ("allow", "block"):
            if field_name in table:
                value = table[field_name]
                items = value.split(",") if isinstance(value, str) else value
                if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
                    raise ConfigError(f"{source}: [plugins] {field_name} must be a list of names "
                                      f"or a comma-separated string, got {value!r}")
        if "autoload" in table:
            _check_scalar(source, "[plugins] autoload", table["autoload"], bool)
    elif key == "action":
        for field_name in ("max_rounds", "concurrency"):
            value = table.get(field_name)
            if field_name in table and (not isinstance(value, int) or isinstance(value, bool)
                                        or value < 1):
                raise ConfigError(f"{source}: [action] {field_name} must be an integer >= 1, "
                                  f"got {value!r}")
        protocol = table.get("planning_protocol")
        if "planning_protocol" in table and protocol not in PLANNING_PROTOCOLS:
            raise ConfigError(f"{source}: [action] planning_protocol must be one of "
                              f"{', '.join(PLANNING_PROTOCOLS)}, got {protocol!r}")
    elif key == "env":
        if "name" in table:
            _check_scalar(source, "[env] name", table["name"], str)
        for name in table:
            if not isinstance(name, str) or not _option_key(name).isidentifier():
                raise ConfigError(f"{source}: [env] key {name!r} is not an option name "
                                  "(letters, digits and _)")
    elif key == "planner_options":
        for name in table:
            if not isinstance(name, str) or not _option_key(name).isidentifier():
                raise ConfigError(f"{source}: [planner_options] key {name!r} is not an option "
                                  "name (letters, digits and _)")
    elif key == "policy" and table:
        from pydantic import ValidationError

        from .models import Policy

        try:
            Policy().merge(dict(table))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"{source}: invalid [policy]: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _may_hold_table(pyproject: Path) -> bool:
    """Whether a pyproject.toml can hold ``[tool.agently-core]`` at all: a ``tool.agently-core``
    key path (however quoted or dotted), a ``[tool]`` table or ``tool = ...`` inline
    table, or a unicode escape that could spell a key. Most files have none, and skipping
    them spares every process ``tomllib`` (about 10 ms)."""
    import re

    try:
        data = pyproject.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {pyproject}: {exc}") from exc
    if b"\\u" in data or b"\\U" in data:
        return True
    return re.search(rb"""["']?tool["']?[ \t]*\.[ \t]*["']?agently-core"""
                     rb"""|(?m:^[ \t]*(?:\[[ \t]*["']?tool["']?[ \t]*\]|["']?tool["']?[ \t]*=))""",
                     data) is not None


def _file_layers(cwd: Path, env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    explicit = env.get("AGENTLY_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"AGENTLY_CONFIG points to {path}, which is not a file")
        return [(str(path), _read_toml(path))]
    for directory in (cwd, *cwd.parents):
        agently_toml = directory / "agently.toml"
        pyproject = directory / "pyproject.toml"
        layers: list[tuple[str, dict[str, Any]]] = []
        if pyproject.is_file() and _may_hold_table(pyproject):
            table = _read_toml(pyproject).get("tool", {}).get("agently-core")
            if table is not None:
                layers.append((f"{pyproject} [tool.agently-core]", table))
        if agently_toml.is_file():
            layers.append((str(agently_toml), _read_toml(agently_toml)))
        if layers:
            return layers
    return []


def _env_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"environment: {name} must be a boolean (1/0, true/false), got {value!r}")


def _env_float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"environment: {name} must be a number, got {value!r}") from None


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    # sorted: AGENTLY_DISABLE_PLUGIN_AUTOLOAD is read before AGENTLY_PLUGINS_AUTOLOAD,
    # so the explicit AGENTLY_PLUGINS_AUTOLOAD wins when both are set.
    for name, value in sorted(env.items()):
        if not name.startswith("AGENTLY_") or not value.strip():
            continue  # an empty variable counts as unset
        key = name[len("AGENTLY_") :].lower()
        key = _ENV_SETTINGS.get(key, key)
        if key in _SCALARS:
            kind = _SCALARS[key]
            data[key] = _env_bool(name, value) if kind is bool else _env_float(name, value) \
                if kind is float else value
        elif key.startswith("executor_") and len(key) > 9:
            data.setdefault("executors", {})[key[9:]] = value
        elif key.startswith("provider_") and len(key) > 9:
            data.setdefault("providers", {})[key[9:]] = value
        elif key in {"plugins_allow", "plugins_block"}:
            data.setdefault("plugins", {})[key[8:]] = _names(value)
        elif key == "plugins_autoload":
            data.setdefault("plugins", {})["autoload"] = _env_bool(name, value)
        elif key == "disable_plugin_autoload":
            data.setdefault("plugins", {})["autoload"] = not _env_bool(name, value)
        elif key == "env_name":
            data.setdefault("env", {})["name"] = value
        elif key.startswith("env_option_") and len(key) > 11:
            data.setdefault("env", {})[key[11:]] = _env_json(value)
        elif key.startswith("planner_option_") and len(key) > 15:
            data.setdefault("planner_options", {})[key[15:]] = _env_json(value)
    return data


#: The environment spelling of each dotted setting (``AGENTLY_RUNTIME_SHOW_DEPRECATION_WARNINGS``).
_ENV_SETTINGS = {key.replace(".", "_"): key for key in _SCALARS if "." in key}


def _env_json(value: str) -> Any:
    """A planner option's value: JSON when it parses (``0.2``, ``false``, ``{...}``),
    else the text as it is (``gpt-4o``)."""
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value
