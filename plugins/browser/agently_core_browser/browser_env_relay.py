"""The host end of BrowserEnv's way out: a UNIX socket relayed to the egress-guard proxy.

BrowserEnv's sandbox has no network of its own (a private network namespace, loopback
only). The one way out is a UNIX socket bound into it; every connection made to it is
relayed here, byte for byte, to the :class:`~agently_core_browser.guard_proxy.GuardProxy`
on the host's loopback, which decides where each request may go. The relay runs its own
event loop in a daemon thread, like the proxy, so it serves whatever loop (or none) the
env was built from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading

from agently_core_browser.threaded_loop import start_loop_thread


class UnixRelay:
    """Listen on the UNIX socket ``path`` and copy each connection to ``host:port``."""

    def __init__(self, path: str, host: str, port: int, *, mode: int = 0o666,
                 owner: int | None = None) -> None:
        self.path = path
        self.host = host
        self.port = port
        self.mode = mode
        self.owner = owner
        #: Connections relayed so far.
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> UnixRelay:
        """Bind the socket and serve in a daemon thread; returns ``self``."""
        self._loop, self._thread = start_loop_thread(self._listen, "agently-browser-env-relay")
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, self.mode)
        if self.owner is not None:
            os.chown(self.path, self.owner, self.owner)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.connections += 1
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(self.host, self.port)
            await asyncio.gather(_copy(reader, upstream), _copy(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            for end in (upstream, writer):
                if end is not None:
                    end.transport.abort()

    def close(self) -> None:
        """Stop listening, drop every relayed connection and remove the socket (idempotent)."""
        loop, thread, self._thread = self._loop, self._thread, None
        if loop is not None and thread is not None and thread.is_alive():
            async def shutdown() -> None:
                if self._server is not None:
                    self._server.close()
                for task in list(self._tasks):
                    task.cancel()
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=5)

            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        with contextlib.suppress(OSError):
            os.unlink(self.path)


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()
