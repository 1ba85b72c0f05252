/**
 * Service load balancing for clients outside the node: bpf/nodeport.c on the
 * node's native devices (tc ingress and egress, tcx links pinned at
 * <pinDir>/links/np_<ifindex>_<ingress|egress>), reading the socket LB's
 * service maps by pin. Load it after the endpoint datapath and the socket
 * LB: their pinned maps are shared and adopted at the size they have.
 *
 *   const np = await NodePortDatapath.open({ pinDir, devices });   // attaches; adopts links a previous agent pinned
 *   np.status();      // { enabled: true, mode: 'snat', devices: [...], counters }
 *   np.close();       // the programs stay attached (pins), as the endpoint datapath's
 *   np.detach();      // unpins the links: the devices are left alone again
 *
 * A device that left the list since the last start is detached at open.
 * Blocking except the verifier (await).
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import { join } from 'node:path';
import { adoptPinnedSizes, attachPinnedTcx } from '../device-programs.js';
import { native, openObject, u32, type BpfObjectHandle } from '../../../native/index.js';
import { bpfObjectPath } from '../../util/paths.js';
import { assertPinnedMapsMatch } from '../pinned-maps.js';
import { perCpuCounters } from '../per-cpu.js';
import { NodePortError, type NativeDevice } from './devices.js';
import { NpDev, NpMapName, NpProgram, NpStat } from './maps.js';

type Direction = 'ingress' | 'egress';
const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
const LINK_PREFIX = 'np_';

export interface NodePortOptions {
  /** bpffs directory of the datapath (maps by name, links/). */
  pinDir: string;
  devices: readonly NativeDevice[];
  /** Object to load (default bpf/build/nodeport.o). */
  objectPath?: string;
}

export interface NodePortStatus {
  enabled: true;
  /** Cilium's loadBalancer.mode: remote backends see the node's address. */
  mode: 'snat';
  devices: Array<{ name: string; ifindex: number; addresses: string[] }>;
  counters: Record<keyof typeof NpStat, number>;
}

export function nodePortLinkPin(pinDir: string, ifindex: number, dir: Direction): string {
  return join(pinDir, 'links', `${LINK_PREFIX}${ifindex}_${dir}`);
}


/** Unpins (so detaches) the nodeport links of every device, or of those not in `keep`. */
export function detachNodePort(pinDir: string, keep: ReadonlySet<number> = new Set()): number {
  const dir = join(pinDir, 'links');
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const f of readdirSync(dir)) {
    const m = /^np_(\d+)_(ingress|egress)$/.exec(f);
    if (!m || keep.has(Number(m[1]))) continue;
    if (native.objUnpin(join(dir, f))) n += 1;
  }
  return n;
}

export class NodePortDatapath {
  private constructor(
    private readonly obj: BpfObjectHandle,
    private readonly pinDir: string,
    readonly devices: readonly NativeDevice[],
  ) {}

  static async open(o: NodePortOptions): Promise<NodePortDatapath> {
    mkdirSync(join(o.pinDir, 'links'), { recursive: true });
    const obj = openObject(o.objectPath ?? bpfObjectPath('nodeport'), { pinRoot: o.pinDir });
    try {
      adoptPinnedSizes(obj);
      assertPinnedMapsMatch(obj, 'MESHD_NODEPORT_PINNED_MAP_MISMATCH', `remove the meshd_np_* pins under ${o.pinDir} to start without the old state`);
      await obj.load();
      const np = new NodePortDatapath(obj, o.pinDir, o.devices);
      np.writeDevices();
      np.attach();
      return np;
    } catch (e) {
      obj.close();
      if (e instanceof Error && 'errno' in e) throw new NodePortError('MESHD_NODEPORT_ATTACH_FAILED', `nodePort: loading or attaching bpf/nodeport.o failed: ${e.message}`, { cause: e });
      throw e;
    }
  }

  /** meshd_np_dev holds exactly the devices (their SNAT address). */
  private writeDevices(): void {
    const fd = this.obj.mapFd(NpMapName.dev);
    const want = new Map(this.devices.map((d) => [d.ifindex, d]));
    for (let k = native.mapGetNextKey(fd, null); k; ) {
      const next = native.mapGetNextKey(fd, k);
      if (!want.has(k.readUInt32LE(0))) native.mapDelete(fd, k);
      k = next;
    }
    for (const d of this.devices) {
      const first = d.ipv4[0];
      const ipv4 = first === undefined ? 0 : first.split('.').reduce((n, o) => n * 256 + Number(o), 0);
      const v6 = d.ipv6[0];
      const ipv6 = v6 === undefined ? Buffer.alloc(16) : Buffer.from(ipaddr.IPv6.parse(v6).toByteArray());
      native.mapUpdate(fd, u32(d.ifindex), NpDev.encode({ ipv4, flags: 0, ipv6 }));
    }
  }

  private attach(): void {
    const progs = { ingress: this.obj.programFd(NpProgram.ingress), egress: this.obj.programFd(NpProgram.egress) };
    detachNodePort(this.pinDir, new Set(this.devices.map((d) => d.ifindex)));
    for (const d of this.devices) for (const dir of DIRECTIONS) attachPinnedTcx(nodePortLinkPin(this.pinDir, d.ifindex, dir), progs[dir], d.ifindex, dir);
  }

  /** Every address of the devices: where NodePort frontends listen. */
  nodeIPs(): string[] {
    return this.devices.flatMap((d) => [...d.ipv4, ...d.ipv6]);
  }

  status(): NodePortStatus {
    const read = perCpuCounters(this.obj.mapFd(NpMapName.stats));
    const counters = Object.fromEntries(Object.entries(NpStat).map(([k, slot]) => [k, Number(read(slot))])) as Record<keyof typeof NpStat, number>;
    return { enabled: true, mode: 'snat', devices: this.devices.map((d) => ({ name: d.name, ifindex: d.ifindex, addresses: [...d.ipv4, ...d.ipv6] })), counters };
  }

  /** Unpins every nodeport link: the devices carry no meshd program any more. Maps stay pinned. */
  detach(): void {
    detachNodePort(this.pinDir);
  }

  /** Idempotent; the links stay pinned and attached. */
  close(): void {
    this.obj.close();
  }
}
