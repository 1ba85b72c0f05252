/**
 * Loads bpf/sock.o (socket-level service LB) and attaches its programs to a
 * cgroup v2 directory with pinned BPF links.
 *
 * Pins are what make an agent restart harmless: maps live at
 * <pinDir>/<map name> and libbpf reuses them on the next load (services,
 * backends, affinity and per-socket reverse translations survive); links live
 * at <pinDir>/links/<program> and are updated in place to the newly loaded
 * program (bpf_link_update), so there is no moment without a program on the
 * hook.
 *
 *   const lb = await SockLb.load({ pinDir: '/sys/fs/bpf/meshd', cgroupPath: '/sys/fs/cgroup', hostNamespaceOnly: false });
 *   lb.maps.svc.update(key, value);
 *   lb.close();                  // programs stay attached through their pins
 *   lb.detach();                 // ... unless detached: unpins and detaches
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AttachType, BpfMap, native, openObject, u32, u64, type BpfObjectHandle } from '../../../native/index.js';
import { bpfObjectPath } from '../../util/paths.js';
import { perCpuCounters } from '../per-cpu.js';
import { assertPinnedMapsMatch } from '../pinned-maps.js';
import { LbMapName, LbStat } from './lb-maps.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/meshd';

/** Programs of sock.o and the hook each is attached to. */
export const SOCK_PROGRAMS = [
  ['meshd_connect4', AttachType.CgroupInet4Connect],
  ['meshd_sendmsg4', AttachType.CgroupUdp4Sendmsg],
  ['meshd_recvmsg4', AttachType.CgroupUdp4Recvmsg],
  ['meshd_getpeer4', AttachType.CgroupInet4Getpeername],
  ['meshd_connect6', AttachType.CgroupInet6Connect],
  ['meshd_sendmsg6', AttachType.CgroupUdp6Sendmsg],
  ['meshd_recvmsg6', AttachType.CgroupUdp6Recvmsg],
  ['meshd_getpeer6', AttachType.CgroupInet6Getpeername],
  ['meshd_sock_rel', AttachType.CgroupInetSockRelease],
] as const;

export interface SockLbOptions {
  pinDir: string;
  /** cgroup v2 directory whose processes' sockets are balanced (the root for a node). */
  cgroupPath: string;
  /** socketLB.hostNamespaceOnly: translate only sockets of the host network namespace. */
  hostNamespaceOnly: boolean;
  /** The host namespace's cookie; defaults to this process's namespace. */
  hostNetnsCookie?: bigint;
  /** Attach to the cgroup (default true); false loads and pins maps only. */
  attach?: boolean;
  /**
   * bpf.lbMapMax: entries of the service map (service entries plus backend
   * slots) and of the backend map. Pinned maps are reused only with the size
   * they were created with. Default 65536.
   */
  lbMapMax?: number;
}

export interface SockLbMaps {
  svc: BpfMap;
  backends: BpfMap;
  revnat: BpfMap;
  affinity: BpfMap;
  affmatch: BpfMap;
  maglev: BpfMap;
  stats: BpfMap;
}

export type SockLbStats = Record<keyof typeof LbStat, bigint>;

export class SockLb {
  private closed = false;

  private constructor(
    private readonly obj: BpfObjectHandle,
    readonly maps: SockLbMaps,
    readonly opts: SockLbOptions,
    /** The service map was already pinned: this load reused existing state. */
    readonly reused: boolean,
    readonly linkPins: string[],
  ) {}

  static async load(opts: SockLbOptions): Promise<SockLb> {
    mkdirSync(opts.pinDir, { recursive: true });
    const reused = existsSync(join(opts.pinDir, LbMapName.svc));
    const obj = openObject(bpfObjectPath('sock'), { pinRoot: opts.pinDir });
    try {
      obj.setGlobal('host_netns_cookie', u64(opts.hostNetnsCookie ?? native.netnsCookie()));
      obj.setGlobal('host_ns_only', u32(opts.hostNamespaceOnly ? 1 : 0));
      if (opts.lbMapMax !== undefined) {
        obj.setMaxEntries(LbMapName.svc, opts.lbMapMax);
        obj.setMaxEntries(LbMapName.backends, opts.lbMapMax);
      }
      assertPinnedMapsMatch(obj, 'MESHD_LB_PINNED_MAP_MISMATCH', `was bpf.lbMapMax changed? remove the meshd_lb_* pins under ${opts.pinDir} to start without the old state`);
      await obj.load();
      const m = (name: string) => BpfMap.fromObject(obj, name);
      const maps: SockLbMaps = {
        svc: m(LbMapName.svc),
        backends: m(LbMapName.backends),
        revnat: m(LbMapName.revnat),
        affinity: m(LbMapName.affinity),
        affmatch: m(LbMapName.affmatch),
        maglev: m(LbMapName.maglev),
        stats: m(LbMapName.stats),
      };
      const pins = opts.attach === false ? [] : attachAll(obj, opts);
      return new SockLb(obj, maps, opts, reused, pins);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /** Datapath counters summed over CPUs. */
  stats(): SockLbStats {
    const read = perCpuCounters(this.maps.stats.fd);
    return {
      Xlated: read(LbStat.Xlated),
      Refused: read(LbStat.Refused),
      SkippedNetns: read(LbStat.SkippedNetns),
      Affinity: read(LbStat.Affinity),
      Revnat: read(LbStat.Revnat),
    };
  }

  /** Detaches every program and removes the link pins (socket LB off). Maps stay pinned. */
  detach(): void {
    for (const p of this.linkPins) {
      if (!existsSync(p)) continue;
      const fd = native.objGet(p);
      try {
        native.linkDetach(fd);
      } finally {
        native.closeFd(fd);
      }
      native.objUnpin(p);
    }
  }

  /** Releases this process's handles; pinned links keep the programs attached. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.obj.close();
  }
}

function attachAll(obj: BpfObjectHandle, opts: SockLbOptions): string[] {
  const dir = join(opts.pinDir, 'links');
  mkdirSync(dir, { recursive: true });
  const cgroupId = statSync(opts.cgroupPath, { bigint: true }).ino; // cgroup v2: the id is the directory's inode
  const pins: string[] = [];
  for (const [prog, type] of SOCK_PROGRAMS) {
    const pin = join(dir, prog);
    const progFd = obj.programFd(prog);
    if (existsSync(pin)) {
      const fd = native.objGet(pin);
      try {
        const info = native.linkInfo(fd);
        if (info.cgroupId === cgroupId && info.attachType === type) {
          native.linkUpdate(fd, progFd); // atomic swap to this build's program
          pins.push(pin);
          continue;
        }
        native.linkDetach(fd); // attached somewhere else: move it
      } finally {
        native.closeFd(fd);
      }
      native.objUnpin(pin);
    }
    const link = native.attachCgroup(progFd, opts.cgroupPath, type);
    try {
      native.objPin(link, pin);
    } finally {
      native.closeFd(link);
    }
    pins.push(pin);
  }
  return pins;
}
