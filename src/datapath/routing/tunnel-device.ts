/**
 * The node's collect-metadata tunnel device (tunnel mode): one device for
 * every other node, the outer destination and the VNI set per packet by the
 * datapath (bpf_skb_set_tunnel_key), as Cilium's cilium_vxlan.
 *
 * The device has ARP off: the kernel's own packets routed to it (host to a
 * pod of another node) need no neighbour; the receiving overlay program
 * accepts the inner frame whatever its destination MAC. Forwarding is on for
 * it alone, and reverse-path filtering off (the inner source is a pod of
 * another node, routed back through the same device).
 *
 *   await probeTunnelProtocol('geneve');                 // false on kernels without the driver
 *   const dev = await ensureTunnelDevice({ protocol: 'vxlan', port: 8472, mtu: 1450 });
 *   await removeTunnelDevice();
 */
import { writeFileSync } from 'node:fs';
import { z } from 'zod';
import { run, succeeds } from '../../util/exec.js';
import { RoutingError } from './errors.js';

export type TunnelProtocol = 'vxlan' | 'geneve';

export const TUNNEL_DEVICE = 'meshd_tunnel';

/** Outer IPv4 (20) + UDP (8) + VXLAN or option-less Geneve header (8) + the inner Ethernet header (14). */
export const TUNNEL_OVERHEAD = 50;

const LinkDetails = z.array(
  z.object({
    ifindex: z.number().int(),
    mtu: z.number().int(),
    linkinfo: z
      .object({
        info_kind: z.string().optional(),
        info_data: z.object({ port: z.number().optional(), external: z.boolean().optional(), collect_metadata: z.boolean().optional() }).passthrough().optional(),
      })
      .optional(),
  }),
);

/** Whether the kernel can make a collect-metadata device of this protocol: tried in a throwaway network namespace. */
export function probeTunnelProtocol(protocol: TunnelProtocol): Promise<boolean> {
  return succeeds('unshare', ['--net', 'ip', 'link', 'add', 'meshd_probe', 'type', protocol, 'dstport', '1', 'external']);
}

async function details(name: string): Promise<z.infer<typeof LinkDetails>[number] | undefined> {
  let out: string;
  try {
    out = (await run('ip', ['-d', '-j', 'link', 'show', 'dev', name])).stdout;
  } catch {
    return undefined; // no such device
  }
  return LinkDetails.parse(JSON.parse(out))[0];
}

export interface TunnelDevice {
  name: string;
  ifindex: number;
  mtu: number;
}

/** Creates the device, or keeps the one there when it is what is asked (same protocol, port, collect-metadata). */
export async function ensureTunnelDevice(o: { protocol: TunnelProtocol; port: number; mtu: number }): Promise<TunnelDevice> {
  if (!(await probeTunnelProtocol(o.protocol))) {
    throw new RoutingError('MESHD_ROUTING_TUNNEL_UNSUPPORTED', `tunnelProtocol=${o.protocol}: this kernel cannot create a collect-metadata ${o.protocol} device; use tunnelProtocol=vxlan or routingMode=native`, {}, 'tunnelProtocol');
  }
  try {
    const have = await details(TUNNEL_DEVICE);
    const info = have?.linkinfo;
    const same = info?.info_kind === o.protocol && info.info_data?.port === o.port && (info.info_data.external === true || info.info_data.collect_metadata === true);
    if (have && !same) await run('ip', ['link', 'del', TUNNEL_DEVICE]);
    if (!have || !same) await run('ip', ['link', 'add', TUNNEL_DEVICE, 'type', o.protocol, 'dstport', String(o.port), 'external']);
    await run('ip', ['link', 'set', TUNNEL_DEVICE, 'arp', 'off', 'mtu', String(o.mtu), 'up']);
    for (const [key, value] of [['forwarding', '1'], ['rp_filter', '0']] as const) writeFileSync(`/proc/sys/net/ipv4/conf/${TUNNEL_DEVICE}/${key}`, `${value}\n`);
    const now = await details(TUNNEL_DEVICE);
    if (!now) throw new Error(`${TUNNEL_DEVICE} vanished after it was created`);
    return { name: TUNNEL_DEVICE, ifindex: now.ifindex, mtu: now.mtu };
  } catch (e) {
    throw new RoutingError('MESHD_ROUTING_DEVICE_FAILED', `tunnel device ${TUNNEL_DEVICE} (${o.protocol}, port ${o.port}) not set up: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** Removes the device (native mode after tunnel mode); absent is fine. */
export async function removeTunnelDevice(): Promise<void> {
  if (await details(TUNNEL_DEVICE)) await run('ip', ['link', 'del', TUNNEL_DEVICE]);
}
