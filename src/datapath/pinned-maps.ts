/**
 * Before an object with pinned maps is loaded: does every pin it would reuse
 * still have the shape the object declares? libbpf reuses a pin only if type,
 * key and value size, max_entries and flags are equal, and otherwise fails
 * the load half-way (maps earlier in the object may already be created and
 * pinned by then), reporting the reason only in its log text. Comparing the
 * pinned map's kernel info with the object's definitions first gives a
 * coded error that names the map and the field, and leaves every pin as it
 * was.
 *
 *   const obj = openObject(path, { pinRoot });
 *   obj.setMaxEntries('meshd_lb4_svc', n);          // resize first: the check sees the final shape
 *   assertPinnedMapsMatch(obj, 'MESHD_LB_PINNED_MAP_MISMATCH', 'remove the meshd_lb_* pins');
 *   await obj.load();
 *
 * Blocking (a few bpf() syscalls per pinned map); owns no descriptor after it
 * returns.
 */
import { existsSync, unlinkSync } from 'node:fs';
import { type BpfObjectHandle, native } from '../../native/index.js';
import { MeshdError } from '../util/errors.js';

/** The fields libbpf compares before it reuses a pinned map. */
export type MapShapeField = 'type' | 'keySize' | 'valueSize' | 'maxEntries' | 'flags';
const FIELDS: readonly MapShapeField[] = ['type', 'keySize', 'valueSize', 'maxEntries', 'flags'];

export interface PinnedMapMismatch {
  map: string;
  pinPath: string;
  field: MapShapeField;
  pinned: number;
  expected: number;
}

/** A pinned map differs from the object's definition: its pin must be removed (losing its state) before the object can load. */
export class PinnedMapMismatchError extends MeshdError {
  constructor(
    code: string,
    readonly mismatch: PinnedMapMismatch,
    hint: string,
  ) {
    const m = mismatch;
    super(code, `pinned map ${m.pinPath}: ${m.field} is ${m.pinned}, the object declares ${m.expected}; ${hint}`, { kind: 'conflict' });
  }
}

/** Every field of every existing pin of `obj` that differs from the object's definition (empty: all pins reusable). */
export function pinnedMapMismatches(obj: BpfObjectHandle): PinnedMapMismatch[] {
  const out: PinnedMapMismatch[] = [];
  for (const def of obj.maps()) {
    if (def.pinPath === null || !existsSync(def.pinPath)) continue;
    const fd = native.objGet(def.pinPath);
    let info;
    try {
      info = native.mapInfo(fd);
    } finally {
      native.closeFd(fd);
    }
    for (const field of FIELDS) {
      if (info[field] !== def[field]) out.push({ map: def.name, pinPath: def.pinPath, field, pinned: info[field], expected: def[field] });
    }
  }
  return out;
}

/**
 * Pinned maps that hold no state enforcement depends on (counters only): when
 * a newer build changes their shape (a counter slot added), the old pin is
 * replaced instead of refusing the start, so an upgrade keeps every policy,
 * conntrack and service pin and only restarts the counters.
 */
export const REPLACEABLE_PINS: ReadonlySet<string> = new Set(['meshd_metrics']);

/**
 * Throws PinnedMapMismatchError(code) for the first mismatch of a stateful
 * map; a mismatching replaceable pin (REPLACEABLE_PINS) is unlinked instead,
 * after every other pin was found reusable, and returned so the caller can
 * log it. Call after any resize and before load.
 */
export function assertPinnedMapsMatch(obj: BpfObjectHandle, code: string, hint: string): PinnedMapMismatch[] {
  const all = pinnedMapMismatches(obj);
  const first = all.find((m) => !REPLACEABLE_PINS.has(m.map));
  if (first) throw new PinnedMapMismatchError(code, first, hint);
  const replaced = [...new Map(all.map((m) => [m.pinPath, m])).values()];
  for (const m of replaced) unlinkSync(m.pinPath);
  return replaced;
}
