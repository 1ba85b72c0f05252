/**
 * The pod's veth: created, configured, inspected and removed with iproute2
 * (argv arrays, no shell). Work is batched so that an ADD costs two `ip`
 * processes: one batch in the host namespace creates the pair with the pod
 * end born inside the pod's namespace (so its name never clashes with a host
 * interface), brings the host end up and routes the pod addresses to it; one
 * batch inside the pod's namespace (entered with nsenter, because `ip -n`
 * only takes names under /var/run/netns while CNI_NETNS may be any path)
 * assigns the addresses and routes.
 *
 * Addressing: each pod address is a host route (/32, /128) on the pod side;
 * the gateway is reached on-link with a permanent neighbour entry pointing at
 * the host end's MAC, so nothing on the host needs to answer ARP for it and
 * pods never talk to each other without the host (where the datapath sits).
 *
 *   await createPodLink({ netns, ifname: 'eth0', hostIf: 'lxc1a2b…', hostMac, podMac,
 *                         addresses: [{ address: '10.244.1.2/32', gateway: '10.244.1.1' }],
 *                         routes: [{ dst: '0.0.0.0/0' }] });
 *   await deletePodLink('lxc1a2b…');
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as z from 'zod';
import { run } from '../util/exec.js';
import { CniCode, CniError } from './cni-spec.js';

export interface PodAddress {
  /** CIDR as configured in the pod, e.g. 10.244.1.2/32. */
  address: string;
  gateway?: string;
}

export interface PodRoute {
  dst: string;
  gw?: string;
}

export interface PodLinkSpec {
  netns: string;
  ifname: string;
  hostIf: string;
  hostMac: string;
  podMac: string;
  mtu?: number;
  addresses: PodAddress[];
  routes: PodRoute[];
  /** "containerId/ifname": set as the host link's alias, so `ip link` shows whose veth it is. */
  owner?: string;
}

/** Host-side name, stable for (network, container, ifname): "lxc" + 12 hex digits. */
export function hostInterfaceName(network: string, containerId: string, ifname: string): string {
  return `lxc${createHash('sha256').update(`${network}\0${containerId}\0${ifname}`).digest('hex').slice(0, 12)}`;
}

/** A locally administered unicast MAC derived from `seed`. */
export function macFrom(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  const bytes = [0x02, h[0] ?? 0, h[1] ?? 0, h[2] ?? 0, h[3] ?? 0, h[4] ?? 0];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Host interface name for an ifindex, or undefined. */
export function interfaceByIndex(ifindex: number): string | undefined {
  for (const name of readdirSync('/sys/class/net')) {
    try {
      if (Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim()) === ifindex) return name;
    } catch {
      // the link went away while we looked
    }
  }
  return undefined;
}

function hostPrefix(address: string): string {
  const ip = address.split('/')[0] ?? address;
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}

function linkFailed(what: string, e: unknown): CniError {
  const why = e instanceof Error ? e.message : String(e);
  return new CniError(CniCode.LINK_FAILED, 'MESHD_CNI_LINK_FAILED', `${what}: ${why}`, undefined, { cause: e });
}

/**
 * Creates and configures the pair. On failure everything it made is removed
 * before the error (CniError 102) is thrown.
 */
export async function createPodLink(spec: PodLinkSpec): Promise<void> {
  if (/\s/.test(spec.netns)) {
    throw new CniError(CniCode.INVALID_ENV, 'MESHD_CNI_BAD_ENV', `CNI_NETNS "${spec.netns}" contains whitespace`);
  }
  if (!existsSync(spec.netns)) {
    throw new CniError(CniCode.INVALID_ENV, 'MESHD_CNI_BAD_ENV', `CNI_NETNS "${spec.netns}" does not exist`);
  }
  if (linkExists(spec.hostIf)) {
    throw new CniError(
      CniCode.LINK_FAILED,
      'MESHD_CNI_LINK_EXISTS',
      `host interface ${spec.hostIf} already exists (an earlier ADD for this container and interface was not deleted)`,
    );
  }
  const mtu = spec.mtu === undefined ? [] : ['mtu', String(spec.mtu)];
  const host = [
    ['link', 'add', spec.hostIf, ...mtu, 'address', spec.hostMac, 'type', 'veth', 'peer', 'name', spec.ifname, ...mtu, 'address', spec.podMac, 'netns', spec.netns],
    ['link', 'set', spec.hostIf, 'up'],
    ...(spec.owner ? [['link', 'set', spec.hostIf, 'alias', `meshd-cni:${spec.owner}`]] : []),
    ...spec.addresses.map((a) => ['route', 'add', hostPrefix(a.address), 'dev', spec.hostIf]),
  ];
  const pod: string[][] = [['link', 'set', spec.ifname, 'up']];
  const gateways = new Set<string>();
  for (const a of spec.addresses) {
    // IPv6: the address is unique by IPAM; skipping duplicate address detection
    // makes it usable at once instead of "tentative" for a second or more.
    pod.push(['addr', 'add', hostPrefix(a.address), 'dev', spec.ifname, ...(a.address.includes(':') ? ['nodad'] : [])]);
    if (a.gateway && !gateways.has(a.gateway)) {
      gateways.add(a.gateway);
      pod.push(['route', 'add', a.gateway.includes(':') ? `${a.gateway}/128` : `${a.gateway}/32`, 'dev', spec.ifname, 'scope', 'link']);
      pod.push(['neigh', 'replace', a.gateway, 'lladdr', spec.hostMac, 'dev', spec.ifname, 'nud', 'permanent']);
    }
  }
  for (const r of spec.routes) {
    const v6 = r.dst.includes(':');
    const gw = r.gw ?? spec.addresses.find((a) => a.gateway !== undefined && a.gateway.includes(':') === v6)?.gateway;
    pod.push(['route', 'add', r.dst, ...(gw ? ['via', gw] : []), 'dev', spec.ifname]);
  }
  try {
    await run('ip', ['-batch', '-'], { input: host.map((l) => l.join(' ')).join('\n') + '\n' });
    // Route between pods on the host without turning on forwarding globally.
    writeFileSync(`/proc/sys/net/ipv4/conf/${spec.hostIf}/forwarding`, '1\n');
    await run('nsenter', [`--net=${spec.netns}`, 'ip', '-batch', '-'], { input: pod.map((l) => l.join(' ')).join('\n') + '\n' });
  } catch (e) {
    // Best effort: the wiring error is the one to report; DEL removes a leftover host end later.
    await deletePodLink(spec.hostIf).catch(() => undefined);
    throw linkFailed(`wiring ${spec.ifname} in ${spec.netns} (host side ${spec.hostIf})`, e);
  }
}

/**
 * Removes the pair by deleting its host end (the kernel removes the peer).
 * Returns false when it was already gone; never fails for a missing link.
 */
export async function deletePodLink(hostIf: string): Promise<boolean> {
  if (!linkExists(hostIf)) return false;
  try {
    await run('ip', ['link', 'del', hostIf]);
    return true;
  } catch (e) {
    if (!linkExists(hostIf)) return false; // deleted concurrently (e.g. its namespace went away)
    throw linkFailed(`deleting ${hostIf}`, e);
  }
}

const IpAddrJson = z.array(
  z.looseObject({
    ifname: z.string(),
    address: z.string().optional(),
    link_index: z.number().int().optional(),
    operstate: z.string().optional(),
    addr_info: z.array(z.looseObject({ family: z.string(), local: z.string(), prefixlen: z.number().int() })).default([]),
  }),
);

export interface PodInterfaceState {
  mac: string | undefined;
  /** ifindex of the veth peer in the host namespace, when the link is a veth. */
  peerIndex: number | undefined;
  up: boolean;
  /** Global addresses, CIDR notation. */
  addresses: string[];
}

/** What the pod's interface looks like now, or undefined when it does not exist. */
export async function inspectPodInterface(netns: string, ifname: string): Promise<PodInterfaceState | undefined> {
  if (!existsSync(netns)) return undefined;
  let out: string;
  try {
    out = (await run('nsenter', [`--net=${netns}`, 'ip', '-j', 'addr', 'show', 'dev', ifname])).stdout;
  } catch {
    // ip exits non-zero when the device is absent; a namespace we cannot enter shows no interface either
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(out);
  } catch (e) {
    throw new CniError(CniCode.LINK_FAILED, 'MESHD_CNI_LINK_FAILED', `reading ${ifname} in ${netns}: ip -j printed something that is not JSON`, undefined, { cause: e });
  }
  const parsed = IpAddrJson.safeParse(raw);
  if (!parsed.success || parsed.data.length === 0) return undefined;
  const link = parsed.data[0];
  if (!link) return undefined;
  return {
    mac: link.address,
    peerIndex: link.link_index,
    up: link.operstate === 'UP' || link.operstate === 'UNKNOWN',
    addresses: link.addr_info.filter((a) => !a.local.startsWith('fe80:')).map((a) => `${a.local}/${a.prefixlen}`),
  };
}
