"""BrowserEnv: the real @playwright/mcp server, sandboxed, driving Debian's Chromium behind
the egress guard; its tools forwarded through agently-core's MCP client.

One env is shared by the module (building one costs the MCP server's start plus Chromium's
launch, a few seconds on a busy machine); the end-to-end test builds its own through
``create_agent(config={"env": {"name": "browser", ...}})``, as a user would.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from agently_core_browser.browser_env import BrowserEnv, find_server
from agently_core_browser.testing import Page, PageServer, snapshot_ref

from agently_core import ConfigError, create_agent
from agently_core.errors import ActionError
from agently_core.testing.requirements import require

FORM = """<!doctype html><title>Form</title>
<h1>Search form</h1>
<input aria-label="Query" id="q">
<button onclick="document.getElementById('out').textContent =
  'You searched for ' + document.getElementById('q').value">Search</button>
<p id="out">nothing yet</p>"""
SECRET = "s3cr3t-host-value"


def _needs() -> None:
    require(find_server() is not None,
            "@playwright/mcp is not installed (./dev setup installs it in .cache/npm)")
    require(os.access("/usr/lib/chromium/chromium", os.X_OK),
            "Debian's chromium is not installed (apt-get install chromium; ./dev installs it)")
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed (apt-get install "
                                                "bubblewrap)")
    require(shutil.which("node") is not None, "Node.js is not installed")


@pytest.fixture(scope="module")
def pages(forbidden: PageServer, udp: socket.socket) -> Iterator[PageServer]:
    attack = (f"<title>Attack</title><h1>attack</h1>"
              f"<img src='{forbidden.url('/img')}'>"
              f"<script>fetch('{forbidden.url('/fetch')}').catch(() => 0);"
              f"fetch('http://169.254.169.254/latest/meta-data/').catch(() => 0)</script>")
    redirect = Page("", status=302, headers={"Location": forbidden.url("/redirected")})
    stun = (f"<title>stun</title><script>const pc = new RTCPeerConnection({{iceServers: "
            f"[{{urls: 'stun:127.0.0.1:{udp.getsockname()[1]}'}}]}});"
            "pc.createDataChannel('x');"
            "pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') "
            "document.title = 'gathered'; };"
            "pc.createOffer().then(o => pc.setLocalDescription(o));</script>")
    server = PageServer({"/": FORM, "/attack": attack, "/redirect": redirect, "/stun": stun})
    yield server
    server.close()


@pytest.fixture(scope="module")
def env(pages: PageServer) -> Iterator[BrowserEnv]:
    _needs()
    browser = BrowserEnv(allow=[pages.allow_entry])
    os.environ["AGENTLY_TEST_BROWSER_SECRET"] = SECRET  # the host's: never in the sandbox
    try:
        browser.build()
    finally:
        del os.environ["AGENTLY_TEST_BROWSER_SECRET"]
    yield browser
    browser.cleanup()


@pytest.fixture(scope="module")
def agent(env: BrowserEnv) -> Iterator[Any]:
    """An agent with the env's tools mounted (not attached: closing it leaves the env)."""
    agent = create_agent()
    agent.use_actions(env.get_tools())
    yield agent
    agent.close()


def _tree(root: int) -> dict[int, tuple[str, int]]:
    """``pid -> (name, uid)`` of ``root`` and every live descendant."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] in ("Z", "X"):
            continue
        parents[int(entry)] = int(fields[1])
        info[int(entry)] = (name, uid)
    tree = {root} if root in info else set()
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: info[pid] for pid in tree}


def _alive(pids: Iterator[int] | list[int]) -> list[int]:
    live = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    live.append(pid)
        except OSError:
            pass
    return live


# -- discovery and forwarding ----------------------------------------------------------
def test_the_servers_tools_are_discovered_with_their_schemas(env: BrowserEnv, agent) -> None:
    names = {tool.name for tool in env.discovered}
    assert {"browser_navigate", "browser_click", "browser_type", "browser_snapshot",
            "browser_navigate_back", "browser_press_key"} <= names
    assert "browser_run_code_unsafe" not in names  # left out by default
    info = {i["name"]: i for i in agent.action.get_action_info()}
    assert names <= set(info)
    served = next(t for t in env.discovered if t.name == "browser_type")
    assert info["browser_type"]["kwargs"]["properties"].keys() == \
        served.input_schema["properties"].keys()
    assert {"target", "text"} <= set(info["browser_type"]["kwargs"]["required"])


def test_a_built_env_starts_on_a_blank_page(env: BrowserEnv) -> None:
    assert env.get_state().startswith("Browser (the page after the last action")
    assert "about:blank" in env.get_state()


def test_navigate_type_and_click_through_the_forwarded_tools(env: BrowserEnv, agent,
                                                              pages: PageServer) -> None:
    record = agent.action.execute_action("browser_navigate", {"url": pages.url("/")})
    assert record.status == "success", record.error
    state = env.get_state()
    assert f"Page URL: {pages.url('/')}" in state and 'heading "Search form"' in state
    assert "(the snapshot is the environment's state)" in record.result["text"]
    assert "egress_refused" not in record.result  # the browser makes no calls of its own
    box = snapshot_ref(state, "textbox", "Query")
    record = agent.action.execute_action("browser_type", {"target": box, "element": "Query",
                                                          "text": "chromium"})
    assert record.status == "success", record.error
    button = snapshot_ref(env.get_state(), "button", "Search")
    record = agent.action.execute_action("browser_click", {"target": button, "element": "Search"})
    assert record.status == "success", record.error
    assert "You searched for chromium" in env.get_state()  # refreshed after the action
    assert "/" in pages.requests


def test_a_screenshot_is_kept_as_an_artifact(env: BrowserEnv, agent) -> None:
    import base64

    record = agent.action.execute_action("browser_take_screenshot", {"type": "png", "scale": "css"})
    assert record.status == "success", record.error
    assert record.result["images"] == "1 kept as artifacts (base64)"
    ref = next(r for r in record.artifact_refs if r["kind"] == "image")
    assert ref["media_type"] == "image/png"
    content = agent.action.read_action_artifact(ref["artifact_id"])["content"]
    assert base64.b64decode(content).startswith(b"\x89PNG")
    assert len(str(record.result)) < 2000  # the image is not in the record


def test_bad_arguments_are_a_failed_record_and_the_env_goes_on(env: BrowserEnv, agent,
                                                                pages: PageServer) -> None:
    record = agent.action.execute_action("browser_click", {"element": "nothing"})
    assert record.status == "failed" and "target" in record.error
    record = agent.action.execute_action("browser_click", {"target": "e999", "element": "x"})
    assert record.status == "failed" and "e999" in record.error
    record = agent.action.execute_action("browser_navigate", {"url": "file:///etc/passwd"})
    assert record.status == "failed"
    record = agent.action.execute_action("browser_snapshot", {})
    assert record.status == "success", record.error


def test_the_state_is_cut_for_a_system_prompt(env: BrowserEnv, pages: PageServer) -> None:
    from agently_core._sync import run_sync

    whole = run_sync(env.refresh)
    env.max_state_chars = 120
    try:
        cut = run_sync(env.refresh)
    finally:
        env.max_state_chars = 12_000
    assert len(whole) > 200 and cut.startswith(whole[:100])
    assert re.search(r"\[\.\.\. \d+ more characters of the page left out; browser_snapshot "
                     r"returns all of it\]$", cut)
    assert run_sync(env.refresh) == whole


# -- the egress guard ------------------------------------------------------------------
def test_a_forbidden_loopback_port_is_refused_and_gets_nothing(env: BrowserEnv, agent,
                                                                forbidden: PageServer) -> None:
    record = agent.action.execute_action("browser_navigate", {"url": forbidden.url("/")})
    assert record.status == "failed"
    assert "egress guard refused" in record.error and "loopback" in record.error
    assert forbidden.hits == 0
    assert "the forbidden server's page" not in env.get_state()


def test_a_redirect_to_a_forbidden_place_is_refused(env: BrowserEnv, agent, pages: PageServer,
                                                   forbidden: PageServer) -> None:
    record = agent.action.execute_action("browser_navigate", {"url": pages.url("/redirect")})
    assert record.status == "failed"
    assert record.error.startswith(f"the egress guard refused {forbidden.url('/redirected')} "
                                   f"(where {pages.url('/redirect')} led)")
    assert "/redirect" in pages.requests and forbidden.hits == 0


def test_the_metadata_address_is_refused(env: BrowserEnv, agent) -> None:
    url = "http://169.254.169.254/latest/meta-data/"
    record = agent.action.execute_action("browser_navigate", {"url": url})
    assert record.status == "failed" and "egress guard refused" in record.error
    assert "metadata" in record.error


def test_a_pages_own_requests_to_forbidden_places_are_refused(env: BrowserEnv, agent,
                                                               pages: PageServer,
                                                               forbidden: PageServer) -> None:
    record = agent.action.execute_action("browser_navigate", {"url": pages.url("/attack")})
    assert record.status == "success", record.error
    assert env.proxy.refused.wait_for(
        lambda items: sum("169.254.169.254" in t or str(forbidden.port) in t
                          for t, _ in items) >= 3, timeout=10)
    assert forbidden.hits == 0


# -- isolation -------------------------------------------------------------------------
def test_the_server_and_chromium_run_sandboxed(env: BrowserEnv) -> None:
    tree = _tree(env.connection.pid)
    names = {name for name, _ in tree.values()}
    assert "node" in names and any(n.startswith("chromium") for n in names), names
    inside = [pid for pid, (name, _) in tree.items()
              if name == "node" or name.startswith("chromium")]
    own_net = os.readlink("/proc/self/ns/net")
    for pid in inside:
        if os.geteuid() == 0:
            assert tree[pid][1] == env.uid != 0  # a dedicated uid, not root
        assert os.readlink(f"/proc/{pid}/ns/net") != own_net  # no host network
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = dict(v.split(b"=", 1) for v in handle.read().split(b"\0") if b"=" in v)
        if tree[pid][0] == "node":  # (Chromium writes its title over its environment)
            assert environ.get(b"HOME") == b"/work"
        assert SECRET.encode() not in b"".join(environ.values())  # nothing of the host's env
        assert not any(k.startswith(b"AGENTLY_") for k in environ)


def test_code_inside_the_sandbox_has_no_way_around_the_guard(env: BrowserEnv,
                                                              forbidden: PageServer) -> None:
    """``browser_run_code_unsafe`` (left out of the tools: code in the server's own process)
    called on the connection itself: Node's own fetch finds no network, and Playwright's
    request API goes through the guard's proxy."""
    from agently_core._sync import run_sync

    async def run(code: str) -> str:
        result = await env.connection.call_tool("browser_run_code_unsafe", {"code": code})
        return "\n".join(block.text for block in result.content)

    direct = ("async (page) => await fetch('URL').then(r => 'reached ' + r.status, "
              "e => 'failed ' + e.cause?.code)")
    for url in (forbidden.url("/direct"), "http://169.254.169.254/latest/meta-data/"):
        answer = run_sync(run, direct.replace("URL", url))
        assert '"failed E' in answer and '"reached' not in answer, answer
    answer = run_sync(run, "async (page) => (await page.context().request.get('URL')).status()"
                      .replace("URL", forbidden.url("/api")))
    assert "403" in answer, answer
    assert forbidden.hits == 0


def test_cleanup_leaves_no_process_behind(env: BrowserEnv) -> None:
    tree = _tree(env.connection.pid)
    assert len(tree) > 3
    uid = env.uid
    env.cleanup()
    deadline = time.monotonic() + 10
    while _alive(list(tree)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(list(tree)) == []
    if uid is not None:
        from agently_core_isolation.sandbox import _pids_of

        assert _pids_of(uid) == []
    env.cleanup()  # twice is fine
    with pytest.raises(RuntimeError, match="not built"):
        env.get_state()


def test_without_isolation_the_guard_still_holds(pages: PageServer, forbidden: PageServer,
                                                udp: socket.socket) -> None:
    """``isolation="none"`` (an explicit opt-in) runs the server on the host, still behind
    the egress guard's proxy; WebRTC, which would send STUN over UDP past it, is kept to
    the proxy."""
    _needs()
    env = BrowserEnv(allow=[pages.allow_entry], isolation="none",
                     tools=["browser_navigate", "browser_snapshot"])
    env.build()
    try:
        assert {t.name for t in env.discovered} == {"browser_navigate", "browser_snapshot"}
        tree = _tree(env.connection.pid)
        assert env.uid is None
        from agently_core._sync import run_sync

        run_sync(env.call, "browser_navigate", {"url": pages.url("/")})
        assert 'heading "Search form"' in env.get_state()
        with pytest.raises(ActionError, match="egress guard refused"):
            run_sync(env.call, "browser_navigate", {"url": forbidden.url("/")})
        assert forbidden.hits == 0
        run_sync(env.call, "browser_navigate", {"url": pages.url("/stun")})
        deadline = time.monotonic() + 5
        while "gathered" not in env.get_state() and time.monotonic() < deadline:
            time.sleep(0.2)
            run_sync(env.refresh)
        assert "Page Title: gathered" in env.get_state()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(2048)  # no STUN packet left the browser
    finally:
        env.cleanup()
    deadline = time.monotonic() + 10
    while _alive(list(tree)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(list(tree)) == []


# -- configuration ---------------------------------------------------------------------
@pytest.mark.parametrize("options, words", [
    ({"isolation": "docker"}, "isolation must be one of"),
    ({"allow": ["not a host:port:x"]}, "allow"),
    ({"timeout": 0}, "timeout must be a positive"),
    ({"max_state_chars": "big"}, "max_state_chars"),
    ({"viewport": "huge"}, "viewport"),
    ({"tools": "browser_click"}, "list of tool names"),
    ({"colour": "red"}, "bad options"),
])
def test_bad_options_are_config_errors(options: dict[str, Any], words: str) -> None:
    from agently_core.env import get_env

    with pytest.raises(ConfigError, match=words):
        get_env({"name": "browser", **options})


def test_browser_env_is_importable_from_the_core_env_module() -> None:
    from agently_core import env as core_env
    from agently_core.env import BrowserEnv as FromCore

    assert FromCore is BrowserEnv and core_env.get_env("browser").__class__ is BrowserEnv
    with pytest.raises(AttributeError):
        core_env.NoSuchEnv  # noqa: B018


def test_the_tools_package_alone_says_how_to_mount_it() -> None:
    agent = create_agent()
    with agent, pytest.raises(ConfigError, match=r"agent\.use_env"):
        agent.use_actions("browser_env_tools")


def test_an_unknown_tool_fails_the_build_and_leaves_nothing_running() -> None:
    _needs()
    env = BrowserEnv(tools=["browser_navigate", "browser_fly"])
    with pytest.raises(ConfigError, match=r"no tool.*browser_fly.*it offers: .*browser_click"):
        env.build()
    assert not env.built and env.proxy is None and env.uid is None


def test_a_missing_server_or_browser_is_a_config_error(tmp_path) -> None:
    env = BrowserEnv(server=str(tmp_path / "no-cli.js"))
    with pytest.raises(ConfigError, match="@playwright/mcp is not installed"):
        env.build()
    assert not env.built
    _needs()
    env = BrowserEnv(executable=str(tmp_path / "chromium"))
    with pytest.raises(ConfigError, match=r"executable .* is not an executable file"):
        env.build()
    assert not env.built and env.proxy is None


# -- end to end: a model-driven loop ---------------------------------------------------
def test_a_model_planner_drives_the_page_from_the_state_in_its_prompt(monkeypatch) -> None:
    from agently_core.testing.model_servers import LoopbackModelServer, Reply, ToolCall

    _needs()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-test-key")
    monkeypatch.setenv("AGENTLY_TEST_BROWSER_SECRET", SECRET)
    page = PageServer({"/": FORM})
    states: list[str] = []

    def model(body: Any, headers: Any) -> Reply:
        state = body["messages"][0]["content"].split("Environment state:\n", 1)[1]
        states.append(state)
        if "about:blank" in state:
            return Reply(tool_calls=[ToolCall("browser_navigate", {"url": page.url("/")})])
        if "You searched for" in state:
            return Reply(text=re.search(r"You searched for \w+", state).group(0))
        if len(states) == 2:
            return Reply(tool_calls=[ToolCall("browser_type", {
                "target": snapshot_ref(state, "textbox", "Query"), "element": "Query", "text": "agently"})])
        return Reply(tool_calls=[ToolCall("browser_click", {
            "target": snapshot_ref(state, "button", "Search"), "element": "Search"})])

    with LoopbackModelServer(responder=model) as server:
        agent = create_agent(config={
            "env": {"name": "browser", "allow": [page.allow_entry]},
            "planner": "openai_compatible",
            "planner_options": {"model": "stand-in", "base_url": server.base_url}})
        with agent:
            result = agent.run("search for agently on the page")
            env = agent.env
            tree = _tree(env.connection.pid)
            for pid, (name, _) in tree.items():
                if name == "node" or name.startswith("chromium"):
                    with open(f"/proc/{pid}/environ", "rb") as handle:
                        assert SECRET.encode() not in handle.read()
            tools = [t["function"]["name"] for t in server.requests[0].json["tools"]]
        assert result.stop_reason == "response", result
        assert result.response == "You searched for agently"
        assert [r.action for r in result.records] == ["browser_navigate", "browser_type",
                                                      "browser_click"]
        assert "browser_navigate" in tools and "browser_click" in tools
        assert "about:blank" in states[0] and 'heading "Search form"' in states[1]
        assert not env.built
    deadline = time.monotonic() + 10
    while _alive(list(tree)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(list(tree)) == []
    page.close()
