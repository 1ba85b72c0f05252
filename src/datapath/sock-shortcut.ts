/**
 * The sockops + sk_msg short-circuit (bpf/sockops.c) between TCP sockets of
 * this node, behind `sockmapShortcut` in the datapath config (off by default).
 *
 *   const sc = await SockShortcut.attach({ pinDir, cgroupPath: '/sys/fs/cgroup/unified' });
 *   manager.setConfig({ sockmapShortcut: true });   // the programs read the flag from meshd_config
 *   sc.stats();                                     // { inserted, redirected, passed }
 *   sc.detach();
 *
 * The programs share the pinned `meshd_config` with the endpoint programs
 * (same pinDir), so the flag switches insertion on and off at run time.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { AttachType, type BpfObjectHandle, native, openObject } from '../../native/index.js';
import { bpfObjectPath } from '../util/paths.js';
import { perCpuCounters } from './per-cpu.js';
import { assertPinnedMapsMatch } from './pinned-maps.js';
import { SkStat } from './abi.js';

export interface SockShortcutStats {
  inserted: bigint;
  redirected: bigint;
  passed: bigint;
}

export class SockShortcut {
  private detached = false;

  private constructor(
    private readonly obj: BpfObjectHandle,
    private readonly linkPath: string,
  ) {}

  static async attach(opts: { pinDir: string; cgroupPath: string }): Promise<SockShortcut> {
    mkdirSync(join(opts.pinDir, 'links'), { recursive: true });
    const obj = openObject(bpfObjectPath('sockops'), { pinRoot: opts.pinDir });
    try {
      assertPinnedMapsMatch(obj, 'MESHD_DATAPATH_PINNED_MAP_MISMATCH', `remove the pins under ${opts.pinDir} to start without the old state`);
      await obj.load();
      const linkPath = join(opts.pinDir, 'links', `sockops_${basename(opts.cgroupPath)}`);
      native.progAttach(obj.programFd('meshd_sk_msg'), obj.mapFd('meshd_sock_hash'), AttachType.SkMsgVerdict);
      if (!existsSync(linkPath)) {
        const link = native.attachCgroup(obj.programFd('meshd_sockops'), opts.cgroupPath, AttachType.CgroupSockOps);
        try {
          native.objPin(link, linkPath);
        } finally {
          native.closeFd(link);
        }
      }
      return new SockShortcut(obj, linkPath);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  stats(): SockShortcutStats {
    const sum = perCpuCounters(this.obj.mapFd('meshd_sk_stats'));
    return { inserted: sum(SkStat.INSERTED), redirected: sum(SkStat.REDIRECTED), passed: sum(SkStat.PASSED) };
  }

  /** Detaches both programs and closes the object; idempotent. */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    native.objUnpin(this.linkPath);
    try {
      native.progDetach(this.obj.programFd('meshd_sk_msg'), this.obj.mapFd('meshd_sock_hash'), AttachType.SkMsgVerdict);
    } finally {
      this.obj.close();
    }
  }
}
