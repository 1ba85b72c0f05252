/**
 * `meshd proxy restart`: a planned replacement of the node's Envoys by the
 * running agent (POST /v1/proxy/restart). Each new Envoy is started, ACKs the
 * current configuration and binds its listeners before the old one drains
 * (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY, TCP up to the drain
 * timeout) and stops; no connection is refused meanwhile (docs/reliability.md).
 * Returns when every old Envoy is gone.
 */
import { apiRoutes } from '../api/index.js';
import { callApi } from './api-client.js';
import { command } from './args.js';

export const proxyRestart = command(
  { name: 'proxy restart', summary: 'replace the node\'s Envoys without dropping a connection (new ones configured first, old ones drained)', options: {}, output: true, agent: true },
  async (args, io) => {
    const v = await callApi(args.apiSocket, apiRoutes.proxyRestart, { body: {} });
    io.out(args.format(v, () => `replaced ${v.replaced} Envoy${v.replaced === 1 ? '' : 's'}; live: ${v.instances.join(', ')}`));
    return 0;
  },
);
