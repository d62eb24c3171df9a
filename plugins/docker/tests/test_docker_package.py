"""``run_in_container`` through an agent, as a host uses it: approval first, a warm
container per scope owner, the host's wall-clock limit (the container is killed and removed,
the next call gets a fresh one), output caps, and bad input from a model giving clear failed
records while the agent carries on. Nothing of ours is left on the engine afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from agently_core_docker.testing import our_containers

from agently_core.errors import ConfigError
from agently_core.models import ActionCall


def docker_agent(make_agent, image: str, handler: str = "auto_approve", **options: Any) -> Any:
    agent = make_agent(approval_handler=handler)
    agent.enable("docker", image=image, **options)
    return agent


def run(agent: Any, cmd: Any, **kwargs: Any) -> Any:
    return agent.action.execute_action("run_in_container", {"cmd": cmd, **kwargs})


def test_approval_gates_every_call_by_default(make_agent, docker_test_image) -> None:
    agent = docker_agent(make_agent, docker_test_image, handler="fail_closed")
    spec = agent.registry.require("run_in_container").spec
    assert spec.approval_required is True and "approval" in spec.description
    record = run(agent, "echo hi")
    assert record.status == "approval_required", record.error
    assert agent.manager.list(kind="docker") == []  # no container even started


def test_warm_container_timeout_caps_and_bad_input(make_agent, docker_engine,
                                                    docker_test_image) -> None:
    agent = docker_agent(make_agent, docker_test_image, timeout=3, max_output_bytes=1000)
    first = run(agent, "echo $$ > /work/mark; cat /etc/hostname")
    assert first.status == "success", first.error
    assert first.result["exit_code"] == 0
    host = first.result["stdout"].strip()
    assert [c for c in our_containers(docker_engine)] != []

    warm = run(agent, ["cat", "/work/mark", "/etc/hostname"])  # the same container, warm
    assert warm.status == "success" and host in warm.result["stdout"]

    capped = run(agent, "yes | head -c 100000")
    assert capped.result["truncated"] is True and len(capped.result["stdout"]) == 1000

    failing = run(agent, "exit 7")
    assert failing.status == "success" and failing.result["exit_code"] == 7

    # bad input: each a clear failed record, and the container carries on
    bad_type = run(agent, 5)
    assert bad_type.status == "failed" and "cmd" in bad_type.error
    privileged = agent.action.execute_action("run_in_container",
                                             {"cmd": "id", "privileged": True})
    assert privileged.status == "failed" and "privileged" in privileged.error
    chosen = run(agent, "id", image="evil/rootkit:latest")
    assert chosen.status == "failed" and "is not one of" in chosen.error, chosen.error
    widened = agent.action.execute_actions([ActionCall(
        action="run_in_container", kwargs={"cmd": "cat /proc/net/dev"}, source="model",
        policy={"network": True, "max_processes": 100000})])[0]
    assert widened.status == "success", widened.error
    assert "eth0" not in widened.result["stdout"]  # a model cannot widen the network
    again = run(agent, "cat /etc/hostname")
    assert again.status == "success" and again.result["stdout"].strip() == host

    # the host's wall-clock limit: killed and removed, the next call gets a fresh one
    slow = run(agent, "sleep 60")
    assert slow.status == "failed" and "killed and removed" in slow.error
    assert our_containers(docker_engine) == []
    fresh = run(agent, "cat /etc/hostname; cat /work/mark 2>&1")
    assert fresh.status == "success", fresh.error
    assert fresh.result["stdout"].split()[0] != host and "No such file" in fresh.result["stdout"]

    # a model's shorter limit applies too
    short = run(agent, "sleep 5", timeout_seconds=0.5)
    assert short.status == "failed" and "0.5s limit" in short.error

    agent.close()
    assert our_containers(docker_engine) == []


def test_a_missing_image_fails_clearly(make_agent, docker_engine) -> None:
    agent = docker_agent(make_agent, "agently-core/not-built:here")
    record = run(agent, "id")
    assert record.status == "failed" and "nothing is pulled" in record.error


@pytest.mark.parametrize(("options", "message"), [
    ({"image": "NOT valid"}, "not a Docker image name"),
    ({"image": "x", "user": "0:0"}, "non-root"),
    ({"image": "x", "scope": "forever"}, "unknown scope"),
    ({"image": "x", "network": "yes"}, "network must be True or False"),
    ({"image": "x", "timeout": 0}, "timeout must be a positive number"),
])
def test_bad_host_options_are_refused_at_mount(make_agent, options, message) -> None:
    agent = make_agent()
    with pytest.raises(ConfigError, match=message):
        agent.enable("docker", **options)


def test_a_model_image_is_refused_before_any_container_starts(make_agent,
                                                              docker_test_image) -> None:
    agent = docker_agent(make_agent, docker_test_image)
    [record] = agent.action.execute_actions([ActionCall(
        action="run_in_container", kwargs={"cmd": "id", "image": "evil/rootkit:latest"},
        source="model")])
    assert record.status == "failed"
    assert f"is not one of [{docker_test_image!r}]" in record.error, record.error
    assert agent.manager.list(kind="docker") == []  # refused with the arguments


def test_several_host_images_are_several_mounts(make_agent, docker_test_image,
                                                docker_default_image) -> None:
    """A host offers several of its images by mounting the package once per image under
    different names: each action runs only its own image, in its own warm container."""
    agent = make_agent(approval_handler="auto_approve")
    agent.enable("docker", image=docker_test_image, name="run_in_busybox")
    agent.enable("docker", image=docker_default_image, name="run_in_debian")
    line = "cat /etc/debian_version 2>/dev/null || echo none; cat /etc/hostname"
    small = agent.action.execute_action("run_in_busybox", {"cmd": line})
    debian = agent.action.execute_action("run_in_debian", {"cmd": line})
    again = agent.action.execute_action("run_in_busybox", {"cmd": line})
    assert small.status == debian.status == again.status == "success"
    assert small.result["stdout"].startswith("none\n")
    assert debian.result["stdout"].startswith("12.")
    assert again.result["stdout"] == small.result["stdout"]  # the same warm container
    assert debian.result["stdout"].split()[-1] != small.result["stdout"].split()[-1]
    wrong = agent.action.execute_action("run_in_busybox", {"cmd": "id",
                                                           "image": docker_default_image})
    assert wrong.status == "failed" and "is not one of" in wrong.error
