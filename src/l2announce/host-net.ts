/**
 * The node's side of an L2 announcement, through rtnetlink (NetlinkHostNet,
 * the agent's, in its own network namespace) or iproute2 (IpHostNet, in a
 * named namespace: tests and benchmarks) and iputils' arping: the announced
 * address is put on the selected interface as a host-scoped /32 (/128), so the kernel itself answers ARP requests (and
 * IPv6 neighbour solicitations) for it on that link and delivers its
 * traffic locally; a host-scoped address is never chosen as a source
 * address and never counts as a host address of the node
 * (src/agent/host-addresses.ts). On takeover a gratuitous ARP (IPv4,
 * iputils' arping -U) or an unsolicited neighbour advertisement with the
 * override flag (IPv6, RFC 4861 7.2.6; the IPv6 toolkit's na6) moves the
 * neighbours' caches to this node at once.
 *
 * With IpHostNet each step is one process: the interfaces and the announced
 * addresses are read together (one `ip -j addr show`), and all the addresses
 * an announcer takes over at once are added together (one `ip -batch -`).
 * NetlinkHostNet starts no process but arping's.
 *
 *   const net = new NetlinkHostNet();                  // the agent; new IpHostNet({ netns: 'node-a' }) in tests
 *   await net.read();                                  // { interfaces: [{ name: 'eth0', mac: '…' }], announced: [...] }
 *   await net.add([{ ifname: 'eth0', ip: '10.0.10.5' }]); await net.announce('eth0', '10.0.10.5');
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { AddressScope, changeAddress, dumpAddresses, IFA_F_NODAD, NetlinkError, type HostAddress } from '../../native/index.js';
import { MeshdError } from '../util/errors.js';
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

export interface HostNetState {
  interfaces: HostInterface[];
  /**
   * What announcements look like, on the node's interfaces but loopback:
   * host-scoped IPv4 /32s, and IPv6 /128s without duplicate detection (the
   * kernel keeps an IPv6 address's scope to its type, global, whatever the
   * request says, so the scope cannot mark them).
   */
  announced: AnnouncedAddress[];
}

const isAnnouncement = (a: HostAddress): boolean => (a.family === 4 ? a.scope === AddressScope.host && a.prefixlen === 32 : a.prefixlen === 128 && (a.flags & IFA_F_NODAD) !== 0);

/** What the announcer needs of the node's network stack. */
export interface HostNet {
  /** The interfaces (but loopback) and the announced addresses, read at one time. */
  read(): Promise<HostNetState>;
  /** Puts the addresses on their interfaces (idempotent); all or, on failure, possibly some of them. */
  add(addrs: readonly AnnouncedAddress[]): Promise<void>;
  remove(ifname: string, ip: string): Promise<void>;
  /** Gratuitous ARP for an IPv4 address, an unsolicited neighbour advertisement (override set) to all nodes for an IPv6 one. */
  announce(ifname: string, ip: string): Promise<void>;
}

const AddrList = z.array(
  z
    .object({
      ifname: z.string(),
      address: z.string().optional(),
      link_type: z.string().optional(),
      addr_info: z.array(z.object({ family: z.string().optional(), local: z.string().optional(), prefixlen: z.number().optional(), scope: z.string().optional(), nodad: z.boolean().optional() }).loose()).default([]),
    })
    .loose(),
);

const prefix = (ip: string): string => `${ip}/${ipToBigint(ip)?.family === 6 ? 128 : 32}`;

export class IpHostNet implements HostNet {
  constructor(private readonly o: { netns?: string; arping?: string; na6?: string } = {}) {}

  private ip(args: string[], input?: string) {
    return run('ip', this.o.netns ? ['-n', this.o.netns, ...args] : args, input === undefined ? {} : { input });
  }

  async read(): Promise<HostNetState> {
    const links = AddrList.parse(JSON.parse((await this.ip(['-j', 'addr', 'show'])).stdout)).filter((l) => l.link_type !== 'loopback');
    return {
      interfaces: links.map((l) => ({ name: l.ifname, mac: l.address ?? '' })),
      announced: links.flatMap((l) =>
        l.addr_info.filter((a) => a.local !== undefined && (a.family === 'inet' ? a.scope === 'host' && a.prefixlen === 32 : a.prefixlen === 128 && a.nodad === true)).map((a) => ({ ifname: l.ifname, ip: a.local ?? '' })),
      ),
    };
  }

  async add(addrs: readonly AnnouncedAddress[]): Promise<void> {
    if (addrs.length === 0) return;
    // One command per line of ip's batch input: a word that is not an address or an interface name would be read as more of it.
    for (const a of addrs) if (!ipToBigint(a.ip) || !/^[^\s/]{1,15}$/.test(a.ifname)) throw new MeshdError('MESHD_L2_BAD_ADDRESS', `L2 announcement: "${a.ip}" on "${a.ifname}" is not an address on an interface name`);
    // replace: idempotent; nodad: the address is ours by the Lease, not by duplicate detection.
    const lines = addrs.map((a) => `addr replace ${prefix(a.ip)} dev ${a.ifname} scope host${ipToBigint(a.ip)?.family === 6 ? ' nodad' : ''}`);
    await this.ip(['-batch', '-'], `${lines.join('\n')}\n`);
  }

  async remove(ifname: string, ip: string): Promise<void> {
    try {
      await this.ip(['addr', 'del', prefix(ip), 'dev', ifname]);
    } catch (e) {
      // Already gone (the interface went, or someone removed it): the state wanted.
      if (!(await this.read()).announced.some((a) => a.ifname === ifname && a.ip === ip)) return;
      throw e;
    }
  }

  announce(ifname: string, ip: string): Promise<void> {
    return announce(this.o, ifname, ip);
  }
}

/** The gratuitous ARP / unsolicited neighbour advertisement, in `netns` (tests) or the process's own namespace. */
async function announce(o: { netns?: string; arping?: string; na6?: string }, ifname: string, ip: string): Promise<void> {
  const family = ipToBigint(ip)?.family;
  if (family !== 4 && family !== 6) return;
  // IPv6: to ff02::1, Override set, this interface's MAC as the target link-layer address (-e: na6 fills it in).
  const argv = family === 4 ? [o.arping ?? 'arping', '-U', '-c', '1', '-I', ifname, ip] : [o.na6 ?? 'na6', '-i', ifname, '-d', 'ff02::1', '-t', ip, '-o', '-e'];
  if (o.netns) await run('ip', ['netns', 'exec', o.netns, ...argv], { timeoutMs: 5_000 });
  else await run(argv[0] ?? 'arping', argv.slice(1), { timeoutMs: 5_000 });
}

/** ARPHRD_LOOPBACK (linux/if_arp.h), as /sys/class/net/<if>/type shows it. */
const ARPHRD_LOOPBACK = 772;
/** EADDRNOTAVAIL, ENODEV: the address or its interface is already gone. */
const GONE_ERRNOS = new Set([99, 19]);

/**
 * The same through rtnetlink (the native addon) in the process's own
 * network namespace — the agent's: no process per read or change, so an
 * address won goes on its interface within the pass that won it. The
 * interfaces are read from sysfs (names, indexes, MACs), the addresses with
 * one RTM_GETADDR dump, each change is one acknowledged RTM_NEWADDR /
 * RTM_DELADDR; the gratuitous ARP is still arping's (a packet socket is not
 * worth a second implementation).
 */
export class NetlinkHostNet implements HostNet {
  constructor(private readonly o: { arping?: string; na6?: string; sysClassNet?: string } = {}) {}

  private links(): Array<HostInterface & { ifindex: number }> {
    const dir = this.o.sysClassNet ?? '/sys/class/net';
    const out: Array<HostInterface & { ifindex: number }> = [];
    for (const name of readdirSync(dir)) {
      try {
        const attr = (f: string) => readFileSync(join(dir, name, f), 'utf8').trim();
        if (Number(attr('type')) === ARPHRD_LOOPBACK) continue;
        out.push({ name, ifindex: Number(attr('ifindex')), mac: attr('address') });
      } catch (e) {
        // Gone between the listing and the read: not an interface any more.
        if (e instanceof Error && 'code' in e && e.code === 'ENOENT') continue;
        throw e;
      }
    }
    return out;
  }

  read(): Promise<HostNetState> {
    const links = this.links();
    const names = new Map(links.map((l) => [l.ifindex, l.name]));
    const announced = dumpAddresses().flatMap((a) => {
      const ifname = names.get(a.ifindex);
      return ifname !== undefined && isAnnouncement(a) ? [{ ifname, ip: a.address }] : [];
    });
    return Promise.resolve({ interfaces: links.map(({ name, mac }) => ({ name, mac })), announced });
  }

  private change(op: 'replace' | 'del', ifname: string, ip: string): void {
    const family = ipToBigint(ip)?.family;
    if (family === undefined) throw new MeshdError('MESHD_L2_BAD_ADDRESS', `L2 announcement: "${ip}" on "${ifname}" is not an address`);
    const link = this.links().find((l) => l.name === ifname);
    if (!link) throw new NetlinkError(`L2 announcement: no interface ${ifname} for ${ip}`, 19);
    changeAddress(op, { ifindex: link.ifindex, family, address: ip, prefixlen: family === 4 ? 32 : 128, scope: AddressScope.host, flags: family === 6 ? IFA_F_NODAD : 0 });
  }

  add(addrs: readonly AnnouncedAddress[]): Promise<void> {
    try {
      for (const a of addrs) this.change('replace', a.ifname, a.ip);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  remove(ifname: string, ip: string): Promise<void> {
    try {
      this.change('del', ifname, ip);
    } catch (e) {
      // Already gone (the interface went, or someone removed it): the state wanted.
      if (!(e instanceof NetlinkError && e.errno !== undefined && GONE_ERRNOS.has(e.errno))) return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    return Promise.resolve();
  }

  announce(ifname: string, ip: string): Promise<void> {
    return announce(this.o, ifname, ip);
  }
}
