/**
 * bpf/overlay.o on the tunnel device: meshd_from_overlay on its ingress,
 * meshd_to_overlay on its egress, as tcx links pinned at
 * <pinDir>/links/overlay_<ifindex>_<dir>. A link already pinned for the same
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

const PREFIX = 'overlay_';

const pinOf = (pinDir: string, ifindex: number, dir: 'ingress' | 'egress') => join(pinDir, 'links', `${PREFIX}${ifindex}_${dir}`);

function overlayPins(pinDir: string): string[] {
  const dir = join(pinDir, 'links');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(PREFIX)).map((f) => join(dir, f)) : [];
}

/** Unpins (so detaches) every overlay link; none is fine. */
export function detachOverlay(pinDir: string, keep: readonly string[] = []): void {
  for (const p of overlayPins(pinDir)) if (!keep.includes(p)) native.objUnpin(p);
}

export async function attachOverlay(pinDir: string, ifindex: number): Promise<BpfObjectHandle> {
  const obj = openObject(bpfObjectPath('overlay'), { pinRoot: pinDir });
  try {
    assertPinnedMapsMatch(obj, 'MESHD_DATAPATH_PINNED_MAP_MISMATCH', `remove the pins under ${pinDir} to start without the old state`);
    await obj.load();
    const progs = { ingress: obj.programFd('meshd_from_overlay'), egress: obj.programFd('meshd_to_overlay') } as const;
    const mine = (['ingress', 'egress'] as const).map((d) => pinOf(pinDir, ifindex, d));
    detachOverlay(pinDir, mine);
    for (const dir of ['ingress', 'egress'] as const) {
      const path = pinOf(pinDir, ifindex, dir);
      const fd = existsSync(path) ? native.objGet(path) : native.attachTcx(progs[dir], ifindex, dir);
      try {
        if (existsSync(path)) native.linkUpdate(fd, progs[dir]);
        else native.objPin(fd, path);
      } finally {
        native.closeFd(fd);
      }
    }
    return obj;
  } catch (e) {
    obj.close();
    throw e;
  }
}
