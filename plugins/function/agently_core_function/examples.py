"""The ``examples`` action package: small, pure functions for demos and smoke tests."""

from __future__ import annotations

from typing import Any


def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


def multiply(a: float, b: float) -> float:
    """Multiply two numbers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


def word_count(text: str) -> dict[str, int]:
    """Count words and characters in a text.

    Args:
        text: The text to measure.
    """
    return {"words": len(text.split()), "characters": len(text)}


async def echo(message: str, repeat: int = 1) -> str:
    """Return a message, optionally repeated.

    Args:
        message: What to send back.
        repeat: How many times to repeat it.
    """
    return " ".join([message] * repeat)


ACTIONS = (add, multiply, word_count, echo)


def mount(agent: Any, **options: Any) -> list[Any]:
    """Mount every example action on ``agent``."""
    return list(ACTIONS)
