/**
 * One node's datapath for `npm run bench:datapath -- --nodes 2`
 * (bench/datapath-nodes.ts), run inside the node's network namespace: the
 * endpoint programs on the local pod's host veth with a default-deny policy
 * allowing the bench's ports from the other pod, both pods in the ipcache,
 * the config row's tunnel flag as routingMode sets it, and in tunnel mode the
 * tunnel device, its overlay programs and the meshd_tunnel entry for the
 * other node's pod CIDR, in native mode meshd_from_netdev on the node's eth0
 * (as the agent attaches it). Prints "ready", then
 * undoes everything when stdin closes and prints "done".
 *
 *   nsenter --net=/run/netns/<node> node datapath-nodes-peer.js '<json spec>'
 */
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { EndpointManager } from '../src/datapath/endpoint/endpoint-manager.js';
import { attachNetdev, attachOverlay, detachNetdev, detachOverlay } from '../src/datapath/routing/overlay-programs.js';
import { native } from '../native/index.js';
import { ensureTunnelDevice, removeTunnelDevice } from '../src/datapath/routing/tunnel-device.js';
import { TunnelMap } from '../src/datapath/routing/tunnel-map.js';
import type { EndpointPolicy } from '../src/policy/types.js';

const Spec = z.object({
  pinDir: z.string(),
  mode: z.enum(['native', 'tunnel']),
  ifname: z.string(),
  identity: z.number().int(),
  ip: z.string(),
  peer: z.object({ identity: z.number().int(), ip: z.string() }),
  /** Who opens the connections: the client's egress or the server's ingress is default deny. */
  role: z.enum(['client', 'server']),
  ports: z.array(z.number().int()),
  tunnel: z.object({ cidr: z.string(), endpoint: z.string(), port: z.number().int(), mtu: z.number().int() }).optional(),
});

async function main(): Promise<void> {
  const s = Spec.parse(JSON.parse(process.argv[2] ?? ''));
  const dp = await EndpointManager.open({ pinDir: s.pinDir, config: { tunnel: s.mode === 'tunnel' } });
  let map: TunnelMap | null = null;
  try {
    dp.syncIpcache([
      { prefix: `${s.ip}/32`, identity: s.identity },
      { prefix: `${s.peer.ip}/32`, identity: s.peer.identity },
    ]);
    await dp.addEndpoint({ endpointId: 'bench/pod', ifname: s.ifname, identity: s.identity });
    const allow = { defaultDeny: true, entries: s.ports.map((p) => ({ remoteIdentity: s.peer.identity, protocol: 6 as const, port: p, endPort: p, verdict: 'ALLOW' as const, derivedFrom: ['bench'] })) };
    const open = { defaultDeny: false, entries: [] };
    const policy: EndpointPolicy = { endpointId: 'bench/pod', identity: s.identity, ingress: s.role === 'server' ? allow : open, egress: s.role === 'client' ? allow : open, revision: 1 };
    dp.updatePolicy(policy);
    if (s.tunnel) {
      const dev = await ensureTunnelDevice({ protocol: 'vxlan', port: s.tunnel.port, mtu: s.tunnel.mtu });
      (await attachOverlay(s.pinDir, dev.ifindex)).close();
      map = TunnelMap.open(s.pinDir);
      map.sync([{ cidr: s.tunnel.cidr, endpoint: s.tunnel.endpoint }], dev.ifindex);
    } else {
      // As the agent does in native mode: L7 ingress from other nodes on the device that reaches them.
      await attachNetdev(s.pinDir, [native.ifNameToIndex('eth0')]);
    }
    process.stdout.write('ready\n');
    await new Promise<void>((r) => createInterface({ input: process.stdin }).on('close', r));
  } finally {
    map?.close();
    dp.removeEndpoint('bench/pod');
    dp.close();
    detachOverlay(s.pinDir);
    detachNetdev(s.pinDir);
    EndpointManager.destroyPins(s.pinDir);
    if (s.tunnel) await removeTunnelDevice();
    process.stdout.write('done\n');
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`datapath-nodes-peer: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
