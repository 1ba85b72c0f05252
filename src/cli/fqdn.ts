/**
 * `meshd fqdn cache list [--endpoint ID]`: what the running agent learned
 * from DNS for toFQDNs — per endpoint, each name with its addresses, the
 * TTL of the answer, when each expires and whether it came from an answer
 * or was restored after a restart.
 * `meshd fqdn cache flush [--name N] [--endpoint ID]` removes entries by hand
 * (Cilium's `cilium fqdn cache clean`); the next answer teaches them again.
 */
import { apiRoutes } from '../api/index.js';
import type { FqdnCacheFlushResponse, FqdnCacheResponse } from '../api/fqdn.js';
import { callApi } from './api-client.js';
import { command, type CommandGroup } from './args.js';
import { table } from './output.js';

function render(v: FqdnCacheResponse): string {
  const now = Date.parse(v.at);
  const rows = v.entries.flatMap((e) =>
    e.ips.map((i) => {
      const left = Math.round((Date.parse(i.expiresAt) - now) / 1000);
      return [e.endpoint, e.name, i.ip, i.ttl, i.expiresAt, left >= 0 ? `${left}s` : `expired ${-left}s ago`, i.source];
    }),
  );
  const head = v.proxy
    ? `DNS proxy on port ${v.proxy.port}: ${v.proxy.queries} queries, ${v.proxy.allowed} allowed, ${v.proxy.rejected} rejected, ${v.proxy.malformed} malformed, ${v.proxy.upstreamErrors} upstream errors`
    : 'DNS proxy: not running';
  return `${head}\n${table(['ENDPOINT', 'NAME', 'IP', 'TTL', 'EXPIRES', 'LEFT', 'SOURCE'], rows)}`;
}

function renderFlush(v: FqdnCacheFlushResponse): string {
  if (v.removed.length === 0) return 'nothing removed';
  return table(['ENDPOINT', 'NAME', 'REMOVED'], v.removed.map((r) => [r.endpoint, r.name, r.ips.join(',')]));
}

export const fqdn: CommandGroup = {
  name: 'fqdn',
  summary: 'names learned from DNS for toFQDNs policies',
  subcommands: [
    command(
      { name: 'fqdn cache list', summary: 'per endpoint: name, addresses, TTL, expiry, source', options: { endpoint: { type: 'string', value: 'ID', help: 'only this endpoint (namespace/name)' } }, output: true, agent: true },
      async (args, io) => {
        const endpoint = args.string('endpoint');
        const v = await callApi(args.apiSocket, apiRoutes.fqdnCache, { query: endpoint === undefined ? {} : { endpoint } });
        io.out(args.format(v, () => render(v)));
        return 0;
      },
    ),
    command(
      {
        name: 'fqdn cache flush',
        summary: 'remove learned names (all, one endpoint\'s, one name\'s); their addresses close unless a connection uses them',
        options: {
          name: { type: 'string', value: 'NAME', help: 'only this name, or the names a matchPattern such as *.example.com matches' },
          endpoint: { type: 'string', value: 'ID', help: 'only this endpoint (namespace/name)' },
        },
        output: true,
        agent: true,
      },
      async (args, io) => {
        const name = args.string('name');
        const endpoint = args.string('endpoint');
        const v = await callApi(args.apiSocket, apiRoutes.fqdnCacheFlush, { body: { ...(name === undefined ? {} : { name }), ...(endpoint === undefined ? {} : { endpoint }) } });
        io.out(args.format(v, () => renderFlush(v)));
        return 0;
      },
    ),
  ],
};
