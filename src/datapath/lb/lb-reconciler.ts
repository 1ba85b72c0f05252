/**
 * Keeps the socket-LB maps equal to the desired frontends while writing only
 * what differs, in an order that never lets the datapath see a half-updated
 * service:
 *
 *   1. new backends           (meshd_lb_be)
 *   2. changed backend slots  (meshd_lb_svc, slot 1..n)
 *   3. Maglev tables, affinity pairs of the new state
 *   4. service entries        (meshd_lb_svc, slot 0: the flip — count, flags)
 *   5. then removals: service entries of deleted frontends, slots above the
 *      new count, stale tables and pairs, backends nothing references.
 *
 * A removed backend's slot is refilled with the last slot's backend before
 * the count shrinks (swap-remove), so other slots keep their backend and
 * readers between steps see only live backends.
 *
 * The reconciler mirrors the maps in memory. `restore()` rebuilds the mirror
 * from the pinned maps (after an agent restart), so the first reconcile diffs
 * against what the kernel holds instead of flushing it.
 */
import {
  AffmatchKey,
  Backend,
  LB_F_AFFINITY,
  LB_F_MAGLEV,
  SvcKey,
  SvcValue,
  decodeAddr,
  type ScopeNumber,
} from './lb-maps.js';
import { maglevBytes, maglevTable } from './maglev.js';
import { frontendKey, type DesiredFrontend } from './service-frontends.js';

/** What the reconciler needs of a map (BpfMap from native/index.ts). */
export interface LbMap {
  dump(): Array<[Buffer, Buffer]>;
  updateBatch(keys: Buffer[], values: Buffer[]): { count: number; batched: boolean };
  deleteBatch(keys: Buffer[]): number;
}

export interface LbMapSet {
  svc: LbMap;
  backends: LbMap;
  maglev: LbMap;
  affmatch: LbMap;
}

interface FrontendState {
  addr: Buffer;
  port: number;
  proto: number;
  svcId: number;
  count: number;
  flags: number;
  scope: number;
  timeout: number;
  /** slots[i] = backend id in slot i+1 (0: missing in the map). */
  slots: number[];
  /** Highest slot number present in the map (>= count after an interrupted write). */
  slotHigh: number;
  masterPresent: boolean;
}

export interface FrontendInfo {
  vip: string;
  port: number;
  proto: number;
  svcId: number;
  scope: number;
  flags: number;
  affinityTimeout: number;
  /** "addr:port" per slot, in slot order. */
  backends: string[];
}

export interface ReconcileResult {
  /** Map entries written or deleted. */
  writes: number;
  /** Frontends added, changed, removed. */
  added: number;
  changed: number;
  removed: number;
}

/** Service-map entries a frontend occupies now (an interrupted write may have left slots above its count). */
const entriesOf = (st: FrontendState): number => (st.masterPresent ? 1 : 0) + Math.max(st.count, st.slotHigh);

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

class Phase {
  readonly keys: Buffer[] = [];
  readonly values: Buffer[] = [];
  put(k: Buffer, v: Buffer): void {
    this.keys.push(k);
    this.values.push(v);
  }
}

export class LbReconciler {
  private readonly frontends = new Map<string, FrontendState>();
  private readonly backendById = new Map<number, string>(); // id -> backend key (hex value)
  private readonly backendId = new Map<string, number>();
  private readonly refs = new Map<number, number>(); // backend id -> frontends using it
  private readonly maglev = new Map<number, string>(); // svc id -> table hex
  private readonly affm = new Map<number, Set<number>>(); // svc id -> backend ids
  private nextSvcId = 1;
  private nextBackendId = 1;
  /** Entries of the service map (service entries + slots), kept current so capacity checks are O(1). */
  private entryCount = 0;
  /** After restore(): sweep leftovers nothing refers to (an agent killed mid-write) on the next reconcile. */
  private sweep = false;

  constructor(private readonly maps: LbMapSet) {}

  /** Rebuilds the mirror from the maps' contents. */
  restore(): void {
    this.frontends.clear();
    this.backendById.clear();
    this.backendId.clear();
    this.refs.clear();
    this.maglev.clear();
    this.affm.clear();
    for (const [k, v] of this.maps.svc.dump()) {
      const key = SvcKey.decode(k);
      const val = SvcValue.decode(v);
      const fk = frontendKey(key.addr, key.port, key.proto);
      let st = this.frontends.get(fk);
      if (!st) {
        st = { addr: key.addr, port: key.port, proto: key.proto, svcId: val.svc_id, count: 0, flags: 0, scope: 0, timeout: 0, slots: [], slotHigh: 0, masterPresent: false };
        this.frontends.set(fk, st);
      }
      if (key.slot === 0) {
        Object.assign(st, { svcId: val.svc_id, count: val.count, flags: val.flags, scope: val.scope, timeout: val.affinity_timeout, masterPresent: true });
      } else {
        st.slotHigh = Math.max(st.slotHigh, key.slot);
        st.slots[key.slot - 1] = val.backend_id;
      }
      this.nextSvcId = Math.max(this.nextSvcId, val.svc_id + 1);
    }
    this.entryCount = 0;
    for (const st of this.frontends.values()) {
      this.entryCount += entriesOf(st);
      st.slots = Array.from({ length: st.count }, (_, i) => st.slots[i] ?? 0);
      for (const id of new Set(st.slots)) if (id) this.refs.set(id, (this.refs.get(id) ?? 0) + 1);
    }
    for (const [k, v] of this.maps.backends.dump()) {
      const id = k.readUInt32LE(0);
      const key = v.toString('hex');
      this.backendById.set(id, key);
      this.backendId.set(key, id);
      this.nextBackendId = Math.max(this.nextBackendId, id + 1);
    }
    for (const [k, v] of this.maps.maglev.dump()) this.maglev.set(k.readUInt32LE(0), v.toString('hex'));
    for (const [k] of this.maps.affmatch.dump()) {
      const mk = AffmatchKey.decode(k);
      let s = this.affm.get(mk.svc_id);
      if (!s) this.affm.set(mk.svc_id, (s = new Set()));
      s.add(mk.backend_id);
    }
    this.sweep = true;
  }

  /** Frontend keys currently in the maps. */
  frontendKeys(): string[] {
    return [...this.frontends.keys()];
  }

  has(frontend: string): boolean {
    return this.frontends.has(frontend);
  }

  /**
   * How far the service map grows while reconciling `changes`: entries are
   * written before stale ones are deleted, so the peak is the current count
   * plus every frontend's growth, shrinking ones counted as zero.
   */
  svcEntriesNeeded(changes: ReadonlyMap<string, DesiredFrontend | null>): number {
    let n = 0;
    for (const [k, d] of changes) {
      const cur = this.frontends.get(k);
      n += Math.max(0, (d ? 1 + d.backends.length : 0) - (cur ? entriesOf(cur) : 0));
    }
    return n;
  }

  svcEntries(): number {
    return this.entryCount;
  }

  backendCount(): number {
    return this.backendById.size;
  }

  /** New backends the given frontends would add. */
  newBackendsNeeded(changes: ReadonlyMap<string, DesiredFrontend | null>): number {
    const fresh = new Set<string>();
    for (const d of changes.values()) for (const b of d?.backends ?? []) if (!this.backendId.has(b.key)) fresh.add(b.key);
    return fresh.size;
  }

  /**
   * Brings the given frontends (key → desired, or null to remove) to their
   * desired state; frontends not named are left alone.
   */
  reconcile(changes: ReadonlyMap<string, DesiredFrontend | null>): ReconcileResult {
    const beUp = new Phase();
    const slotUp = new Phase();
    const maglevUp = new Phase();
    const affmUp = new Phase();
    const masterUp = new Phase();
    const masterDel: Buffer[] = [];
    const slotDel: Buffer[] = [];
    const maglevDel: Buffer[] = [];
    const affmDel: Buffer[] = [];
    const touched = new Set<number>(); // backend ids whose refcount changed
    const res: ReconcileResult = { writes: 0, added: 0, changed: 0, removed: 0 };

    const svcKey = (st: { addr: Buffer; port: number; proto: number }, slot: number): Buffer =>
      SvcKey.encode({ addr: st.addr, port: st.port, proto: st.proto, pad0: 0, slot, pad: 0 });
    const ref = (id: number, d: number) => {
      this.refs.set(id, (this.refs.get(id) ?? 0) + d);
      touched.add(id);
    };

    for (const [fk, desired] of changes) {
      const cur = this.frontends.get(fk);
      if (cur) this.entryCount -= entriesOf(cur);
      if (!desired) {
        if (!cur) continue;
        if (cur.masterPresent) masterDel.push(svcKey(cur, 0));
        for (let s = 1; s <= Math.max(cur.count, cur.slotHigh); s++) slotDel.push(svcKey(cur, s));
        this.dropTables(cur.svcId, maglevDel, affmDel);
        for (const id of new Set(cur.slots)) if (id) ref(id, -1);
        this.frontends.delete(fk);
        res.removed += 1;
        continue;
      }

      // Backend ids, allocating (and writing) new backends first.
      const ids: number[] = [];
      for (const b of desired.backends) {
        let id = this.backendId.get(b.key);
        if (id === undefined) {
          id = this.nextBackendId++;
          this.backendId.set(b.key, id);
          this.backendById.set(id, b.key);
          beUp.put(u32(id), b.value);
        }
        ids.push(id);
      }

      // Slot layout: keep every surviving backend in its slot; swap-remove the rest; append newcomers.
      const want = new Set(ids);
      const slots = (cur?.slots ?? []).slice();
      for (let i = 0; i < slots.length; ) {
        const id = slots[i] ?? 0;
        if (want.has(id) && slots.indexOf(id) === i) {
          i++;
          continue;
        }
        slots[i] = slots[slots.length - 1] ?? 0;
        slots.pop();
      }
      const present = new Set(slots);
      for (const id of ids) if (!present.has(id)) slots.push(id);

      const slotWritesBefore = slotUp.keys.length + slotDel.length;
      const st: FrontendState = cur ?? {
        addr: desired.addr,
        port: desired.port,
        proto: desired.proto,
        svcId: this.nextSvcId++,
        count: 0,
        flags: 0,
        scope: 0,
        timeout: 0,
        slots: [],
        slotHigh: 0,
        masterPresent: false,
      };
      for (let s = 1; s <= slots.length; s++) {
        const id = slots[s - 1] ?? 0;
        if (st.slots[s - 1] !== id || s > st.slotHigh) {
          slotUp.put(svcKey(st, s), SvcValue.encode({ backend_id: id, svc_id: st.svcId, count: 0, flags: 0, scope: 0, affinity_timeout: 0 }));
        }
      }
      for (let s = slots.length + 1; s <= Math.max(st.count, st.slotHigh); s++) slotDel.push(svcKey(st, s));

      // Maglev table and affinity pairs for the new state.
      if (desired.flags & LB_F_MAGLEV) {
        const table = maglevBytes(maglevTable(slots.map((id) => ({ name: this.backendById.get(id) ?? String(id), id }))));
        const hex = table.toString('hex');
        if (this.maglev.get(st.svcId) !== hex) {
          maglevUp.put(u32(st.svcId), table);
          this.maglev.set(st.svcId, hex);
        }
      } else if (this.maglev.has(st.svcId)) {
        maglevDel.push(u32(st.svcId));
        this.maglev.delete(st.svcId);
      }
      const pairs = this.affm.get(st.svcId) ?? new Set<number>();
      const wantPairs = desired.flags & LB_F_AFFINITY ? new Set(slots) : new Set<number>();
      for (const id of wantPairs) if (!pairs.has(id)) affmUp.put(AffmatchKey.encode({ svc_id: st.svcId, backend_id: id }), u32(1));
      for (const id of pairs) if (!wantPairs.has(id)) affmDel.push(AffmatchKey.encode({ svc_id: st.svcId, backend_id: id }));
      if (wantPairs.size > 0) this.affm.set(st.svcId, wantPairs);
      else this.affm.delete(st.svcId);

      // The flip.
      const masterSame =
        st.masterPresent && st.count === slots.length && st.flags === desired.flags && st.scope === desired.scope && st.timeout === desired.affinityTimeout;
      if (!masterSame) {
        masterUp.put(
          svcKey(st, 0),
          SvcValue.encode({ backend_id: 0, svc_id: st.svcId, count: slots.length, flags: desired.flags, scope: desired.scope, affinity_timeout: desired.affinityTimeout }),
        );
      }
      const before = new Set(st.slots.filter((x) => x));
      const after = new Set(slots);
      for (const id of after) if (!before.has(id)) ref(id, +1);
      for (const id of before) if (!after.has(id)) ref(id, -1);
      const changed = !masterSame || slotUp.keys.length + slotDel.length > slotWritesBefore;
      if (!cur) res.added += 1;
      else if (changed) res.changed += 1;
      Object.assign(st, {
        count: slots.length,
        flags: desired.flags,
        scope: desired.scope as ScopeNumber,
        timeout: desired.affinityTimeout,
        slots,
        slotHigh: slots.length,
        masterPresent: true,
      });
      this.entryCount += entriesOf(st);
      this.frontends.set(fk, st);
    }

    if (this.sweep) {
      this.sweep = false;
      for (const id of this.backendById.keys()) if (!this.refs.get(id)) touched.add(id);
      const live = new Set([...this.frontends.values()].map((st) => st.svcId));
      for (const id of [...this.maglev.keys(), ...this.affm.keys()]) if (!live.has(id)) this.dropTables(id, maglevDel, affmDel);
    }
    const beDel: Buffer[] = [];
    for (const id of touched) {
      if ((this.refs.get(id) ?? 0) > 0) continue;
      this.refs.delete(id);
      const key = this.backendById.get(id);
      if (key !== undefined) this.backendId.delete(key);
      this.backendById.delete(id);
      beDel.push(u32(id));
    }
    // A backend allocated in this round that ended up unused (capped away, or its frontend removed again).
    const unusedNew = beUp.keys.filter((k) => !this.backendById.has(k.readUInt32LE(0)));
    const beUpKeep = new Phase();
    beUp.keys.forEach((k, i) => {
      if (!unusedNew.includes(k)) beUpKeep.put(k, beUp.values[i] ?? Buffer.alloc(0));
    });

    const m = this.maps;
    const up = (map: LbMap, p: Phase) => {
      if (p.keys.length > 0) res.writes += map.updateBatch(p.keys, p.values).count;
    };
    const del = (map: LbMap, keys: Buffer[]) => {
      if (keys.length > 0) {
        map.deleteBatch(keys);
        res.writes += keys.length;
      }
    };
    up(m.backends, beUpKeep);
    up(m.svc, slotUp);
    up(m.maglev, maglevUp);
    up(m.affmatch, affmUp);
    up(m.svc, masterUp);
    del(m.svc, masterDel);
    del(m.svc, slotDel);
    del(m.maglev, maglevDel);
    del(m.affmatch, affmDel);
    del(m.backends, beDel.filter((k) => !unusedNew.some((u) => u.equals(k))));
    return res;
  }

  private dropTables(svcId: number, maglevDel: Buffer[], affmDel: Buffer[]): void {
    if (this.maglev.has(svcId)) {
      maglevDel.push(u32(svcId));
      this.maglev.delete(svcId);
    }
    for (const id of this.affm.get(svcId) ?? []) affmDel.push(AffmatchKey.encode({ svc_id: svcId, backend_id: id }));
    this.affm.delete(svcId);
  }

  /** Every programmed frontend, described. */
  list(): FrontendInfo[] {
    return [...this.frontends.keys()].flatMap((fk) => {
      const d = this.describe(fk);
      return d ? [d] : [];
    });
  }

  /** The programmed state of one frontend, for status and tests. */
  describe(fk: string): FrontendInfo | null {
    const st = this.frontends.get(fk);
    if (!st) return null;
    return {
      vip: decodeAddr(st.addr),
      port: st.port,
      proto: st.proto,
      svcId: st.svcId,
      scope: st.scope,
      flags: st.flags,
      affinityTimeout: st.timeout,
      backends: st.slots.map((id) => {
        const hex = this.backendById.get(id);
        if (!hex) return `#${id}`;
        const b = Backend.decode(Buffer.from(hex, 'hex'));
        return `${decodeAddr(b.addr)}:${b.port}`;
      }),
    };
  }
}
