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
``max_output_bytes`` is kept whole as an artifact of the call and the record gets a capped
copy: binary data left out, long texts cut, and a ``full_result`` entry with the size and
SHA-256 digest of what the artifact holds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: Fields of content blocks that hold bulk data (base64 or text).
_BULK = ("data", "blob", "text")


def block(item: Any) -> dict[str, Any]:
    """One content block as a plain dict."""
    if getattr(item, "type", None) == "text" and item.annotations is None and item.meta is None:
        return {"type": "text", "text": item.text}  # the common case, without a model dump
    if hasattr(item, "model_dump"):
        return item.model_dump(mode="json", exclude_none=True, by_alias=False)
    return dict(item) if isinstance(item, dict) else {"type": "unknown", "value": repr(item)}


def map_result(result: Any) -> dict[str, Any]:
    """A ``CallToolResult`` as the action's result."""
    content = [block(item) for item in result.content or ()]
    texts = [b["text"] for b in content if b.get("type") == "text" and isinstance(b.get("text"), str)]
    mapped: dict[str, Any] = {"text": "\n".join(texts), "content": content}
    if result.structured_content is not None:
        mapped["structured_content"] = result.structured_content
    mapped["is_error"] = bool(result.is_error)
    return mapped


def error_text(mapped: dict[str, Any], limit: int = 2000) -> str:
    """What a failed record says for a tool result with ``is_error``."""
    text = mapped.get("text") or ""
    if not text and mapped.get("structured_content") is not None:
        text = json.dumps(mapped["structured_content"], ensure_ascii=False, default=repr)
    text = text.strip() or "the MCP tool reported an error without a message"
    return text if len(text) <= limit else text[:limit] + " [...]"


def _bulk_size(mapped: dict[str, Any]) -> int:
    size = len(mapped.get("text") or "")
    for item in mapped.get("content") or ():
        for key in _BULK:
            value = item.get(key)
            if isinstance(value, str):
                size += len(value)
        resource = item.get("resource")
        if isinstance(resource, dict):
            size += sum(len(resource[k]) for k in _BULK if isinstance(resource.get(k), str))
    return size


def cap(mapped: dict[str, Any], max_bytes: int | None) -> tuple[dict[str, Any], str | None]:
    """``(result for the record, full JSON for an artifact or None)``. Under the cap the
    result is returned as it is and nothing is kept aside."""
    if max_bytes is None:
        return mapped, None
    if _bulk_size(mapped) * 2 + 512 < max_bytes:  # cheap: clearly small, no serialisation
        return mapped, None
    full = json.dumps(mapped, ensure_ascii=False, default=repr)
    size = len(full.encode())
    if size <= max_bytes:
        return mapped, None
    budget = max(256, max_bytes // 2)
    capped: dict[str, Any] = {"text": _cut(mapped.get("text") or "", budget // 2)}
    content = []
    per_block = max(64, (budget // 2) // max(1, len(mapped.get("content") or ())))
    for original in mapped.get("content") or ():
        item = dict(original)
        for key in ("data", "blob"):
            if isinstance(original.get(key), str):
                item[key] = None
                item["omitted_characters"] = len(original[key])
        if isinstance(item.get("text"), str):
            item["text"] = _cut(item["text"], per_block)
        resource = item.get("resource")
        if isinstance(resource, dict):
            resource = dict(resource)
            if isinstance(resource.get("blob"), str):
                item["omitted_characters"] = len(resource["blob"])
                resource["blob"] = None
            if isinstance(resource.get("text"), str):
                resource["text"] = _cut(resource["text"], per_block)
            item["resource"] = resource
        content.append(item)
    capped["content"] = content
    if "structured_content" in mapped:
        structured = json.dumps(mapped["structured_content"], ensure_ascii=False, default=repr)
        capped["structured_content"] = (mapped["structured_content"] if len(structured) <= budget
                                        else _cut(structured, budget))
    capped["is_error"] = mapped.get("is_error", False)
    capped["truncated"] = True
    capped["full_result"] = {
        "bytes": size, "sha256": hashlib.sha256(full.encode()).hexdigest(),
        "artifact": "result", "note": "the whole result is kept as this call's artifact "
        "(record.artifacts; agent.action.read_action_artifact)",
    }
    return capped, full


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated: {len(text) - limit} characters omitted]"
