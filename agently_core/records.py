"""What a run's action records say, in the two forms a host asks for.

* :func:`to_action_results`: the records as a follow-up reply should see them, the digest
  of an instruction-heavy call (code, a shell line, a query) instead of its whole
  instruction and output, the plain result of any other call;
* :func:`summarize_records`: the evidence of a run in one dict: how many calls, their
  statuses, the failures, the commands attempted and run, and which of them were
  validation runs (the caller names what marks one: ``pytest``, ``ruff``, ``npm test``)
  with the latest one's outcome.

Both take :class:`~agently_core.models.ActionRecord` objects or their dict form
(``record.model_dump()``, a FlowResult's ``action_logs``). ``agent.action`` offers both
(``Action.to_action_results(records)``, ``agent.action.summarize_records(records, ...)``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["summarize_records", "to_action_results"]

#: Why a failed call never ran at all (its record has no outcome of the action itself).
_NOT_RUN = frozenset({"ActionNotFoundError", "ArgumentsError", "PolicyError", "InvalidCall",
                      "EmptyAnswer", "PolicyNotEnforceable", "ApprovalDenied",
                      "ApprovalRequired", "EnvironmentBlocked"})


def _records(records: Any) -> list[Mapping[str, Any]]:
    """``records`` as a list of mappings (an ActionRecord reads like one); TypeError for
    anything else."""
    from .models import ActionRecord

    if isinstance(records, (str, bytes, Mapping, ActionRecord)) or not isinstance(
            records, Iterable):
        raise TypeError(f"records must be a list of action records, got "
                        f"{type(records).__name__}")
    items = list(records)
    for index, item in enumerate(items):
        if not isinstance(item, (ActionRecord, Mapping)):
            raise TypeError(f"records[{index}] is not an action record (an ActionRecord or "
                            f"its dict), got {type(item).__name__}")
        if not isinstance(item.get("action"), str) or not isinstance(item.get("status"), str):
            raise TypeError(f"records[{index}] is not an action record: it needs 'action' "
                            "and 'status'")
    return items


def to_action_results(records: Iterable[Any]) -> list[dict[str, Any]]:
    """One result per record, for a reply that follows the action loop: ``call_id``,
    ``action``, ``purpose``, ``status``, then ``digest`` for an instruction-heavy call (its
    full code and output stay artifacts, see ``artifact_refs`` in the digest) or
    ``kwargs`` and ``result`` for any other, and ``error`` / ``error_type`` when it did not
    succeed."""
    results = []
    for record in _records(records):
        item: dict[str, Any] = {"call_id": record.get("call_id"), "action": record["action"],
                                "purpose": record.get("purpose") or "",
                                "status": record["status"]}
        digest = record.get("digest")
        if digest is not None:
            item["digest"] = digest
        else:
            item["kwargs"] = record.get("kwargs") or {}
            item["result"] = record.get("result")
        if record["status"] != "success":
            item["error"] = record.get("error")
            item["error_type"] = record.get("error_type")
        results.append(item)
    return results


def _markers(markers: Any) -> list[re.Pattern[str]]:
    if isinstance(markers, str) or not isinstance(markers, Iterable):
        raise TypeError("validation_command_markers must be a list of strings such as "
                        f"['pytest', 'npm test'], got {markers!r}")
    patterns = []
    for marker in markers:
        if not isinstance(marker, str) or not marker.strip():
            raise ValueError(f"a validation command marker must be a non-empty string, "
                             f"got {marker!r}")
        words = r"\s+".join(re.escape(word) for word in marker.split())
        patterns.append(re.compile(rf"(?<![\w.-]){words}(?![\w-])"))
    return patterns


def _command(record: Mapping[str, Any], instruction_fields: Mapping[str, str]) -> str | None:
    """The instruction a call carried (a shell line, code, a query), or None."""
    field = instruction_fields.get(record["action"])
    kwargs = record.get("kwargs")
    if field and isinstance(kwargs, Mapping) and isinstance(kwargs.get(field), str):
        return kwargs[field]
    digest = record.get("digest")
    if isinstance(digest, Mapping) and digest.get("instruction_preview"):
        return str(digest["instruction_preview"])
    return None


def _exit_code(record: Mapping[str, Any]) -> Any:
    result = record.get("result")
    return result.get("exit_code") if isinstance(result, Mapping) else None


def summarize_records(records: Iterable[Any], *,
                      validation_command_markers: Iterable[str] = (),
                      instruction_fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The evidence of a run: ``total``; ``statuses`` and ``actions`` (counts);
    ``failed`` (every call that did not succeed: ``call_id``, ``action``, ``status``,
    ``error_type``, ``error``); ``commands`` (every call that carried an instruction:
    ``call_id``, ``action``, ``command``, ``status``, ``exit_code``, ``ran`` and
    ``validation``); ``commands_attempted`` / ``commands_run`` (counts);
    ``validation_runs`` (the commands that match a marker and ran) and
    ``latest_validation`` (the last of them with ``passed``: it succeeded with exit code 0
    or none; None when no validation ran).

    A marker matches a command holding it as whole words (``pytest`` matches ``python -m
    pytest -q``, not ``pytest_plugins.py``). ``instruction_fields`` maps an action to the
    argument holding its instruction (``{"run_bash": "command"}``; ``agent.action``
    fills it from the registered actions); without one, a record's digest gives the
    instruction's preview."""
    items = _records(records)
    patterns = _markers(validation_command_markers)
    fields = dict(instruction_fields or {})
    statuses: dict[str, int] = {}
    actions: dict[str, int] = {}
    failed: list[dict[str, Any]] = []
    commands: list[dict[str, Any]] = []
    for record in items:
        status, action = record["status"], record["action"]
        statuses[status] = statuses.get(status, 0) + 1
        actions[action] = actions.get(action, 0) + 1
        if status != "success":
            failed.append({"call_id": record.get("call_id"), "action": action,
                           "status": status, "error_type": record.get("error_type"),
                           "error": record.get("error")})
        command = _command(record, fields)
        if command is None:
            continue
        ran = status == "success" or (status == "failed"
                                      and record.get("error_type") not in _NOT_RUN)
        commands.append({"call_id": record.get("call_id"), "action": action,
                         "command": command, "status": status,
                         "exit_code": _exit_code(record), "ran": ran,
                         "validation": any(p.search(command) for p in patterns)})
    validation_runs = [c for c in commands if c["validation"] and c["ran"]]
    latest = None
    if validation_runs:
        last = validation_runs[-1]
        latest = {**last, "passed": last["status"] == "success"
                  and last["exit_code"] in (0, None)}
    return {"total": len(items), "statuses": statuses, "actions": actions, "failed": failed,
            "commands": commands, "commands_attempted": len(commands),
            "commands_run": sum(1 for c in commands if c["ran"]),
            "validation_runs": validation_runs, "latest_validation": latest}
