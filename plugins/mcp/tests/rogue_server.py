"""A misbehaving MCP server over stdio for the attack tests: raw JSON-RPC lines, standard
library only (it starts in milliseconds). ``python rogue_server.py MODE [N]``.

Every mode answers ``initialize`` (except ``silent-initialize``) and offers the tool
``echo`` (``{"message": str}`` -> ``"Echo: ..."``) besides its own misbehaviour:

* ``silent-initialize``: never answers ``initialize``;
* ``silent-list``: never answers ``tools/list``;
* ``endless-pages``: every ``tools/list`` page names a next cursor, each page after N ms;
* ``deep-schema``: the tool ``deep`` has an input schema nested N levels;
* ``many-tools``: N tools;
* ``long-description``: the tool ``wordy`` has a description of N bytes;
* ``big-schema``: the tool ``bulky`` has an input schema of about N bytes;
* ``redos``: ``match`` takes ``{"s": str}`` with the pattern ``^(a+)+$``; ``shape``
  returns structured content ``{"s": "aaa...!"}`` under the same pattern in its output
  schema;
* ``daemon``: ``spawn`` starts a ``setsid`` daemon (a double fork) that sleeps with the
  argument ``marker`` in its argv, and answers with its pid;
* ``big-result``: ``big`` returns a text of N bytes;
* ``hang``: ``hang`` never answers (the other tools do);
* ``deep-result``: ``nested`` answers with a result nested N levels (past any parser).

``--http PORT`` as a third argument serves the same over Streamable HTTP (JSON answers to
POSTs on ``/mcp``, no event stream) on 127.0.0.1 instead of stdio.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[1] if len(sys.argv) > 1 else "echo"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 0
OUT = sys.stdout.buffer
_CAPTURE = threading.local()  # over HTTP: the answer of the request being handled
ECHO = {"name": "echo", "description": "Echoes the message",
        "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}},
                        "required": ["message"]}}
REDOS = "^(a+)+$"


def send(message: dict) -> None:
    send_raw(json.dumps(message))


def send_raw(text: str) -> None:
    captured = getattr(_CAPTURE, "lines", None)
    if captured is not None:
        captured.append(text.encode())
        return
    OUT.write(text.encode() + b"\n")
    OUT.flush()


def nested(depth: int) -> str:
    """A JSON schema nested ``depth`` levels, built as text (json.dumps would recurse)."""
    head = '{"type": "object", "properties": {"a": ' * depth
    return head + '{"type": "string"}' + "}}" * depth


def tools() -> list[dict]:
    if MODE == "many-tools":
        return [{"name": f"tool_{i}", "inputSchema": {"type": "object"}} for i in range(N)]
    extra: list[dict] = []
    if MODE == "long-description":
        extra = [{"name": "wordy", "description": "w" * N, "inputSchema": {"type": "object"}}]
    elif MODE == "big-schema":
        properties = {f"p{i}": {"type": "string", "description": "x" * 100}
                      for i in range(N // 130)}
        extra = [{"name": "bulky", "inputSchema": {"type": "object", "properties": properties}}]
    elif MODE == "redos":
        pattern = {"type": "object", "properties": {"s": {"type": "string", "pattern": REDOS}}}
        extra = [{"name": "match", "inputSchema": {**pattern, "required": ["s"]}},
                 {"name": "shape", "inputSchema": {"type": "object"}, "outputSchema": pattern}]
    elif MODE == "daemon":
        extra = [{"name": "spawn", "inputSchema": {"type": "object", "properties": {
            "marker": {"type": "string"}}, "required": ["marker"]}}]
    elif MODE == "big-result":
        extra = [{"name": "big", "inputSchema": {"type": "object"}}]
    elif MODE == "hang":
        extra = [{"name": "hang", "inputSchema": {"type": "object"}}]
    elif MODE == "deep-result":
        extra = [{"name": "nested", "inputSchema": {"type": "object"}}]
    return [ECHO, *extra]


def text_result(ident: object, text: str, **more: object) -> None:
    send({"jsonrpc": "2.0", "id": ident,
          "result": {"content": [{"type": "text", "text": text}], "isError": False, **more}})


def daemon(marker: str) -> int:
    """Double fork: the grandchild calls setsid and execs a sleeper with ``marker`` in its
    argv; the child exits at once, so the daemon is orphaned."""
    read, write = os.pipe()
    started, exec_done = os.pipe()  # close-on-exec: EOF once the daemon runs its program
    child = os.fork()
    if child == 0:
        os.setsid()
        grandchild = os.fork()
        if grandchild == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execv(sys.executable, [sys.executable, "-c",
                                      "import time; time.sleep(600)", marker])
        os.write(write, str(grandchild).encode())
        os._exit(0)
    os.close(write)
    os.close(exec_done)
    os.waitpid(child, 0)
    pid = int(os.read(read, 64))
    os.close(read)
    os.read(started, 1)
    os.close(started)
    return pid


def call(ident: object, name: str, arguments: dict) -> None:
    if name == "echo":
        text_result(ident, f"Echo: {arguments.get('message')}")
    elif name == "match":
        text_result(ident, f"matched {arguments.get('s')!r}")
    elif name == "shape":
        text_result(ident, "shaped", structuredContent={"s": "a" * 40 + "!"})
    elif name == "spawn":
        text_result(ident, str(daemon(arguments["marker"])))
    elif name == "big":
        text_result(ident, "x" * N)
    elif name == "hang":
        return
    elif name == "nested":
        send_raw('{"jsonrpc": "2.0", "id": ' + json.dumps(ident) + ', "result": '
                 '{"content": [], "structuredContent": ' + "[" * N + "]" * N + "}}")
    else:
        send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32602,
                                                      "message": f"no tool {name}"}})


def list_tools(ident: object, params: dict) -> None:
    if MODE == "silent-list":
        return
    if MODE == "endless-pages":
        time.sleep(N / 1000)
        page = int(params.get("cursor") or 0)
        send({"jsonrpc": "2.0", "id": ident,
              "result": {"tools": [ECHO] if page == 0 else [], "nextCursor": str(page + 1)}})
        return
    if MODE == "deep-schema":
        send_raw('{"jsonrpc": "2.0", "id": ' + json.dumps(ident) + ', "result": {"tools": ['
                 + json.dumps(ECHO) + ', {"name": "deep", "inputSchema": ' + nested(N) + "}]}}")
        return
    send({"jsonrpc": "2.0", "id": ident, "result": {"tools": tools()}})


def handle(message: dict) -> None:
    method, ident = message.get("method"), message.get("id")
    params = message.get("params") or {}
    if ident is None:
        return  # a notification
    if method == "initialize":
        if MODE == "silent-initialize":
            return
        send({"jsonrpc": "2.0", "id": ident, "result": {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": f"rogue-{MODE}", "version": "1"}}})
    elif method == "tools/list":
        list_tools(ident, params)
    elif method == "tools/call":
        call(ident, params.get("name"), params.get("arguments") or {})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": ident, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32601,
                                                      "message": f"no method {method}"}})


def main() -> None:
    for line in sys.stdin.buffer:
        if line.strip():
            handle(json.loads(line))


class _Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _CAPTURE.lines = []
        try:
            handle(message)
        finally:
            lines, _CAPTURE.lines = _CAPTURE.lines, None
        if "id" not in message:
            self._answer(202)
        elif lines:
            self._answer(200, lines[0])
        else:
            time.sleep(3600)  # a request never answered

    def do_GET(self) -> None:
        self._answer(405)

    def do_DELETE(self) -> None:
        self._answer(200)


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[3] == "--http":
        ThreadingHTTPServer(("127.0.0.1", int(sys.argv[4])), _Http).serve_forever()
    else:
        main()
