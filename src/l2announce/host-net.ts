/**
 * The node's side of an L2 announcement, through iproute2 and iputils'
 * arping: the announced address is put on the selected interface as a
 * host-scoped /32 (/128), so the kernel itself answers ARP requests (and
 * IPv6 neighbour solicitations) for it on that link and delivers its
 * traffic locally; a host-scoped address is never chosen as a source
 * address and never counts as a host address of the node
 * (src/agent/host-addresses.ts). On takeover a gratuitous ARP (IPv4,
 * iputils' arping -U) or an unsolicited neighbour advertisement with the
 * override flag (IPv6, RFC 4861 7.2.6; the IPv6 toolkit's na6) moves the
 * neighbours' caches to this node at once.
 *
 *   const net = new IpHostNet({ netns: 'node-a' });   // netns: tests; the host's own namespace otherwise
 *   await net.interfaces();                            // [{ name: 'eth0', mac: '…' }]
 *   await net.add('eth0', '10.0.10.5'); await net.announce('eth0', '10.0.10.5');
 */
import { z } from 'zod';
import { run } from '../util/exec.js';
import { ipToBigint } from '../lbipam/ip-range.js';

export interface HostInterface {
  name: string;
  mac: string;
}

export interface AnnouncedAddress {
  ifname: string;
  ip: string;
}

/** What the announcer needs of the node's network stack. */
export interface HostNet {
  interfaces(): Promise<HostInterface[]>;
  /** Host-scoped single addresses (/32, /128) on the node's interfaces: what announcements look like. */
  announced(): Promise<AnnouncedAddress[]>;
  add(ifname: string, ip: string): Promise<void>;
  remove(ifname: string, ip: string): Promise<void>;
  /** Gratuitous ARP for an IPv4 address, an unsolicited neighbour advertisement (override set) to all nodes for an IPv6 one. */
  announce(ifname: string, ip: string): Promise<void>;
}

const LinkList = z.array(z.object({ ifname: z.string(), address: z.string().optional(), link_type: z.string().optional() }).loose());
const AddrList = z.array(
  z.object({ ifname: z.string(), addr_info: z.array(z.object({ family: z.string().optional(), local: z.string().optional(), prefixlen: z.number().optional(), scope: z.string().optional() }).loose()).default([]) }).loose(),
);

export class IpHostNet implements HostNet {
  constructor(private readonly o: { netns?: string; arping?: string; na6?: string } = {}) {}

  private ip(args: string[]) {
    return run('ip', this.o.netns ? ['-n', this.o.netns, ...args] : args);
  }

  async interfaces(): Promise<HostInterface[]> {
    const links = LinkList.parse(JSON.parse((await this.ip(['-j', 'link', 'show'])).stdout));
    return links.filter((l) => l.link_type !== 'loopback').map((l) => ({ name: l.ifname, mac: l.address ?? '' }));
  }

  async announced(): Promise<AnnouncedAddress[]> {
    const links = AddrList.parse(JSON.parse((await this.ip(['-j', 'addr', 'show'])).stdout));
    return links.flatMap((l) =>
      l.addr_info.filter((a) => a.scope === 'host' && a.local !== undefined && a.prefixlen === (a.family === 'inet' ? 32 : 128) && l.ifname !== 'lo').map((a) => ({ ifname: l.ifname, ip: a.local ?? '' })),
    );
  }

  async add(ifname: string, ip: string): Promise<void> {
    const v6 = ipToBigint(ip)?.family === 6;
    // replace: idempotent; nodad: the address is ours by the Lease, not by duplicate detection.
    await this.ip(['addr', 'replace', `${ip}/${v6 ? 128 : 32}`, 'dev', ifname, 'scope', 'host', ...(v6 ? ['nodad'] : [])]);
  }

  async remove(ifname: string, ip: string): Promise<void> {
    const v6 = ipToBigint(ip)?.family === 6;
    try {
      await this.ip(['addr', 'del', `${ip}/${v6 ? 128 : 32}`, 'dev', ifname]);
    } catch (e) {
      // Already gone (the interface went, or someone removed it): the state wanted.
      if (!(await this.announced()).some((a) => a.ifname === ifname && a.ip === ip)) return;
      throw e;
    }
  }

  async announce(ifname: string, ip: string): Promise<void> {
    const family = ipToBigint(ip)?.family;
    if (family !== 4 && family !== 6) return;
    // IPv6: to ff02::1, Override set, this interface's MAC as the target link-layer address (-e: na6 fills it in).
    const argv = family === 4 ? [this.o.arping ?? 'arping', '-U', '-c', '1', '-I', ifname, ip] : [this.o.na6 ?? 'na6', '-i', ifname, '-d', 'ff02::1', '-t', ip, '-o', '-e'];
    if (this.o.netns) await run('ip', ['netns', 'exec', this.o.netns, ...argv], { timeoutMs: 5_000 });
    else await run(argv[0] ?? 'arping', argv.slice(1), { timeoutMs: 5_000 });
  }
}
