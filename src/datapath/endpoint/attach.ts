/**
 * Puts the endpoint programs on the host side of a pod's veth as tcx links
 * pinned at <pinDir>/links/lxc_<ifindex>_<dir>. A link that is already pinned
 * (a previous agent made it) is adopted: bpf_link_update swaps in this
 * build's program atomically, so the interface is never without one.
 * Unpinning the link is what detaches the program.
 *
 *   attachEndpointPrograms(pinDir, ifindex, { fromPod, toPod });
 *   detachEndpointPrograms(pinDir, ifindex);
 *
 * Blocking; owns no descriptor after a call returns (the pins keep the links).
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../../../native/index.js';

type Direction = 'ingress' | 'egress';
const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];

export function linkPinPath(pinDir: string, ifindex: number, dir: Direction): string {
  return join(pinDir, 'links', `lxc_${ifindex}_${dir}`);
}

/** from-pod runs on the veth's ingress (packets the pod sends), to-pod on its egress. Idempotent. */
export function attachEndpointPrograms(pinDir: string, ifindex: number, progs: { fromPod: number; toPod: number }): void {
  for (const dir of DIRECTIONS) {
    const prog = dir === 'ingress' ? progs.fromPod : progs.toPod;
    const path = linkPinPath(pinDir, ifindex, dir);
    if (existsSync(path)) {
      const fd = native.objGet(path);
      try {
        native.linkUpdate(fd, prog); // adopt: keep the link, run this build's program
      } finally {
        native.closeFd(fd);
      }
    } else {
      const fd = native.attachTcx(prog, ifindex, dir);
      try {
        native.objPin(fd, path);
      } finally {
        native.closeFd(fd);
      }
    }
  }
}

/** Unpins (and so detaches) both links; absent pins are fine. */
export function detachEndpointPrograms(pinDir: string, ifindex: number): void {
  for (const dir of DIRECTIONS) native.objUnpin(linkPinPath(pinDir, ifindex, dir));
}

/** Removes every pin under pinDir, links first (detaching the programs). */
export function destroyPins(pinDir: string): void {
  const links = join(pinDir, 'links');
  if (existsSync(links)) for (const f of readdirSync(links)) native.objUnpin(join(links, f));
  rmSync(pinDir, { recursive: true, force: true });
}
