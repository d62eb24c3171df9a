"""A real Ray cluster on this machine for the session: a head and two worker nodes, each a
separate set of processes (``ray.cluster_utils.Cluster``), one CPU each and no dashboard.
Torn down at the end; the teardown fails when an actor or a Ray process is left behind."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agently_core.testing.requirements import require

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError:  # CI must have it: require() fails there, skips elsewhere
    ray = None  # type: ignore[assignment]


#: A variable only node_b's processes have (the agent's host never sees its value).
NODE_SECRET_NAME = "NODE_ONLY_TOKEN"
NODE_SECRET = "nodeb-secret-4f9c2a7e1d"


def named_actors() -> list[dict[str, str]]:
    """The live named actors of the cluster (every actor the ray provider starts is named)."""
    return [a for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("agently-")]


def ray_processes() -> list[str]:
    """Ray processes running on this machine (workers, raylets, the GCS); exited ones
    waiting to be reaped (``<defunct>``) are not running."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if ("ray::" in line or "raylet" in line or "gcs_server" in line)
            and "ps -eo" not in line and "<defunct>" not in line]


def wait_no_ray_process(seconds: float = 10.0) -> list[str]:
    """:func:`ray_processes`, once none is left or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while (left := ray_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The session's cluster, connected; ``.node_a``/``.node_b`` are the worker nodes
    (custom resources ``node_a``/``node_b``, and ``pool`` on both; node_b's processes
    have :data:`NODE_SECRET_NAME` in their environment)."""
    require(ray is not None, "ray is not installed (uv sync installs agently-core-ray's ray)")
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )
    from ray._raylet import Config as RayConfig

    # token authentication: every process of the cluster, and every driver, must hold it
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = generate_new_authentication_token()
    RayConfig.initialize("")  # this process reads the mode again
    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.node_a = cluster.add_node(num_cpus=1, resources={"node_a": 1, "pool": 1})
        cluster.node_b = cluster.add_node(num_cpus=1, resources={"node_b": 1, "pool": 1},
                                          env_vars={NODE_SECRET_NAME: NODE_SECRET})
        cluster.node_secret = (NODE_SECRET_NAME, NODE_SECRET)
        cluster.wait_for_nodes()
        yield cluster
        left = named_actors()
    finally:
        ray.shutdown()
        cluster.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        RayConfig.initialize("")
    assert not left, f"actors left behind: {left}"
    left = wait_no_ray_process()
    assert not left, f"Ray processes left behind: {left}"


@pytest.fixture
def no_actor_left(ray_cluster: Any) -> Iterator[Callable[[], list[dict[str, str]]]]:
    """Yields :func:`named_actors`; after the case, none may be left."""
    yield named_actors
    assert named_actors() == []


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def make_agent(agently_agent_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``make_agent(**settings)``: an agent on ``settings`` only, closed after the case
    (which releases its actors)."""
    return agently_agent_factory
