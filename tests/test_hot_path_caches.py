"""The hot path's shortcuts keep the slow path's answers: the one-walk redaction with its
size bound, the output cap, the manager's requirement cache and the lock-free release."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest

from agently_core.dispatch import _capped, _size_bound
from agently_core.environments import ExecutionEnvironmentManager
from agently_core.models import EnvironmentRequirement
from agently_core.redaction import MASK, Redactor
from agently_core.testing.memory_provider import MemoryProvider

pytestmark = pytest.mark.anyio

_ALPHABET = string.printable + "éü中\x00\x1f\"\\𝄞"
_KEYS = ("text", "password", "api_key", "token", "x", "author", "name", "k")


def _value(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 3 or roll < 0.3:
        return rnd.choice([
            lambda: "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randrange(20)))
            + rnd.choice(["", "sek-ret-1", "xx"]),
            lambda: rnd.randrange(-10**30, 10**30),
            lambda: rnd.random() * 10.0 ** rnd.randrange(-300, 300),
            lambda: rnd.choice([True, False, None, -0.0, ""]),
        ])()
    if roll < 0.65:
        return {rnd.choice(_KEYS) + rnd.choice(["", "s", "sek-ret-1"]): _value(rnd, depth + 1)
                for _ in range(rnd.randrange(5))}
    return [_value(rnd, depth + 1) for _ in range(rnd.randrange(5))]


@pytest.mark.parametrize("extra", [(), ("xx-call-secret",)])
def test_one_walk_redaction_matches_redact_and_bounds_the_size(extra: tuple[str, ...]) -> None:
    redactor = Redactor(["sek-ret-1"])
    rnd = random.Random(7)
    for _ in range(3000):
        value = _value(rnd)
        slow = redactor.redact(value, extra)
        fast, bound = redactor.redact_json(value, extra)
        assert json.dumps(fast) == json.dumps(slow)
        exact = len(slow.encode()) if isinstance(slow, str) else len(
            json.dumps(slow, ensure_ascii=False).encode())
        assert bound >= exact
        if not isinstance(slow, str):
            assert _size_bound(slow, 1 << 40) >= exact


def test_one_walk_redaction_declines_values_that_are_not_plain_json() -> None:
    redactor = Redactor()
    for value in ({"a": (1, 2)}, {1: "x"}, {"a": b"x"}, {"password": object()}, [{1, 2}]):
        assert redactor.redact_json(value) == (None, -1)
    masked, bound = redactor.redact_json({"password": "p", "n": 1})
    assert masked == {"password": MASK, "n": 1}
    assert bound >= len(json.dumps(masked).encode())


def test_key_masks_follow_newly_registered_secrets() -> None:
    redactor = Redactor()
    assert redactor.redact({"zz-hidden-word-key": 1}) == {"zz-hidden-word-key": 1}
    redactor.add("zz-hidden-word")
    assert redactor.redact({"zz-hidden-word-key": 1}) == {f"{MASK}-key": 1}


@pytest.mark.parametrize("size", [10, 99, 100, 101, 5000])
def test_the_cap_is_exact_near_it(size: int) -> None:
    value = {"text": "é" * size, "n": 1}
    exact = len(json.dumps(value, ensure_ascii=False).encode())
    for cap in (exact - 1, exact, exact + 1):
        kept, meta = _capped(value, cap)
        assert bool(meta.get("truncated")) == (exact > cap)
        assert len(json.dumps(kept, ensure_ascii=False).encode()) <= max(cap, 200) or meta


async def test_a_requirement_seen_before_is_resolved_again_when_its_config_changes() -> None:
    provider = MemoryProvider()
    async with ExecutionEnvironmentManager(providers={"memory": provider}) as manager:
        requirement = EnvironmentRequirement(kind="memory", scope="global",
                                             config={"env": {"A": "first-secret"}})
        first = await manager.async_ensure(requirement)
        again = await manager.async_ensure(requirement)
        assert again.id == first.id and len(provider.started) == 1
        requirement.config["env"]["A"] = "second-secret"  # mutated in place
        changed = await manager.async_ensure(requirement)
        assert changed.id != first.id  # a new reuse key: a new resource
        assert manager.redactor.text("second-secret") == MASK
        for handle in (first, again, changed):
            assert await manager.async_release(handle)


async def test_release_without_waiting_keeps_the_last_reference_for_the_slow_path() -> None:
    provider = MemoryProvider()
    async with ExecutionEnvironmentManager(providers={"memory": provider}) as manager:
        requirement = manager.declare({"kind": "memory", "scope": "action_call",
                                       "owner_id": "c"})
        one = await manager.async_ensure(requirement.id)
        two = await manager.async_ensure(requirement.id)
        assert manager.release_nowait(one) is True
        assert manager.release_nowait(one) is False  # released already
        assert manager.release_nowait(two) is None  # the last: closing awaits
        assert provider.live
        assert await manager.async_release(two)
        assert not provider.live and not provider.double_releases
