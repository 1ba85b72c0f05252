/**
 * Routing between nodes (docs/routing.md), composed from its parts:
 *
 *   remote-nodes (MeshdNode watch) ─► tunnel-map   (meshd_tunnel: pod CIDR → node, tunnel mode)
 *                                  └► node-routes  (kernel routes to the pod CIDRs)
 *   tunnel-device + overlay-programs: the collect-metadata device and its programs (tunnel mode)
 *   mtu: the pods' MTU for the CNI configuration
 *
 * routingMode=tunnel: the device is created (tunnelProtocol probed first:
 * MESHD_ROUTING_TUNNEL_UNSUPPORTED stops the agent, naming the key), every
 * other node's pod CIDRs go into meshd_tunnel and get a route through the
 * device. routingMode=native: no device (one left from tunnel mode goes),
 * meshd_tunnel empty, and with autoDirectNodeRoutes a route to each other
 * node's pod CIDRs via its address.
 *
 * Node changes are applied one at a time, the latest set winning; a failed
 * apply is logged and leaves what was in place. Stopping leaves the device,
 * the map and the routes: the kernel keeps forwarding while the agent is away.
 *
 *   const r = await Routing.start({ config, pinDir, nodes, log });
 *   r.podMtu;  r.status();  await r.stop();
 */
import { native, type BpfObjectHandle } from '../../../native/index.js';
import type { Logger } from '../../util/log.js';
import { podMtu } from './mtu.js';
import { devicesTowards, syncNodeRoutes, type NodeRoute } from './node-routes.js';
import { attachNetdev, attachOverlay, detachNetdev, detachOverlay } from './overlay-programs.js';
import type { RemoteNode, RemoteNodes } from './remote-nodes.js';
import { ensureTunnelDevice, removeTunnelDevice, type TunnelDevice, type TunnelProtocol } from './tunnel-device.js';
import { TunnelMap } from './tunnel-map.js';

export interface RoutingConfig {
  routingMode: 'native' | 'tunnel';
  tunnelProtocol: TunnelProtocol;
  tunnelPort: number;
  autoDirectNodeRoutes: boolean;
  MTU: number;
}

export interface RoutingOptions {
  config: RoutingConfig;
  /** The endpoint datapath's pin directory (meshd_tunnel is pinned there by lxc.o). */
  pinDir: string;
  /** Other nodes (Kubernetes mode); none in standalone mode. */
  nodes?: RemoteNodes | null;
  log?: Logger;
}

export interface RoutingStatus {
  mode: 'native' | 'tunnel';
  device: TunnelDevice | null;
  podMtu: number;
  nodes: RemoteNode[];
  lastError: string | null;
}

export class Routing {
  private nodes: RemoteNode[] = [];
  private chain: Promise<void> = Promise.resolve();
  private lastError: string | null = null;
  private stopped = false;
  /** Native mode: the devices meshd_from_netdev is on (by ifindex, sorted, joined). */
  private netdevs = '-';

  private constructor(
    private readonly o: RoutingOptions,
    private readonly map: TunnelMap,
    private readonly device: TunnelDevice | null,
    private readonly overlay: BpfObjectHandle | null,
    readonly podMtu: number,
  ) {}

  static async start(o: RoutingOptions): Promise<Routing> {
    const c = o.config;
    const mtu = await podMtu({ mode: c.routingMode, configured: c.MTU });
    let device: TunnelDevice | null = null;
    let overlay: BpfObjectHandle | null = null;
    if (c.routingMode === 'tunnel') {
      device = await ensureTunnelDevice({ protocol: c.tunnelProtocol, port: c.tunnelPort, mtu });
      overlay = await attachOverlay(o.pinDir, device.ifindex);
      detachNetdev(o.pinDir);
    } else {
      detachOverlay(o.pinDir);
      await removeTunnelDevice();
    }
    const map = TunnelMap.open(o.pinDir);
    const r = new Routing(o, map, device, overlay, mtu);
    o.log?.info('routing', { mode: c.routingMode, ...(device ? { device: device.name, protocol: c.tunnelProtocol, port: c.tunnelPort } : { autoDirectNodeRoutes: c.autoDirectNodeRoutes }), podMtu: mtu });
    // Nothing known yet: what the last run left stays until the first list of nodes says otherwise.
    if (o.nodes) o.nodes.start((nodes) => r.apply(nodes));
    else r.apply([]);
    return r;
  }

  /** Routing's desired state for this set of nodes. */
  private desired(nodes: readonly RemoteNode[]): { tunnel: Array<{ cidr: string; endpoint: string }>; routes: NodeRoute[] } {
    const c = this.o.config;
    const pairs = nodes.flatMap((n) => n.podCIDRs.map((cidr) => ({ cidr, endpoint: n.ip })));
    if (this.device) return { tunnel: pairs, routes: pairs.map((p) => ({ dst: p.cidr, dev: this.device?.name ?? '' })) };
    return { tunnel: [], routes: c.autoDirectNodeRoutes ? pairs.map((p) => ({ dst: p.cidr, via: p.endpoint })) : [] };
  }

  /** Applies a set of nodes after the ones queued before it. */
  apply(nodes: readonly RemoteNode[]): Promise<void> {
    this.nodes = [...nodes];
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      const want = this.desired(this.nodes);
      try {
        // The map before the routes: a pod's packet is steered by the map, the node's own by the route.
        const m = this.map.sync(want.tunnel, this.device?.ifindex ?? 0);
        const rt = await syncNodeRoutes(want.routes);
        if (!this.device) await this.netdevPrograms();
        this.lastError = null;
        if (m.puts + m.deletes + rt.replaced + rt.deleted > 0) this.o.log?.info('routes to other nodes updated', { nodes: this.nodes.map((n) => n.name), tunnel: m, routes: rt });
      } catch (e) {
        this.lastError = e instanceof Error ? e.message : String(e);
        this.o.log?.error('routes to other nodes not updated; the previous ones stay', { err: e });
      }
    });
    return this.chain;
  }

  /**
   * Native mode: meshd_from_netdev (L7 ingress for connections from other
   * nodes) on the devices that reach them, re-attached only when that set changes.
   */
  private async netdevPrograms(): Promise<void> {
    const ifindexes = (await devicesTowards(this.nodes.map((n) => n.ip))).map((d) => native.ifNameToIndex(d)).sort((a, b) => a - b);
    const key = ifindexes.join(',');
    if (key === this.netdevs) return;
    if (ifindexes.length === 0) detachNetdev(this.o.pinDir);
    else await attachNetdev(this.o.pinDir, ifindexes);
    this.netdevs = key;
  }

  /** The MTU meshd-cni gives pod interfaces, or undefined to leave it to the veth default (native mode, MTU=0). */
  get cniMtu(): number | undefined {
    return this.device || this.o.config.MTU > 0 ? this.podMtu : undefined;
  }

  /** Resolves once every apply asked for so far has run. */
  settled(): Promise<void> {
    return this.chain;
  }

  status(): RoutingStatus {
    return { mode: this.o.config.routingMode, device: this.device, podMtu: this.podMtu, nodes: this.nodes, lastError: this.lastError };
  }

  /** Stops watching; device, map, routes and links stay. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.o.nodes?.stop();
    await this.chain;
    this.map.close();
    this.overlay?.close();
  }
}

