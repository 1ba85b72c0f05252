/**
 * `meshd relay`: one Hubble observer API for the cluster over every node's
 * observer (src/observe/relay.ts), until SIGINT or SIGTERM.
 *
 *   meshd relay --peer node-1=10.0.0.1:4244 --peer node-2=10.0.0.2:4244 [--socket PATH] [--listen-address :4245]
 */
import { parsePeer, Relay } from '../observe/relay.js';
import { packageVersion } from '../util/paths.js';
import { command, UsageError } from './args.js';

export const DEFAULT_RELAY_SOCKET = '/var/run/meshd/hubble-relay.sock';

export const relay = command(
  {
    name: 'relay',
    summary: "serve one Hubble observer API over every node's observer: flows merged in time order, node status",
    options: {
      peer: { type: 'string', multiple: true, value: 'NAME=ADDR', help: "a node's observer: NAME=unix:///path or NAME=host:port" },
      socket: { type: 'string', value: 'PATH', help: `the relay's unix socket (default ${DEFAULT_RELAY_SOCKET}; "" for none)` },
      'listen-address': { type: 'string', value: 'ADDR', help: 'a TCP address as well, e.g. :4245 (Hubble Relay\'s port)' },
    },
  },
  async (args, io) => {
    const peers = args.strings('peer').map(parsePeer);
    if (peers.length === 0) throw new UsageError('meshd relay: at least one --peer NAME=ADDR');
    const socket = args.string('socket') ?? DEFAULT_RELAY_SOCKET;
    const listenAddress = args.string('listen-address');
    if (socket === '' && !listenAddress) throw new UsageError('meshd relay: nothing to listen on (--socket "" and no --listen-address)');
    const r = new Relay({ peers, version: packageVersion() });
    const port = await r.listen({ ...(socket ? { socketPath: socket } : {}), ...(listenAddress ? { listenAddress } : {}) });
    io.err(`meshd relay: ${peers.length} peer(s); listening on ${[socket ? `unix://${socket}` : '', port !== undefined ? `port ${port}` : ''].filter(Boolean).join(' and ')}\n`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await r.close();
    return 0;
  },
);
