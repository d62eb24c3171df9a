"""MCP tool results as action results (JSON-able dicts), and the cap on their size.

A ``CallToolResult`` becomes::

    {"text": "all text blocks, joined by newlines",
     "content": [{"type": "text", "text": ...},
                 {"type": "image", "data": "<base64>", "mime_type": "image/png"},
                 {"type": "audio", "data": ..., "mime_type": ...},
                 {"type": "resource", "resource": {"uri", "mime_type", "text" | "blob"}},
                 {"type": "resource_link", "uri", "name", "description", "mime_type", ...}],
     "structured_content": {...},      # only when the tool returned structured content
     "is_error": false}

Every content block is the MCP block itself, dumped with the SDK's snake_case field names
(``annotations`` included when the server set them). A result larger than the call's
``max_output_bytes`` gives the record a capped copy (binary data left out, long texts cut)
and keeps the MCP result itself (``content``, ``structured_content``, ``is_error``; the
joined ``text`` would only repeat the text blocks) as the call's ``result`` artifact, as
JSON, up to the artifact store's size for one artifact. The record's ``full_result``
entry gives the size and SHA-256 digest of that whole JSON, and whether the artifact had
to be cut.

Copies are bounded: the texts of a large result are never joined, and the artifact's JSON
is written, measured and hashed in slices, so a result costs little more than the memory
that holds it once parsed (``bench``: a 120 MB text result peaks near 2x, the parse).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

#: ``redact(text, cut=True)``: masks the call's secrets in a text cut at its end, a secret
#: the cut split included (``ActionContext.redact``). Every cut below goes through it, since
#: the dispatcher's own redaction cannot recognise half a secret.
Redact = Callable[..., Any]


def _no_redaction(text: str, *, cut: bool = False) -> str:
    return text

#: Fields of content blocks that hold bulk data (base64 or text).
_BULK = ("data", "blob", "text")
#: Strings longer than this are escaped, measured and hashed in slices of this size.
_SLICE = 1 << 20
#: Room left in a cut artifact for the note that says so.
_NOTE_ROOM = 200


def block(item: Any) -> dict[str, Any]:
    """One content block as a plain dict."""
    if getattr(item, "type", None) == "text" and item.annotations is None and item.meta is None:
        return {"type": "text", "text": item.text}  # the common case, without a model dump
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json", exclude_none=True, by_alias=False)
    return dict(item) if isinstance(item, dict) else {"type": "unknown", "value": repr(item)}


def _texts(content: list[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in content if b.get("type") == "text" and isinstance(b.get("text"), str)]


def _mapped(content: list[dict[str, Any]], result: Any) -> dict[str, Any]:
    mapped: dict[str, Any] = {"text": "\n".join(_texts(content)), "content": content}
    if result.structured_content is not None:
        mapped["structured_content"] = result.structured_content
    mapped["is_error"] = bool(result.is_error)
    return mapped


def map_result(result: Any) -> dict[str, Any]:
    """A ``CallToolResult`` as the action's result (whole)."""
    return _mapped([block(item) for item in result.content or ()], result)


def shape(result: Any, max_bytes: int | None, artifact_bytes: int,
          redact: Redact = _no_redaction) -> tuple[dict[str, Any], str | None]:
    """``(the action's result for the record, the artifact's JSON or None)``. Under
    ``max_bytes`` the whole result goes to the record and nothing is kept aside. Each text
    cut to a limit goes through ``redact`` before its marker is added."""
    content = [block(item) for item in result.content or ()]
    if max_bytes is None:
        return _mapped(content, result), None
    structured = result.structured_content
    bulk = _bulk_size(content)
    extra = _size_bound(structured, max_bytes) if structured is not None else 0
    if bulk * 2 + extra + 512 < max_bytes:  # cheap: clearly small, no serialising
        return _mapped(content, result), None
    if bulk * 2 + extra <= 4 * max_bytes:  # near the cap: measure it exactly
        mapped = _mapped(content, result)
        if len(json.dumps(mapped, ensure_ascii=False, default=repr).encode()) <= max_bytes:
            return mapped, None
    whole: dict[str, Any] = {"content": content}
    if structured is not None:
        whole["structured_content"] = structured
    whole["is_error"] = bool(result.is_error)
    sink = _Sink(max(0, artifact_bytes - _NOTE_ROOM))
    _write(whole, sink, 0)
    sink.flush()
    capped = _capped(content, structured, bool(result.is_error), max_bytes, redact)
    capped["full_result"] = {
        "bytes": sink.total, "sha256": sink.digest.hexdigest(), "artifact": "result",
        "artifact_truncated": sink.cut,
        "note": "the tool's whole result (content, structured_content, is_error) is this "
        "call's artifact (record.artifact_refs; agent.action.read_action_artifact)"
        + (f", cut to its first {sink.kept} bytes" if sink.cut else ""),
    }
    artifact = sink.text()
    if sink.cut:
        artifact = redact(artifact, cut=True) + \
            f"\n[... artifact truncated: {sink.total - sink.kept} bytes omitted]"
    return capped, artifact


def error_text(mapped: dict[str, Any], limit: int = 2000) -> str:
    """What a failed record says for a tool result with ``is_error``."""
    text = mapped.get("text") or ""
    if not text and mapped.get("structured_content") is not None:
        structured = mapped["structured_content"]
        text = structured if isinstance(structured, str) else json.dumps(
            structured, ensure_ascii=False, default=repr)
    text = text.strip() or "the MCP tool reported an error without a message"
    return text if len(text) <= limit else text[:limit] + " [...]"


def _bulk_size(content: list[dict[str, Any]]) -> int:
    size = 0
    for item in content:
        for key in _BULK:
            value = item.get(key)
            if isinstance(value, str):
                size += len(value)
        resource = item.get("resource")
        if isinstance(resource, dict):
            size += sum(len(resource[k]) for k in _BULK if isinstance(resource.get(k), str))
    return size


def _size_bound(value: Any, limit: int) -> int:
    """A rough size of a JSON value, walked without recursion and given up past
    ``limit`` (then more than ``limit``)."""
    size, stack = 0, [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            size += 2
            for key, child in item.items():
                size += len(str(key)) + 4
                stack.append(child)
        elif isinstance(item, (list, tuple)):
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += 8
    return size


def _capped(content: list[dict[str, Any]], structured: Any, is_error: bool,
            max_bytes: int, redact: Redact = _no_redaction) -> dict[str, Any]:
    """The record's copy of a result over ``max_bytes``: binary data left out, texts cut;
    nothing the size of the result is built."""
    budget = max(256, max_bytes // 2)
    texts = _texts(content)
    joined = sum(len(t) for t in texts) + max(0, len(texts) - 1)
    head = "\n".join(t[:budget // 2] for t in texts)[:budget // 2]
    text = head if joined <= budget // 2 else (
        redact(head, cut=True) + f"\n[... truncated: {joined - len(head)} characters omitted]")
    capped: dict[str, Any] = {"text": text}
    items = []
    per_block = max(64, (budget // 2) // max(1, len(content)))
    for original in content:
        item = dict(original)
        for key in ("data", "blob"):
            if isinstance(original.get(key), str):
                item[key] = None
                item["omitted_characters"] = len(original[key])
        if isinstance(item.get("text"), str):
            item["text"] = _cut(item["text"], per_block, redact)
        resource = item.get("resource")
        if isinstance(resource, dict):
            resource = dict(resource)
            if isinstance(resource.get("blob"), str):
                item["omitted_characters"] = len(resource["blob"])
                resource["blob"] = None
            if isinstance(resource.get("text"), str):
                resource["text"] = _cut(resource["text"], per_block, redact)
            item["resource"] = resource
        items.append(item)
    capped["content"] = items
    if structured is not None:
        if _size_bound(structured, budget) <= budget:
            capped["structured_content"] = structured
        else:
            sink = _Sink(budget)
            _write(structured, sink, 0)
            sink.flush()
            capped["structured_content"] = (redact(sink.text(), cut=True)
                                            + f"\n[... truncated: {sink.total - sink.kept} "
                                            "bytes omitted]")
    capped["is_error"] = is_error
    capped["truncated"] = True
    return capped


def _cut(text: str, limit: int, redact: Redact = _no_redaction) -> str:
    if len(text) <= limit:
        return text
    return redact(text[:limit], cut=True) + \
        f"\n[... truncated: {len(text) - limit} characters omitted]"


class _Sink:
    """Where JSON text goes: measured (UTF-8 bytes) and hashed whole, its first ``keep``
    bytes kept. Small writes are gathered before they are encoded."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.kept = 0
        self.total = 0
        self.cut = False
        self.digest = hashlib.sha256()
        self._parts: list[bytes] = []
        self._pending: list[str] = []
        self._pending_size = 0

    def write(self, text: str) -> None:
        self._pending.append(text)
        self._pending_size += len(text)
        if self._pending_size >= 65536:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = "".join(self._pending).encode(errors="surrogatepass")
        self._pending, self._pending_size = [], 0
        self.total += len(data)
        self.digest.update(data)
        room = self.keep - self.kept
        if room > 0:
            piece = data if len(data) <= room else data[:room]
            self._parts.append(piece)
            self.kept += len(piece)
        if len(data) > room:
            self.cut = True

    def text(self) -> str:
        self.flush()
        return b"".join(self._parts).decode(errors="ignore")


def _write(value: Any, sink: _Sink, level: int) -> None:
    """``value`` as JSON (``json.dumps``' separators) into ``sink``; long strings in the
    top levels in slices, so no copy of one is ever made whole."""
    if isinstance(value, str):
        if len(value) <= _SLICE:
            sink.write(json.dumps(value, ensure_ascii=False))
            return
        sink.flush()
        sink.write('"')
        for start in range(0, len(value), _SLICE):
            sink.write(json.dumps(value[start:start + _SLICE], ensure_ascii=False)[1:-1])
            sink.flush()
        sink.write('"')
    elif level < 3 and isinstance(value, dict):
        sink.write("{")
        for index, (key, item) in enumerate(value.items()):
            sink.write((", " if index else "") + json.dumps(str(key), ensure_ascii=False) + ": ")
            _write(item, sink, level + 1)
        sink.write("}")
    elif level < 3 and isinstance(value, (list, tuple)):
        sink.write("[")
        for index, item in enumerate(value):
            if index:
                sink.write(", ")
            _write(item, sink, level + 1)
        sink.write("]")
    else:
        sink.write(json.dumps(value, ensure_ascii=False, default=repr))
