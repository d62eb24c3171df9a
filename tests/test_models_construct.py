"""models.construct() is the hot path's model_construct: it must build the same model."""

from __future__ import annotations

import pytest

from agently_core.models import ActionCall, ActionRecord, construct


def test_construct_matches_model_construct() -> None:
    values = {
        "call_id": "c1", "action": "add", "status": "success", "kwargs": {"a": 1},
        "result": 2, "error": None, "error_type": None, "purpose": "", "round_index": 0,
        "started_at": 1.0, "duration_ms": 0.5, "approval_request_id": None, "digest": None,
        "artifact_refs": [], "meta": {},
    }
    fast = construct(ActionRecord, dict(values))
    slow = ActionRecord.model_construct(**values)
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert ActionRecord.model_validate_json(fast.model_dump_json()) == fast
    assert fast.model_fields_set == set(values)
    assert fast.ok


def test_construct_refuses_missing_fields() -> None:
    with pytest.raises(TypeError, match="missing"):
        construct(ActionCall, {"id": "c1", "action": "add"})
