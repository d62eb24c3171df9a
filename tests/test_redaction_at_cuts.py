"""A cut never leaves part of a secret behind (issue 10, point 7).

Sandboxes cut their output to the record's size before the dispatcher redacts the record,
and a stream that passes the artifact limit is cut before it reaches the host at all; a
secret split by either cut must still be masked. Real sandboxes, both isolation tiers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from agently_core_isolation.testing import TIERS

import agently_core

SECRET = "zq-" + "0a1b2c3d4e5f6789" * 2
LIMIT = 1000


@pytest.fixture
def agent():
    agent = agently_core.create_agent(config={"providers": {}})
    agent.add_secrets(SECRET)
    yield agent
    agent.close()


def leaks(agent: Any, record: Any) -> list[str]:
    """Where the first three or more characters of the secret show in the record or in
    its artifacts."""
    found = []
    texts = {"record": json.dumps(record.result) + str(record.error)}
    for ref in record.artifact_refs:
        artifact_id = ref["artifact_id"]
        texts[artifact_id] = str(agent.action.read_action_artifact(
            artifact_id, action_call_id=record.call_id))
    for where, text in texts.items():
        if SECRET[:3] in text:
            found.append(f"{where}: ...{text[text.index(SECRET[:3]) - 20:][:60]!r}")
    return found


@pytest.mark.parametrize("tier", TIERS)
def test_python_output_cut_inside_a_secret(agent, tier: str) -> None:
    agent.enable_python(tier=tier, max_output_bytes=LIMIT)
    for offset in range(LIMIT - 12, LIMIT + 1):  # the cut falls at every place in the secret
        code = f"print('x' * {offset} + {SECRET!r} + 'y' * 50)"
        record = agent.action.execute_action("run_python", {"python_code": code})
        assert record.status == "success", record.error
        assert record.result["truncated"] is True
        assert not leaks(agent, record), (offset, leaks(agent, record))


@pytest.mark.parametrize("tier", TIERS)
def test_python_value_cut_inside_a_secret(agent, tier: str) -> None:
    agent.enable_python(tier=tier, max_output_bytes=LIMIT)
    for offset in range(LIMIT - 12, LIMIT + 1):
        record = agent.action.execute_action(
            "run_python", {"python_code": f"'x' * {offset - 1} + {SECRET!r}"})
        assert record.status == "success", record.error
        assert not leaks(agent, record), (offset, leaks(agent, record))


@pytest.mark.parametrize("tier", TIERS)
def test_bash_output_cut_inside_a_secret(agent, tier: str) -> None:
    agent.enable_shell(tier=tier, max_output_bytes=LIMIT, commands=["printf", "head"])
    for offset in range(805, 825):  # the record keeps 818 bytes of stdout here
        line = f"printf '%0{offset}d{SECRET}%0100d' 0 0"
        record = agent.action.execute_action("run_bash", {"cmd": line})
        assert record.status == "success", record.error
        assert record.result["truncated"] is True
        assert not leaks(agent, record), (offset, leaks(agent, record))


@pytest.mark.parametrize("tier", TIERS)
def test_nodejs_output_cut_inside_a_secret(agent, tier: str) -> None:
    agent.enable_nodejs(tier=tier, max_output_bytes=LIMIT)
    for offset in range(LIMIT - 12, LIMIT + 1):
        code = f"console.log('x'.repeat({offset}) + {json.dumps(SECRET)} + 'y'.repeat(50))"
        record = agent.action.execute_action("run_nodejs", {"js_code": code})
        assert record.status == "success", record.error
        assert not leaks(agent, record), (offset, leaks(agent, record))
