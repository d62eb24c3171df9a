"""browser_docker: BrowserEnv's service in a container (docker or podman), from the local
browser image, behind the same egress guard. One env for the module, made the way a user
makes it: ``create_agent(config={"env": {"name": "browser_docker", ...}})``.

The image is built when the engine lacks it (mmdebstrap from the Debian mirror, about three
minutes, once per engine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from agently_core_browser.browser_env import find_server
from agently_core_browser.browser_env_docker import BrowserDockerEnv, container_engine
from agently_core_browser.testing import PageServer, snapshot_ref

from agently_core import ConfigError, create_agent
from agently_core.testing.requirements import require

FORM = """<!doctype html><title>Form</title><h1>Search form</h1>
<input aria-label="Query" id="q">
<button onclick="document.getElementById('out').textContent =
  'You searched for ' + document.getElementById('q').value">Search</button>
<p id="out">nothing yet</p>"""


@pytest.fixture(scope="module")
def engine() -> str:
    require(shutil.which("podman") is not None or shutil.which("docker") is not None,
            "no container engine (apt-get install podman; ./dev installs it)")
    require(find_server() is not None, "@playwright/mcp is not installed (./dev setup)")
    try:
        return container_engine()
    except ConfigError as exc:
        require(False, str(exc))
        raise


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PageServer, PageServer]]:
    pages, forbidden = PageServer({"/": FORM}), PageServer({"/": "the forbidden page"})
    yield pages, forbidden
    pages.close()
    forbidden.close()


@pytest.fixture(scope="module")
def agent(engine: str, servers: tuple[PageServer, PageServer]) -> Iterator[Any]:
    from agently_core_browser.browser_env_docker import image_present

    if not image_present(engine):
        require(shutil.which("mmdebstrap") is not None,
                "mmdebstrap is not installed (apt-get install mmdebstrap); it builds the "
                "browser image")
    pages, _ = servers
    agent = create_agent(config={"env": {"name": "browser_docker", "allow": [pages.allow_entry],
                                         "engine": os.path.basename(engine)}})
    agent.build_env()
    yield agent
    agent.close()


def _inspect(engine: str, name: str) -> dict[str, Any] | None:
    done = subprocess.run([engine, "inspect", name], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)[0]


def test_the_env_runs_in_a_hardened_container(agent, engine: str) -> None:
    env = agent.env
    assert isinstance(env, BrowserDockerEnv) and env.container
    info = _inspect(engine, env.container)
    assert info is not None and info["State"]["Running"]
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapAdd"] in (None, []) and "no-new-privileges" in " ".join(
        host.get("SecurityOpt") or [])
    assert info["Config"]["User"] == "65534:65534"
    assert not any(v.startswith("AGENTLY_") for v in info["Config"]["Env"] or [])


def test_navigate_type_and_click_in_the_container(agent, servers) -> None:
    pages, _ = servers
    env = agent.env
    record = agent.action.execute_action("browser_navigate", {"url": pages.url("/")})
    assert record.status == "success", record.error
    box = snapshot_ref(env.get_state(), "textbox", "Query")
    record = agent.action.execute_action("browser_type", {"target": box, "text": "podman"})
    assert record.status == "success", record.error
    button = snapshot_ref(env.get_state(), "button", "Search")
    record = agent.action.execute_action("browser_click", {"target": button})
    assert record.status == "success", record.error
    assert "You searched for podman" in env.get_state()


def test_forbidden_places_are_refused_and_get_nothing(agent, servers) -> None:
    _, forbidden = servers
    for url in (forbidden.url("/"), "http://169.254.169.254/latest/meta-data/"):
        record = agent.action.execute_action("browser_navigate", {"url": url})
        assert record.status == "failed" and "egress guard refused" in record.error
    assert forbidden.hits == 0


def test_code_in_the_container_has_no_network(agent, servers) -> None:
    from agently_core._sync import run_sync

    _, forbidden = servers
    env = agent.env

    async def run(code: str) -> str:
        result = await env.connection.call_tool("browser_run_code_unsafe", {"code": code})
        return "\n".join(block.text for block in result.content)

    answer = run_sync(run, "async (page) => await fetch('URL').then(r => 'reached ' + "
                      "r.status, e => 'failed ' + e.cause?.code)".replace(
                          "URL", forbidden.url("/direct")))
    assert '"failed E' in answer and '"reached' not in answer, answer
    assert forbidden.hits == 0


def test_closing_the_agent_removes_the_container(agent, engine: str) -> None:
    env = agent.env
    name = env.container
    agent.close()
    assert not env.built and env.container is None
    deadline = time.monotonic() + 20
    while _inspect(engine, name) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _inspect(engine, name) is None


@pytest.mark.parametrize("options, words", [
    ({"engine": "lxc"}, "engine must be one of"),
    ({"isolation": "none"}, "no isolation option"),
    ({"memory_mb": 1}, "memory_mb"),
    ({"image": ""}, "image must be"),
])
def test_bad_options_are_config_errors(options: dict[str, Any], words: str) -> None:
    from agently_core.env import get_env

    with pytest.raises(ConfigError, match=words):
        get_env({"name": "browser_docker", **options})


def test_a_missing_image_without_building_is_a_config_error(engine: str) -> None:
    env = BrowserDockerEnv(engine=os.path.basename(engine), image="agently-core/no-such:image",
                           build_image=False)
    with pytest.raises(ConfigError, match="has no image"):
        env.build()
    assert not env.built
