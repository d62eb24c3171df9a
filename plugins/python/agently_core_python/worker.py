"""The sandboxed side of a warm Python worker. Standard library only; its source is passed
with ``python -c``, so nothing from the host's file system needs to be visible.

Protocol: one JSON object per line. The host sends ``{"id", "op": "run", "code",
"max_output", "max_capture"}`` or ``{"id", "op": "ping"}``; the worker answers ``{"id", "ok", ...}`` on
a private duplicate of its original stdout. Code runs in one persistent namespace (like a
notebook); its stdout and stderr (including child processes') go to capture files, so
nothing it prints can be mistaken for a reply.
"""

import _ast  # the node classes alone: the ``ast`` module's helpers cost a cold start ~10 ms
import json
import os
import sys

ONLY_AST = 0x400  # ast.PyCF_ONLY_AST

PROTO = os.fdopen(os.dup(1), "w", buffering=1)
REQUESTS = os.fdopen(os.dup(0), "r")
NULL = os.open(os.devnull, os.O_RDONLY)
DISCARD = os.open(os.devnull, os.O_WRONLY)
os.dup2(NULL, 0)  # the code cannot read the host's requests
TMP = os.environ.get("TMPDIR", "/tmp")
NAMESPACE = {"__name__": "__main__", "__builtins__": __builtins__}


def _capture(name):
    path = os.path.join(TMP, f".agently-{name}-{os.getpid()}")
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600), path


def _read(fd, limit):
    size = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, min(size, limit))
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return data.decode("utf-8", "replace"), size


OUT, OUT_PATH = _capture("stdout")
ERR, ERR_PATH = _capture("stderr")


def _fresh_streams():
    # new text streams for every call: whatever a failed call left in a buffer is dropped
    # and can never surface in the next call's output
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - replaced per call
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def run(code, max_output, max_capture):
    os.dup2(OUT, 1)
    os.dup2(ERR, 2)
    _fresh_streams()
    value = error = error_type = None
    try:
        tree = compile(code, "<run_python>", "exec", ONLY_AST)
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], _ast.Expr) else None
        if last is not None:
            tree.body.pop()
        exec(compile(tree, "<run_python>", "exec"), NAMESPACE)
        if last is not None:
            result = eval(compile(_ast.Expression(last.value), "<run_python>", "eval"),
                          NAMESPACE)
            if result is not None:
                value = repr(result)[:max_output]
    except BaseException as exc:  # the code's own failure, reported, never fatal here
        import traceback  # only when code fails: not on every worker's start

        error_type = type(exc).__name__
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        error = "".join(line for line in lines if "agently_core_python" not in line)[-4000:]
        if isinstance(exc, SystemExit):
            error = f"SystemExit: {exc.code!r}"
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        # whatever could not be flushed (a full disk, the file-size limit) is dropped here,
        # into /dev/null, so it can never surface in a later call's output
        os.dup2(DISCARD, 1)
        os.dup2(DISCARD, 2)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.close()
            except Exception:
                pass
        _fresh_streams()
    stdout, out_size = _read(OUT, max_capture)
    stderr, err_size = _read(ERR, max_capture)
    return {"ok": error is None, "stdout": stdout, "stderr": stderr, "value": value,
            "error": error, "error_type": error_type, "stdout_bytes": out_size,
            "stderr_bytes": err_size}


def main():
    _fresh_streams()
    PROTO.write(json.dumps({"id": None, "ok": True, "ready": True}) + "\n")
    for line in REQUESTS:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if request.get("op") == "ping":
            reply = {"ok": True, "pong": True}
        else:
            max_output = int(request.get("max_output", 100000))
            reply = run(request.get("code", ""), max_output,
                        max(max_output, int(request.get("max_capture", max_output))))
        reply["id"] = request.get("id")
        PROTO.write(json.dumps(reply) + "\n")


main()
