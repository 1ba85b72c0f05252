/**
 * The host firewall: bpf/host.c on the node's native devices (tc ingress and
 * egress, tcx links pinned at <pinDir>/links/hostfw_<ifindex>_<ingress|egress>),
 * judging the host's own traffic with the host endpoint's policy. host.o
 * shares the endpoint datapath's maps by pin (endpoint table, policy maps,
 * ipcache, conntrack, events, counters): open it after the EndpointManager,
 * which writes the host endpoint's row and policy like a pod's (see
 * host-endpoint.ts). policyAuditMode is the endpoint datapath's config flag
 * (bpf/lib/audit.h), the same for pods and the host.
 *
 *   const fw = await HostFirewall.open({ pinDir, devices, auditMode: false });  // attaches; adopts pinned links
 *   fw.status();             // { enabled: true, auditMode, devices }
 *   fw.close();              // the programs stay attached (pins), as the endpoint datapath's
 *   detachHostFirewall(pinDir);  // unpins the links: the devices are left alone again
 *
 * Ordering on a device: tcx runs a device's programs in attach order and
 * stops at the first that does not answer "next"; host.c answers "next" for
 * what it passes, bpf/nodeport.c does not. So the host firewall must come
 * first: on a device where the nodeport program is attached and the host
 * firewall is not yet, open() unpins the nodeport links of that device, to
 * be attached again behind it by the nodeport datapath's open() (the agent
 * opens the host firewall first). Blocking except the verifier (await).
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { native, openObject, type BpfObjectHandle } from '../../../native/index.js';
import { MeshdError } from '../../util/errors.js';
import { bpfObjectPath } from '../../util/paths.js';
import type { NativeDevice } from '../nodeport/devices.js';
import { adoptPinnedSizes, attachPinnedTcx } from '../device-programs.js';
import { assertPinnedMapsMatch } from '../pinned-maps.js';
import { HostProgram } from './maps.js';

type Direction = 'ingress' | 'egress';
const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
const LINK_RE = /^hostfw_(\d+)_(ingress|egress)$/;
const NODEPORT_LINK_RE = /^np_(\d+)_(ingress|egress)$/;

export type HostFirewallErrorCode = 'MESHD_HOSTFW_NO_DEVICE' | 'MESHD_HOSTFW_ATTACH_FAILED' | 'MESHD_HOSTFW_PINNED_MAP_MISMATCH';

export class HostFirewallError extends MeshdError {
  declare readonly code: HostFirewallErrorCode;

  constructor(code: HostFirewallErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { kind: code === 'MESHD_HOSTFW_NO_DEVICE' ? 'invalid' : 'failed', cause: opts.cause });
  }
}

export interface HostFirewallOptions {
  /** bpffs directory of the datapath (maps by name, links/). */
  pinDir: string;
  devices: readonly NativeDevice[];
  /** policyAuditMode, as the endpoint datapath's config holds it (shown in status()). */
  auditMode: boolean;
  /** Object to load (default bpf/build/host.o). */
  objectPath?: string;
}

export interface HostFirewallStatus {
  enabled: true;
  auditMode: boolean;
  devices: Array<{ name: string; ifindex: number; addresses: string[] }>;
}

export function hostFirewallLinkPin(pinDir: string, ifindex: number, dir: Direction): string {
  return join(pinDir, 'links', `hostfw_${ifindex}_${dir}`);
}

/** Pinned link files under <pinDir>/links matching `re`, with their ifindex. */
function linkPins(pinDir: string, re: RegExp): Array<{ path: string; ifindex: number }> {
  const dir = join(pinDir, 'links');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((f) => {
    const m = re.exec(f);
    return m ? [{ path: join(dir, f), ifindex: Number(m[1]) }] : [];
  });
}

/** Unpins (so detaches) the host firewall's links of every device, or of those not in `keep`; returns how many. */
export function detachHostFirewall(pinDir: string, keep: ReadonlySet<number> = new Set()): number {
  let n = 0;
  for (const l of linkPins(pinDir, LINK_RE)) if (!keep.has(l.ifindex) && native.objUnpin(l.path)) n += 1;
  return n;
}

export class HostFirewall {
  private constructor(
    private readonly obj: BpfObjectHandle,
    private readonly pinDir: string,
    readonly devices: readonly NativeDevice[],
    private readonly auditMode: boolean,
  ) {}

  static async open(o: HostFirewallOptions): Promise<HostFirewall> {
    if (o.devices.length === 0) {
      throw new HostFirewallError('MESHD_HOSTFW_NO_DEVICE', 'hostFirewall.enabled: no native device to enforce on (name them in devices, or give the node a default route)');
    }
    mkdirSync(join(o.pinDir, 'links'), { recursive: true });
    const obj = openObject(o.objectPath ?? bpfObjectPath('host'), { pinRoot: o.pinDir });
    try {
      adoptPinnedSizes(obj);
      assertPinnedMapsMatch(obj, 'MESHD_HOSTFW_PINNED_MAP_MISMATCH', `the endpoint datapath's pins under ${o.pinDir} differ from host.o's maps: rebuild bpf/ and restart`);
      await obj.load();
      const fw = new HostFirewall(obj, o.pinDir, o.devices, o.auditMode);
      fw.attach();
      return fw;
    } catch (e) {
      obj.close();
      if (e instanceof Error && 'errno' in e) throw new HostFirewallError('MESHD_HOSTFW_ATTACH_FAILED', `hostFirewall: loading or attaching bpf/host.o failed: ${e.message}`, { cause: e });
      throw e;
    }
  }

  private attach(): void {
    const mine = new Set(this.devices.map((d) => d.ifindex));
    detachHostFirewall(this.pinDir, mine);
    const progs = { ingress: this.obj.programFd(HostProgram.ingress), egress: this.obj.programFd(HostProgram.egress) };
    const fresh = new Set(this.devices.filter((d) => DIRECTIONS.some((dir) => !existsSync(hostFirewallLinkPin(this.pinDir, d.ifindex, dir)))).map((d) => d.ifindex));
    // The host firewall must run before the nodeport program (see the header): behind it, it would never run.
    for (const l of linkPins(this.pinDir, NODEPORT_LINK_RE)) if (fresh.has(l.ifindex)) native.objUnpin(l.path);
    for (const d of this.devices) for (const dir of DIRECTIONS) attachPinnedTcx(hostFirewallLinkPin(this.pinDir, d.ifindex, dir), progs[dir], d.ifindex, dir);
  }

  status(): HostFirewallStatus {
    return { enabled: true, auditMode: this.auditMode, devices: this.devices.map((d) => ({ name: d.name, ifindex: d.ifindex, addresses: [...d.ipv4, ...d.ipv6] })) };
  }

  /** Unpins every host firewall link: the devices carry no host firewall any more. Maps stay pinned. */
  detach(): void {
    detachHostFirewall(this.pinDir);
  }

  /** Idempotent; the links stay pinned and attached. */
  close(): void {
    this.obj.close();
  }
}
