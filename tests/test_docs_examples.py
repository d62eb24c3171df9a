"""Every Python example in the docs runs as written (docs stay true to the code).

A ```` ```python ```` block is an example and must run offline; a ```` ```py ```` block is
a fragment that needs something the tests cannot have (a real model provider's key, a
reader's own program) and is only shown. Blocks that import the example plugin a guide
asks the reader to create
(``agently_core_command`` in plugin-authors.md) are exercised by that guide's own steps,
not here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDS_READER_FILES = ("agently_core_command",)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for md in sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"]):
        text = md.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            code = match.group(1)
            if any(name in code for name in NEEDS_READER_FILES):
                continue
            line = text[: match.start()].count("\n") + 1
            found.append((f"{md.relative_to(ROOT)}:{line}", code))
    return found


BLOCKS = _blocks()


def test_the_docs_have_examples() -> None:
    assert len(BLOCKS) >= 30


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server for the examples that use one (started like the backend's
    own tests start it; never skipped under CI)."""
    from agently_core_workspace_postgres.testing import (
        ServerUnavailable,
        find_or_start_server,
        in_ci,
    )

    try:
        server = find_or_start_server()
    except ServerUnavailable as exc:
        if in_ci():
            pytest.fail(f"CI=true and no PostgreSQL server for the docs: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_example_runs(where: str, code: str, tmp_path: Path,
                      request: pytest.FixtureRequest) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    if "AGENTLY_POSTGRES_DSN" in code:
        env["AGENTLY_POSTGRES_DSN"] = request.getfixturevalue("postgres_dsn")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-2000:]}"
