"""Data contracts: serialisable pydantic v2 models with no live objects inside.

Live resources (functions, sandboxes, sessions) are held by registries and managers and
travel beside these models, never inside them.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

ActionStatus = Literal["success", "failed", "approval_required", "blocked", "skipped"]
Scope = Literal["action_call", "request", "execution", "session", "agent", "global"]
HandleStatus = Literal["pending", "ensuring", "ready", "unhealthy", "releasing", "released", "failed"]
ApprovalMode = Literal["auto", "always", "never", "deny"]
PlanningProtocol = Literal["structured_plan", "native_tool_calls"]


#: What an action may be called: it must be usable as a tool name by model APIs.
ACTION_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"


def new_id(prefix: str = "") -> str:
    """A short random id, optionally prefixed (``call_3f2a...``)."""
    return f"{prefix}{os.urandom(16).hex()}"


def construct(cls: type[BaseModel], values: dict[str, Any]) -> Any:
    """Build a model from already-valid values for *every* field, without validation.

    The hot paths (one call record per action) use this instead of ``model_construct``,
    which spends most of its time resolving defaults that are all given here. The result is
    indistinguishable from ``cls.model_construct(**values)``.
    """
    if len(values) != len(cls.__pydantic_fields__):
        missing = set(cls.__pydantic_fields__) - set(values)
        raise TypeError(f"{cls.__name__}: construct() needs every field; missing {missing}")
    obj = cls.__new__(cls)
    _set = object.__setattr__
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", set(values))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


# Default factories are plain functions, not ``dict``/``list``: pydantic inspects each
# factory's signature, and the first builtin it inspects costs ~2 ms of regex compiling in
# ``tokenize``, paid by every process's first call.
def _dict() -> dict[str, Any]:
    return {}


def _list() -> list[Any]:
    return []


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, validate_assignment=False)


class Policy(_Model):
    """What a call may do. Layers combine host configuration -> agent -> action package
    (the spec) -> call, and every layer can only *narrow* what the layers before it allow.

    ``None`` means "not constrained by this layer": the executor's own default applies (a
    sandbox's default is no network, a scratch workspace, read-only system files). A field
    set to a constraining value must be enforced by the executor that runs the call: every
    executor lists the fields it enforces (``enforced_policy``) and the dispatcher blocks a
    call whose policy constrains anything else, so a field is either enforced or refused,
    never silently ignored. ``approval_mode``, ``timeout_seconds`` and ``max_output_bytes``
    are enforced by the dispatcher for every executor.

    How layers combine (:meth:`merge`): allowlists (``workspace_roots``, ``path_allow``,
    ``command_allowlist``, ``env_passthrough``) intersect, ``path_deny`` lists unite,
    limits take the minimum, ``network=False``, ``read_only=True`` and ``allow_*=False``
    win, and the stricter approval mode wins. A permissive boolean (``network=True``,
    ``read_only=False``, ``allow_*=True``) widens an executor's default only when the
    action package itself sets it (``enable_shell(network=True)``); anywhere else it just
    constrains nothing. Keys in :attr:`HOST_ONLY` are ignored from a model altogether.
    """

    approval_mode: ApprovalMode = Field(
        "auto",
        description="auto: ask only when the action or requirement demands approval; "
        "always: ask for every call; never: never ask, block what would need approval; "
        "deny: block every call (what 'always' and 'never' in two layers combine into).",
    )
    timeout_seconds: float | None = Field(
        None, gt=0, strict=True,
        description="Wall-clock limit for one call; the caller gets a record on time.",
    )
    max_output_bytes: int | None = Field(
        None, gt=0, strict=True,
        description="Cap on the serialised result; longer results are truncated.",
    )
    network: bool | None = Field(None, description="False: no network at all; True: allowed.")
    workspace_roots: list[str] | None = Field(
        None, description="Directories the call may use; nothing outside them."
    )
    path_allow: list[str | list[str]] | None = Field(
        None, description="Glob patterns of paths allowed (see path_allowed); a nested list "
        "is one more group a path must also match (two layers' lists combined).")
    path_deny: list[str] | None = Field(None, description="Glob patterns of paths refused.")
    command_allowlist: list[str] | None = Field(
        None, description="Programs a shell may run, matched by resolved path."
    )
    read_only: bool | None = Field(None, description="True: no writes of any kind.")
    allow_create: bool | None = None
    allow_update: bool | None = None
    allow_delete: bool | None = None
    max_memory_bytes: int | None = Field(None, gt=0, strict=True)
    max_cpu_seconds: float | None = Field(None, gt=0, strict=True)
    max_processes: int | None = Field(None, gt=0, strict=True)
    max_file_bytes: int | None = Field(None, gt=0, strict=True)
    max_workspace_bytes: int | None = Field(
        None, gt=0, strict=True,
        description="Bytes the call's writable places (its workspace and temporary files) "
        "may hold in all; a write past it fails as a full disk would.",
    )
    env_passthrough: list[str] | None = Field(
        None, description="Names of host environment variables a child process receives."
    )

    #: Keys a model can never set, not even to narrow (they grant access).
    HOST_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"approval_mode", "workspace_roots", "path_allow", "command_allowlist", "env_passthrough"}
    )
    #: Keys the dispatcher enforces for every executor.
    DISPATCHER_ENFORCED: ClassVar[frozenset[str]] = frozenset(
        {"approval_mode", "timeout_seconds", "max_output_bytes"}
    )

    def merge(self, overrides: dict[str, Any] | Policy | None, *, from_model: bool = False,
              grants: bool = True) -> Policy:
        """This policy narrowed by one more layer, ``overrides`` (a new policy; neither
        input changes). Only the layer's set fields count.

        ``grants`` (the default, for an action package's own layer or a policy built from
        scratch): the layer's permissive booleans (``network=True``, ``read_only=False``,
        ``allow_*=True``) widen the executor's default where no earlier layer restricts
        them. ``grants=False`` (the host configuration, the agent, a call): they constrain
        nothing and widen nothing. ``from_model=True`` implies ``grants=False`` and ignores
        the keys in :attr:`HOST_ONLY`.
        Raises ValueError for an unknown key or a bad value.
        """
        if not overrides:
            return self
        if isinstance(overrides, Policy):
            layer = overrides
            given = overrides.model_fields_set
        else:
            if not isinstance(overrides, dict):
                raise ValueError(f"a policy must be a mapping, got {type(overrides).__name__}")
            unknown = set(overrides) - set(type(self).model_fields)
            if unknown:
                raise ValueError(f"unknown policy key {sorted(unknown)[0]!r}; known: "
                                 f"{', '.join(sorted(type(self).model_fields))}")
            if from_model:
                overrides = {k: v for k, v in overrides.items() if k not in self.HOST_ONLY}
                for key, value in overrides.items():  # no "no" or 0 for False from a model
                    if key in _PERMISSIVE and value is not None and not isinstance(value, bool):
                        raise ValueError(f"{key} must be a boolean, got {value!r}")
            layer = Policy.model_validate(overrides)
            given = set(overrides)
        data = self.model_dump()
        for key in given:
            if from_model and key in self.HOST_ONLY:
                continue
            data[key] = _meet(key, data[key], getattr(layer, key),
                              grants=grants and not from_model)
        return Policy.model_validate(data)

    def constraints(self) -> set[str]:
        """Fields set to a value that restricts what an executor may do (beyond the ones the
        dispatcher enforces). The executor must enforce each, or the call is blocked."""
        found = set()
        for key in _CONSTRAINABLE:
            value = getattr(self, key)
            if value is None or value == _PERMISSIVE.get(key, object()):
                continue
            found.add(key)
        return found

    def path_allowed(self, path: str) -> bool:
        """May a call touch ``path`` (relative to its root, ``/``-separated, ``.`` for the
        root itself)? Patterns are :func:`fnmatch.fnmatchcase` globs (``*`` also matches
        ``/``) matched against the path and each of its parent directories: a path is
        refused when it or a parent matches a ``path_deny`` pattern, and, when
        ``path_allow`` is set, allowed only when it or a parent matches a pattern of
        every group (plain strings form one group, each nested list another)."""
        from fnmatch import fnmatchcase

        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        candidates = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)] or ["."]
        if self.path_deny and any(fnmatchcase(c, p) for c in candidates for p in self.path_deny):
            return False
        if self.path_allow is None:
            return True
        return all(any(fnmatchcase(c, p) for c in candidates for p in group)
                   for group in _groups(self.path_allow))


#: For booleans, the value that grants rather than restricts.
_PERMISSIVE = {"network": True, "read_only": False, "allow_create": True, "allow_update": True,
               "allow_delete": True}
_CONSTRAINABLE = (
    "network", "workspace_roots", "path_allow", "path_deny", "command_allowlist", "read_only",
    "allow_create", "allow_update", "allow_delete", "max_memory_bytes", "max_cpu_seconds",
    "max_processes", "max_file_bytes", "max_workspace_bytes", "env_passthrough",
)
_MINIMUM = {"timeout_seconds", "max_output_bytes", "max_memory_bytes", "max_cpu_seconds",
            "max_processes", "max_file_bytes", "max_workspace_bytes"}
#: Approval modes from the least to the most strict; ``always`` and ``never`` together
#: make ``deny`` (every call needs approval, and none may be asked for).
_APPROVAL_ORDER = {"auto": 0, "always": 1, "never": 2, "deny": 3}


def _meet(key: str, current: Any, proposed: Any, *, grants: bool) -> Any:
    """The value of ``key`` that satisfies both the earlier layers (``current``) and one
    more layer (``proposed``)."""
    if key == "approval_mode":
        pair = {current, proposed}
        if pair == {"always", "never"}:
            return "deny"
        return max(pair, key=_APPROVAL_ORDER.__getitem__)
    if key in _PERMISSIVE:
        if proposed is None or (proposed == _PERMISSIVE[key] and not grants):
            return current
        if current is not None and current != _PERMISSIVE[key]:
            return current  # an earlier layer restricts: a later one cannot lift it
        return proposed
    if proposed is None:
        return current
    if current is None:
        return list(proposed) if isinstance(proposed, list) else proposed
    if key in _MINIMUM:
        return min(current, proposed)
    if key == "path_deny":
        return [*current, *(p for p in proposed if p not in current)]
    if key == "path_allow":
        groups = _groups(current)
        for group in _groups(proposed):
            if group not in groups:
                groups.append(group)
        return groups[0] if len(groups) == 1 else groups
    if key == "workspace_roots":
        return _intersect_roots(current, proposed)
    if key == "command_allowlist":
        return _intersect_programs(current, proposed)
    return [item for item in current if item in proposed]  # env_passthrough


def _groups(patterns: list[Any]) -> list[list[str]]:
    """``path_allow`` as groups: its plain strings together, each nested list apart."""
    plain = [p for p in patterns if isinstance(p, str)]
    nested = [list(p) for p in patterns if not isinstance(p, str)]
    return ([plain] if plain or not nested else []) + nested


def _intersect_roots(first: list[str], second: list[str]) -> list[str]:
    """The trees under a root of both lists (resolved: a symlink is its target)."""
    def real(paths: list[str]) -> list[str]:
        return [os.path.realpath(p) for p in paths]

    def under(path: str, root: str) -> bool:
        return path == root or path.startswith(root.rstrip("/") + "/")

    kept: list[str] = []
    a, b = real(first), real(second)
    for path in [*a, *b]:
        if any(under(path, r) for r in a) and any(under(path, r) for r in b) \
                and path not in kept:
            kept.append(path)
    return [p for p in kept if not any(p != q and under(p, q) for q in kept)]


def _intersect_programs(first: list[str], second: list[str]) -> list[str]:
    """Programs both lists allow. An entry is a name (``ls``) or an absolute path
    (``/usr/bin/ls``); a name and a path match when the path's file name is the name (the
    more specific path is kept); two paths match when they are the same program under the
    same name (same file name, same resolved file)."""
    def identity(path: str) -> tuple[str, str]:
        return os.path.realpath(path), os.path.basename(path)

    kept: list[str] = []
    for a in first:
        for b in second:
            if a == b or ("/" not in b and os.path.basename(a) == b):
                pick = a
            elif "/" not in a and os.path.basename(b) == a:
                pick = b
            elif "/" in a and "/" in b and identity(a) == identity(b):
                pick = a
            else:
                continue
            if pick not in kept:
                kept.append(pick)
    return kept


class EnvironmentRequirement(_Model):
    """A declared need for a managed resource (a sandbox, a session, a connection)."""

    id: str = Field(default_factory=lambda: new_id("env_"))
    kind: str
    scope: Scope = "action_call"
    owner_id: str | None = None
    resource_key: str | None = None
    config: dict[str, Any] = Field(default_factory=_dict)
    policy: dict[str, Any] = Field(default_factory=_dict)
    reuse_key: str | None = None
    approval_required: bool = False
    provider: str | None = None


class EnvironmentHandle(_Model):
    """The manager's view of a live resource. The resource itself stays in the manager."""

    id: str = Field(default_factory=lambda: new_id("envh_"))
    requirement_id: str
    kind: str
    scope: Scope
    owner_id: str | None = None
    resource_key: str | None = None
    reuse_key: str | None = None
    provider: str | None = None
    status: HandleStatus = "pending"
    ref_count: int = 0
    lease_id: str | None = Field(
        None, description="The reference this ensure returned; release it exactly once."
    )
    created_at: float = Field(default_factory=time.time)
    meta: dict[str, Any] = Field(default_factory=_dict)


class ActionSpec(_Model):
    """What a model sees of an action, and what the host decided about it."""

    name: str = Field(pattern=ACTION_NAME_PATTERN)
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: dict[str, Any] | None = None
    kind: str = Field("function", description="Which executor kind runs this action.")
    executor: str | None = Field(None, description="Pin a named executor for the kind.")
    tags: list[str] = Field(default_factory=_list)
    approval_required: bool = False
    policy: dict[str, Any] = Field(default_factory=_dict)
    execution_environments: list[EnvironmentRequirement] = Field(default_factory=_list)
    meta: dict[str, Any] = Field(default_factory=_dict)

    def info(self) -> dict[str, Any]:
        """The schema a planner or model is shown."""
        return {"name": self.name, "description": self.description, "kwargs": self.input_schema}


class ActionCall(_Model):
    """One request to run an action, from the host or from a model's plan."""

    id: str = Field(default_factory=lambda: new_id("call_"))
    action: str
    kwargs: dict[str, Any] = Field(default_factory=_dict)
    purpose: str = ""
    todo_suggestion: str = ""
    source: Literal["host", "model"] = "host"
    round_index: int | None = None
    policy: dict[str, Any] = Field(default_factory=_dict)


class ActionRecord(_Model):
    """The outcome of one call. ``status`` is one of success, failed, approval_required,
    blocked, skipped; ``error`` says why when it is not success.

    A record reads like a dict too: ``record["result"]``, ``record.get("digest")``,
    ``dict(record)``. ``artifact_refs`` lists what the call kept in full, each ref a dict
    with ``artifact_id`` and ``action_call_id`` (read one back with
    ``agent.action.read_action_artifact(artifact_id=..., action_call_id=...)``), plus its
    ``kind``, ``media_type``, ``size`` and ``truncated``."""

    call_id: str
    action: str
    status: ActionStatus
    kwargs: dict[str, Any] = Field(default_factory=_dict)
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    purpose: str = ""
    round_index: int | None = None
    started_at: float = 0.0
    duration_ms: float = 0.0
    approval_request_id: str | None = None
    digest: dict[str, Any] | None = None
    artifact_refs: list[dict[str, Any]] = Field(default_factory=_list)
    meta: dict[str, Any] = Field(default_factory=_dict)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def __getitem__(self, key: str) -> Any:
        """A field by name (``record["artifact_refs"]``); KeyError for anything else."""
        if not isinstance(key, str) or key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """A field by name, or ``default`` when the record has no such field."""
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> list[str]:
        """The field names (with item access, ``dict(record)`` gives the fields)."""
        return list(type(self).model_fields)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in type(self).model_fields


class ActionDecision(_Model):
    """A planner's decision for one round, after normalisation by the ActionRuntime."""

    next_action: Literal["execute", "response"]
    calls: list[ActionCall] = Field(default_factory=_list)
    response: Any = None
    protocol: PlanningProtocol = "structured_plan"
    invalid: list[dict[str, Any]] = Field(
        default_factory=_list,
        description="Calls that could not be normalised: {call_id, action, error, index} "
        "each (index: the call's position in the planner's answer).",
    )
    usage: dict[str, Any] | None = Field(
        None, description="What the model request cost: input_tokens, output_tokens (and "
        "requests, when the round took more than one); None when the planner did not say.")
    model: str | None = Field(None, description="The model that answered, as it said.")
    model_message: Any = Field(
        None, description="The planner's own message for this round (JSON), replayed by "
        "the planner in later rounds from the planning context's history.")
    diagnostics: list[dict[str, Any]] = Field(
        default_factory=_list,
        description="Notes of the runtime about this answer: {code, message} each, e.g. "
        "action_runtime.native_tool_calls.empty for an answer with neither calls nor text.")


class ApprovalRequest(_Model):
    """Asks a policy-approval handler whether an action call or an environment may proceed."""

    id: str = Field(default_factory=lambda: new_id("apr_"))
    subject_type: Literal["action", "environment"]
    subject: str
    subject_id: str | None = None
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=_dict)
    created_at: float = Field(default_factory=time.time)


class ApprovalDecision(_Model):
    """A handler's answer: approved, denied, or pending (decided later by a person)."""

    request_id: str
    decision: Literal["approved", "denied", "pending"]
    reason: str = ""
    actor: str | None = None
    decided_at: float = Field(default_factory=time.time)

    @property
    def approved(self) -> bool:
        return self.decision == "approved"


class Event(_Model):
    """Something that happened. Payloads carry ids and status only, never live objects."""

    id: str = Field(default_factory=lambda: new_id("evt_"))
    type: str
    ts: float = Field(default_factory=time.time)
    source: str | None = None
    payload: dict[str, Any] = Field(default_factory=_dict)


__all__ = [
    "ActionCall",
    "ActionDecision",
    "ActionRecord",
    "ActionSpec",
    "ActionStatus",
    "ApprovalDecision",
    "ApprovalMode",
    "ApprovalRequest",
    "EnvironmentHandle",
    "EnvironmentRequirement",
    "Event",
    "HandleStatus",
    "PlanningProtocol",
    "Policy",
    "Scope",
    "new_id",
]


class FlowRound(_Model):
    """One round of an ActionFlow: the normalised decision and the ids of its records."""

    round_index: int
    decision: ActionDecision
    record_ids: list[str] = Field(default_factory=_list)


class FlowResult(_Model):
    """What an ActionFlow run produced. ``stop_reason`` is one of ``response``,
    ``max_rounds``, ``approval_required`` or ``failed`` (the planner failed; see ``error``).
    ``usage`` totals what the rounds' model requests reported (``input_tokens``,
    ``output_tokens``, ``requests``; None when no round reported any)."""

    request: Any = None
    records: list[ActionRecord] = Field(default_factory=_list)
    rounds: list[FlowRound] = Field(default_factory=_list)
    response: Any = None
    stop_reason: Literal["response", "max_rounds", "approval_required", "failed"] = "response"
    error: str | None = None
    execution_id: str | None = None
    usage: dict[str, int] | None = None
    #: Set by the agent from ``runtime.show_deprecation_warnings`` (for :attr:`tool_logs`).
    _show_deprecation_warnings: bool = PrivateAttr(default=True)

    @property
    def action_logs(self) -> list[dict[str, Any]]:
        """The action loop's structured logs: one entry per call, in call order, each the
        call's record as JSON data (``call_id``, ``action``, ``kwargs``, ``purpose``,
        ``status``, ``result`` or ``error``, ``round_index``, ``duration_ms``, ``digest``,
        ``artifact_refs``, ...)."""
        return [record.model_dump(mode="json") for record in self.records]

    @property
    def tool_logs(self) -> list[dict[str, Any]]:
        """:attr:`action_logs` under the older surface's name (deprecated)."""
        from .deprecation import warn_deprecated

        warn_deprecated("FlowResult.tool_logs", "FlowResult.action_logs",
                        enabled=self._show_deprecation_warnings)
        return self.action_logs


__all__ += ["FlowResult", "FlowRound"]


class ExecutionSnapshot(_Model):
    """What is left of a flow execution once closed (or paused): ids, states and
    decisions, never live objects."""

    id: str
    state: Literal["open", "sealed", "closed"]
    created_at: float
    closed_at: float | None = None
    environments: list[EnvironmentHandle] = Field(default_factory=_list)
    runtime_resource_keys: list[str] = Field(default_factory=_list)
    pending_approvals: list[ApprovalRequest] = Field(default_factory=_list)
    decisions: list[ApprovalDecision] = Field(default_factory=_list)
    resumed: list[str] = Field(default_factory=_list, description="Resume request ids used.")
    result: Any = None


__all__ += ["ExecutionSnapshot"]
