"""Fixtures of the browser plugin's tests: Chromium is required (it fails under CI when
missing); tests share browsers per module (a launch costs 0.3-1.5 s)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from agently_core_browser.testing import PageServer


@pytest.fixture(autouse=True)
def _isolated(agently_clean_environment: None) -> None:
    """No AGENTLY_* variable of the developer's shell reaches these tests."""


@pytest.fixture(scope="module")
def forbidden() -> Iterator[PageServer]:
    """A page that no test's allow-list lets a browser or the guard proxy reach."""
    server = PageServer({"/": "<title>secret</title><p>secret: the forbidden server's page</p>"})
    yield server
    server.close()


@pytest.fixture(scope="module")
def udp() -> Iterator[socket.socket]:
    """A loopback UDP port a page's STUN request would reach, past any HTTP proxy."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


HERE = Path(__file__).resolve().parent
_held: list[bool] = []


def _let_go() -> None:
    if _held:
        _held.clear()
        from agently_core_browser import runtime

        runtime.call_here(runtime.release_driver, timeout=60)


@pytest.fixture(scope="session", autouse=True)
def _warm_driver() -> Iterator[None]:
    """Hold Playwright's driver while this directory's tests run, so each browser they
    launch does not start (and stop) a driver of its own (~0.8 s each). Let go after the
    last of them (:func:`pytest_runtest_teardown`): held to the session's end, the
    driver's node process counted as a leftover child in later plugins' leak checks."""
    import importlib.util

    if importlib.util.find_spec("playwright") is not None:
        from agently_core_browser import runtime

        runtime.call_here(runtime.acquire_driver, timeout=60)
        _held.append(True)
    yield
    _let_go()


@pytest.hookimpl(trylast=True)  # after the module fixtures' browsers have closed
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After this directory's last test before others run, the shared driver stops."""
    if nextitem is None or HERE not in Path(nextitem.path).resolve().parents:
        _let_go()
