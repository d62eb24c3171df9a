"""One browser session: a Chromium context (its own cookies and storage), one page, and the
egress proxy every request of that context goes through.

Besides the proxy (which refuses what the guard refuses, on every hop), the session:

* refuses downloads (``accept_downloads=False``) and reports each;
* closes every page it did not open (``window.open``, ``target=_blank``) and reports it;
* watches every frame's navigations: a frame that lands on anything but ``http:``,
  ``https:`` or ``about:`` (``file:``, ``chrome:``, ``view-source:``, ``data:``,
  ``javascript:``...) is sent to ``about:blank`` and reported; Chromium's own refusals of
  local resources are reported too;
* dismisses dialogs (``alert``, ``confirm``, ``prompt``) so a page cannot stall it.

Page actions refer to elements by the reference ids of the last accessibility snapshot
(Playwright's AI snapshot, ``aria_snapshot(mode="ai")``, and its ``aria-ref=`` selector).
A ref from before the page navigated is stale and refused with a clear error. Everything
here runs on the browser loop (:mod:`.runtime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from agently_core.egress import EgressRefused
from agently_core.errors import ActionError

from .guard_proxy import GuardProxy

if TYPE_CHECKING:
    from .provider import ManagedBrowser

#: Schemes a frame may show; every other navigation is refused.
FRAME_SCHEMES = frozenset({"http", "https", "about"})
_REF = re.compile(r"\[ref=([A-Za-z0-9_-]{1,32})\]")
_REF_ARG = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
#: Chromium's own console messages when it refuses a navigation of the kinds we refuse.
_CHROMIUM_REFUSALS = ("Not allowed to load local resource",
                      "Not allowed to navigate top frame to data URL")
_KEY = re.compile(r"^[A-Za-z0-9+_ ]{1,40}$|^.$")
MAX_EVENTS = 200


class StaleRef(ActionError):
    """A ref that the last snapshot did not hand out, or from before a navigation."""


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


class BrowserSession:
    """A context and its page; see the module's docstring."""

    def __init__(self, browser: ManagedBrowser, key: str) -> None:
        self.browser = browser
        self.key = key
        self.settings = browser.settings
        self.proxy = GuardProxy(self.settings.guard, on_refused=self._on_refused)
        self.context: Any = None
        self.page: Any = None
        self.lock = asyncio.Lock()
        self.closed = False
        self.crashed = False
        self.last_used = time.monotonic()
        self._events: list[dict[str, str]] = []
        self._events_lock = threading.Lock()
        self._refs: set[str] = set()
        self._ref_epoch = -1
        self._epoch = 0          # main-frame navigations so far
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- opening and closing ----------------------------------------------------------------
    async def open(self) -> BrowserSession:
        s = self.settings
        self.proxy.start()
        try:
            self.context = await self.browser.browser.new_context(
                proxy={"server": self.proxy.url, "bypass": "<-loopback>"},
                accept_downloads=False, service_workers="block",
                viewport={"width": s.viewport[0], "height": s.viewport[1]})
            self.context.set_default_timeout(s.action_timeout * 1000)
            self.context.set_default_navigation_timeout(s.navigation_timeout * 1000)
            self.page = await self.context.new_page()
        except BaseException:
            await self.close()
            raise
        self.context.on("page", self._on_page)
        page = self.page
        page.on("download", self._on_download)
        page.on("framenavigated", self._on_frame)
        page.on("console", self._on_console)
        page.on("dialog", self._on_dialog)
        page.on("crash", self._on_crash)
        return self

    @property
    def usable(self) -> bool:
        """Open, and its page neither closed nor crashed."""
        return not self.closed and not self.crashed and self.page is not None \
            and not self.page.is_closed()

    def _on_crash(self, page: Any) -> None:
        self.crashed = True

    async def close(self) -> None:
        """Close the context and its proxy (idempotent)."""
        self.closed = True
        if self.context is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.context.close(), 10)
        await asyncio.get_running_loop().run_in_executor(None, self.proxy.close)

    def _spawn(self, coro: Any) -> None:
        """Run a clean-up task, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what happened, for the next result ----------------------------------------------------
    def _record(self, kind: str, target: str, reason: str) -> None:
        with self._events_lock:
            if len(self._events) < MAX_EVENTS:
                self._events.append({"type": kind, "target": target[:300],
                                     "reason": reason[:300]})

    def _on_refused(self, target: str, reason: str) -> None:
        self._record("request_refused", target, reason)

    def drain_events(self) -> list[dict[str, str]]:
        """What was refused, closed or dismissed since the last call."""
        with self._events_lock:
            events, self._events = self._events, []
        return events

    def _on_page(self, page: Any) -> None:
        if page is self.page:
            return
        self._record("popup_closed", page.url or "about:blank",
                     "pages the model did not open (window.open, target=_blank) are closed")
        self._spawn(self._close_quietly(page))

    @staticmethod
    async def _close_quietly(page: Any) -> None:
        with contextlib.suppress(Exception):
            await page.close()

    def _on_download(self, download: Any) -> None:
        self._record("download_refused", download.url,
                     "downloads are refused (accept_downloads=False)")
        self._spawn(self._cancel(download))

    @staticmethod
    async def _cancel(download: Any) -> None:
        with contextlib.suppress(Exception):
            await download.cancel()

    def _on_frame(self, frame: Any) -> None:
        url = frame.url or ""
        main = frame == self.page.main_frame
        if main:
            self._epoch += 1
        if scheme_of(url) in FRAME_SCHEMES:
            return
        self._record("navigation_refused", url, f"{scheme_of(url) or 'this'}: pages may not "
                     "be shown; the frame was sent to about:blank")
        self._spawn(self._blank(frame))

    @staticmethod
    async def _blank(frame: Any) -> None:
        with contextlib.suppress(Exception):
            await frame.goto("about:blank")

    def _on_console(self, message: Any) -> None:
        text = message.text or ""
        for refusal in _CHROMIUM_REFUSALS:
            if refusal in text:
                target = text.split(refusal, 1)[1].lstrip(": ").strip()
                self._record("navigation_refused", target, f"Chromium: {refusal}")

    def _on_dialog(self, dialog: Any) -> None:
        self._record("dialog_dismissed", dialog.type, (dialog.message or "")[:200])
        self._spawn(self._dismiss(dialog))

    @staticmethod
    async def _dismiss(dialog: Any) -> None:
        with contextlib.suppress(Exception):
            await dialog.dismiss()

    # -- state ------------------------------------------------------------------------------
    async def state(self) -> dict[str, Any]:
        """``{"url", "title"}`` of the page now."""
        title = ""
        with contextlib.suppress(Exception):
            title = await asyncio.wait_for(self.page.title(), 5)
        return {"url": self.page.url, "title": title}

    def _locator(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not _REF_ARG.match(ref):
            raise StaleRef(f"ref must be a reference id from snapshot_page (such as 'e12'), "
                           f"got {ref!r}")
        if ref not in self._refs:
            raise StaleRef(f"unknown ref {ref!r}: take a snapshot (snapshot_page) and use "
                           "one of the refs it shows")
        if self._ref_epoch != self._epoch:
            raise StaleRef(f"ref {ref!r} is stale: the page navigated since the last "
                           "snapshot; take a new snapshot (snapshot_page)")
        return self.page.locator(f"aria-ref={ref}")

    async def _settle(self) -> None:
        """Let a navigation the last input started get its document."""
        with contextlib.suppress(Exception):
            await self.page.wait_for_load_state("domcontentloaded",
                                                timeout=self.settings.navigation_timeout * 1000)

    # -- actions ----------------------------------------------------------------------------
    async def navigate(self, url: Any) -> dict[str, Any]:
        if not isinstance(url, str) or not url.strip():
            raise ActionError("url must be a non-empty string")
        url = url.strip()
        guard = self.settings.guard
        target = guard.target(url)               # scheme, host, credentials
        if target.scheme not in ("http", "https"):
            raise EgressRefused(f"refused {url[:120]}: only http(s) pages can be opened")
        await guard.vet(target.host, target.port)   # a clear error before Chromium tries
        response = await self.page.goto(url, wait_until="domcontentloaded")
        refusal = await _refusal(response)
        if refusal:
            raise EgressRefused(f"{url[:120]} was refused on the way: {refusal}")
        return {**await self.state(), "status": response.status if response else None}

    async def snapshot(self) -> str:
        text = await self.page.aria_snapshot(mode="ai")
        self._refs = set(_REF.findall(text))
        self._ref_epoch = self._epoch
        return text

    async def click(self, ref: Any) -> dict[str, Any]:
        await self._locator(ref).click()
        await self._settle()
        return await self.state()

    async def type(self, ref: Any, text: Any, submit: Any = False) -> dict[str, Any]:
        if not isinstance(text, str):
            raise ActionError("text must be a string")
        if not isinstance(submit, bool):
            raise ActionError("submit must be true or false")
        locator = self._locator(ref)
        await locator.fill(text)
        if submit:
            await locator.press("Enter")
            await self._settle()
        return await self.state()

    async def select(self, ref: Any, values: Any) -> dict[str, Any]:
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values or not all(
                isinstance(v, str) for v in values):
            raise ActionError("values must be a list of option values or labels")
        chosen = await self._locator(ref).select_option(values)
        return {**await self.state(), "selected": chosen}

    async def press(self, key: Any) -> dict[str, Any]:
        if not isinstance(key, str) or not _KEY.match(key):
            raise ActionError(f"key must be a key name such as 'Enter', 'Tab', 'ArrowDown' "
                              f"or 'Control+a', got {key!r}")
        try:
            await self.page.keyboard.press(key)
        except Exception as exc:
            if "Unknown key" in str(exc):
                raise ActionError(f"unknown key {key!r}") from None
            raise
        await self._settle()
        return await self.state()

    async def scroll(self, direction: Any = "down", amount: Any = None,
                     ref: Any = None) -> dict[str, Any]:
        if ref is not None:
            await self._locator(ref).scroll_into_view_if_needed()
            return await self.state()
        if direction not in ("up", "down", "left", "right"):
            raise ActionError("direction must be up, down, left or right")
        if amount is None:
            amount = self.settings.viewport[1] * 0.8
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not \
                0 < amount <= 100_000:
            raise ActionError("amount must be a number of pixels (1..100000)")
        dx = {"left": -amount, "right": amount}.get(direction, 0)
        dy = {"up": -amount, "down": amount}.get(direction, 0)
        position = await self.page.evaluate(
            "([x, y]) => { window.scrollBy({left: x, top: y, behavior: 'instant'});"
            " return [window.scrollX, window.scrollY]; }", [dx, dy])
        return {**await self.state(), "scroll": {"x": position[0], "y": position[1]}}

    async def back(self) -> dict[str, Any]:
        before = self.page.url
        await self.page.go_back(wait_until="domcontentloaded")
        state = await self.state()
        return {**state, "went_back": state["url"] != before}

    async def screenshot(self, full_page: Any = False) -> bytes:
        if not isinstance(full_page, bool):
            raise ActionError("full_page must be true or false")
        return await self.page.screenshot(type="png", full_page=full_page)

    async def html(self) -> str:
        """The page's HTML as rendered now."""
        return await self.page.content()

    async def read(self) -> str:
        return await self.page.inner_text("body") if await self.page.query_selector(
            "body") else ""


async def _refusal(response: Any) -> str:
    """The guard proxy's reason when ``response`` is its refusal, else ``""``."""
    if response is None or response.status != 403:  # the proxy refuses with a 403 only
        return ""
    headers = await response.all_headers()
    if headers.get("x-agently-egress") != "refused":
        return ""
    with contextlib.suppress(Exception):
        return (await response.text()).strip().removeprefix("403 Forbidden: ")
    return "refused by the egress guard"


__all__ = ["FRAME_SCHEMES", "BrowserSession", "StaleRef"]
