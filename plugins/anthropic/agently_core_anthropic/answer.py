"""One model answer, read from a whole ``Message`` or assembled from a Messages stream.

An :class:`Answer` keeps the content blocks that matter to a planner, in the model's
order: text blocks and ``tool_use`` blocks (their input as the text the model wrote, so a
malformed input reaches the runtime as it was and fails that call only). Other block
kinds (thinking, server tools) are not kept. Nothing here imports the SDK: it reads the
SDK's objects by attribute.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    """What the model said: ``blocks`` are ``("text", text)`` and ``("tool_use", id,
    name, input_text)`` tuples in order; ``usage`` is ``{"input_tokens", "output_tokens"}``
    (input counts cached tokens too) or ``None``."""

    blocks: list[tuple[str, ...]] = field(default_factory=list)
    model: str | None = None
    usage: dict[str, int] | None = None
    stop_reason: str | None = None

    @property
    def text(self) -> str | None:
        return "".join(b[1] for b in self.blocks if b[0] == "text") or None

    @property
    def calls(self) -> list[tuple[str, str, str]]:
        """``(id, tool name, input text)`` of each ``tool_use`` block."""
        return [(b[1], b[2], b[3]) for b in self.blocks if b[0] == "tool_use"]


def input_text(value: Any) -> str:
    """A tool_use block's input as JSON text (a string input is kept as the model sent
    it: malformed input a server could not parse)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "{}"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def unique_id(wanted: Any, seen: set[str]) -> str:
    """``wanted`` when it is a fresh id, else a new one (a server may send none, or the
    same twice)."""
    if isinstance(wanted, str) and wanted and wanted not in seen:
        seen.add(wanted)
        return wanted
    fresh = f"toolu_{os.urandom(8).hex()}"
    seen.add(fresh)
    return fresh


def usage_of(usage: Any, previous: dict[str, int] | None = None) -> dict[str, int] | None:
    """A Messages ``usage`` object as ``{"input_tokens", "output_tokens"}``, the input
    with the tokens written to and read from the prompt cache (which Anthropic counts
    apart). Fields a stream's ``message_delta`` leaves out keep their ``previous`` value."""
    if usage is None:
        return previous
    result = dict(previous or {"input_tokens": 0, "output_tokens": 0})
    parts = [getattr(usage, name, None) for name in
             ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    if any(p is not None for p in parts):
        result["input_tokens"] = sum(int(p or 0) for p in parts)
    output = getattr(usage, "output_tokens", None)
    if output is not None:
        result["output_tokens"] = int(output)
    return result


def read_message(message: Any) -> Answer:
    """The answer in a whole (not streamed) ``Message``."""
    seen: set[str] = set()
    answer = Answer(model=getattr(message, "model", None),
                    usage=usage_of(getattr(message, "usage", None)),
                    stop_reason=getattr(message, "stop_reason", None))
    for block in getattr(message, "content", None) or ():
        kind = getattr(block, "type", None)
        if kind == "text" and block.text:
            answer.blocks.append(("text", block.text))
        elif kind == "tool_use":
            answer.blocks.append(("tool_use", unique_id(block.id, seen), block.name or "",
                                  input_text(block.input)))
    return answer


class StreamAssembler:
    """Builds an :class:`Answer` from raw stream events, one :meth:`feed` at a time.

    ``on_text`` (awaited) gets each text delta as it arrives. :attr:`finished` turns true
    at ``message_stop``; a stream that ends before it broke off."""

    def __init__(self, on_text: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.answer = Answer()
        self.finished = False
        self._on_text = on_text
        self._slots: dict[int, list[Any]] = {}  # index -> [kind, id, name, [pieces], start]

    async def feed(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            slot = self._slots.get(event.index)
            delta = event.delta
            what = getattr(delta, "type", None)
            if slot is None:
                return
            if what == "text_delta" and slot[0] == "text" and delta.text:
                slot[3].append(delta.text)
                if self._on_text is not None:
                    await self._on_text(delta.text)
            elif what == "input_json_delta" and slot[0] == "tool_use":
                slot[3].append(delta.partial_json or "")
        elif kind == "content_block_start":
            block = event.content_block
            what = getattr(block, "type", None)
            if what == "text":
                self._slots[event.index] = ["text", None, None, [], None]
                if block.text:
                    self._slots[event.index][3].append(block.text)
                    if self._on_text is not None:
                        await self._on_text(block.text)
            elif what == "tool_use":
                self._slots[event.index] = ["tool_use", block.id, block.name or "", [],
                                            block.input]
        elif kind == "message_start":
            message = event.message
            self.answer.model = getattr(message, "model", None)
            self.answer.usage = usage_of(getattr(message, "usage", None))
        elif kind == "message_delta":
            self.answer.usage = usage_of(getattr(event, "usage", None), self.answer.usage)
            reason = getattr(event.delta, "stop_reason", None)
            if reason:
                self.answer.stop_reason = reason
        elif kind == "message_stop":
            self.finished = True

    def result(self) -> Answer:
        """The answer assembled so far (blocks in their stream order)."""
        seen: set[str] = set()
        blocks: list[tuple[str, ...]] = []
        for _, (kind, block_id, name, pieces, start) in sorted(self._slots.items()):
            if kind == "text":
                text = "".join(pieces)
                if text:
                    blocks.append(("text", text))
            else:
                text = "".join(pieces)
                blocks.append(("tool_use", unique_id(block_id, seen), name,
                               text if text.strip() else input_text(start)))
        self.answer.blocks = blocks
        return self.answer
