"""From a warm worker's reply to a call's result record. Shared by the warm sandboxes
(Python, Node.js)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .sandbox import cap_text


def result_from_reply(reply: Mapping[str, Any], max_output: int, context: Any) -> dict[str, Any]:
    """The result of a ``run`` reply: ``stdout`` and ``stderr`` cut to ``max_output`` bytes
    each, the reply's ``value``, ``error`` and ``error_type``, and ``truncated``. A stream
    cut here, or already by the worker (its ``<name>_bytes`` is larger than what came), is
    kept whole as an artifact of the call's ``context``."""
    redact = getattr(context, "redact", None) or _unchanged
    streams = {}
    truncated = False
    for name in ("stdout", "stderr"):
        full = reply.get(name) or ""
        worker_cut = reply.get(f"{name}_bytes", 0) > len(full.encode(errors="surrogatepass"))
        # redacted before it is cut here (a cut can leave half a secret that the record's
        # redaction cannot recognise), and as a cut text when the worker cut it already
        full = redact(full, cut=worker_cut)
        streams[name], cut = cap_text(full, max_output)
        if cut or worker_cut:
            truncated = True
            context.add_artifact(name, full)  # the whole output, up to the worker's max_capture
    value = reply.get("value")
    if isinstance(value, str):  # the worker cuts a long value at max_output
        value = redact(value, cut=len(value) >= max_output - 64)
    return {
        **streams, "value": value, "error": reply.get("error"),
        "error_type": reply.get("error_type"), "truncated": truncated,
    }


def _unchanged(text: str, *, cut: bool = False) -> str:
    return text
