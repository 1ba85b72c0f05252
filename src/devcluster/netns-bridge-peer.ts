/**
 * A TCP-to-unix-socket forwarder, run inside a node's network namespace
 * (netns-nodes.ts): listens on 127.0.0.1:<port> there (or on another of
 * the namespace's addresses) and pipes every connection to a unix socket
 * path, which the filesystem shares across namespaces. Prints "listening"
 * once ready; exits on SIGTERM.
 *
 *   nsenter --net=/run/netns/<node> node netns-bridge-peer.js <port> <unix path> [<listen address>]
 */
import { connect, createServer } from 'node:net';

const port = Number(process.argv[2]);
const path = process.argv[3] ?? '';
const host = process.argv[4] ?? '127.0.0.1';
const server = createServer((c) => {
  const up = connect(path);
  c.pipe(up).pipe(c);
  const end = () => {
    c.destroy();
    up.destroy();
  };
  c.on('error', end);
  up.on('error', end);
});
server.listen(port, host, () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
