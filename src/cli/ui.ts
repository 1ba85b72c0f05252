/**
 * `meshd ui`: the service map and live flow table in the browser (src/observe/ui.ts),
 * fed by a node's observer or the relay, until SIGINT or SIGTERM.
 *
 *   meshd ui [--server unix:///var/run/meshd/hubble-relay.sock] [--port 12000]
 */
import { FlowUi } from '../observe/ui.js';
import { command, UsageError } from './args.js';
import { DEFAULT_HUBBLE_SERVER } from './observe.js';

export const ui = command(
  {
    name: 'ui',
    summary: 'the service map and live flows in the browser, from a node observer or the relay (port 12000 as Hubble UI)',
    options: {
      server: { type: 'string', value: 'ADDR', help: `the observer or relay: unix://PATH or HOST:PORT (default $HUBBLE_SERVER or ${DEFAULT_HUBBLE_SERVER})` },
      port: { type: 'string', value: 'N', help: 'the HTTP port (default 12000)' },
      host: { type: 'string', value: 'ADDR', help: 'the address to listen on (default 0.0.0.0)' },
    },
  },
  async (args, io) => {
    const portArg = args.string('port') ?? '12000';
    if (!/^\d+$/.test(portArg) || Number(portArg) > 65535) throw new UsageError(`meshd ui: --port takes a port number, not "${portArg}"`);
    const u = new FlowUi({ server: args.string('server') ?? process.env.HUBBLE_SERVER ?? DEFAULT_HUBBLE_SERVER, port: Number(portArg), ...(args.string('host') ? { host: args.string('host') ?? '' } : {}) });
    await u.start();
    io.out(`meshd ui: http://localhost:${u.port}/\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await u.close();
    return 0;
  },
);
