/**
 * Kernel routes to the other nodes' pod CIDRs, tagged with meshd's route
 * protocol number so that exactly these are found again (after a restart
 * too) and removed when their node leaves:
 * - native mode with autoDirectNodeRoutes: `<podCIDR> via <node address>`
 *   (the nodes share an L2 segment, as Cilium's autoDirectNodeRoutes assumes);
 * - tunnel mode: `<podCIDR> dev <tunnel device>`, for the node's own
 *   connections to those pods (pod traffic is encapsulated before routing).
 * Each sync writes the difference only: replaces first, then deletions.
 *
 *   await syncNodeRoutes([{ dst: '10.0.2.0/24', via: '192.168.50.12' }]);
 *   await syncNodeRoutes([]);      // every route meshd put there goes
 */
import { z } from 'zod';
import { run } from '../../util/exec.js';
import { RoutingError } from './errors.js';

/** The rtnetlink protocol of meshd's routes (`ip route show proto 173`). */
export const MESHD_ROUTE_PROTO = 173;

export interface NodeRoute {
  dst: string;
  /** Next hop (native mode) … */
  via?: string;
  /** … or a device (tunnel mode). */
  dev?: string;
}

const RouteList = z.array(z.object({ dst: z.string(), gateway: z.string().optional(), dev: z.string().optional() }).passthrough());

const routeKey = (r: NodeRoute) => `${r.dst} ${r.via ?? ''} ${r.via ? '' : (r.dev ?? '')}`;

/** meshd's routes as the kernel holds them. */
export async function listNodeRoutes(): Promise<NodeRoute[]> {
  const out = (await run('ip', ['-j', '-4', 'route', 'show', 'proto', String(MESHD_ROUTE_PROTO)])).stdout;
  return RouteList.parse(JSON.parse(out || '[]')).map((r) => (r.gateway ? { dst: r.dst, via: r.gateway } : { dst: r.dst, ...(r.dev ? { dev: r.dev } : {}) }));
}

/** Makes meshd's routes exactly `want`. MESHD_ROUTING_ROUTES_FAILED if the kernel refused (what was written stays). */
export async function syncNodeRoutes(want: readonly NodeRoute[]): Promise<{ replaced: number; deleted: number }> {
  const have = await listNodeRoutes();
  const haveKeys = new Set(have.map(routeKey));
  const wantDst = new Set(want.map((r) => r.dst));
  const lines: string[] = [];
  for (const r of want) {
    if (haveKeys.has(routeKey(r))) continue;
    lines.push(['route', 'replace', r.dst, ...(r.via ? ['via', r.via] : ['dev', r.dev ?? '']), 'proto', String(MESHD_ROUTE_PROTO)].join(' '));
  }
  const replaced = lines.length;
  for (const r of have) if (!wantDst.has(r.dst)) lines.push(['route', 'del', r.dst, 'proto', String(MESHD_ROUTE_PROTO)].join(' '));
  if (lines.length === 0) return { replaced: 0, deleted: 0 };
  try {
    await run('ip', ['-batch', '-'], { input: `${lines.join('\n')}\n` });
  } catch (e) {
    throw new RoutingError('MESHD_ROUTING_ROUTES_FAILED', `routes to other nodes not written: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return { replaced, deleted: lines.length - replaced };
}

const RouteGet = z.array(z.object({ dev: z.string().optional() }).passthrough());

/** The devices the kernel sends to these addresses by (each once). */
export async function devicesTowards(ips: readonly string[]): Promise<string[]> {
  const devs = new Set<string>();
  for (const ip of ips) {
    try {
      const r = RouteGet.parse(JSON.parse((await run('ip', ['-j', 'route', 'get', ip])).stdout || '[]'));
      for (const x of r) if (x.dev && x.dev !== 'lo') devs.add(x.dev);
    } catch {
      // No route to that node (yet): nothing to attach for it.
    }
  }
  return [...devs].sort();
}
