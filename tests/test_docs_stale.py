"""Statements in the docs that go stale without an example failing: the distributions and
the executor and provider names they mention exist, the ``[all]`` extra is listed as the
root pyproject declares it, what they say of misspelt hook names is what the plugin
manager does, and an example that prints its output below itself prints exactly that."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from agently_core import Config, PluginManager
from agently_core.hookspecs import hookimpl
from agently_core.testing import make_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("examples/*.md"),
               *ROOT.glob("plugins/*/README.md"), *ROOT.glob("contrib/**/README.md")])
#: Made-up distributions the docs use on purpose, each in an example that says so.
EXAMPLE_DISTRIBUTIONS = {
    "agently-core-command": "the example plugin plugin-authors.md builds step by step",
    "agently-core-broken": "a plugin that fails to import, in messages and block-lists",
    "agently-core-ghost": "a registration whose lazy factory cannot be imported",
    "agently-core-template": "one side of a name conflict",
    "agently-core-other": "the other side of that conflict",
}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _pyproject(path: Path) -> dict:
    return tomllib.loads(_text(path / "pyproject.toml"))


def _distributions() -> set[str]:
    projects = [ROOT, *(p.parent for p in ROOT.glob("plugins/*/pyproject.toml")),
                *(p.parent for p in ROOT.glob("contrib/*/pyproject.toml"))]
    return {_pyproject(p)["project"]["name"] for p in projects}


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_docs_name_only_distributions_that_exist() -> None:
    """Every ``agently-core-*`` distribution the docs name is in this repository (or is one
    of the deliberately made-up example names)."""
    real = _distributions()
    named = {(m.group(0), _where(doc)) for doc in DOCS
             for m in re.finditer(r"agently-core-[a-z][a-z0-9-]*[a-z0-9]", _text(doc))}
    unknown = sorted((name, where) for name, where in named
                     if name not in real and name not in EXAMPLE_DISTRIBUTIONS)
    assert unknown == [], f"docs name distributions that do not exist: {unknown}"


@pytest.fixture(scope="module")
def installed() -> PluginManager:
    """Every plugin of this repository, as installed in the development environment."""
    return PluginManager(Config.load(env={}, cwd=ROOT / "docs")).load()


def test_executor_and_provider_names_in_the_docs_are_registered(installed: PluginManager) -> None:
    """The names the docs select with ``[executors]`` / ``[providers]`` tables and
    ``AGENTLY_EXECUTOR_<KIND>`` / ``AGENTLY_PROVIDER_<KIND>`` variables are registered by a
    plugin of this repository, for that kind (as its own, or as one it serves when chosen:
    ``also_serves=``)."""
    roles = {"executors": "action_executor", "providers": "environment_provider",
             "EXECUTOR": "action_executor", "PROVIDER": "environment_provider"}
    found: list[tuple[str, str, str, str]] = []
    for doc in DOCS:
        text = _text(doc)
        for block in re.findall(r"```toml\n(.*?)```", text, re.S):
            for table, body in re.findall(r"^\[(executors|providers)\][^\n]*\n(.*?)(?=^\[|\Z)",
                                          block, re.S | re.M):
                for kind, name in re.findall(r'^(\w+)\s*=\s*"([^"]+)"', body, re.M):
                    found.append((_where(doc), roles[table], kind, name))
        for role, kind, name in re.findall(r"AGENTLY_(EXECUTOR|PROVIDER)_([A-Z]+)=([a-z][a-z0-9_-]*)", text):
            found.append((_where(doc), roles[role], kind.lower(), name))
    assert found, "the docs select no executor or provider by name any more"
    wrong = []
    for where, role, kind, name in found:
        registration = installed.registrations(role).get(name)
        if registration is None or kind not in registration.kinds:  # also_serves= counts
            wrong.append((where, role, kind, name))
    assert wrong == [], f"the docs select names no plugin registers for that kind: {wrong}"


def test_the_all_extra_is_listed_as_declared() -> None:
    """getting-started.md lists the plugins ``agently-core[all]`` installs: exactly the
    root pyproject's ``all`` extra."""
    declared = set(_pyproject(ROOT)["project"]["optional-dependencies"]["all"])
    text = " ".join(_text(ROOT / "docs" / "getting-started.md").split())
    match = re.search(r'`pip install "agently-core\[all\]"` installs every plugin in this '
                      r"repository: ([a-z, -]+?) \(each `agently-core-NAME`\)", text)
    assert match, "getting-started.md no longer lists what [all] installs"
    listed = {f"agently-core-{name.strip()}"
              for name in re.split(r",\s*(?:and\s+)?|\s+and\s+", match.group(1)) if name.strip()}
    assert listed == declared, (f"listed but not in [all]: {sorted(listed - declared)}; "
                                f"in [all] but not listed: {sorted(declared - listed)}")
    assert declared <= _distributions()


def test_getting_started_does_not_call_existing_plugins_planned() -> None:
    """The Python, Bash and Node.js sandboxes, SQLite and MCP exist as plugins: no sentence
    of the guide's introduction that speaks of what is planned names them."""
    guide = _text(ROOT / "docs" / "getting-started.md")
    intro = " ".join(guide.split("## Install")[0].split())
    for plugin in ("python", "bash", "nodejs", "sqlite", "mcp"):
        assert f"agently-core-{plugin}" in _distributions()
    planned = [s for s in re.split(r"(?<=[.;])\s", intro) if "planned" in s.lower()]
    for sentence in planned:
        for existing in ("MCP", "SQLite", "Python", "Bash", "Node.js", "sandboxed code"):
            assert existing not in sentence, f"calls {existing} planned: {sentence!r}"
    assert "names the same two plugins" not in guide


def test_misspelt_hook_names_are_described_as_the_plugin_manager_reports_them() -> None:
    """A ``@hookimpl`` whose name matches no hookspec fails its plugin with an error that
    names the hook and suggests the right one; hooks.md and plugin-authors.md quote that
    error and do not call typos silent."""
    plugin = types.ModuleType("typo_plugin")

    @hookimpl
    def register_executors(register):  # the typo: register_action_executors
        register("typo", "typo_plugin.executor:Typo", kind="typo")

    plugin.register_executors = register_executors
    info = make_plugin_manager().register(plugin, name="typo_plugin")
    assert info.status == "failed"
    reported = info.error
    assert reported == ("unknown hook 'register_executors'; did you mean "
                        "'register_action_executors'?")
    for name in ("hooks.md", "plugin-authors.md"):
        text = " ".join(_text(ROOT / "docs" / name).split())
        assert f"`{reported}`" in text, f"docs/{name} does not quote the reported error"
        assert "silently ignored" not in text and "are not reported" not in text, name


def _transcript_examples() -> list[tuple[str, str, list[str]]]:
    """Python examples whose last lines (two or more) are a ``#`` transcript of what the
    example prints."""
    found = []
    for doc in DOCS:
        text = _text(doc)
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            lines = match.group(1).rstrip("\n").split("\n")
            tail: list[str] = []
            while lines and lines[-1].startswith("#"):
                tail.insert(0, lines.pop())
            if len(tail) >= 2 and lines:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{_where(doc)}:{line}", match.group(1),
                              [t[2:] if t.startswith("# ") else t[1:] for t in tail]))
    return found


TRANSCRIPTS = _transcript_examples()


def test_the_docs_have_transcripts() -> None:
    assert any(where.startswith("docs/environments.md") for where, _, _ in TRANSCRIPTS)


@pytest.mark.parametrize(("where", "code", "expected"), TRANSCRIPTS,
                         ids=[where for where, _, _ in TRANSCRIPTS])
def test_a_printed_transcript_is_what_the_example_prints(where: str, code: str,
                                                          expected: list[str],
                                                          tmp_path: Path) -> None:
    """Each transcript line is the printed line (a line ending in ``...`` is its start)."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLY_")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, f"{where} failed:\n{done.stderr[-2000:]}"
    printed = done.stdout.rstrip("\n").split("\n")
    assert len(printed) == len(expected), (where, printed, expected)
    for got, want in zip(printed, expected, strict=True):
        if want.endswith("..."):
            assert got.startswith(want[:-3].rstrip(" ,")), (where, got, want)
        else:
            assert got.rstrip() == want.rstrip(), (where, got, want)
