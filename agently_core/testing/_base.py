"""The base every conformance suite shares."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from .harness import run_async

T = TypeVar("T")


class ConformanceSuite:
    """Base of the conformance suites: a class of ``test_*`` methods that pytest collects in
    each subclass (the suites themselves are not collected).

    Class attributes every suite understands:

    ``anyio_backend``
        The event loop each test runs on: ``"asyncio"`` (default) or ``"trio"``.
    ``expected_failures``
        ``{test name: reason}`` for known gaps, such as
        ``{"test_timeout_holds": "issue 12"}`` or a single parametrised case
        ``{"test_normalize_never_raises[non_string_argument_names]": "..."}``. Those tests
        are marked ``xfail`` (not strict) instead of failing the run.

    In every test ``self.tmp_path`` is pytest's ``tmp_path`` for that test, so factories can
    put files there.
    """

    __test__ = False
    anyio_backend: ClassVar[str] = "asyncio"
    anyio_backend_options: ClassVar[Mapping[str, Any]] = {}
    expected_failures: ClassVar[Mapping[str, str]] = {}
    tmp_path: Path

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    @pytest.fixture(autouse=True)
    def _agently_conformance(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        node = request.node
        reason = (self.expected_failures.get(node.name)
                  or self.expected_failures.get(getattr(node, "originalname", node.name)))
        if reason:
            node.add_marker(pytest.mark.xfail(reason=reason, strict=False))

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` on a fresh event loop of :attr:`anyio_backend`."""
        return run_async(fn, *args, backend=self.anyio_backend,
                         backend_options=self.anyio_backend_options)


async def maybe_await(value: Any) -> Any:
    """``await value`` when it is awaitable, else ``value``."""
    if inspect.isawaitable(value):
        return await value
    return value


async def close_quietly(obj: Any) -> None:
    """Call ``aclose()`` or ``close()`` on ``obj`` when it has one."""
    closer = getattr(obj, "aclose", None) or getattr(obj, "close", None)
    if callable(closer):
        await maybe_await(closer())


def fail(message: str) -> None:
    """Fail the current test with a message written for a plugin author."""
    pytest.fail(message, pytrace=False)
