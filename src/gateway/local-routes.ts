/**
 * The node routes its Gateways' addresses to itself: a `local` route in the
 * kernel's local table for each address that is not already one of the
 * node's (an LB IPAM address, a requested spec.addresses value), so a
 * connection to it from this node — or arriving from the network, once L2
 * announcements or the network's routing bring it here — is delivered to
 * the Envoy listener that binds it with freebind. Routes meshd added carry
 * their own protocol number, so only those are ever removed.
 *
 *   const routes = new LocalRoutes();            // { netns } in tests
 *   await routes.sync(['172.20.0.5']);           // adds what is missing, removes what is no longer wanted
 */
import { isIP } from 'node:net';
import { run } from '../util/exec.js';

/** The rtnetlink protocol number of meshd's Gateway routes (`ip route … proto 186`). */
export const GATEWAY_ROUTE_PROTOCOL = 186;

export class LocalRoutes {
  constructor(private readonly o: { netns?: string } = {}) {}

  private ip(args: string[]): Promise<{ stdout: string }> {
    return run('ip', [...(this.o.netns ? ['-n', this.o.netns] : []), ...args]);
  }

  /** The addresses meshd routes locally now. */
  async current(): Promise<string[]> {
    const out: string[] = [];
    for (const family of ['-4', '-6']) {
      const r = await this.ip([family, 'route', 'show', 'table', 'local', 'proto', String(GATEWAY_ROUTE_PROTOCOL)]);
      for (const line of r.stdout.split('\n')) {
        const m = /^local\s+(\S+)/.exec(line.trim());
        const ip = m?.[1]?.replace(/\/(32|128)$/, '');
        if (ip && isIP(ip) !== 0) out.push(ip);
      }
    }
    return out.sort();
  }

  /** Makes exactly `addresses` routed locally by meshd (invalid and loopback addresses are ignored). */
  async sync(addresses: readonly string[]): Promise<void> {
    const want = new Set(addresses.filter((a) => isIP(a) !== 0 && !a.startsWith('127.') && a !== '::1'));
    const have = new Set(await this.current());
    for (const a of want) {
      if (have.has(a)) continue;
      const len = isIP(a) === 4 ? 32 : 128;
      await this.ip(['route', 'replace', 'local', `${a}/${len}`, 'dev', 'lo', 'table', 'local', 'proto', String(GATEWAY_ROUTE_PROTOCOL)]);
    }
    for (const a of have) {
      if (want.has(a)) continue;
      const len = isIP(a) === 4 ? 32 : 128;
      await this.ip(['route', 'del', 'local', `${a}/${len}`, 'dev', 'lo', 'table', 'local', 'proto', String(GATEWAY_ROUTE_PROTOCOL)]);
    }
  }
}
