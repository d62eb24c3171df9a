// The sandboxed side of a warm Node.js worker. Built-in modules only; the host passes this
// source with `node -e`, so nothing from the host's file system needs to be visible.
//
// Protocol: one JSON object per line, both ways, over a private socket whose fd number is
// argv[1] (never stdin or stdout), or, when argv[1] is "IN,OUT", requests read from fd IN
// and replies written to fd OUT (two pipes: a container's stdin and stdout, moved there by
// the command that starts the worker, with fds 0 and 1 pointed away). The host sends
// {"id", "op": "run", "code", "args", "max_output", "max_capture"} or {"id", "op": "ping"};
// the worker answers {"id", "ok", ...} and first announces {"id": null, "ready": true}.
// Several runs may be in flight at once: asynchronous code interleaves, and each reply
// carries its request's id.
//
// Output: console.* and process.stdout/stderr.write go, through an AsyncLocalStorage, to
// the buffers of the call whose code (or whose callbacks, timers, promises...) wrote them,
// capped at max_capture bytes each with the full byte counts beside them. Writes outside
// any call, or after a call answered, are dropped. The raw fds 1 and 2 (a child process
// started with stdio "inherit", fs.writeSync(1)) go to a host-side log, not to any call.
//
// Evaluation, like a notebook: code runs as a script in the worker's own global context
// (the node REPL's choice: one realm, so `instanceof Error` or `instanceof Array` hold for
// what built-in modules return). Top-level var and function declarations and globalThis
// properties persist between calls; top-level let/const/class persist too but cannot be
// declared twice. The value is the script's completion value (the last expression); a
// Promise is awaited. Code that uses top-level `await` (or `return`) cannot be a script:
// it runs as the body of an async function, its value is what it returns, and its
// declarations are local to the call. `args` is the call's JSON arguments.
//
// The vm is no security boundary: code can reach this worker's internals, require every
// built-in module and write to the reply socket. The isolation around the process is the
// boundary; within one scope the code owns its worker.
'use strict';
((fdArgument) => {
  const vm = require('node:vm');
  const net = require('node:net');
  const util = require('node:util');
  const { AsyncLocalStorage } = require('node:async_hooks');
  const { Buffer } = require('node:buffer');

  const FILENAME = 'run_nodejs';
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const inspect = util.inspect;
  const calls = new AsyncLocalStorage();
  const fds = String(fdArgument).split(',');
  if (fds.length > 2 || !fds.every((fd) => /^[0-9]+$/.test(fd))) {
    process.stderr.write(`the worker's channel must be an fd number or "IN,OUT", not `
                         + `${fdArgument}\n`);
    process.exit(2);
  }
  const input = new net.Socket({ fd: Number(fds[0]), readable: true, writable: fds.length === 1 });
  const channel = fds.length === 1 ? input
    : new net.Socket({ fd: Number(fds[1]), readable: false, writable: true });

  const wellFormed = (text) => (typeof text.toWellFormed === 'function' ? text.toWellFormed() : text);

  function cut(text, limit) {
    if (text.length <= limit) return wellFormed(text);
    return wellFormed(text.slice(0, limit));
  }

  // -- output ---------------------------------------------------------------------------
  function sink() {
    return { parts: [], kept: 0, total: 0 };
  }

  function toText(chunk, encoding) {
    if (typeof chunk === 'string') {
      return encoding && encoding !== 'utf8' && encoding !== 'utf-8' && Buffer.isEncoding(encoding)
        ? Buffer.from(chunk, encoding).toString('utf8') : chunk;
    }
    if (ArrayBuffer.isView(chunk)) {
      return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
    }
    return String(chunk);
  }

  function capture(name, chunk, encoding) {
    const call = calls.getStore();
    if (call === undefined || call.done) return; // outside any call, or after its reply
    let text = toText(chunk, encoding);
    const bytes = Buffer.byteLength(text);
    const out = call[name];
    out.total += bytes;
    const room = call.capture - out.kept;
    if (room <= 0) return;
    if (bytes > room) {
      text = Buffer.from(text).subarray(0, room).toString('utf8').replace(/\uFFFD$/, '');
    }
    out.parts.push(text);
    out.kept += Math.min(bytes, room);
  }

  for (const name of ['stdout', 'stderr']) {
    // a pipe behind the raw fd (a container's stderr) is left blocking, as a file is: Node
    // made it non-blocking, and a raw write the reader has not drained yet would fail
    const handle = process[name]._handle;
    if (handle && typeof handle.setBlocking === 'function') handle.setBlocking(true);
    // the global console writes through these too
    process[name].write = function write(chunk, encoding, callback) {
      if (typeof encoding === 'function') [callback, encoding] = [encoding, undefined];
      capture(name, chunk, encoding);
      if (typeof callback === 'function') process.nextTick(callback);
      return true;
    };
  }

  // -- the call's arguments ---------------------------------------------------------------
  Object.defineProperty(globalThis, 'args', {
    configurable: false,
    enumerable: false,
    get() {
      const call = calls.getStore();
      return call === undefined ? undefined : call.args;
    },
    set(value) {
      const call = calls.getStore();
      if (call !== undefined) call.args = value;
    },
  });

  // -- evaluation -------------------------------------------------------------------------
  // import() of a built-in module works as in a module (Node 20.16+ and 21.7+)
  const options = { filename: FILENAME,
                    importModuleDynamically: vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER };

  function compile(code) {
    try {
      return { script: new vm.Script(code, options) };
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
      let body;
      try { // top-level await or return: the body of an async function (same line numbers)
        body = new vm.Script(`(async function () {${code}\n})`, options);
      } catch {
        throw error; // not valid either way: the script's own syntax error
      }
      return { body };
    }
  }

  function isThenable(value) {
    return value !== null && (typeof value === 'object' || typeof value === 'function')
      && typeof value.then === 'function';
  }

  // the worker's own frames: everything from the call's entry down, and the vm's
  const ENTRY_FRAME = /^\s+at AsyncLocalStorage\.run \(node:async_hooks:/;
  const WORKER_FRAME = /\[eval\]|\(node:vm:|^\s+at new Script /;

  function frames(text) {
    const lines = text.split('\n');
    const entry = lines.findIndex((line) => ENTRY_FRAME.test(line));
    return (entry >= 0 ? lines.slice(0, entry) : lines).filter((line) => !WORKER_FRAME.test(line))
      .join('\n');
  }

  function describe(thrown, depth = 0) {
    try {
      if (thrown !== null && (typeof thrown === 'object' || typeof thrown === 'function')) {
        const name = String(thrown.name || (thrown.constructor && thrown.constructor.name) || 'Error');
        const message = thrown.message === undefined ? '' : String(thrown.message);
        const stack = typeof thrown.stack === 'string' ? thrown.stack : '';
        if (!stack && !(thrown instanceof Error)) {
          return [`Uncaught ${inspect(thrown, { depth: 2 })}`, name];
        }
        let text = frames(stack.includes(message) ? stack : `${name}: ${message}\n${stack}`);
        const cause = thrown.cause;
        if (cause !== undefined && cause !== null && depth < 3) {
          text += `\n[cause]: ${describe(cause, depth + 1)[0]}`;
        }
        return [text, name];
      }
      return [`Uncaught ${inspect(thrown)}`, typeof thrown];
    } catch (error) {
      return ['Uncaught exception (it could not be described)', 'Error'];
    }
  }

  function show(value, limit) {
    let text;
    try {
      text = inspect(value, { depth: 4, maxArrayLength: 200, maxStringLength: limit,
                              breakLength: 100 });
    } catch (error) {
      text = `[value could not be inspected: ${describe(error)[0].split('\n')[0]}]`;
    }
    return cut(text, limit);
  }

  async function run(request) {
    const maxOutput = Math.max(1, Number(request.max_output) || 100000);
    const call = {
      capture: Math.max(maxOutput, Number(request.max_capture) || maxOutput),
      stdout: sink(), stderr: sink(), args: request.args, done: false, crash: null,
    };
    // an exception thrown by one of this call's callbacks (a timer, an event) fails it
    const crashed = new Promise((_, reject) => { call.crash = reject; });
    crashed.catch(() => {});
    return calls.run(call, async () => {
      let value = null;
      let error = null;
      let errorType = null;
      try {
        const compiled = compile(String(request.code ?? ''));
        let result = compiled.script
          ? compiled.script.runInThisContext({ displayErrors: false })
          : compiled.body.runInThisContext({ displayErrors: false }).call(globalThis);
        if (isThenable(result)) result = await Promise.race([result, crashed]);
        if (result !== undefined) value = show(result, maxOutput);
      } catch (thrown) {
        [error, errorType] = describe(thrown);
        error = cut(error.length > 8000 ? error.slice(-8000) : error, 8000);
      }
      call.done = true;
      return {
        ok: error === null, value, error, error_type: errorType,
        stdout: wellFormed(call.stdout.parts.join('')), stdout_bytes: call.stdout.total,
        stderr: wellFormed(call.stderr.parts.join('')), stderr_bytes: call.stderr.total,
      };
    });
  }

  process.on('uncaughtException', (thrown) => {
    const call = calls.getStore();
    if (call !== undefined && !call.done) call.crash(thrown);
  });
  process.on('unhandledRejection', (reason) => {
    capture('stderr', `Uncaught (in promise) ${describe(reason)[0]}\n`);
  });

  // -- the protocol -----------------------------------------------------------------------
  function send(reply) {
    channel.write(`${stringify(reply)}\n`);
  }

  // A call starts on the next turn of the event loop, after every line already received:
  // a 'drop' the host sent while this worker was busy (its caller gave up waiting) is seen
  // before the call would start, and the call never runs. Each call that does start says
  // so first, so the host knows which calls a cancellation would cut short.
  const scheduled = new Set();
  const dropped = new Set();

  function handle(line) {
    let request;
    try {
      request = parse(line);
    } catch {
      return;
    }
    if (request === null || typeof request !== 'object') return;
    const id = request.id;
    if (request.op === 'ping') {
      send({ id, ok: true, pong: true });
      return;
    }
    if (request.op === 'drop') {
      if (scheduled.has(id)) dropped.add(id);
      return;
    }
    scheduled.add(id);
    setImmediate(() => {
      scheduled.delete(id);
      if (dropped.delete(id)) {
        send({ id, dropped: true });
        return;
      }
      send({ id, started: true });
      run(request).then(
        (reply) => send({ id, ...reply }),
        (failure) => send({ id, ok: false, error: describe(failure)[0], error_type: 'WorkerError',
                            stdout: '', stderr: '', stdout_bytes: 0, stderr_bytes: 0,
                            value: null }),
      );
    });
  }

  let pending = '';
  input.setEncoding('utf8');
  input.on('data', (chunk) => {
    pending += chunk;
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      handle(line);
      newline = pending.indexOf('\n');
    }
  });
  input.on('end', () => process.exit(0)); // the host went away
  input.on('error', () => process.exit(1));
  if (channel !== input) channel.on('error', () => process.exit(1));
  // start libuv's thread pool now, two threads, so that the worker's own tasks are all
  // there before the code can use up the process limit (a pool that cannot start aborts)
  const ownPoolSize = process.env.UV_THREADPOOL_SIZE === undefined;
  if (ownPoolSize) process.env.UV_THREADPOOL_SIZE = '2';
  require('node:fs').stat('/', () => {
    if (ownPoolSize) delete process.env.UV_THREADPOOL_SIZE;
    send({ id: null, ok: true, ready: true, node: process.version });
  });
})(process.argv[1]);
