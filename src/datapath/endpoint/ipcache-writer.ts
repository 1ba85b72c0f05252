/**
 * The one writer of the ipcache: meshd_ipc_host (hash, /32 and /128) and
 * meshd_ipcache (LPM trie, shorter prefixes), prefix → identity. It keeps a
 * mirror of what the kernel holds (read back from the pins at start), writes
 * only the difference (puts before deletes, so an address never passes
 * through "unknown"), checks capacity per map before the first write and
 * writes through a MapTransaction. After a change it calls `changed`, which
 * bumps the ipcache generation so established connections re-resolve.
 *
 * The whole desired set is passed on every sync, but the cost is in what
 * changed: each prefix string is parsed once while it stays in the set
 * (PrefixCache), the mirror keeps the parsed key of what the kernel holds
 * (a delete needs no parse), and the per-map counts are kept as it changes.
 *
 *   const ipc = new IpcacheWriter(fds, capacity, () => config.bumpIpcacheGen(cfg));
 *   ipc.readBack();
 *   ipc.sync(entries);                   // MESHD_IPCACHE_FULL / MESHD_IPCACHE_WRITE_FAILED: previous ipcache kept
 *
 * Blocking; must be the only writer of these maps.
 */
import { native } from '../../../native/index.js';
import type { IpcacheEntry } from '../../policy/types.js';
import { IpcacheValue } from '../maps.js';
import { desiredIpcache, diffIpcache, ipcacheKey, IpcacheError, type ParsedPrefix, parsePrefix, PrefixCache, prefixFromKey } from './ipcache.js';
import { isMapFull, MapTransaction } from './map-transaction.js';

type IpcacheMapName = 'ipcache' | 'ipcacheHost';
const MAPS: readonly IpcacheMapName[] = ['ipcache', 'ipcacheHost'];
const KERNEL_NAME: Readonly<Record<IpcacheMapName, string>> = { ipcache: 'meshd_ipcache', ipcacheHost: 'meshd_ipc_host' };

export interface IpcacheSyncResult {
  puts: number;
  deletes: number;
  size: number;
}

function ipcacheMapOf(bits: number, family: 4 | 6): IpcacheMapName {
  return bits === (family === 4 ? 32 : 128) ? 'ipcacheHost' : 'ipcache';
}

export class IpcacheWriter {
  /** What the kernel holds, by normalised CIDR, with its parsed key. */
  private readonly held = new Map<string, { identity: number; map: IpcacheMapName; prefix: ParsedPrefix }>();
  /** Entries of `held` per map (the capacity check needs them on every sync). */
  private readonly count: Record<IpcacheMapName, number> = { ipcache: 0, ipcacheHost: 0 };
  private readonly parsed = new PrefixCache();
  /** The list of the last sync() while the kernel still holds exactly it (see sync()). */
  private synced: readonly IpcacheEntry[] | null = null;

  constructor(
    private readonly fds: Readonly<Record<IpcacheMapName, number>>,
    private readonly capacity: Readonly<Record<IpcacheMapName, number>>,
    private readonly changed: () => void,
  ) {}

  /** Loads the mirror from the pinned maps. Call once, before any write. */
  readBack(): void {
    for (const map of MAPS) {
      for (const [key, value] of native.mapDump(this.fds[map])) {
        const prefix = prefixFromKey(key);
        this.hold(prefix, IpcacheValue.decode(value).identity);
      }
    }
  }

  entries(): IpcacheEntry[] {
    return [...this.held].map(([prefix, v]) => ({ prefix, identity: v.identity }));
  }

  /** Prefix strings parsed since this writer was made (each once while it stays in the desired set). */
  get parses(): number {
    return this.parsed.parses;
  }

  /** Makes the ipcache equal to `entries`. If the result does not fit, nothing is written. */
  sync(entries: readonly IpcacheEntry[]): IpcacheSyncResult {
    // The same list object again (the engine keeps its ipcache() until it changes), nothing written since:
    // the kernel already holds it, and the diff over thousands of entries would find nothing to do.
    if (entries === this.synced) return { puts: 0, deletes: 0, size: this.held.size };
    const result = this.apply(entries);
    this.synced = entries;
    return result;
  }

  private apply(entries: readonly IpcacheEntry[]): IpcacheSyncResult {
    const ops = diffIpcache(this.held, this.parsed.desired(entries));
    for (const map of MAPS) {
      let n = this.count[map];
      let peak = n;
      for (const op of ops) {
        if (ipcacheMapOf(op.prefix.bits, op.prefix.family) !== map) continue;
        if (op.op === 'put' && !this.held.has(op.prefix.cidr)) n += 1;
        if (op.op === 'delete') n -= 1;
        peak = Math.max(peak, n);
      }
      if (peak > this.capacity[map]) {
        throw new IpcacheError('MESHD_IPCACHE_FULL', `ipcache needs ${peak} entries in ${KERNEL_NAME[map]}, capacity ${this.capacity[map]}; previous ipcache kept`);
      }
    }
    if (ops.length === 0) return { puts: 0, deletes: 0, size: this.held.size };
    const tx = new MapTransaction();
    try {
      for (const op of ops) {
        const fd = this.fds[ipcacheMapOf(op.prefix.bits, op.prefix.family)];
        if (op.op === 'put') tx.put(fd, ipcacheKey(op.prefix), IpcacheValue.encode({ identity: op.identity, flags: 0 }));
        else tx.delete(fd, ipcacheKey(op.prefix), IpcacheValue.size);
      }
    } catch (e) {
      tx.rollback();
      throw new IpcacheError(
        isMapFull(e) ? 'MESHD_IPCACHE_FULL' : 'MESHD_IPCACHE_WRITE_FAILED',
        `ipcache update refused by the kernel (${e instanceof Error ? e.message : String(e)}); previous ipcache restored`,
        { cause: e },
      );
    }
    for (const op of ops) {
      if (op.op === 'put') this.hold(op.prefix, op.identity);
      else this.unhold(op.prefix.cidr);
    }
    this.changed();
    const deletes = ops.filter((o) => o.op === 'delete').length;
    return { puts: ops.length - deletes, deletes, size: this.held.size };
  }

  private hold(prefix: ParsedPrefix, identity: number): void {
    this.synced = null;
    const map = ipcacheMapOf(prefix.bits, prefix.family);
    if (!this.held.has(prefix.cidr)) this.count[map] += 1;
    this.held.set(prefix.cidr, { identity, map, prefix });
  }

  private unhold(cidr: string): void {
    this.synced = null;
    const had = this.held.get(cidr);
    if (!had) return;
    this.held.delete(cidr);
    this.count[had.map] -= 1;
  }

  /** Adds or changes some prefixes, leaving the others (e.g. FQDN-learned addresses). */
  upsert(entries: readonly IpcacheEntry[]): IpcacheSyncResult {
    const next = new Map(this.entries().map((e) => [e.prefix, e.identity]));
    for (const [cidr, d] of desiredIpcache(entries)) next.set(cidr, d.identity);
    return this.sync([...next].map(([prefix, identity]) => ({ prefix, identity })));
  }

  /** Removes some prefixes (absent ones are ignored). */
  delete(prefixes: readonly string[]): IpcacheSyncResult {
    const drop = new Set(prefixes.map((p, i) => parsePrefix(p, `prefixes[${i}]`).cidr));
    return this.sync(this.entries().filter((e) => !drop.has(e.prefix)));
  }
}
