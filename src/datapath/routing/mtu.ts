/**
 * The pods' MTU (config key MTU; Cilium's rule): an explicit value wins; 0
 * means the MTU of the node's device (the default route's, else the first
 * device with a global IPv4 address), minus the tunnel's overhead in tunnel
 * mode so an encapsulated full-size packet still fits the underlay.
 *
 *   await podMtu({ mode: 'tunnel', configured: 0 });   // 1450 on a 1500 network
 */
import { z } from 'zod';
import { run } from '../../util/exec.js';
import { TUNNEL_OVERHEAD } from './tunnel-device.js';

// An address entry of a link being set up or torn down may come without its family: only the count matters here.
const Links = z.array(z.object({ ifname: z.string(), mtu: z.number().int(), addr_info: z.array(z.object({ family: z.string().optional() }).passthrough()).optional() }).passthrough());
const Routes = z.array(z.object({ dev: z.string().optional() }).passthrough());

const DEFAULT_MTU = 1500;

/** The MTU of the device the node's traffic to other nodes leaves by. */
export async function nodeDeviceMtu(): Promise<number> {
  const links = Links.parse(JSON.parse((await run('ip', ['-j', '-4', 'addr', 'show', 'scope', 'global'])).stdout || '[]'));
  const routes = Routes.parse(JSON.parse((await run('ip', ['-j', '-4', 'route', 'show', 'default'])).stdout || '[]'));
  const dev = routes.find((r) => r.dev !== undefined)?.dev;
  const chosen = links.find((l) => l.ifname === dev) ?? links.find((l) => !l.ifname.startsWith('meshd_') && (l.addr_info ?? []).length > 0);
  return chosen?.mtu ?? DEFAULT_MTU;
}

export async function podMtu(o: { mode: 'native' | 'tunnel'; configured: number }): Promise<number> {
  if (o.configured > 0) return o.configured;
  const base = await nodeDeviceMtu();
  return o.mode === 'tunnel' ? base - TUNNEL_OVERHEAD : base;
}
