// BrowserEnv's launcher for @playwright/mcp (run by node inside the sandbox).
//
//   node browser_env_launcher.cjs <relay-socket> <cli.js> [playwright-mcp options...]
//
// The sandbox has a network namespace of its own (loopback only), so the browser can reach
// nothing directly. This listens on an ephemeral loopback port of that namespace and relays
// every connection to <relay-socket>, a UNIX socket the host binds into the sandbox and
// forwards to its egress-guard proxy; then it runs the Playwright MCP server in this same
// process with --proxy-server pointing at the relay. Nothing is written to stdout: it is
// the MCP channel.
'use strict';
const net = require('node:net');

const [socketPath, cli, ...options] = process.argv.slice(2);
if (!socketPath || !cli) {
  process.stderr.write('usage: browser_env_launcher.cjs <relay-socket> <cli.js> [options]\n');
  process.exit(2);
}

const relay = net.createServer((client) => {
  const upstream = net.connect(socketPath);
  client.pipe(upstream);
  upstream.pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
});
relay.on('error', (error) => {
  process.stderr.write(`browser_env_launcher: relay failed: ${error.message}\n`);
  process.exit(1);
});
relay.listen(0, '127.0.0.1', () => {
  const { port } = relay.address();
  process.argv = [process.argv[0], cli, ...options,
    '--proxy-server', `http://127.0.0.1:${port}`, '--proxy-bypass', '<-loopback>'];
  require(cli);
});
