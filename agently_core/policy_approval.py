"""Policy approval: named handlers decide whether an action call or an environment may go.

Handlers are called as ``handler(context, request)`` (sync or async), the same two-argument
contract as planning and execution handlers; ``context`` is the agent (or ``None``) and may return an
:class:`ApprovalDecision`, ``True``/``False``, or ``"approved"``/``"denied"``/``"pending"``.
A pending decision turns into an ``approval_required`` record; a denial into ``blocked``.

Built-in handlers:

``input_timeout_fail`` (default)
    Denies at once when standard input is not a terminal; otherwise asks on the terminal
    and denies if nobody answers within the timeout.
``auto_approve``
    Approves everything. For trusted hosts and tests.
``fail_closed``
    Leaves every request pending, for a person to decide later.
``input``
    Asks on the terminal and waits for an answer.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .models import ApprovalDecision, ApprovalRequest

Handler = Callable[..., Any]
DEFAULT_HANDLER = "input_timeout_fail"
DEFAULT_INPUT_TIMEOUT = 30.0


def auto_approve(context: Any, request: ApprovalRequest) -> str:
    return "approved"


def fail_closed(context: Any, request: ApprovalRequest) -> str:
    return "pending"


def _prompt(request: ApprovalRequest) -> str:
    return f"Approve {request.subject_type} {request.subject!r}? {request.reason} [y/N] "


async def _ask(request: ApprovalRequest, timeout: float | None) -> str:
    import anyio

    def read() -> str:
        sys.stderr.write(_prompt(request))
        sys.stderr.flush()
        return sys.stdin.readline()

    with anyio.move_on_after(timeout):
        answer = await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
        return "approved" if answer.strip().lower() in {"y", "yes"} else "denied"
    return "denied"


async def input_timeout_fail(context: Any, request: ApprovalRequest) -> str:
    if not (sys.stdin and sys.stdin.isatty()):
        return "denied"
    timeout = getattr(context, "approval_timeout", None) or DEFAULT_INPUT_TIMEOUT
    return await _ask(request, timeout)


async def input(context: Any, request: ApprovalRequest) -> str:
    if not (sys.stdin and sys.stdin.isatty()):
        return "pending"
    return await _ask(request, None)


BUILTIN_HANDLERS: dict[str, Handler] = {
    "input_timeout_fail": input_timeout_fail,
    "auto_approve": auto_approve,
    "fail_closed": fail_closed,
    "input": input,
}


class PolicyApproval:
    """Named approval handlers and the default one.

    Handlers come from plugins (``register_policy_approval_handlers``) and from code
    (:meth:`register_handler`). ``decide`` never raises because of a handler: a handler
    that fails or returns nonsense denies, with the reason in the decision.
    """

    def __init__(self, default: str | None = None, handlers: dict[str, Handler] | None = None,
                 *, resolve: Callable[[str], Handler | None] | None = None):
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._default = default or DEFAULT_HANDLER
        self._resolve = resolve

    def register_handler(self, name: str, handler: Handler) -> None:
        if not callable(handler):
            raise TypeError(f"approval handler {name!r} must be callable")
        self._handlers[name] = handler

    def set_default(self, name: str) -> None:
        self.handler(name)
        self._default = name

    @property
    def default(self) -> str:
        return self._default

    def handler(self, name: str | None = None) -> Handler:
        name = name or self._default
        found = self._handlers.get(name)
        if found is None:
            found = self._resolve(name) if self._resolve is not None else None
            found = found or BUILTIN_HANDLERS.get(name)
            if found is not None:
                self._handlers[name] = found
        if found is None:
            known = sorted({*self._handlers, *BUILTIN_HANDLERS})
            raise ConfigError(f"unknown approval handler {name!r}; registered: {', '.join(known)}")
        return found

    async def decide(self, request: ApprovalRequest, context: Any = None, *,
                     handler: str | Handler | None = None) -> ApprovalDecision:
        from .models import ApprovalDecision

        reason = ""
        try:
            fn = handler if callable(handler) else self.handler(handler)
            result = fn(context, request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            result, reason = "denied", f"approval handler failed: {type(exc).__name__}: {exc}"
        if isinstance(result, ApprovalDecision):
            return result
        if result is True:
            result = "approved"
        elif result is False:
            result = "denied"
        if not isinstance(result, str) or result not in {"approved", "denied", "pending"}:
            reason = f"approval handler returned {result!r}; treated as denied"
            result = "denied"
        return ApprovalDecision(request_id=request.id, decision=result, reason=reason)
