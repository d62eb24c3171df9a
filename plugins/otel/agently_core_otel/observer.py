"""The event observer that turns agently-core events into OpenTelemetry spans.

The span tree of one run, following the GenAI semantic conventions::

    invoke_agent <agent>            run (gen_ai.operation.name = invoke_agent)
      agently.round                 one per round (agently.round.index)
        chat <model>                one per model request (model.request .. model.response)
        execute_tool <action>       one per action call (gen_ai.tool.name, gen_ai.tool.call.id)

Spans are correlated by the ids events carry (``run_id``, ``round_index``, ``call_id``)
and, for events that carry no run id, by the execution the emitting task runs in. Their
times are the events' own timestamps. A run ends with its ``run.completed`` event (the
flow emits it at the end and at a pause for approval), or when its execution closes
without one (a cancelled run), or, for flows that emit no ``run.*`` events, when its
execution closes or pauses (checked at every new run and every ``poll_interval`` seconds
by a daemon thread that lives only while spans are open). Open bookkeeping is bounded: an
entry idle for ``idle_timeout`` seconds is ended, and past ``max_open_spans`` the least
recently active run is ended, each marked ``agently.span.incomplete``.

Importing this module does not import OpenTelemetry: that happens at the first event.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from agently_core.execution import current_execution

from . import attributes as attr
from .bookkeeping import CLEAN_STOPS, OpenRun, OpenSpan, settled
from .settings import EVENT_PATTERNS  # the event types it hears (fnmatch patterns)

_FINAL_ACTION = {"action.completed": "success", "action.failed": "failed",
                 "action.blocked": "blocked", "action.approval_required": "approval_required",
                 "action.skipped": "skipped"}
_ERROR_STATUSES = frozenset({"failed", "blocked"})
#: How many ended runs are remembered, to link a resumed run to the span that paused.
_ENDED_KEPT = 256


class SpanObserver:
    """An agently-core event observer that records OpenTelemetry spans.

    ``tracer_provider``: where spans go (default: the global provider, so hosts set up
    exporters the usual way). ``idle_timeout``: seconds after which an entry with no new
    event is ended. ``max_open_spans``: the most spans open at once. ``poll_interval``:
    how often ended runs are looked for while spans are open.
    """

    def __init__(self, *, tracer_provider: Any = None, idle_timeout: float = 900.0,
                 max_open_spans: int = 4096, poll_interval: float = 1.0) -> None:
        if not idle_timeout > 0 or not poll_interval > 0:
            raise ValueError("idle_timeout and poll_interval must be positive numbers of seconds")
        if not isinstance(max_open_spans, int) or max_open_spans < 8:
            raise ValueError("max_open_spans must be an integer >= 8")
        self.idle_timeout = float(idle_timeout)
        self.max_open_spans = max_open_spans
        self.poll_interval = float(poll_interval)
        self._provider = tracer_provider
        self._tracer: Any = None
        self._otel: Any = None
        self._lock = threading.RLock()
        self._runs: dict[str, OpenRun] = {}
        self._root = OpenRun(key=None, span=None, start=0, last=0)
        self._ended: OrderedDict[str, Any] = OrderedDict()
        self._open = 0
        #: The stop signal of the running reaper thread (None: no reaper runs).
        self._reaper: threading.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._handlers: dict[str, Callable[[Mapping[str, Any], int], None]] = {
            "run.started": self._run_started, "run.completed": self._run_completed,
            "round.started": self._round_started, "round.completed": self._round_completed,
            "model.request": self._model_request, "model.delta": self._model_delta,
            "model.response": self._model_response, "model.failed": self._model_failed,
            "action.started": self._action_started,
        }
        for event_type, status in _FINAL_ACTION.items():
            self._handlers[event_type] = partial(self._action_finished, status=status)
        for decision in ("requested", "approved", "denied", "pending", "resumed"):
            self._handlers[f"policy.approval.{decision}"] = partial(self._approval,
                                                                    decision=decision)

    # -- the observer ---------------------------------------------------------------------
    def __call__(self, event: Any) -> None:
        handler = self._handlers.get(event.type)
        if handler is None:
            return
        payload = event.payload
        if type(payload) is not dict and not isinstance(payload, Mapping):
            payload = {}
        ns = int(event.ts * 1e9)
        with self._lock:
            if self._tracer is None:
                self._setup()
            if self._open >= self.max_open_spans - 3:
                self._make_room()
            handler(payload, ns)

    @property
    def open_spans(self) -> int:
        """How many spans are open now (bounded by ``max_open_spans``)."""
        return self._open

    def flush(self) -> None:
        """End now the spans of runs that have ended and of entries past the idle
        timeout (the reaper thread does this every ``poll_interval`` seconds)."""
        with self._lock:
            self._sweep(time.time_ns())

    def shutdown(self) -> None:
        """Stop observing and end every open span (a run that has not ended is marked
        incomplete). Runs at interpreter exit too."""
        with self._lock:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            now = time.time_ns()
            self._sweep(now)
            for run in list(self._runs.values()):
                self._close_run(run, run.last, stop="shutdown", error="shutdown")
            self._close_root(lambda entry: True, "shutdown")
            if self._reaper is not None:
                self._reaper.set()
                self._reaper = None

    # -- set-up ---------------------------------------------------------------------------
    def _setup(self) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from . import __version__

        self._otel = (trace, SpanKind, Status, StatusCode)
        provider = self._provider if self._provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer("agently_core_otel", __version__)
        atexit.register(_shutdown, weakref.ref(self))

    def _begin(self, name: str, parent: Any, ns: int, attributes: dict[str, Any], *,
               client: bool = False, links: Any = None) -> Any:
        trace, kind, _, _ = self._otel
        context = None if parent is None else trace.set_span_in_context(parent)
        span = self._tracer.start_span(
            name, context=context, kind=kind.CLIENT if client else kind.INTERNAL,
            attributes=attributes, start_time=ns, links=links)
        self._open += 1
        if self._reaper is None:
            self._reaper = threading.Event()
            threading.Thread(target=self._reap, args=(self._reaper,), name="agently-otel-reaper",
                             daemon=True).start()
        return span

    def _end(self, entry: OpenSpan | OpenRun, ns: int, *, error: str | None = None,
             attributes: Mapping[str, Any] | None = None) -> None:
        span = entry.span
        if attributes:
            span.set_attributes(dict(attributes))
        if error is not None:
            _, _, status, code = self._otel
            span.set_attribute(attr.ERROR_TYPE, error)
            span.set_status(status(code.ERROR, error))
        span.end(end_time=max(ns, entry.start))
        self._open -= 1

    # -- runs -----------------------------------------------------------------------------
    def _run(self, payload: Mapping[str, Any], ns: int, *, create: bool = True) -> OpenRun | None:
        """The run an event belongs to: its ``run_id`` (or ``execution_id``), else the
        execution the emitting task runs in; the root container outside any run."""
        execution = current_execution.get()
        key = attr.text(payload.get("run_id")) or attr.text(payload.get("execution_id"))
        if key is None:
            key = attr.text(getattr(execution, "id", None))
        if key is None:
            return self._root
        if getattr(execution, "id", None) != key:
            execution = None
        run = self._runs.get(key)
        if run is None:
            if not create:
                return None
            self._sweep(ns)
            run = self._open_run(key, ns)
        if run.execution is None and execution is not None:
            self._adopt(run, execution)
        run.last = max(run.last, ns)
        return run

    def _open_run(self, key: str, ns: int) -> OpenRun:
        trace = self._otel[0]
        attributes: dict[str, Any] = {attr.OPERATION: "invoke_agent", attr.RUN_ID: key}
        paused = self._ended.pop(key, None)
        links = None
        if paused is not None:
            attributes[attr.RUN_RESUMED] = True
            links = [trace.Link(paused)]
        span = self._begin(_run_name(None), None, ns, attributes, links=links)
        run = OpenRun(key=key, span=span, start=ns, last=ns)
        self._runs[key] = run
        return run

    def _adopt(self, run: OpenRun, execution: Any) -> None:
        """Follow the run's execution (how a run without ``run.completed`` ends) and name
        the run after the agent that owns it."""
        run.execution = weakref.ref(execution)
        if run.explicit:
            return
        agent = getattr(execution, "approval_context", None)
        found = attr.pick({"agent_name": getattr(agent, "name", None),
                           "agent_id": getattr(agent, "id", None)}, attr.RUN_FIELDS)
        run.span.set_attributes(found)
        run.span.update_name(_run_name(found.get(attr.AGENT_NAME)))

    def _close_run(self, run: OpenRun, ns: int, *, stop: str, error: str | None,
                   attributes: Mapping[str, Any] | None = None) -> None:
        """End a run span and every span still open under it."""
        self._runs.pop(run.key or "", None)
        for entry in [*run.chats, *run.tools.values()]:
            self._end(entry, ns, error=error or "incomplete",
                      attributes={attr.INCOMPLETE: True})
        run.chats.clear()
        run.tools.clear()
        if run.round is not None:
            self._end(run.round, ns)
            run.round = None
        totals: dict[str, Any] = {attr.STOP_REASON: stop}
        if run.rounds:
            totals[attr.ROUNDS] = run.rounds
        if run.requests:
            totals[attr.MODEL_REQUESTS] = run.requests
        if run.responses:  # a failed request says nothing of its tokens
            totals[attr.INPUT_TOKENS] = run.input_tokens
            totals[attr.OUTPUT_TOKENS] = run.output_tokens
        if stop in {"idle_timeout", "evicted", "shutdown"}:
            totals[attr.INCOMPLETE] = True
        totals.update(attributes or {})
        self._end(run, ns, error=error, attributes=totals)
        if run.key is not None:
            self._ended[run.key] = run.span.get_span_context()
            while len(self._ended) > _ENDED_KEPT:
                self._ended.popitem(last=False)

    def _run_started(self, payload: Mapping[str, Any], ns: int) -> None:
        run = self._run(payload, ns)
        if run is None or run.key is None:
            return
        run.explicit = True
        found = attr.pick(payload, attr.RUN_FIELDS)
        run.span.set_attributes(found)
        if attr.AGENT_NAME in found:
            run.span.update_name(_run_name(found[attr.AGENT_NAME]))

    def _run_completed(self, payload: Mapping[str, Any], ns: int) -> None:
        run = self._run(payload, ns, create=False)
        if run is None or run.key is None:
            return
        found = attr.pick(payload, attr.RUN_END_FIELDS)
        stop = found.pop(attr.STOP_REASON, "completed")
        error = attr.identifier(payload.get("error_type"))
        if error is None and stop not in CLEAN_STOPS:  # the message gives its class name only
            error = run.error_type or attr.error_name(payload.get("error")) or stop
        self._close_run(run, ns, stop=stop, error=error, attributes=found)

    # -- rounds ---------------------------------------------------------------------------
    def _enter_round(self, run: OpenRun, index: int, ns: int) -> None:
        current = run.round
        if current is not None and current.index == index:
            return
        if current is not None:
            self._end(current, ns)
        span = self._begin("agently.round", run.span, ns, {attr.ROUND_INDEX: index})
        run.round = OpenSpan(span=span, start=ns, last=ns, index=index)
        run.rounds += 1

    def _round_started(self, payload: Mapping[str, Any], ns: int) -> None:
        run = self._run(payload, ns)
        index = attr.count(payload.get("round_index"))
        if run is not None and run.key is not None and index is not None:
            self._enter_round(run, index, ns)

    def _round_completed(self, payload: Mapping[str, Any], ns: int) -> None:
        run = self._run(payload, ns, create=False)
        index = attr.count(payload.get("round_index"))
        if run is None or run.round is None or run.round.index != index:
            return
        self._end(run.round, ns, error=attr.identifier(payload.get("error_type")),
                  attributes=attr.pick(payload, attr.ROUND_END_FIELDS))
        run.round = None

    # -- model requests -------------------------------------------------------------------
    def _model_request(self, payload: Mapping[str, Any], ns: int) -> None:
        run = self._run(payload, ns)
        assert run is not None
        index = attr.count(payload.get("round_index"))
        if run.key is not None and index is not None:
            self._enter_round(run, index, ns)
        run.requests += 1
        self._open_chat(run, payload, ns, index)

    def _open_chat(self, run: OpenRun, payload: Mapping[str, Any], ns: int,
                   index: int | None) -> OpenSpan:
        attributes = {attr.OPERATION: "chat", **attr.pick(payload, attr.MODEL_REQUEST_FIELDS)}
        provider = attr.PROVIDERS.get(attributes.get(attr.PLANNER, ""))
        if provider:
            attributes[attr.PROVIDER] = provider
        model = attributes.get(attr.REQUEST_MODEL)
        span = self._begin(f"chat {model}" if model else "chat", run.parent(), ns, attributes,
                           client=True)
        chat = OpenSpan(span=span, start=ns, last=ns, index=index)
        run.chats.append(chat)
        return chat

    def _chat(self, run: OpenRun, payload: Mapping[str, Any]) -> OpenSpan | None:
        """The oldest open request of the event's round (or of the run)."""
        index = attr.count(payload.get("round_index"))
        for chat in run.chats:
            if index is None or chat.index is None or chat.index == index:
                return chat
        return None

    def _model_delta(self, payload: Mapping[str, Any], ns: int) -> None:
        run = self._run(payload, ns, create=False)
        chat = None if run is None else self._chat(run, payload)
        if chat is not None:
            chat.deltas += 1
            chat.last = ns
            if chat.first_delta is None:
                chat.first_delta = ns

    def _finish_chat(self, payload: Mapping[str, Any], ns: int) -> tuple[OpenRun, OpenSpan]:
        run = self._run(payload, ns)
        assert run is not None
        chat = self._chat(run, payload)
        if chat is None:  # a response without its request: a span over its latency
            latency = attr.number(payload.get("latency_ms")) or 0.0
            chat = self._open_chat(run, payload, ns - int(latency * 1e6),
                                   attr.count(payload.get("round_index")))
        run.chats.remove(chat)
        return run, chat

    def _model_response(self, payload: Mapping[str, Any], ns: int) -> None:
        run, chat = self._finish_chat(payload, ns)
        found = attr.pick(payload, attr.MODEL_RESPONSE_FIELDS)
        reason = attr.identifier(payload.get("finish_reason"))
        if reason is not None:
            found[attr.FINISH_REASONS] = (reason,)
        found[attr.DELTAS] = chat.deltas
        if chat.first_delta is not None:
            found[attr.TIME_TO_FIRST_CHUNK] = (chat.first_delta - chat.start) / 1e9
        run.responses += 1
        run.input_tokens += found.get(attr.INPUT_TOKENS, 0)
        run.output_tokens += found.get(attr.OUTPUT_TOKENS, 0)
        self._end(chat, ns, attributes=found)

    def _model_failed(self, payload: Mapping[str, Any], ns: int) -> None:
        run, chat = self._finish_chat(payload, ns)
        error = attr.identifier(payload.get("error_type")) or "ModelError"
        run.error_type = error
        self._end(chat, ns, error=error, attributes={attr.DELTAS: chat.deltas})

    # -- action calls ---------------------------------------------------------------------
    def _tool(self, run: OpenRun, payload: Mapping[str, Any], ns: int) -> OpenSpan | None:
        call_id = attr.text(payload.get("call_id"))
        if call_id is None:
            return None
        entry = run.tools.get(call_id)
        if entry is None:
            attributes = {attr.OPERATION: "execute_tool", **attr.pick(payload, attr.TOOL_FIELDS)}
            name = attributes.get(attr.TOOL_NAME)
            span = self._begin(f"execute_tool {name}" if name else "execute_tool", run.parent(),
                               ns, attributes)
            entry = run.tools[call_id] = OpenSpan(span=span, start=ns, last=ns)
        entry.last = ns
        return entry

    def _action_started(self, payload: Mapping[str, Any], ns: int) -> None:
        run = self._run(payload, ns)
        assert run is not None
        known = attr.text(payload.get("call_id")) in run.tools
        entry = self._tool(run, payload, ns)
        if known and entry is not None:  # opened by its approval request
            entry.span.add_event("agently.action.started", timestamp=ns)

    def _action_finished(self, payload: Mapping[str, Any], ns: int, *, status: str) -> None:
        run = self._run(payload, ns)
        assert run is not None
        entry = self._tool(run, payload, ns)
        if entry is None:
            return
        del run.tools[attr.text(payload.get("call_id")) or ""]
        error = None
        if status in _ERROR_STATUSES:
            error = attr.identifier(payload.get("error_type")) or status
        self._end(entry, ns, error=error, attributes={attr.ACTION_STATUS: status})

    def _approval(self, payload: Mapping[str, Any], ns: int, *, decision: str) -> None:
        run = self._run(payload, ns)
        assert run is not None
        event = {attr.APPROVAL_DECISION: decision,
                 **attr.pick(payload, {"request_id": (attr.APPROVAL_REQUEST_ID, attr.text)})}
        if decision == "resumed":
            event[attr.APPROVAL_DECISION] = attr.identifier(payload.get("decision")) or "resumed"
            target = run.span
        elif payload.get("call_id") is not None:
            entry = self._tool(run, payload, ns)
            target = None if entry is None else entry.span
        else:
            event.update(attr.pick(payload, {"kind": (attr.ENVIRONMENT_KIND, attr.identifier)}))
            target = run.parent()
        if target is not None:
            target.add_event(f"agently.approval.{decision}", event, timestamp=ns)

    # -- bookkeeping ----------------------------------------------------------------------
    def _sweep(self, now: int) -> None:
        """End runs whose execution closed or paused, and entries idle too long."""
        idle = now - int(self.idle_timeout * 1e9)
        for run in list(self._runs.values()):
            ended = settled(run)
            if ended is not None:
                stop, error, end, found = ended
                self._close_run(run, end, stop=stop, error=error, attributes=found)
            elif run.last < idle:
                self._close_run(run, run.last, stop="idle_timeout", error="idle_timeout")
        self._close_root(lambda entry: entry.last < idle, "idle_timeout")

    def _close_root(self, stale: Callable[[OpenSpan], bool], reason: str) -> None:
        root = self._root
        for call_id, entry in list(root.tools.items()):
            if stale(entry):
                del root.tools[call_id]
                self._end(entry, entry.last, error=reason, attributes={attr.INCOMPLETE: True})
        for chat in [c for c in root.chats if stale(c)]:
            root.chats.remove(chat)
            self._end(chat, chat.last, error=reason, attributes={attr.INCOMPLETE: True})

    def _make_room(self) -> None:
        """Past ``max_open_spans``: end the least recently active runs (or spans outside
        any run) until there is room again."""
        while self._open >= self.max_open_spans - 3:
            candidates: list[tuple[int, Any]] = [(run.last, run) for run in self._runs.values()]
            candidates += [(e.last, e) for e in (*self._root.tools.values(), *self._root.chats)]
            if not candidates:
                return
            _, oldest = min(candidates, key=lambda item: item[0])
            if isinstance(oldest, OpenRun):
                self._close_run(oldest, oldest.last, stop="evicted", error="evicted")
            else:
                self._close_root(lambda entry, target=oldest: entry is target, "evicted")

    def _reap(self, stop: threading.Event) -> None:
        """The reaper thread: sweeps every ``poll_interval`` seconds; ends with the last
        open span (or when told to stop)."""
        while not stop.wait(self.poll_interval):
            with self._lock:
                if stop.is_set():
                    return
                self._sweep(time.time_ns())
                if self._open == 0:
                    self._reaper = None
                    return


def _run_name(agent_name: Any) -> str:
    return f"invoke_agent {agent_name}" if agent_name else "invoke_agent"


def _shutdown(ref: weakref.ref[SpanObserver]) -> None:
    observer = ref()
    if observer is not None:
        observer.shutdown()


def observe(events: Any, **options: Any) -> SpanObserver:
    """Subscribe a new :class:`SpanObserver` (``options`` as its constructor's) to an
    :class:`~agently_core.events.EventCenter`, for example ``agent.manager.events``;
    ``observer.shutdown()`` unsubscribes it and ends its open spans. Use this in code, or
    ``AGENTLY_OTEL=1`` to observe every agent; not both, or each span is recorded twice."""
    observer = SpanObserver(**options)
    observer._unsubscribe = events.subscribe(observer, EVENT_PATTERNS, name="agently_core_otel")
    return observer


#: The observer the plugin registers (used when ``AGENTLY_OTEL`` is on).
default_observer = SpanObserver()
