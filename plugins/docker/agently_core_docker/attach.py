"""A container whose main process is a warm worker, attached: the host writes the worker's
stdin and reads its stdout and stderr over one Engine API ``attach`` connection.

Without a TTY the engine multiplexes the two output streams on that connection, each chunk
behind an 8-byte header (stream number, three zero bytes, big-endian length).
:class:`AttachedProcess` splits them: ``stdout`` is a byte stream of the worker's replies,
the end of ``stderr`` is kept (bounded) for the reason when the worker dies. It offers what
the warm workers' host side uses of a local process (``stdin.send``, ``stdout``,
``returncode``, ``wait``), so the Python and Node.js workers run unchanged over it.

The connection is made before the container starts (nothing the worker writes is lost) and
is read with anyio, off the docker-py thread pool: a warm call is one write and one read on
a Unix socket, with no thread hop.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

#: What is kept of the worker's raw stderr (the end of it).
STDERR_KEEP = 16 * 1024
STDOUT, STDERR = 1, 2


class _Stdin:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        await self._stream.send(data)


class _Stdout(anyio.abc.ByteReceiveStream):
    """The worker's stdout, demultiplexed from the attach connection."""

    def __init__(self, process: AttachedProcess) -> None:
        self._process = process

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._process._next_stdout()

    async def aclose(self) -> None:
        await self._process.aclose_stream()


class _Stderr:
    """The end of the worker's stderr, for ``PythonWorker._stderr``."""

    def __init__(self, process: AttachedProcess) -> None:
        self._process = process

    async def receive(self, max_bytes: int = 4096) -> bytes:
        data = bytes(self._process.stderr_tail[-max_bytes:])
        if not data:
            raise anyio.EndOfStream
        return data


class AttachedProcess:
    """The attached main process of a container (see the module docstring)."""

    def __init__(self, stream: anyio.abc.SocketStream, container: Any) -> None:
        self._stream = stream
        self._frames = BufferedByteReceiveStream(stream)
        self.container = container
        self.stdin = _Stdin(stream)
        self.stdout = _Stdout(self)
        self.stderr = _Stderr(self)
        self.stderr_tail = bytearray()
        self.ended = False
        self.exit_code: int | None = None

    @classmethod
    async def connect(cls, container: Any) -> AttachedProcess:
        """Attach to ``container`` (a :class:`~agently_core_docker.provider.DockerContainer`
        created with ``stdin_open``, not started yet)."""
        raw = await anyio.to_thread.run_sync(_attach_socket, container)
        if raw.family == socket.AF_UNIX:
            stream = await anyio.abc.UNIXSocketStream.from_socket(raw)
        else:
            stream = await anyio.abc.SocketStream.from_socket(raw)
        return cls(stream, container)

    async def _next_stdout(self) -> bytes:
        while True:
            try:
                header = await self._frames.receive_exactly(8)
                size = int.from_bytes(header[4:8], "big")
                data = await self._frames.receive_exactly(size) if size else b""
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError,
                    anyio.ClosedResourceError, OSError):
                self.ended = True
                raise anyio.EndOfStream from None
            if header[0] == STDOUT:
                if data:
                    return data
            else:
                self.stderr_tail.extend(data)
                del self.stderr_tail[:-STDERR_KEEP]

    @property
    def returncode(self) -> int | None:
        """None while the worker may be running; its exit code (or -9 when it was killed)
        once its output ended or it was removed."""
        if self.exit_code is not None:
            return self.exit_code
        if self.ended or self.container.removed:
            return -9
        return None

    async def wait(self) -> int:
        """The exit code, once the container stopped (asked of the engine)."""
        if self.exit_code is None and not self.container.removed:
            self.exit_code = await anyio.to_thread.run_sync(self.container.wait_exit)
        return self.returncode if self.returncode is not None else -9

    async def aclose_stream(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()


def _attach_socket(container: Any) -> socket.socket:
    """A plain socket of an attach connection to ``container``'s stdin, stdout, stderr."""
    import docker.errors

    from agently_core.errors import AgentlyError

    api = container.engine.api
    try:
        made = api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                       "stream": 1})
    except docker.errors.APIError as exc:
        raise AgentlyError(f"docker could not attach to the worker of "
                           f"{container.settings.image!r}: {exc.explanation or exc}") from None
    raw = getattr(made, "_sock", made)
    if not isinstance(raw, socket.socket):
        raise TypeError(f"the Docker engine's attach connection is a {type(raw).__name__}, "
                        "not a socket (an SSH or named-pipe DOCKER_HOST is not supported for "
                        "warm workers)")
    sock = raw.dup()  # ours to close; docker-py keeps (and closes) its own
    made.close()
    sock.setblocking(False)
    return sock


__all__ = ["AttachedProcess"]
