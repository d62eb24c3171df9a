"""Fixtures for the file-action attack suites: directories a sandbox uid can share with
the host, a stand-in sandbox uid, and running a program as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agently_core_workspace_local.tree import remove_tree

from agently_core.testing import require_root

#: A uid in the range the sandboxes' dedicated uids come from (1_200_000 and up), used
#: where a test models what a sandbox leaves in a shared root.
SANDBOX_UID = 1_299_917
NOBODY = 65534


need_root = require_root


@pytest.fixture
def sandbox_uid() -> int:
    need_root("give files to a sandbox uid")
    return SANDBOX_UID


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A directory under /tmp (mode 0777, like a root shared with a sandbox) whose files an
    unprivileged user can run; removed at teardown however deep it became."""
    folder = Path(tempfile.mkdtemp(prefix="agently-files-", dir="/tmp"))
    os.chmod(folder, 0o777)
    yield folder
    remove_tree(folder)


@pytest.fixture
def outside_secret() -> Iterator[Path]:
    """A root-only file (0600) outside every workspace: what a hard link would expose."""
    folder = Path(tempfile.mkdtemp(prefix="agently-outside-", dir="/tmp"))
    secret = folder / "shadow"
    secret.write_text("ROOT ONLY SECRET\n")
    os.chmod(secret, 0o600)
    yield secret
    remove_tree(folder)


@pytest.fixture
def run_as_nobody() -> Callable[[Path], subprocess.CompletedProcess[str]]:
    """``run(path)``: run the program ``path`` as uid/gid 65534 with no groups."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to run a file as an unprivileged user")
    need_root("run a program as another user")

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}",
                               "--clear-groups", str(path)], capture_output=True, text=True,
                              timeout=30, check=False)

    return run


@pytest.fixture
def file_calls() -> Any:
    """``(call, refused)`` helpers over an agent's file actions."""

    def call(agent: Any, name: str, **kwargs: Any) -> Any:
        return agent.action.execute_action(name, kwargs)

    def refused(agent: Any, name: str, match: str, **kwargs: Any) -> Any:
        record = call(agent, name, **kwargs)
        assert record.status == "failed", record
        assert record.error_type == "FileAccessRefused", record
        assert match in record.error, record.error
        return record

    return call, refused
