"""Fixtures: agents isolated from the machine's configuration, and span exporters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture
def make_agent(agently_agent_factory: Callable[..., Any]) -> Callable[..., Any]:
    """``make_agent(**settings)``: an agent with the installed plugins whose configuration
    reads only ``settings``."""
    return agently_agent_factory


@pytest.fixture
def exporter() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A provider of the test's own, exporting to memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


_GLOBAL: InMemorySpanExporter | None = None


@pytest.fixture
def global_exporter() -> Iterator[InMemorySpanExporter]:
    """An in-memory exporter on the process's global TracerProvider (set once)."""
    global _GLOBAL
    from opentelemetry import trace

    if _GLOBAL is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        _GLOBAL = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_GLOBAL))
    _GLOBAL.clear()
    yield _GLOBAL
    from agently_core_otel.observer import default_observer

    default_observer.shutdown()  # nothing of this test stays open for the next
    _GLOBAL.clear()


@pytest.fixture
def read_tree() -> Callable[[InMemorySpanExporter], Tree]:
    """``read_tree(exporter)``: the finished spans as a :class:`Tree`."""
    return lambda memory: Tree(memory.get_finished_spans())


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(condition, timeout=5)``: poll until ``condition()`` holds."""
    import time

    def wait(condition: Callable[[], Any], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out waiting"
            time.sleep(0.01)

    return wait


@pytest.fixture
def span_texts() -> Callable[[Any], list[str]]:
    """``span_texts(span)``: every string the span carries."""
    return texts



class Tree:
    """Finished spans, by id and by parent."""

    def __init__(self, spans: Iterable[Any]) -> None:
        self.spans = list(spans)
        self.by_id = {s.context.span_id: s for s in self.spans}

    def named(self, prefix: str) -> list[Any]:
        return [s for s in self.spans if s.name.startswith(prefix)]

    def one(self, prefix: str) -> Any:
        found = self.named(prefix)
        assert len(found) == 1, [s.name for s in self.spans]
        return found[0]

    def parent(self, span: Any) -> Any:
        return None if span.parent is None else self.by_id.get(span.parent.span_id)

    def children(self, span: Any) -> list[Any]:
        return sorted((s for s in self.spans
                       if s.parent is not None and s.parent.span_id == span.context.span_id),
                      key=lambda s: s.start_time)

    def run_of(self, span: Any) -> Any:
        """The ``invoke_agent`` span above ``span``, if any."""
        while span is not None and not span.name.startswith("invoke_agent"):
            span = self.parent(span)
        return span

    def roots(self) -> list[Any]:
        return [s for s in self.spans if s.parent is None]


def texts(span: Any) -> list[str]:
    """Every string a span carries: name, attribute keys and values, event names and
    attributes, status description, link attributes."""
    found = [span.name, span.status.description or ""]

    def add(attributes: Any) -> None:
        for key, value in (attributes or {}).items():
            found.append(key)
            found.extend(map(str, value) if isinstance(value, tuple) else [str(value)])

    add(span.attributes)
    for event in span.events:
        found.append(event.name)
        add(event.attributes)
    for link in span.links:
        add(link.attributes)
    return found
