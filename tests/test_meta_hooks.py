"""Meta-test: every hookspec is documented in docs/hooks.md and exercised by a test.

(a) docs/hooks.md has a ``## <hook name>`` section for each hookspec, with real text and
    an example;
(b) some test file under tests/, plugins/*/tests/ or contrib/*/tests/ (this file aside)
    defines a ``@hookimpl``-decorated ``def <hook name>(`` -- a plugin implementing it.

Adding a hookspec without both makes this test fail, naming the hook.
"""

from __future__ import annotations

import re
from pathlib import Path

import pluggy
import pytest

from agently_core import hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS_DOC = ROOT / "docs" / "hooks.md"
THIS_FILE = Path(__file__).resolve()
MIN_WORDS = 40


def _hook_names() -> list[str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    by_marker = {
        name for name, obj in vars(hookspecs).items()
        if callable(obj) and hasattr(obj, marker)
    }
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    by_pluggy = {name for name in vars(pm.hook) if not name.startswith("_")}
    assert by_marker == by_pluggy, (by_marker, by_pluggy)
    return sorted(by_pluggy)


HOOKS = _hook_names()


def _doc_sections() -> dict[str, str]:
    assert HOOKS_DOC.is_file(), f"{HOOKS_DOC} is missing"
    text = HOOKS_DOC.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        sections[heading.strip().strip("`")] = body
    return sections


def _test_files() -> list[Path]:
    roots = [ROOT / "tests", *ROOT.glob("plugins/*/tests"), *ROOT.glob("contrib/*/tests")]
    files: set[Path] = set()
    for root in roots:
        for pattern in ("test_*.py", "*_test.py", "conftest.py"):
            files.update(p.resolve() for p in root.rglob(pattern) if ".venv" not in p.parts)
    files.discard(THIS_FILE)
    return sorted(files)


_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async\s+)?def\s+(?P<name>register_\w+)\s*\(")


def _implemented_hooks(path: Path) -> set[str]:
    """Hook names defined as ``@...hookimpl``-decorated functions in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: set[str] = set()
    for index, line in enumerate(lines):
        match = _DEF.match(line)
        if not match:
            continue
        above = index - 1
        while above >= 0 and lines[above].strip().startswith("@"):
            if "hookimpl" in lines[above]:
                found.add(match.group("name"))
                break
            above -= 1
    return found


def test_hookspecs_are_found():
    assert len(HOOKS) >= 9
    assert all(name.startswith("register_") for name in HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    sections = _doc_sections()
    assert hook in sections, f"docs/hooks.md has no '## {hook}' section"
    body = sections[hook]
    words = re.findall(r"\w+", body)
    assert len(words) >= MIN_WORDS, f"'## {hook}' in docs/hooks.md has only {len(words)} words"
    assert "```" in body, f"'## {hook}' in docs/hooks.md has no example"
    assert "register(" in body, f"'## {hook}' in docs/hooks.md does not show register(...)"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised(hook):
    files = _test_files()
    users = [p for p in files if hook in _implemented_hooks(p)]
    assert users, (
        f"no test implements {hook}: add a @hookimpl 'def {hook}(' to a plugin in a test "
        f"under tests/, plugins/*/tests/ or contrib/*/tests/ (searched {len(files)} files)"
    )


def test_scanner_sees_decorated_definitions_only(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "@hookimpl\n"
        "def register_planners(register):\n"
        "    pass\n"
        "class P:\n"
        "    @staticmethod\n"
        "    @agently_core.hookimpl(tryfirst=True)\n"
        "    def register_action_flows(register):\n"
        "        pass\n"
        "def register_action_runtimes(register):\n"
        "    pass\n",
        encoding="utf-8",
    )
    assert _implemented_hooks(sample) == {"register_planners", "register_action_flows"}
