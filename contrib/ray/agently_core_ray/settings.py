"""The ``[ray]`` settings of the ``ray`` provider, checked.

.. code-block:: toml

    [providers]
    python = "ray"

    [ray]
    address = "auto"              # an existing cluster (ray start --head); "local" starts one
    namespace = "agently"
    inner_provider.python = "python"

    [ray.placement.python]        # per kind; every key is optional
    num_cpus = 0
    memory = 536870912            # bytes Ray reserves for the actor
    resources = { sandbox_node = 0.01 }
    label_selector = { zone = "eu-1" }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agently_core.errors import ConfigError

KEYS = {"address", "namespace", "inner_provider", "placement", "start_timeout",
        "call_grace", "health_timeout", "ping_fresh_seconds"}
PLACEMENT_KEYS = {"num_cpus", "num_gpus", "memory", "resources", "label_selector"}
#: The native provider of each kind when ``inner_provider`` does not name one.
DEFAULT_INNER = {"python": "python", "node": "node", "bash": "bash", "sqlite": "sqlite"}


@dataclass(frozen=True)
class RaySettings:
    """What the ``ray`` provider connects to and where it places each kind's actor."""

    address: str = "auto"
    namespace: str = "agently"
    inner_provider: Mapping[str, str] = field(default_factory=dict)
    placement: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Seconds an actor (and the resource inside it) may take to start.
    start_timeout: float = 120.0
    #: Seconds a forwarded call may run past its own deadline before the host gives up on
    #: the actor (a lost node, a wedged raylet).
    call_grace: float = 5.0
    #: Seconds a health ping of an actor may take.
    health_timeout: float = 10.0
    #: Every health check reads the actor's watch, a call kept pending on the actor that
    #: Ray fails when the actor or its node is lost and the actor answers when its
    #: resource stops (no round trip). A sandbox that has not answered for this many
    #: seconds also gets a real ping of the actor and of the resource inside it. 0: a
    #: real ping before every reuse.
    ping_fresh_seconds: float = 10.0

    def inner(self, kind: str) -> str:
        """The name of the provider whose resource the actor of ``kind`` hosts."""
        name = self.inner_provider.get(kind) or DEFAULT_INNER.get(kind)
        if not name:
            raise ConfigError(f"[ray] inner_provider.{kind} is not set: name the provider "
                              f"whose {kind!r} resource the Ray actor hosts")
        if name == "ray":
            raise ConfigError(f"[ray] inner_provider.{kind} = 'ray' would host the ray "
                              "provider in itself; name a native provider")
        return name

    def actor_options(self, kind: str) -> dict[str, Any]:
        """Ray actor options for ``kind``'s actor (``num_cpus`` 0 unless set: the sandbox is
        a process of its own, not a Ray task; reserve capacity with custom resources)."""
        options: dict[str, Any] = {"num_cpus": 0}
        options.update(self.placement.get(kind, {}))
        return options


def _number(key: str, value: Any, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
            or (integer and not isinstance(value, int)):
        raise ConfigError(f"[ray] {key} must be a {'whole ' if integer else ''}number >= 0, "
                          f"got {value!r}")
    return value


def _placement(kind: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[ray.placement.{kind}] must be a table, got {table!r}")
    unknown = set(table) - PLACEMENT_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) in [ray.placement.{kind}]: "
                          f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(PLACEMENT_KEYS))}")
    out: dict[str, Any] = {}
    for key in ("num_cpus", "num_gpus"):
        if key in table:
            out[key] = _number(f"placement.{kind}.{key}", table[key])
    if "memory" in table:
        out["memory"] = int(_number(f"placement.{kind}.memory", table["memory"], integer=True))
    for key in ("resources", "label_selector"):
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"[ray.placement.{kind}] {key} must be a table, got {value!r}")
        if key == "resources":
            out[key] = {k: _number(f"placement.{kind}.resources.{k}", v) for k, v in value.items()}
        else:
            if not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"[ray.placement.{kind}] label_selector values must be "
                                  f"strings, got {dict(value)!r}")
            out[key] = dict(value)
    return out


def ray_settings(table: Mapping[str, Any] | None) -> RaySettings:
    """Check the ``[ray]`` table; :class:`ConfigError` naming the bad key."""
    table = dict(table or {})
    unknown = set(table) - KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) in [ray]: {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(sorted(KEYS))}")
    for key in ("address", "namespace"):
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            raise ConfigError(f"[ray] {key} must be a non-empty string, got {table[key]!r}")
    inner = table.get("inner_provider", {})
    if not isinstance(inner, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in inner.items()):
        raise ConfigError(f"[ray] inner_provider must map kinds to provider names, got {inner!r}")
    placement = table.get("placement", {})
    if not isinstance(placement, Mapping):
        raise ConfigError(f"[ray] placement must be a table of kinds, got {placement!r}")
    times = {key: float(_number(key, table[key])) for key in
             ("start_timeout", "call_grace", "health_timeout", "ping_fresh_seconds")
             if key in table}
    return RaySettings(address=table.get("address", "auto"),
                       namespace=table.get("namespace", "agently"),
                       inner_provider=dict(inner),
                       placement={k: _placement(k, v) for k, v in placement.items()}, **times)


__all__ = ["RaySettings", "ray_settings"]
