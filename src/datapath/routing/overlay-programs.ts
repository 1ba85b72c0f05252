/**
 * bpf/overlay.o on the tunnel device: meshd_from_overlay on its ingress,
 * meshd_to_overlay on its egress, as tcx links pinned at
 * <pinDir>/links/overlay_<ifindex>_<dir>; in native mode meshd_from_netdev
 * on the ingress of the devices that reach the other nodes
 * (<pinDir>/links/netdev_<ifindex>_ingress). A link already pinned for the same
 * device is adopted (bpf_link_update), so a restarting agent never leaves
 * the device without its programs; pins of an older device go.
 *
 *   const o = await attachOverlay(pinDir, ifindex);   // loads with the endpoint maps shared by pin
 *   o.close();                                         // links stay pinned
 *   detachOverlay(pinDir);                             // native mode: every overlay link goes
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { native, openObject, type BpfObjectHandle } from '../../../native/index.js';
import { bpfObjectPath } from '../../util/paths.js';
import { assertPinnedMapsMatch } from '../pinned-maps.js';

type Dir = 'ingress' | 'egress';
type Family = 'overlay_' | 'netdev_';

const pinOf = (pinDir: string, family: Family, ifindex: number, dir: Dir) => join(pinDir, 'links', `${family}${ifindex}_${dir}`);

function pinsOf(pinDir: string, family: Family): string[] {
  const dir = join(pinDir, 'links');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(family)).map((f) => join(dir, f)) : [];
}

/** Unpins (so detaches) every overlay link but `keep`; none is fine. */
export function detachOverlay(pinDir: string, keep: readonly string[] = []): void {
  for (const p of pinsOf(pinDir, 'overlay_')) if (!keep.includes(p)) native.objUnpin(p);
}

/** Unpins every native-device link but `keep`. */
export function detachNetdev(pinDir: string, keep: readonly string[] = []): void {
  for (const p of pinsOf(pinDir, 'netdev_')) if (!keep.includes(p)) native.objUnpin(p);
}

/** Loads overlay.o and puts `progs` (program name by direction) on each interface, adopting pinned links; links of this family on other interfaces go. */
async function attach(pinDir: string, family: Family, ifindexes: readonly number[], progs: Partial<Record<Dir, string>>): Promise<BpfObjectHandle> {
  const obj = openObject(bpfObjectPath('overlay'), { pinRoot: pinDir });
  try {
    assertPinnedMapsMatch(obj, 'MESHD_DATAPATH_PINNED_MAP_MISMATCH', `remove the pins under ${pinDir} to start without the old state`);
    await obj.load();
    const dirs = (['ingress', 'egress'] as const).filter((d) => progs[d] !== undefined);
    const mine = ifindexes.flatMap((i) => dirs.map((d) => pinOf(pinDir, family, i, d)));
    for (const p of pinsOf(pinDir, family)) if (!mine.includes(p)) native.objUnpin(p);
    for (const ifindex of ifindexes) {
      for (const dir of dirs) {
        const prog = obj.programFd(progs[dir] ?? '');
        const path = pinOf(pinDir, family, ifindex, dir);
        const fd = existsSync(path) ? native.objGet(path) : native.attachTcx(prog, ifindex, dir);
        try {
          if (existsSync(path)) native.linkUpdate(fd, prog);
          else native.objPin(fd, path);
        } finally {
          native.closeFd(fd);
        }
      }
    }
    return obj;
  } catch (e) {
    obj.close();
    throw e;
  }
}

export function attachOverlay(pinDir: string, ifindex: number): Promise<BpfObjectHandle> {
  return attach(pinDir, 'overlay_', [ifindex], { ingress: 'meshd_from_overlay', egress: 'meshd_to_overlay' });
}

/** Native mode: meshd_from_netdev on the ingress of these devices (and only these). */
export async function attachNetdev(pinDir: string, ifindexes: readonly number[]): Promise<void> {
  (await attach(pinDir, 'netdev_', ifindexes, { ingress: 'meshd_from_netdev' })).close();
}
