"""Execution digests and artifacts.

An *instruction-heavy* action (its spec names the argument that holds the instruction,
``meta={"instruction": "python_code"}``: code, a shell line, a query) gets two extra
things on its record:

* a **digest**: a compact summary for the next planning round (the action, the call id,
  purpose, status, a preview of the instruction and of the result, redaction notes,
  artifact refs), so a planner does not re-read whole programs and outputs;
* **artifacts**: the full instruction, the full result and whatever the executor kept
  (:meth:`~agently_core.actions.ActionContext.add_artifact`, e.g. output cut from the
  record), redacted like the record, in an :class:`ArtifactStore` with a retention bound.

``agent.action.read_action_artifact(artifact_id=..., action_call_id=...)`` reads them back.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .errors import AgentlyError
from .models import new_id

PREVIEW_CHARS = 240
#: The longest result preview a spec may ask for (``meta["preview_chars"]``).
MAX_PREVIEW_CHARS = 20_000
#: Defaults of the retention bound: the store forgets its oldest artifacts past these.
MAX_ARTIFACTS = 1024
MAX_TOTAL_BYTES = 64 << 20
MAX_ARTIFACT_BYTES = 8 << 20
MAX_AGE_SECONDS = 6 * 3600.0


class ArtifactNotFound(AgentlyError, LookupError):
    """No such artifact: never stored, stored for another call, or past retention."""


@dataclass(slots=True)
class Artifact:
    """One stored artifact. ``content`` is text or JSON-able data, already redacted."""

    id: str
    action_call_id: str
    action: str
    kind: str
    media_type: str
    content: Any
    size: int
    created_at: float
    truncated: bool = False

    def info(self) -> dict[str, Any]:
        """Everything but the content."""
        return {"artifact_id": self.id, "action_call_id": self.action_call_id,
                "action": self.action, "kind": self.kind, "media_type": self.media_type,
                "size": self.size, "created_at": self.created_at, "truncated": self.truncated}

    def to_dict(self) -> dict[str, Any]:
        return {**self.info(), "content": self.content}

    def ref(self) -> dict[str, Any]:
        """How records and digests point at it (``record["artifact_refs"]``): enough to
        read it back and to know what it is, without the content."""
        return {"artifact_id": self.id, "action_call_id": self.action_call_id,
                "kind": self.kind, "media_type": self.media_type, "size": self.size,
                "truncated": self.truncated}


def _measure(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode(errors="surrogatepass"))
    if isinstance(content, bytes):
        return len(content)
    return len(json.dumps(content, ensure_ascii=False, default=repr).encode(errors="surrogatepass"))


class ArtifactStore:
    """Redacted artifacts in memory, bounded by count, total bytes and age (oldest go
    first). Thread-safe. Bytes are stored as text (UTF-8, invalid bytes replaced)."""

    def __init__(self, *, max_artifacts: int = MAX_ARTIFACTS, max_total_bytes: int = MAX_TOTAL_BYTES,
                 max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
                 max_age_seconds: float | None = MAX_AGE_SECONDS) -> None:
        self.max_artifacts = max_artifacts
        self.max_total_bytes = max_total_bytes
        self.max_artifact_bytes = max_artifact_bytes
        self.max_age_seconds = max_age_seconds
        self._items: OrderedDict[str, Artifact] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def put(self, action_call_id: str, action: str, kind: str, content: Any, *,
            media_type: str = "text/plain") -> Artifact:
        """Store ``content`` (already redacted) and return the artifact."""
        if isinstance(content, bytes):
            content = content.decode(errors="replace")
        size = _measure(content)
        truncated = False
        if size > self.max_artifact_bytes:
            if not isinstance(content, str):
                content = json.dumps(content, ensure_ascii=False, default=repr)
            data = content.encode(errors="surrogatepass")
            kept = data[:self.max_artifact_bytes].decode(errors="ignore")
            omitted = len(data) - len(kept.encode(errors="surrogatepass"))
            content = kept + f"\n[... artifact truncated: {omitted} bytes omitted]"
            size, truncated = len(content.encode(errors="surrogatepass")), True
        artifact = Artifact(new_id("art_"), action_call_id, action, kind, media_type, content,
                            size, time.time(), truncated)
        with self._lock:
            self._items[artifact.id] = artifact
            self._bytes += size
            self._evict(time.time())
        return artifact

    def _evict(self, now: float) -> None:
        items = self._items
        oldest = now - self.max_age_seconds if self.max_age_seconds is not None else None
        while items:
            first = next(iter(items.values()))
            if (len(items) > self.max_artifacts or self._bytes > self.max_total_bytes
                    or (oldest is not None and first.created_at < oldest)):
                items.popitem(last=False)
                self._bytes -= first.size
                self.evicted += 1
            else:
                break

    def get(self, artifact_id: str, action_call_id: str | None = None) -> Artifact:
        """The artifact, checked against the call it belongs to when one is named."""
        with self._lock:
            self._evict(time.time())
            artifact = self._items.get(artifact_id)
        if artifact is None:
            raise ArtifactNotFound(f"no artifact {artifact_id!r}: it was never stored here or is "
                                   f"past the retention bound (at most {self.max_artifacts} "
                                   f"artifacts, {self.max_total_bytes} bytes"
                                   + (f", {self.max_age_seconds:g}s" if self.max_age_seconds
                                      else "") + ")")
        if action_call_id is not None and artifact.action_call_id != action_call_id:
            raise ArtifactNotFound(f"artifact {artifact_id!r} does not belong to action call "
                                   f"{action_call_id!r}")
        return artifact

    def for_call(self, action_call_id: str) -> list[Artifact]:
        with self._lock:
            self._evict(time.time())
            return [a for a in self._items.values() if a.action_call_id == action_call_id]


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A one-glance text of ``value``: at most ``limit`` characters, marked when cut."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def result_preview(result: Any, error: str | None, limit: int = PREVIEW_CHARS) -> str:
    """What a planner needs to know of a result: the error, or its meaningful parts (at
    most ``limit`` characters: an action whose result *is* what the model asked for, a
    page's text or an accessibility snapshot, sets a larger ``preview_chars`` in its spec's
    ``meta``)."""
    if error:
        return preview(error)
    if isinstance(result, dict):
        shown = {k: v for k, v in result.items() if v not in (None, "", False, [], {})}
        return preview(shown, limit)
    return preview(result, limit)


def preview_limit(meta: Any) -> int:
    """The digest's result-preview length an action spec's ``meta`` asks for
    (``preview_chars``, at least :data:`PREVIEW_CHARS`, at most :data:`MAX_PREVIEW_CHARS`)."""
    asked = meta.get("preview_chars") if isinstance(meta, dict) else None
    if isinstance(asked, int) and not isinstance(asked, bool):
        return max(PREVIEW_CHARS, min(asked, MAX_PREVIEW_CHARS))
    return PREVIEW_CHARS
