/**
 * The node's native devices (Cilium's `devices`): the interfaces on which
 * clients outside the node reach NodePort, external-IP and load-balancer
 * frontends. Named in the configuration (`devices: [eth0, eth1]`, or
 * "eth0,eth1"), or detected: every interface that carries a default route
 * (IPv4 or IPv6), plus every interface carrying one of `nodeAddresses`.
 *
 *   const devs = await resolveDevices({ names: cfg.devices, nodeAddresses: [] });
 *   // [{ name: 'eth0', ifindex: 2, ipv4: ['192.0.2.10'], ipv6: [] }]
 *
 * Addresses are the interfaces' global ones (scope universe), read through
 * netlink; host-scoped addresses (L2 announcements) are never node addresses.
 */
import { z } from 'zod';
import { AddressScope, dumpAddresses, native, type HostAddress } from '../../../native/index.js';
import { run } from '../../util/exec.js';
import { MeshdError } from '../../util/errors.js';

export interface NativeDevice {
  name: string;
  ifindex: number;
  /** Global IPv4 addresses, the first is the SNAT source. */
  ipv4: string[];
  ipv6: string[];
}

export type NodePortErrorCode = 'MESHD_NODEPORT_DEVICE_NOT_FOUND' | 'MESHD_NODEPORT_ATTACH_FAILED';

export class NodePortError extends MeshdError {
  declare readonly code: NodePortErrorCode;

  constructor(code: NodePortErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { kind: code === 'MESHD_NODEPORT_ATTACH_FAILED' ? 'failed' : code === 'MESHD_NODEPORT_DEVICE_NOT_FOUND' ? 'not-found' : 'invalid', cause: opts.cause });
  }
}

const RouteList = z.array(z.object({ dev: z.string().optional() }).loose());

/** Interfaces carrying a default route, in this network namespace. */
export async function defaultRouteDevices(): Promise<string[]> {
  const names = new Set<string>();
  for (const family of ['-4', '-6']) {
    const out = await run('ip', [family, '-j', 'route', 'show', 'default']).catch(() => ({ stdout: '[]' }));
    const parsed = RouteList.safeParse(JSON.parse(out.stdout === '' ? '[]' : out.stdout));
    if (parsed.success) for (const r of parsed.data) if (r.dev !== undefined) names.add(r.dev);
  }
  return [...names].sort();
}

function ifindexOf(name: string): number | null {
  try {
    return native.ifNameToIndex(name);
  } catch {
    return null;
  }
}

function describe(name: string, ifindex: number, addrs: readonly HostAddress[]): NativeDevice {
  const mine = addrs.filter((a) => a.ifindex === ifindex && a.scope === AddressScope.universe);
  return { name, ifindex, ipv4: mine.filter((a) => a.family === 4).map((a) => a.address), ipv6: mine.filter((a) => a.family === 6).map((a) => a.address) };
}

export interface ResolveDevicesOptions {
  /** The `devices` configuration key; undefined or empty: detect. */
  names?: readonly string[];
  /** Node addresses (e.g. the Node object's InternalIP): their interfaces are native devices too when detecting. */
  nodeAddresses?: readonly string[];
}

/**
 * The native devices with their addresses. Named devices must exist
 * (MESHD_NODEPORT_DEVICE_NOT_FOUND names the missing one); detection may
 * find none (a node without a default route): an empty list.
 */
export async function resolveDevices(o: ResolveDevicesOptions = {}): Promise<NativeDevice[]> {
  const addrs = dumpAddresses();
  if (o.names && o.names.length > 0) {
    return o.names.map((name) => {
      const ifindex = ifindexOf(name);
      if (ifindex === null) throw new NodePortError('MESHD_NODEPORT_DEVICE_NOT_FOUND', `devices: interface "${name}" does not exist on this node`);
      return describe(name, ifindex, addrs);
    });
  }
  const names = new Set(await defaultRouteDevices());
  const wanted = new Set(o.nodeAddresses ?? []);
  const byIndex = new Map<number, string>();
  for (const name of names) {
    const i = ifindexOf(name);
    if (i !== null) byIndex.set(i, name);
  }
  const links = z.array(z.object({ ifindex: z.number(), ifname: z.string() }).loose());
  if (wanted.size > 0) {
    const all = links.parse(JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout));
    for (const a of addrs) {
      if (!wanted.has(a.address)) continue;
      const l = all.find((x) => x.ifindex === a.ifindex);
      if (l) byIndex.set(l.ifindex, l.ifname);
    }
  }
  return [...byIndex].sort(([a], [b]) => a - b).map(([ifindex, name]) => describe(name, ifindex, addrs));
}
