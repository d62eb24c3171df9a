"""The EventCenter: emit events to sync and async observers, isolating their failures."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

Observer = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Subscription:
    name: str
    observer: Observer
    patterns: tuple[str, ...]
    is_async: bool

    def matches(self, event_type: str) -> bool:
        return any(p == "*" or p == event_type or fnmatchcase(event_type, p) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class ObserverFailure:
    """An observer raised while handling an event; the emitter carried on."""

    observer: str
    event_type: str
    error: str


class EventCenter:
    """Fan events out to observers.

    ``emit`` costs one attribute check when nobody observes, so the hot path pays nothing
    for events it does not need. Observers that raise are logged and kept in
    :attr:`failures`; the emitter never sees the exception.
    """

    def __init__(self, *, max_failures: int = 100, redactor: Any = None,
                 parent: EventCenter | None = None) -> None:
        self._subs: tuple[_Subscription, ...] = ()
        #: Masks secrets in every payload before an observer sees it.
        self.redactor = redactor
        #: Every event emitted here is delivered to the parent's observers too (an agent's
        #: center forwards to its manager's, where plugin observers listen).
        self.parent = parent
        self.failures: list[ObserverFailure] = []
        self._max_failures = max_failures

    @property
    def active(self) -> bool:
        """Would an emitted event reach anyone (here or up the parent chain)?"""
        return bool(self._subs) or (self.parent is not None and self.parent.active)

    def subscribe(self, observer: Observer, events: Iterable[str] | str = ("*",), *,
                  name: str | None = None) -> Callable[[], None]:
        """Add an observer; returns a function that removes it."""
        patterns = (events,) if isinstance(events, str) else tuple(events)
        call = getattr(observer, "__call__", observer)  # noqa: B004 - async __call__ objects
        sub = _Subscription(
            name or getattr(observer, "__qualname__", repr(observer)),
            observer,
            patterns,
            inspect.iscoroutinefunction(observer) or inspect.iscoroutinefunction(call),
        )
        self._subs = (*self._subs, sub)

        def unsubscribe() -> None:
            self._subs = tuple(s for s in self._subs if s is not sub)

        return unsubscribe

    def _chain_matches(self, event_type: str) -> bool:
        center: EventCenter | None = self
        while center is not None:
            if any(s.matches(event_type) for s in center._subs):
                return True
            center = center.parent
        return False

    async def emit(self, event_type: str, source: str | None = None, **payload: Any) -> None:
        """Build an :class:`~agently_core.models.Event` and deliver it to matching observers,
        here and up the parent chain."""
        if not self.active or not self._chain_matches(event_type):
            return
        from .models import Event

        await self._deliver(Event(type=event_type, source=source, payload=self._redact(payload)))

    async def _deliver(self, event: Any) -> None:
        for sub in self._subs:
            if not sub.matches(event.type):
                continue
            try:
                result = sub.observer(event)
                if sub.is_async or inspect.isawaitable(result):
                    await result
            except Exception as exc:  # an observer never breaks the emitter
                self._report(sub, event.type, exc)
        if self.parent is not None:
            await self.parent._deliver(event)

    def emit_sync(self, event_type: str, source: str | None = None, **payload: Any) -> None:
        """Emit from sync code: sync observers run now; async observers are skipped with a
        report (use :meth:`emit` from async code to reach them)."""
        if not self.active or not self._chain_matches(event_type):
            return
        from .models import Event

        self._deliver_sync(Event(type=event_type, source=source, payload=self._redact(payload)))

    def _deliver_sync(self, event: Any) -> None:
        for sub in self._subs:
            if not sub.matches(event.type):
                continue
            if sub.is_async:
                self._report(sub, event.type, RuntimeError(
                    "async observer skipped by emit_sync; emit from async code to reach it"))
                continue
            try:
                result = sub.observer(event)
                if inspect.isawaitable(result):
                    result.close()  # type: ignore[attr-defined]
            except Exception as exc:
                self._report(sub, event.type, exc)
        if self.parent is not None:
            self.parent._deliver_sync(event)

    def _redact(self, payload: dict[str, Any]) -> dict[str, Any]:
        return payload if self.redactor is None else self.redactor.redact(payload)

    def _report(self, sub: _Subscription, event_type: str, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if self.redactor is not None:
            error = self.redactor.text(error)
        failure = ObserverFailure(sub.name, event_type, error)
        import logging

        logging.getLogger("agently_core.events").warning(
            "event observer %s failed on %s: %s", sub.name, event_type, failure.error
        )
        if len(self.failures) < self._max_failures:
            self.failures.append(failure)
