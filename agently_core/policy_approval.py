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

The module functions :func:`register_handler` and :func:`configure_policy_approval` (also
``agently_core.configure_policy_approval``) apply to the whole process: every
:class:`PolicyApproval` (each agent's ``agent.approval``, each manager's) falls back to the
handlers registered here, and to the default handler chosen here when it has none of its own
(from the ``approval_handler`` setting or ``set_default`` on it)::

    import agently_core as Agently

    Agently.policy_approval.register_handler("my_handler", handler)
    Agently.configure_policy_approval(handler="my_handler")
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


#: Handlers registered for the whole process, and its default handler's name.
_registered: dict[str, Handler] = {}
_process_default: str | None = None


def register_handler(name: str, handler: Handler) -> None:
    """Register ``handler`` under ``name`` for every agent and manager in the process. A
    handler an agent registers under the same name wins for that agent."""
    if not isinstance(name, str) or not name:
        raise TypeError("an approval handler needs a non-empty name")
    if not callable(handler):
        raise TypeError(f"approval handler {name!r} must be callable")
    _registered[name] = handler


def configure_policy_approval(*, handler: str | None) -> None:
    """Make ``handler`` (a name) the default handler of every :class:`PolicyApproval`
    without a default of its own (``None`` restores ``input_timeout_fail``). The name must
    be a registered or built-in handler, or one a plugin registers; otherwise this is a
    :class:`ConfigError`. Register a function first with :func:`register_handler`."""
    global _process_default
    name = handler
    if name is not None and not isinstance(name, str):
        raise TypeError(f"configure_policy_approval(handler=...) takes a handler's name, got "
                        f"{type(name).__name__}; register the function with "
                        "register_handler(name, handler) first")
    if name is not None and name not in _registered and name not in BUILTIN_HANDLERS:
        from .plugins import get_plugin_manager

        if name not in get_plugin_manager().registrations("approval_handler"):
            raise ConfigError(f"unknown approval handler {name!r}; registered: "
                              f"{', '.join(sorted({*_registered, *BUILTIN_HANDLERS}))}")
    _process_default = name


def get_default() -> str:
    """The process-wide default handler's name."""
    return _process_default or DEFAULT_HANDLER


def for_plugins(plugins: Any) -> PolicyApproval:
    """A :class:`PolicyApproval` with the configuration's default (``approval_handler``)
    that also finds the handlers ``plugins`` register."""

    def resolve(name: str) -> Handler | None:
        found = plugins.registrations("approval_handler").get(name)
        return found.load() if found else None

    return PolicyApproval(plugins.config.approval_handler, resolve=resolve)


class PolicyApproval:
    """Named approval handlers and the default one.

    Handlers come from code (:meth:`register_handler`, then the process-wide
    :func:`register_handler`), from plugins (``register_policy_approval_handlers``) and the
    built-ins, looked up in that order. The default is this object's own (``default=``,
    :meth:`set_default`), else the process-wide one (:func:`configure_policy_approval`). ``decide`` never
    raises because of a handler: a handler that fails or returns nonsense denies, with the
    reason in the decision.
    """

    def __init__(self, default: str | None = None, handlers: dict[str, Handler] | None = None,
                 *, resolve: Callable[[str], Handler | None] | None = None):
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._resolved: dict[str, Handler] = {}  # plugin and built-in handlers found so far
        self._default = default
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
        return self._default or _process_default or DEFAULT_HANDLER

    def handler(self, name: str | None = None) -> Handler:
        name = name or self.default
        found = self._handlers.get(name) or _registered.get(name) or self._resolved.get(name)
        if found is None:
            found = self._resolve(name) if self._resolve is not None else None
            found = found or BUILTIN_HANDLERS.get(name)
            if found is not None:
                self._resolved[name] = found
        if found is None:
            known = sorted({*self._handlers, *_registered, *BUILTIN_HANDLERS})
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
