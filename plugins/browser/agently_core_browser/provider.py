"""``browser``: managed Chromium browsers as execution environments.

``ensure`` launches one Chromium (Debian's, driven by Playwright's async API) for the
requirement's scope owner; the manager keeps it for that scope and reuses it. Inside it,
each session gets its own browser context (cookies, storage) and page, opened on first use
(:meth:`ManagedBrowser.session`), each with its own egress proxy
(:class:`~agently_core_browser.guard_proxy.GuardProxy`) built from the host's allow-list.
The browser's own traffic goes through a proxy with the same guard.
``async_health_check`` is a real round trip over the DevTools protocol, so a browser that
died is replaced before reuse; ``release`` closes the contexts, the browser and the
proxies, then kills any process of that browser that is still there (each launch marks its
processes with an environment variable, so they can be found).

Configuration (``EnvironmentRequirement.config``): see :mod:`agently_core_browser.settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from agently_core.errors import ActionError, AgentlyError
from agently_core.models import EnvironmentRequirement
from agently_core.protocols import ProviderHandle

from . import runtime
from .guard_proxy import GuardProxy
from .session import BrowserSession
from .settings import (
    CHROMIUM_FLAGS,
    BrowserConfigError,
    BrowserSettings,
    check_executable,
    settings,
)

#: The environment variable every process of a managed Chromium carries (its value: the
#: browser's id), so :func:`browser_processes` finds them all, renderers included.
MARKER = "AGENTLY_BROWSER_ID"
DEFAULT_SESSION = "default"
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "FONTCONFIG_PATH")


class BrowserClosed(ActionError):
    """The managed browser was released or died."""


def _marked() -> Iterator[tuple[int, str]]:
    """``(pid, browser id)`` of every live process that carries :data:`MARKER` in its
    environment (Linux ``/proc``)."""
    prefix = f"{MARKER}=".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                yield int(entry.name), item[len(prefix):].decode(errors="replace")
                break


def browser_processes(browser_id: str | None = None) -> list[int]:
    """Pids of live processes of managed browsers (of ``browser_id`` only, when given),
    found by their :data:`MARKER` environment variable (Linux ``/proc``)."""
    return [pid for pid, owner in _marked() if not browser_id or owner == browser_id]


def live_browser_ids() -> set[str]:
    """Ids of the managed browsers that have a live process (any of them)."""
    return {owner for _, owner in _marked()}


class ManagedBrowser:
    """One Chromium process and its sessions. Call its coroutines from any loop: they run
    on the browser loop (:mod:`.runtime`)."""

    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self.id = uuid.uuid4().hex
        self.browser: Any = None
        self.proxy = GuardProxy(settings.guard)
        self.sessions: dict[str, BrowserSession] = {}
        self.closed = False
        self.started_at = time.time()
        self._home = tempfile.mkdtemp(prefix="agently-browser-")
        self._driver = False
        self._session_lock: asyncio.Lock | None = None
        #: The DevTools session health checks ping over (made on the first check).
        self._cdp: Any = None
        #: The uid Chromium runs as under ``isolation="bubblewrap"`` as root, else None.
        self.uid: int | None = None

    @property
    def refused(self) -> list[tuple[str, str]]:
        """What the browser-level proxy refused (Chromium's own traffic)."""
        return self.proxy.refused.snapshot()

    # -- lifecycle (on the browser loop) ------------------------------------------------------
    async def _launch(self) -> ManagedBrowser:
        s = self.settings
        try:
            driver = await runtime.acquire_driver()
            self._driver = True
            self.proxy.start()
            env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
            env.update({"HOME": self._home, MARKER: self.id})
            executable = s.executable
            if s.isolation == "bubblewrap":
                from .isolation import wrapper

                executable, self.uid = wrapper(self._home, s.executable)
            launching = asyncio.ensure_future(driver.chromium.launch(
                executable_path=executable, headless=s.headless, args=list(CHROMIUM_FLAGS),
                proxy={"server": self.proxy.url, "bypass": "<-loopback>"}, env=env,
                timeout=s.launch_timeout * 1000, handle_sigint=False, handle_sigterm=False,
                handle_sighup=False))
            try:
                self.browser = await asyncio.shield(launching)
            except asyncio.CancelledError:
                # the launch goes on in the driver: let it end, then close what it made
                with contextlib.suppress(BaseException):
                    self.browser = await asyncio.wait_for(launching, s.launch_timeout)
                raise
            self.browser.on("disconnected", lambda _: setattr(self, "closed", True))
        except BaseException:
            await self._close()
            raise
        return self

    async def _close(self) -> None:
        self.closed = True
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
        if self.browser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.browser.close(), 10)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.proxy.close)
        await loop.run_in_executor(None, self._kill_leftovers)
        if self._driver:
            self._driver = False
            await runtime.release_driver()
        import shutil

        shutil.rmtree(self._home, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = browser_processes(self.id)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    async def _alive(self) -> bool:
        if self.closed or self.browser is None or not self.browser.is_connected():
            return False
        try:
            # one DevTools round trip on a kept session (a new session per check cost two
            # more, a third of a warm page action's overhead)
            if self._cdp is None:
                self._cdp = await asyncio.wait_for(self.browser.new_browser_cdp_session(), 5)
            version = await asyncio.wait_for(self._cdp.send("Browser.getVersion"), 5)
        except Exception:
            self._cdp = None
            return False
        return bool(version.get("product"))

    async def _session(self, key: str) -> BrowserSession:
        if self.closed:
            raise BrowserClosed("the managed browser was closed; the next call starts a new one")
        if self._session_lock is None:
            self._session_lock = asyncio.Lock()
        async with self._session_lock:
            found = self.sessions.get(key)
            if found is not None and found.usable:
                found.last_used = time.monotonic()
                return found
            if found is not None:       # its page crashed or was closed: a fresh context
                del self.sessions[key]
                await found.close()
            if len(self.sessions) >= self.settings.max_sessions:
                idle = [sess for sess in self.sessions.values() if not sess.lock.locked()]
                if not idle:
                    raise ActionError(f"the managed browser has {len(self.sessions)} sessions "
                                      "busy (max_sessions); try again when one is done")
                oldest = min(idle, key=lambda sess: sess.last_used)
                del self.sessions[oldest.key]      # the least recently used idle one goes
                await oldest.close()
            session = await BrowserSession(self, key).open()
            self.sessions[key] = session
            return session

    async def _close_session(self, key: str) -> bool:
        session = self.sessions.pop(key, None)
        if session is None:
            return False
        await session.close()
        return True

    # -- from any loop ------------------------------------------------------------------------
    @classmethod
    async def launch(cls, config: Mapping[str, Any] | BrowserSettings | None = None
                     ) -> ManagedBrowser:
        """Check ``config`` and launch a browser (from any loop)."""
        checked = config if isinstance(config, BrowserSettings) else settings(config)
        check_executable(checked.executable)
        browser = cls(checked)
        return await runtime.run_here(browser._launch)

    async def close(self) -> None:
        """Close every session, the browser and the proxies; idempotent."""
        if self.browser is None and self.closed:
            return
        await runtime.run_here(self._close)
        self.browser = None

    async def alive(self) -> bool:
        """A real DevTools round trip (``Browser.getVersion``)."""
        return await runtime.run_here(self._alive)

    async def session(self, key: str = DEFAULT_SESSION) -> BrowserSession:
        """The session ``key``'s context and page, opened on first use."""
        return await runtime.run_here(lambda: self._session(key))

    async def close_session(self, key: str) -> bool:
        """Close one session's context (its cookies and storage go); False if none."""
        return await runtime.run_here(lambda: self._close_session(key))

    async def act(self, key: str, operation: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``BrowserSession.<operation>(*args, **kwargs)`` on session ``key``, one
        operation at a time per session. Returns ``(result, events)``: ``events`` is what the
        session refused, closed or dismissed since its last operation."""

        async def run() -> Any:
            session = await self._session(key)
            async with session.lock:
                result = await getattr(session, operation)(*args, **kwargs)
                session.last_used = time.monotonic()
                return result, session.drain_events()

        return await runtime.run_here(run)


class BrowserProvider:
    """Managed Chromium browsers (kind ``browser``)."""

    kind = "browser"

    async def ensure(self, requirement: Any) -> ManagedBrowser:
        try:
            return await ManagedBrowser.launch(getattr(requirement, "config", None))
        except BrowserConfigError:
            raise
        except AgentlyError:
            raise
        except Exception as exc:
            raise BrowserConfigError(f"the managed browser did not start: {exc}") from None

    async def async_health_check(self, handle: ProviderHandle) -> bool:
        resource = handle.resource
        return isinstance(resource, ManagedBrowser) and await resource.alive()

    async def release(self, requirement: Any, resource: Any) -> None:
        if not isinstance(resource, ManagedBrowser):
            raise BrowserConfigError(f"{resource!r} is not a browser of the browser provider")
        await resource.close()


def requirement(*, allow: Iterable[str] | str | None = None, scope: str = "agent",
                resource_key: str = "browser", **options: Any) -> EnvironmentRequirement:
    """The requirement of a managed browser for ``scope`` with the host's ``allow`` list
    and other settings (:mod:`.settings`); checked here, started by the manager."""
    config: dict[str, Any] = {**options}
    if allow is not None:
        config["allow"] = allow if isinstance(allow, str) else list(allow)
    settings(config)
    return EnvironmentRequirement(kind="browser", scope=scope, resource_key=resource_key,
                                  config=config)


__all__ = ["DEFAULT_SESSION", "MARKER", "BrowserClosed", "BrowserProvider", "ManagedBrowser",
           "browser_processes", "live_browser_ids", "requirement"]
