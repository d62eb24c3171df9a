"""The traversal suite: file actions stay inside the workspace's file root, whatever the
path, the links, the special files or the races around them."""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path

import agently_core_function.plugin as function_plugin
import agently_core_workspace_local.plugin as local_plugin
import pytest
from agently_core_workspace_local.confined import ConfinedRoot, FileAccessRefused

from agently_core import Workspace
from agently_core.errors import ConfigError
from agently_core.testing import make_agent, make_plugin_manager, require


@pytest.fixture
def plugins():
    return make_plugin_manager(function_plugin, local_plugin)


@pytest.fixture
def workspace(tmp_path, plugins):
    ws = Workspace("local", path=tmp_path / "ws", plugins=plugins)
    yield ws
    ws.close()


@pytest.fixture
def root(workspace) -> Path:
    return workspace.files_root


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory beside the workspace holding a secret no action may reach."""
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("OUTSIDE SECRET")
    return secret


@pytest.fixture
def agent(plugins, workspace):
    agent = make_agent(plugins)
    agent.use_workspace(workspace).enable_workspace_file_actions(write=True)
    yield agent
    agent.close()


def call(agent, name, **kwargs):
    return agent.action.execute_action(name, kwargs)


def refused(agent, name, match, **kwargs):
    record = call(agent, name, **kwargs)
    assert record.status == "failed", record
    assert record.error_type == "FileAccessRefused", record
    assert match in record.error, record.error
    return record


# -- the happy paths ---------------------------------------------------------------------
def test_write_read_list_search(agent, root):
    assert call(agent, "write_file", path="notes/a.md", content="Hello\nWorld ✓").result == {
        "path": "notes/a.md", "bytes": len("Hello\nWorld ✓".encode()), "created": True}
    assert (root / "notes" / "a.md").read_text() == "Hello\nWorld ✓"
    again = call(agent, "write_file", path="notes/a.md", content="replaced").result
    assert again["created"] is False
    read = call(agent, "read_file", path="./notes//a.md").result
    assert read["content"] == "replaced" and read["encoding"] == "utf-8" and not read["binary"]
    listing = call(agent, "list_files", path=".", recursive=True).result["entries"]
    assert listing == [{"path": "notes", "type": "directory"},
                       {"path": "notes/a.md", "type": "file", "size": 8}]
    (root / "notes" / "b.py").write_text("x = 1\nprint('REPLACED thing')\n")
    found = call(agent, "search_files", query="replaced").result["matches"]
    assert [(m["path"], m["line"]) for m in found] == [("notes/a.md", 1), ("notes/b.py", 2)]
    only_py = call(agent, "search_files", query="replaced", glob="*.py").result["matches"]
    assert [m["path"] for m in only_py] == ["notes/b.py"]
    exact = call(agent, "search_files", query="REPLACED", case_sensitive=True).result
    assert [m["path"] for m in exact["matches"]] == ["notes/b.py"]


def test_mounting_honours_read_write_search(plugins, workspace):
    agent = make_agent(plugins)
    agent.use_workspace(workspace).enable_workspace_file_actions(search=False)
    assert sorted(a["name"] for a in agent.action.get_action_info()) == ["list_files",
                                                                         "read_file"]
    other = make_agent(plugins)
    other.use_workspace(workspace).enable_workspace_file_actions(
        read=False, write=True, search=False, prefix="ws_")
    assert [a["name"] for a in other.action.get_action_info()] == ["ws_write_file"]


def test_no_workspace_no_file_actions(plugins):
    with pytest.raises(ConfigError, match="use_workspace"):
        make_agent(plugins).enable_workspace_file_actions()
    agent = make_agent(plugins).use_workspace(provider="memory")
    with pytest.raises(ValueError, match="file root"):
        agent.enable_workspace_file_actions()


# -- paths that try to leave -------------------------------------------------------------
@pytest.mark.parametrize("path", ["..", "../outside/secret.txt", "a/../../outside/secret.txt",
                                  "notes/../..", "..\\outside\\secret.txt"])
def test_dot_dot_is_refused(agent, path):
    refused(agent, "read_file", "'..'", path=path)
    refused(agent, "write_file", "'..'", path=path, content="x")
    refused(agent, "list_files", "'..'", path=path)
    refused(agent, "search_files", "'..'", query="SECRET", path=path)


@pytest.mark.parametrize("path", ["/etc/passwd", "/", "\\etc\\passwd", "C:/Windows"])
def test_absolute_paths_are_refused(agent, path):
    refused(agent, "read_file", "absolute", path=path)
    refused(agent, "write_file", "absolute", path=path, content="x")


def test_nul_bytes_are_refused(agent):
    refused(agent, "read_file", "NUL", path="a\x00b")


def test_symlinks_are_never_followed(agent, root, outside):
    (root / "file_link").symlink_to(outside / "secret.txt")
    (root / "dir_link").symlink_to(outside)
    (root / "real").mkdir()
    (root / "real" / "inner_link").symlink_to("../../..")
    refused(agent, "read_file", "symbolic link", path="file_link")
    refused(agent, "read_file", "symbolic link", path="dir_link/secret.txt")
    refused(agent, "list_files", "symbolic link", path="dir_link")
    refused(agent, "read_file", "symbolic link", path="real/inner_link/outside/secret.txt")
    refused(agent, "write_file", "symbolic link", path="dir_link/new.txt", content="x")
    refused(agent, "write_file", "symbolic link", path="file_link", content="x")
    assert (outside / "secret.txt").read_text() == "OUTSIDE SECRET"
    assert not (outside / "new.txt").exists()
    entries = call(agent, "list_files", recursive=True).result["entries"]
    assert {e["path"]: e["type"] for e in entries} == {
        "dir_link": "symlink", "file_link": "symlink", "real": "directory",
        "real/inner_link": "symlink"}
    assert call(agent, "search_files", query="SECRET").result["matches"] == []


def test_a_symlink_swapped_in_after_the_check_cannot_escape(root, outside):
    """A thread swaps ``sub`` between a real directory and a link to ``outside`` as fast as
    it can while reads and writes go through it: none ever reaches ``outside``."""
    confined = ConfinedRoot(root)
    (root / "sub").mkdir()
    (root / "sub" / "secret.txt").write_text("inside")
    (root / "swap_dir").mkdir()
    (root / "swap_dir" / "secret.txt").write_text("inside")
    (root / "swap_link").symlink_to(outside)
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            os.rename(root / "sub", root / "tmp_dir")
            os.rename(root / "swap_link", root / "sub")
            os.rename(root / "sub", root / "swap_link")
            os.rename(root / "tmp_dir", root / "sub")

    thread = threading.Thread(target=swapper)
    thread.start()
    outcomes = {"read": 0, "refused": 0}
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                content = confined.read("sub/secret.txt")["content"]
            except FileAccessRefused:
                outcomes["refused"] += 1
            else:
                assert content == "inside", "a read escaped through a swapped-in symlink"
                outcomes["read"] += 1
            try:
                confined.write("sub/written.txt", "from the agent", create_dirs=False)
            except FileAccessRefused:
                pass
    finally:
        stop.set()
        thread.join()
    assert not (outside / "written.txt").exists(), "a write escaped through a swapped symlink"
    assert (outside / "secret.txt").read_text() == "OUTSIDE SECRET"
    assert outcomes["read"] and outcomes["refused"], outcomes  # the race really happened


def test_hard_linked_file_is_neither_written_through_nor_replaced(agent, root, outside):
    os.link(outside / "secret.txt", root / "hard")
    refused(agent, "write_file", "2 hard links", path="hard", content="new")
    assert (outside / "secret.txt").read_text() == "OUTSIDE SECRET"
    assert (root / "hard").read_text() == "OUTSIDE SECRET"


# -- special files -----------------------------------------------------------------------
def test_fifos_are_refused_without_hanging(agent, root):
    os.mkfifo(root / "pipe")
    started = time.monotonic()
    refused(agent, "read_file", "FIFO", path="pipe")
    refused(agent, "write_file", "FIFO", path="pipe", content="x")
    assert call(agent, "search_files", query="x").status == "success"
    assert time.monotonic() - started < 10
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)


def test_device_files_are_refused(agent, root):
    try:
        os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:  # a user machine without CAP_MKNOD
        require(False, f"cannot create a device node here: {exc}")
    refused(agent, "read_file", "device", path="null")
    refused(agent, "write_file", "device", path="null", content="x")
    entries = call(agent, "list_files").result["entries"]
    assert entries == [{"path": "null", "type": "device"}]


def test_directories_are_not_files(agent, root):
    (root / "d").mkdir()
    refused(agent, "read_file", "directory", path="d")
    refused(agent, "write_file", "directory", path="d", content="x")
    refused(agent, "read_file", "root", path=".")
    refused(agent, "list_files", "does not exist", path="missing")


# -- read-only, sizes, binaries ----------------------------------------------------------
def test_read_only_workspace_refuses_writes(tmp_path, plugins):
    Workspace("local", path=tmp_path / "ws", plugins=plugins).close()  # create the store
    ws = Workspace("local", path=tmp_path / "ws", plugins=plugins, read_only=True)
    (ws.files_root / "kept.txt").write_text("kept")
    agent = make_agent(plugins).use_workspace(ws)
    agent.enable_workspace_file_actions(write=True)
    refused(agent, "write_file", "read-only", path="kept.txt", content="changed")
    refused(agent, "write_file", "read-only", path="new.txt", content="x")
    assert (ws.files_root / "kept.txt").read_text() == "kept"
    assert not (ws.files_root / "new.txt").exists()
    assert call(agent, "read_file", path="kept.txt").result["content"] == "kept"
    agent.close()
    ws.close()


def test_size_caps_and_paging(plugins, workspace, root):
    agent = make_agent(plugins).use_workspace(workspace)
    agent.enable_workspace_file_actions(write=True, max_read_bytes=10, max_write_bytes=20)
    text = "é" * 15  # 30 bytes of two-byte characters
    (root / "big.txt").write_text(text)
    parts, offset = [], 0
    while True:
        result = call(agent, "read_file", path="big.txt", offset=offset).result
        assert result["bytes"] <= 10 and not result["binary"]
        parts.append(result["content"])
        if not result["truncated"]:
            break
        offset = result["next_offset"]
    assert "".join(parts) == text
    cut = call(agent, "read_file", path="big.txt", offset=0, max_bytes=3).result
    assert cut["content"] == "é" and cut["next_offset"] == 2  # never half a character
    refused(agent, "write_file", "allowed in one write", path="x.txt", content="y" * 21)
    assert call(agent, "write_file", path="x.txt", content="y" * 20).status == "success"
    agent.close()


def test_binary_files_come_back_as_base64(agent, root):
    data = bytes(range(256)) * 4
    (root / "blob.bin").write_bytes(data)
    result = call(agent, "read_file", path="blob.bin").result
    assert result["binary"] is True and result["encoding"] == "base64"
    assert base64.b64decode(result["content"]) == data
    encoded = base64.b64encode(b"\x00\x01binary").decode()
    assert call(agent, "write_file", path="out.bin", content=encoded,
                encoding="base64").status == "success"
    assert (root / "out.bin").read_bytes() == b"\x00\x01binary"
    refused(agent, "write_file", "base64", path="bad.bin", content="%%%", encoding="base64")
    assert call(agent, "search_files", query="binary").result["matches"] == []


def test_the_agent_keeps_working_after_refusals(agent, root):
    records = agent.action.execute_actions([
        {"action": "read_file", "kwargs": {"path": "../../etc/passwd"}},
        {"action": "write_file", "kwargs": {"path": "/etc/evil", "content": "x"}},
        {"action": "write_file", "kwargs": {"path": "fine.txt", "content": "ok"}},
    ])
    records.append(call(agent, "read_file", path="fine.txt"))
    assert [r.status for r in records] == ["failed", "failed", "success", "success"]
    assert records[3].result["content"] == "ok"
    assert not Path("/etc/evil").exists()
