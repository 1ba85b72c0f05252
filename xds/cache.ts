/**
 * The snapshot cache: the versioned store behind every stream. One snapshot
 * per node group (the node ID unless a `nodeGroup` function says otherwise).
 * Setting a snapshot validates it (consistency), assigns per-type versions
 * that change only when the type's content changed, and answers every open
 * watch of the group for which the new snapshot has something to send, in
 * make-before-break order (clusters, endpoints, listeners, routes, secrets).
 *
 *   const cache = new SnapshotCache();
 *   cache.setSnapshot('node-1', { version: 'v1', resources: { clusters: [...] } });
 *
 * Not thread-affine and not async: setSnapshot returns after every watch
 * that fires was answered (responses are queued on streams, not awaited).
 */
import { type Snapshot, type SnapshotInput, type SnapshotResource, buildSnapshot, checkConsistency } from './snapshot.js';
import { KIND_ORDER, type ResourceKind } from './type-urls.js';
import {
  type Cancel,
  type DeltaWatchRequest,
  type DeltaWatchResponse,
  type NodeInfo,
  type SotwWatchRequest,
  type SotwWatchResponse,
  type WatchSource,
  subscriptionKey,
} from './watch.js';

export interface CachedSnapshot {
  readonly snapshot: Snapshot;
  readonly seq: number;
  readonly typeVersions: Readonly<Record<ResourceKind, string>>;
}

export interface SnapshotCacheOptions {
  /** Maps a node to the key its snapshot is stored under (default: the node ID). */
  nodeGroup?: (node: NodeInfo) => string;
}

type Watch =
  | { mode: 'sotw'; req: SotwWatchRequest; respond: (r: SotwWatchResponse) => void }
  | { mode: 'delta'; req: DeltaWatchRequest; respond: (r: DeltaWatchResponse) => void };

export class SnapshotCache implements WatchSource {
  private readonly snapshots = new Map<string, CachedSnapshot>();
  private readonly watches = new Map<string, Set<Watch>>();
  private readonly listeners = new Set<(group: string, snap: CachedSnapshot) => void>();
  private seq = 0;
  readonly nodeGroup: (node: NodeInfo) => string;

  constructor(opts: SnapshotCacheOptions = {}) {
    this.nodeGroup = opts.nodeGroup ?? ((n) => n.id);
  }

  /**
   * Publishes a snapshot for a group. A SnapshotInput is built first (throws
   * SNAPSHOT_INVALID); then the consistency check runs (SNAPSHOT_INCONSISTENT).
   * On any error the previous snapshot stays in force.
   */
  setSnapshot(group: string, input: Snapshot | SnapshotInput, opts: { skipConsistency?: boolean } = {}): CachedSnapshot {
    const prev = this.snapshots.get(group);
    const snapshot = 'types' in input ? input : buildSnapshot(input, undefined, prev?.snapshot);
    if (!opts.skipConsistency) checkConsistency(snapshot);
    const typeVersions = {} as Record<ResourceKind, string>;
    for (const kind of KIND_ORDER) {
      const prevVersion = prev?.typeVersions[kind];
      if (prev && prev.snapshot.types[kind].hash === snapshot.types[kind].hash && prevVersion !== undefined) {
        typeVersions[kind] = prevVersion; // unchanged content keeps its version: nothing is resent
      } else if (prevVersion === snapshot.version) {
        // same snapshot version string, different content: still a new type version
        typeVersions[kind] = `${snapshot.version}-${snapshot.types[kind].hash.slice(0, 8)}`;
      } else {
        typeVersions[kind] = snapshot.version;
      }
    }
    const cached: CachedSnapshot = { snapshot, seq: ++this.seq, typeVersions };
    this.snapshots.set(group, cached);
    this.notify(group, cached);
    for (const l of this.listeners) l(group, cached);
    return cached;
  }

  getSnapshot(group: string): CachedSnapshot | undefined {
    return this.snapshots.get(group);
  }

  snapshotFor(node: NodeInfo): CachedSnapshot | undefined {
    return this.snapshots.get(this.nodeGroup(node));
  }

  /** Forgets a group's snapshot; open watches stay open and fire on the next set. */
  clearSnapshot(group: string): void {
    this.snapshots.delete(group);
  }

  groups(): string[] {
    return [...this.snapshots.keys()];
  }

  /** Called after each successful setSnapshot (used by ACK waiting). Returns an unsubscribe. */
  onSnapshot(listener: (group: string, snap: CachedSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  typeVersion(node: NodeInfo, kind: ResourceKind): string | undefined {
    return this.snapshotFor(node)?.typeVersions[kind];
  }

  /** Number of open watches (for tests and status). */
  watchCount(): number {
    let n = 0;
    for (const s of this.watches.values()) n += s.size;
    return n;
  }

  createWatch(req: SotwWatchRequest, respond: (r: SotwWatchResponse) => void): Cancel {
    return this.addWatch({ mode: 'sotw', req, respond });
  }

  createDeltaWatch(req: DeltaWatchRequest, respond: (r: DeltaWatchResponse) => void): Cancel {
    return this.addWatch({ mode: 'delta', req, respond });
  }

  fetch(node: NodeInfo, kind: ResourceKind, names: ReadonlySet<string>): SotwWatchResponse | undefined {
    const snap = this.snapshotFor(node);
    if (!snap) return undefined;
    return sotwAnswer(snap, { node, kind, wildcard: names.size === 0, names, sentVersion: '', sentSubscription: '' });
  }

  private addWatch(w: Watch): Cancel {
    const group = this.nodeGroup(w.req.node);
    const snap = this.snapshots.get(group);
    if (snap && this.tryRespond(w, snap)) return () => {};
    let set = this.watches.get(group);
    if (!set) {
      set = new Set();
      this.watches.set(group, set);
    }
    set.add(w);
    return () => {
      set.delete(w);
      if (set.size === 0 && this.watches.get(group) === set) this.watches.delete(group);
    };
  }

  private notify(group: string, snap: CachedSnapshot): void {
    const set = this.watches.get(group);
    if (!set) return;
    // make-before-break: answer in type order, whatever order the watches were opened in
    const ordered = [...set].sort((a, b) => KIND_ORDER.indexOf(a.req.kind) - KIND_ORDER.indexOf(b.req.kind));
    for (const w of ordered) {
      if (this.tryRespond(w, snap)) set.delete(w);
    }
    if (set.size === 0) this.watches.delete(group);
  }

  /** Answers a watch if the snapshot has something for it; one-shot. */
  private tryRespond(w: Watch, snap: CachedSnapshot): boolean {
    if (w.mode === 'sotw') {
      const { req } = w;
      const changed =
        snap.typeVersions[req.kind] !== req.sentVersion || subscriptionKey(req.wildcard, req.names) !== req.sentSubscription;
      if (!changed) return false;
      w.respond(sotwAnswer(snap, req));
      return true;
    }
    const answer = deltaAnswer(snap, w.req);
    if (answer.resources.length === 0 && answer.removed.length === 0 && snap.typeVersions[w.req.kind] === w.req.sentVersion) {
      return false;
    }
    w.respond(answer);
    return true;
  }
}

function selected(snap: CachedSnapshot, kind: ResourceKind, wildcard: boolean, names: ReadonlySet<string>): SnapshotResource[] {
  const items = snap.snapshot.types[kind].items;
  if (wildcard) return [...items.values()];
  const out: SnapshotResource[] = [];
  for (const n of names) {
    const r = items.get(n);
    if (r) out.push(r);
  }
  return out;
}

function sotwAnswer(snap: CachedSnapshot, req: SotwWatchRequest): SotwWatchResponse {
  return {
    snapshotVersion: snap.snapshot.version,
    seq: snap.seq,
    version: snap.typeVersions[req.kind],
    resources: selected(snap, req.kind, req.wildcard, req.names),
  };
}

function deltaAnswer(snap: CachedSnapshot, req: DeltaWatchRequest): DeltaWatchResponse {
  const items = snap.snapshot.types[req.kind].items;
  const resources = selected(snap, req.kind, req.wildcard, req.names).filter((r) => req.known.get(r.name) !== r.version);
  const removed: string[] = [];
  for (const name of req.known.keys()) {
    if (!items.has(name) && (req.wildcard || req.names.has(name))) removed.push(name);
  }
  return { snapshotVersion: snap.snapshot.version, seq: snap.seq, version: snap.typeVersions[req.kind], resources, removed };
}
