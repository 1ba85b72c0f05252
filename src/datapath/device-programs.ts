/**
 * Pieces every object attached to the native devices needs (bpf/host.c; the
 * same steps bpf/nodeport.c's loader takes): maps shared by pin take the size
 * their pins have, and a tcx link is pinned once and adopted afterwards.
 *
 *   adoptPinnedSizes(obj);                                  // before obj.load()
 *   attachPinnedTcx(join(pinDir, 'links', 'x_3_ingress'), progFd, 3, 'ingress');
 *
 * Blocking bpf() syscalls.
 */
import { existsSync } from 'node:fs';
import { native, type BpfObjectHandle } from '../../native/index.js';

/** The maps an object shares by pin with another take the size their pins have (options and tests resize them). */
export function adoptPinnedSizes(obj: BpfObjectHandle): void {
  for (const def of obj.maps()) {
    if (def.pinPath === null || !existsSync(def.pinPath)) continue;
    const fd = native.objGet(def.pinPath);
    try {
      const info = native.mapInfo(fd);
      if (info.maxEntries !== def.maxEntries && info.type === def.type) obj.setMaxEntries(def.name, info.maxEntries);
    } finally {
      native.closeFd(fd);
    }
  }
}

/**
 * Attaches `prog` to the device as a tcx link pinned at `path`; when the pin
 * exists already (a previous agent), moves that link to `prog` instead, so the
 * device is never without the program and keeps its place in the device's order.
 */
export function attachPinnedTcx(path: string, prog: number, ifindex: number, dir: 'ingress' | 'egress'): void {
  if (existsSync(path)) {
    const fd = native.objGet(path);
    try {
      native.linkUpdate(fd, prog);
    } finally {
      native.closeFd(fd);
    }
    return;
  }
  const fd = native.attachTcx(prog, ifindex, dir);
  try {
    native.objPin(fd, path);
  } finally {
    native.closeFd(fd);
  }
}
