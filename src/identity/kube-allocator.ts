/**
 * Cluster-wide identities through the Kubernetes API server: the same label
 * set gets the same number on every node, and no two label sets share one.
 *
 * The store is two cluster-scoped kinds (install/crds/meshd.io_meshdidentities.yaml):
 * - MeshdIdentity, named by the number ("256"): the labels and, in
 *   status.references, each node using it with the time its agent last said
 *   so. Creating it claims the number; a 409 AlreadyExists means the number
 *   is taken, so another one is tried.
 * - MeshdIdentityKey, named by a hash of the sorted labels: the number. It is
 *   created after the claim; a 409 means another agent won the race for the
 *   same labels, and this one adopts the winner's number and deletes its own
 *   claim. So concurrent allocation of one label set ends with one identity.
 *
 * Both are watched (Reflector), so a known label set costs no request and
 * get(id) answers for identities other nodes allocated. References are
 * refreshed every `heartbeatMs`; after release() of the last local holder
 * this node's reference is no longer confirmed (no write: it goes stale), and
 * the Lease-holding GC (identity-gc.ts) deletes identities no node has
 * confirmed for its grace period, so an identity stays at least that long
 * after its last use. An identity this
 * node still uses that is deleted anyway (its reference was late) is
 * created again with the same number and labels.
 *
 * Which identities this node references: as Cilium's agents, only those its
 * own endpoints use (setLocalUsers; the agent names them) and node
 * identities. The engine also holds the identities of other nodes' pods
 * (read from their MeshdEndpoint objects), but their own nodes reference
 * those: confirming them from every node would cost each agent one write
 * per identity of the cluster per heartbeat, each a watch event on every
 * node. Without setLocalUsers every held identity is referenced.
 *
 * Reserved identities (1..255) and node-local ones (CIDR/FQDN label sets,
 * from 1<<24) never leave the node: a LocalIdentityAllocator keeps them.
 *
 * The API server unreachable: a new label set is rejected with
 * MESHD_IDENTITY_ALLOCATION (kind unavailable) and holds nothing; known ones
 * keep working from the cache.
 *
 *   const alloc = new KubeIdentityAllocator({ client, nodeName: 'node-a' });
 *   await alloc.start();                     // first list of both kinds
 *   const engine = new PolicyEngine({ allocator: alloc });
 *   …
 *   await alloc.stop();                      // references stay until they go stale
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { KubeApiError, type Json, type KubeClient } from '../k8s/client.js';
import { Reflector } from '../k8s/reflector.js';
import { isMeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { IdentityAllocationError, LocalIdentityAllocator } from './allocator.js';
import type { Identity, IdentityAllocator, IdentityChange } from './allocator.js';
import { formatLabel, LabelSet } from './labels.js';
import type { Label } from './labels.js';
import { CLUSTER_IDENTITY_MIN } from './reserved.js';
import type { ReservedName } from './reserved.js';

export const IDENTITIES_PATH = '/apis/meshd.io/v1alpha1/meshdidentities';
export const IDENTITY_KEYS_PATH = '/apis/meshd.io/v1alpha1/meshdidentitykeys';
/** Cilium's cluster identities are 16 bits; the key CRD's schema holds the same bounds. */
export const CLUSTER_IDENTITY_MAX = 0xffff;

const Meta = z.object({ name: z.string(), resourceVersion: z.string().optional(), creationTimestamp: z.string().optional() });

export const IdentityObjectSchema = z.object({
  metadata: Meta,
  spec: z.object({ labels: z.array(z.string()), key: z.string() }),
  status: z.object({ references: z.record(z.string(), z.string()).optional() }).optional(),
});
export type IdentityObject = z.infer<typeof IdentityObjectSchema>;

export const IdentityKeyObjectSchema = z.object({ metadata: Meta, spec: z.object({ identity: z.number().int() }) });
export type IdentityKeyObject = z.infer<typeof IdentityKeyObjectSchema>;

/** The MeshdIdentityKey name of a label set: its canonical form hashed (names are at most 253 characters, labels are not). */
export function identityKeyName(labels: LabelSet): string {
  return createHash('sha256').update(labels.key).digest('hex').slice(0, 40);
}

/** Inverse of formatLabel: `source:key=value` (the source ends at the first ':', the key at the first '='). */
export function parseLabel(s: string): Label | undefined {
  const colon = s.indexOf(':');
  if (colon <= 0) return undefined;
  const rest = s.slice(colon + 1);
  const eq = rest.indexOf('=');
  const key = eq < 0 ? rest : rest.slice(0, eq);
  if (key === '') return undefined;
  return { source: s.slice(0, colon), key, value: eq < 0 ? '' : rest.slice(eq + 1) };
}

/** The number a MeshdIdentity is named by, or undefined for a name outside the cluster range. */
export function identityNumber(name: string): number | undefined {
  if (!/^[1-9]\d{0,5}$/.test(name)) return undefined;
  const n = Number(name);
  return n >= CLUSTER_IDENTITY_MIN && n <= CLUSTER_IDENTITY_MAX ? n : undefined;
}

/** The label set an identity object holds, checked against the key it names (a mismatch is a corrupt object). */
export function identityOf(obj: IdentityObject): Identity | undefined {
  const id = identityNumber(obj.metadata.name);
  const labels: Label[] = [];
  for (const s of obj.spec.labels) {
    const l = parseLabel(s);
    if (!l) return undefined;
    labels.push(l);
  }
  const set = LabelSet.from(labels);
  if (id === undefined || identityKeyName(set) !== obj.spec.key) return undefined;
  return { id, labels: set, scope: 'cluster' };
}

export interface KubeIdentityAllocatorOptions {
  client: KubeClient;
  /** This node: the key of its entry in status.references. */
  nodeName: string;
  log?: Logger;
  /** How often this node's references are confirmed; keep it well under the GC's grace period. */
  heartbeatMs?: number;
  /** Attempts of the whole claim/key sequence before an allocation is refused. */
  attempts?: number;
  /** Reflector backoff and re-check of kinds not served yet (as the resource source's; tests shorten them). */
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  /** How often the references are matched to the local endpoints' identities (setLocalUsers), writing only what changed. */
  localCheckMs?: number;
}

/**
 * The cluster identities this node's own endpoints use, or undefined while
 * that is not known yet (the agent still starting): then no reference is
 * taken back.
 */
export type LocalUsers = () => Iterable<number> | undefined;

/** Node identities (reserved:remote-node plus the node's labels) are referenced by every node holding them: no endpoint of a node uses its own. */
const isNodeIdentity = (ident: Identity): boolean => ident.labels.labels.some((l) => l.source === 'reserved' && l.key === 'remote-node');

/** Requests that do not fit the kinds' schemas count as bad answers. */
function parsed<T>(schema: z.ZodType<T>, v: Json, what: string): T {
  const r = schema.safeParse(v);
  if (!r.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `${what}: unexpected object (${r.error.issues[0]?.message ?? ''})`);
  return r.data;
}

const isStatus = (e: unknown, status: number): boolean => e instanceof KubeApiError && e.status === status;

export class KubeIdentityAllocator implements IdentityAllocator {
  private readonly local = new LocalIdentityAllocator();
  /** Cluster identities the watch (or this node's own writes) has shown, by number. */
  private readonly byId = new Map<number, Identity>();
  /** MeshdIdentityKey name → number. */
  private readonly keys = new Map<string, number>();
  /** This node's holders per cluster identity (engine references: local endpoints, other nodes' endpoints, nodes). */
  private readonly refs = new Map<number, number>();
  /** Identities whose reference this node keeps in the store (written, confirmed each heartbeat). */
  private readonly referenced = new Set<number>();
  private localUsers: LocalUsers | null = null;
  private localTimer: NodeJS.Timeout | null = null;
  private readonly pending = new Map<string, Promise<Identity>>();
  private readonly listeners = new Set<(change: IdentityChange) => void>();
  private readonly reflectors: Reflector[];
  private readonly synced: Promise<void>;
  private heartbeat: NodeJS.Timeout | null = null;
  private beating: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly o: KubeIdentityAllocatorOptions) {
    this.local.subscribe((c) => this.emit(c.kind, c.identity));
    let idsListed!: () => void;
    let keysListed!: () => void;
    this.synced = Promise.all([new Promise<void>((r) => (idsListed = r)), new Promise<void>((r) => (keysListed = r))]).then(() => undefined);
    const handlers = (onList: (items: Json[]) => void, onEvent: (type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: Json) => void, listed: () => void) => ({
      onList: (items: Json[]) => {
        onList(items);
        listed();
      },
      onEvent,
      // Not served (the CRD is missing): the cache is empty rather than never synced; allocations fail until it appears.
      onMissing: (e: KubeApiError) => {
        this.o.log?.warn('identity kinds not served (CRD missing?)', { code: e.code, error: e.message });
        listed();
      },
      onError: (e: KubeApiError) => this.o.log?.warn('identity watch failed; retrying', { code: e.code, error: e.message }),
      onHealthy: () => undefined,
    });
    const backoff = { ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.missingRecheckMs !== undefined ? { missingRecheckMs: o.missingRecheckMs } : {}) };
    this.reflectors = [
      new Reflector({ client: o.client, path: IDENTITIES_PATH, ...backoff }, handlers((items) => this.replaceIdentities(items), (t, obj) => this.identityEvent(t, obj), idsListed)),
      new Reflector({ client: o.client, path: IDENTITY_KEYS_PATH, ...backoff }, handlers((items) => this.replaceKeys(items), (t, obj) => this.keyEvent(t, obj), keysListed)),
    ];
  }

  /** Starts the watches and the reference heartbeat; resolves after the first list of both kinds. */
  async start(): Promise<void> {
    for (const r of this.reflectors) r.start();
    // One round at a time; a heartbeat that finds one running is done by the next local check instead of being lost.
    let busy = false;
    let due = false;
    const run = (): void => {
      if (busy) return;
      busy = true;
      const all = due;
      due = false;
      this.beating = this.syncReferences(all).finally(() => (busy = false));
    };
    this.heartbeat ??= setInterval(() => {
      due = true;
      run();
    }, this.o.heartbeatMs ?? 60_000);
    this.localTimer ??= setInterval(() => {
      if (this.localUsers || due) run();
    }, this.o.localCheckMs ?? 1_000);
    await this.synced;
  }

  /**
   * From now on this node references only the identities `fn` names (its
   * endpoints') and node identities. New ones are referenced within
   * `localCheckMs`; one no local endpoint uses any more is no longer
   * confirmed (its reference goes stale).
   */
  setLocalUsers(fn: LocalUsers): void {
    this.localUsers = fn;
  }

  /** Identities this node keeps a reference for in the store. */
  referencedIdentities(): ReadonlySet<number> {
    return this.referenced;
  }

  /** Stops watching and confirming; the references in the store go stale (and the GC takes them) unless another agent renews them. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (this.localTimer) clearInterval(this.localTimer);
    this.localTimer = null;
    await Promise.all(this.reflectors.map((r) => r.stop()));
    await this.beating;
  }

  // --- IdentityAllocator ---------------------------------------------------

  allocate(labels: LabelSet): Promise<Identity> {
    if (this.isNodeLocal(labels)) return this.local.allocate(labels);
    const known = this.lookup(labels);
    if (known) return Promise.resolve(this.hold(known));
    const inflight = this.pending.get(labels.key);
    // A second caller waits for the first one's answer and then takes its own reference from the cache.
    if (inflight) return inflight.then(() => this.allocate(labels), () => this.allocate(labels));
    const p = this.allocateInStore(labels).finally(() => this.pending.delete(labels.key));
    this.pending.set(labels.key, p);
    return p;
  }

  release(id: number): boolean {
    if (!this.byId.has(id) || !this.refs.has(id)) return this.local.release(id);
    const n = (this.refs.get(id) ?? 1) - 1;
    if (n > 0) {
      this.refs.set(id, n);
      return false;
    }
    this.refs.delete(id);
    // No write: the reference is no longer confirmed and goes stale, so the GC keeps the identity for its grace period after this last use.
    this.referenced.delete(id);
    return true;
  }

  get(id: number): Identity | undefined {
    return this.byId.get(id) ?? this.local.get(id);
  }

  *all(): Iterable<Identity> {
    yield* this.local.all();
    yield* this.byId.values();
  }

  setReservedLabels(name: ReservedName, extra: Label[]): Identity {
    return this.local.setReservedLabels(name, extra);
  }

  subscribe(listener: (change: IdentityChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The cluster identity of a label set, when the cache knows it. */
  lookup(labels: LabelSet): Identity | undefined {
    const id = this.keys.get(identityKeyName(labels));
    const ident = id === undefined ? undefined : this.byId.get(id);
    return ident && ident.labels.key === labels.key ? ident : undefined;
  }

  /** Numbers this node references, with the count of local holders. */
  references(): ReadonlyMap<number, number> {
    return this.refs;
  }

  // --- allocation through the store ---------------------------------------

  private isNodeLocal(labels: LabelSet): boolean {
    // The local allocator numbers every other set from CLUSTER_IDENTITY_MIN too, so nothing else may go to it.
    return this.local.lookup(labels)?.scope === 'reserved' || labels.labels.some((x) => x.source === 'cidr' || x.source === 'fqdn');
  }

  private hold(ident: Identity): Identity {
    const n = this.refs.get(ident.id) ?? 0;
    this.refs.set(ident.id, n + 1);
    // The first holder of an identity someone else created: say so in the store now, not at the next heartbeat
    // (with setLocalUsers, the local check does it when a local endpoint uses it).
    if (n === 0 && !this.localUsers) {
      this.referenced.add(ident.id);
      void this.writeReference(ident.id, new Date().toISOString()).catch((e: unknown) => this.referenceFailed(ident, e));
    }
    return ident;
  }

  private async allocateInStore(labels: LabelSet): Promise<Identity> {
    const key = identityKeyName(labels);
    let last: unknown;
    const attempts = this.o.attempts ?? 8;
    try {
      for (let attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0) await sleep(Math.min(1_000, 20 * 2 ** attempt) * (0.5 + Math.random()));
        const existing = await this.getKey(key);
        if (existing) {
          const adopted = await this.adopt(existing, labels);
          if (adopted) return this.cacheAndHold(adopted, key);
          continue;
        }
        const claim = await this.claim(labels, key);
        try {
          const created = parsed(IdentityKeyObjectSchema, await this.o.client.send('POST', IDENTITY_KEYS_PATH, { apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdIdentityKey', metadata: { name: key }, spec: { identity: claim.id } }), 'MeshdIdentityKey');
          this.keys.set(key, created.spec.identity);
          return this.cacheAndHold(claim, key, true);
        } catch (e) {
          // Lost the race for this label set (409), or the answer was lost: give the number back and look at the key again.
          last = e;
          await this.deleteClaim(claim.id);
          if (!isStatus(e, 409)) throw e;
        }
      }
    } catch (e) {
      if (isMeshdError(e, 'MESHD_IDENTITY_ALLOCATION')) throw e;
      const unavailable = e instanceof KubeApiError && e.kind === 'unavailable';
      throw new IdentityAllocationError(`cannot allocate a cluster identity for ${labels.key}: ${e instanceof Error ? e.message : String(e)}`, { cause: e, kind: unavailable ? 'unavailable' : 'failed' });
    }
    throw new IdentityAllocationError(`cannot allocate a cluster identity for ${labels.key}: still contended after ${attempts} attempts`, { cause: last });
  }

  private async getKey(key: string): Promise<IdentityKeyObject | undefined> {
    try {
      return parsed(IdentityKeyObjectSchema, await this.o.client.getJson(`${IDENTITY_KEYS_PATH}/${key}`), 'MeshdIdentityKey');
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      throw e;
    }
  }

  /**
   * The identity a key names, with this node's reference added; undefined after repairing a key that
   * names a number now holding other labels (the GC freed it and it was claimed again), so the caller retries.
   */
  private async adopt(key: IdentityKeyObject, labels: LabelSet): Promise<Identity | undefined> {
    const id = key.spec.identity;
    const now = new Date().toISOString();
    try {
      const obj = parsed(IdentityObjectSchema, await this.o.client.send('PATCH', `${IDENTITIES_PATH}/${id}`, { status: { references: { [this.o.nodeName]: now } } }), 'MeshdIdentity');
      const ident = identityOf(obj);
      if (ident && ident.labels.key === labels.key) return ident;
      // The number was reused for other labels: our patch added a stray reference there; take it back.
      await this.o.client.send('PATCH', `${IDENTITIES_PATH}/${id}`, { status: { references: { [this.o.nodeName]: null } } }).catch(() => undefined);
    } catch (e) {
      if (!isStatus(e, 404)) throw e;
      // The key outlived its identity (GC in progress, or its creator stopped in between): claim the same number again.
      try {
        return await this.createIdentity(id, labels, key.metadata.name);
      } catch (e2) {
        if (!isStatus(e2, 409)) throw e2;
        return undefined; // someone claimed it meanwhile: look again
      }
    }
    // Remove the stale key (only the version we read), so the next attempt can create a fresh one.
    await this.o.client.send('DELETE', `${IDENTITY_KEYS_PATH}/${key.metadata.name}`, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: key.metadata.resourceVersion } }).catch((e: unknown) => {
      if (!isStatus(e, 404) && !isStatus(e, 409)) throw e;
    });
    return undefined;
  }

  /** Claims a free number for the labels by creating its MeshdIdentity (409: taken, try another). */
  private async claim(labels: LabelSet, key: string): Promise<Identity> {
    for (let i = 0; i < 64; i++) {
      const id = this.freeNumber();
      try {
        return await this.createIdentity(id, labels, key);
      } catch (e) {
        if (!isStatus(e, 409)) throw e;
      }
    }
    throw new IdentityAllocationError(`no free cluster identity for ${labels.key} after 64 tries`);
  }

  /** A random number no identity in the cache has; random so that agents allocating at once rarely pick the same one. */
  private freeNumber(): number {
    const span = CLUSTER_IDENTITY_MAX - CLUSTER_IDENTITY_MIN + 1;
    if (this.byId.size >= span) throw new IdentityAllocationError('the cluster identity space is exhausted');
    for (;;) {
      const n = CLUSTER_IDENTITY_MIN + Math.floor(Math.random() * span);
      if (!this.byId.has(n)) return n;
    }
  }

  private async createIdentity(id: number, labels: LabelSet, key: string): Promise<Identity> {
    const body = {
      apiVersion: 'meshd.io/v1alpha1',
      kind: 'MeshdIdentity',
      metadata: { name: String(id) },
      spec: { labels: labels.labels.map(formatLabel), key },
      status: { references: { [this.o.nodeName]: new Date().toISOString() } },
    };
    const ident = identityOf(parsed(IdentityObjectSchema, await this.o.client.send('POST', IDENTITIES_PATH, body), 'MeshdIdentity'));
    if (!ident) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `MeshdIdentity ${id}: the created object does not read back`);
    return ident;
  }

  private async deleteClaim(id: number): Promise<void> {
    try {
      await this.o.client.send('DELETE', `${IDENTITIES_PATH}/${id}`);
    } catch (e) {
      // The claim then keeps only this node's creation-time reference, which goes stale; the GC removes it.
      this.o.log?.debug('deleting a lost identity claim failed; left to the GC', { id, error: String(e) });
    }
    if (!this.refs.has(id)) this.forget(id);
  }

  /** Records an identity this node has just created or adopted and takes the caller's reference (already in the store). */
  private cacheAndHold(ident: Identity, key: string, created = false): Identity {
    this.keys.set(key, ident.id);
    const cached = this.byId.get(ident.id);
    const use = cached && cached.labels.key === ident.labels.key ? cached : ident;
    if (use !== cached) this.upsert(use);
    this.refs.set(use.id, (this.refs.get(use.id) ?? 0) + 1);
    this.referenced.add(use.id); // created or adopted with this node's reference
    if (created) this.o.log?.debug('cluster identity allocated', { id: use.id, labels: use.labels.key });
    return use;
  }

  // --- references ------------------------------------------------------------

  private async writeReference(id: number, at: string): Promise<void> {
    await this.o.client.send('PATCH', `${IDENTITIES_PATH}/${id}`, { status: { references: { [this.o.nodeName]: at } } });
  }

  private referenceFailed(ident: Identity, e: unknown): void {
    if (isStatus(e, 404)) void this.recreate(ident);
    else this.o.log?.warn('confirming an identity reference failed; retried at the next heartbeat', { id: ident.id, error: String(e) });
  }

  /** The held identities this node should reference: the local endpoints' and node identities (every held one without setLocalUsers); undefined while unknown. */
  private wanted(): Set<number> | undefined {
    if (!this.localUsers) return new Set(this.refs.keys());
    const local = this.localUsers();
    if (!local) return undefined;
    const out = new Set<number>();
    for (const id of local) if (this.refs.has(id)) out.add(id);
    for (const id of this.refs.keys()) {
      const ident = this.byId.get(id);
      if (ident && isNodeIdentity(ident)) out.add(id);
    }
    return out;
  }

  /** Confirms every identity this node references (a few requests at a time); one deleted meanwhile is created again with its number. */
  async confirmReferences(): Promise<void> {
    await this.syncReferences(true);
  }

  /**
   * Matches the store to wanted(): references what is newly wanted (all of
   * it when `confirmAll`, the heartbeat) and stops confirming what no local
   * endpoint uses any more (that reference goes stale; no write).
   */
  private async syncReferences(confirmAll: boolean): Promise<void> {
    if (this.stopped) return;
    const wanted = this.wanted();
    if (!wanted) return;
    for (const id of this.referenced) if (!wanted.has(id)) this.referenced.delete(id);
    const at = new Date().toISOString();
    const todo = [...wanted].filter((id) => confirmAll || !this.referenced.has(id));
    const worker = async (): Promise<void> => {
      for (let id = todo.pop(); id !== undefined; id = todo.pop()) {
        const ident = this.byId.get(id);
        // Released while this round ran: its reference is not written again.
        if (!ident || this.stopped || !this.refs.has(id)) continue;
        try {
          await this.writeReference(id, at);
          this.referenced.add(id);
          if (!this.refs.has(id)) this.referenced.delete(id); // released during the write
        } catch (e) {
          if (isStatus(e, 404)) {
            await this.recreate(ident);
            this.referenced.add(id);
          } else this.o.log?.warn('confirming an identity reference failed', { id, error: String(e) });
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  }

  private async recreate(ident: Identity): Promise<void> {
    const key = identityKeyName(ident.labels);
    try {
      await this.createIdentity(ident.id, ident.labels, key);
      await this.o.client.send('POST', IDENTITY_KEYS_PATH, { apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdIdentityKey', metadata: { name: key }, spec: { identity: ident.id } }).catch((e: unknown) => {
        if (!isStatus(e, 409)) throw e;
      });
      this.o.log?.info('an identity in use was deleted from the store; created it again', { id: ident.id });
    } catch (e) {
      this.o.log?.warn('an identity in use is gone from the store and could not be created again', { id: ident.id, error: String(e) });
    }
  }

  // --- the watches -----------------------------------------------------------

  private upsert(ident: Identity): void {
    const old = this.byId.get(ident.id);
    if (old && old.labels.key === ident.labels.key) return;
    if (old) this.emit('removed', old);
    this.byId.set(ident.id, ident);
    this.emit('added', ident);
  }

  private forget(id: number): void {
    const old = this.byId.get(id);
    if (!old) return;
    this.byId.delete(id);
    this.emit('removed', old);
  }

  private replaceIdentities(items: Json[]): void {
    const seen = new Set<number>();
    for (const item of items) {
      const ident = this.readIdentity(item);
      if (!ident) continue;
      seen.add(ident.id);
      this.upsert(ident);
    }
    for (const id of [...this.byId.keys()]) if (!seen.has(id)) this.identityGone(id);
  }

  private identityEvent(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: Json): void {
    const ident = this.readIdentity(obj);
    if (!ident) return;
    if (type === 'DELETED') this.identityGone(ident.id);
    else this.upsert(ident);
  }

  /**
   * Deleted from the store: forgotten unless held here. One this node
   * references is created again; one held only for other nodes' endpoints
   * stays cached (their node creates it again, or its endpoints go away).
   */
  private identityGone(id: number): void {
    const ident = this.byId.get(id);
    if (!ident) return;
    if (this.refs.has(id)) {
      if (!this.stopped && (this.referenced.has(id) || this.wanted()?.has(id))) void this.recreate(ident);
      return;
    }
    this.forget(id);
  }

  private readIdentity(item: Json): Identity | undefined {
    const r = IdentityObjectSchema.safeParse(item);
    const ident = r.success ? identityOf(r.data) : undefined;
    if (!ident) this.o.log?.warn('ignoring a malformed MeshdIdentity', { name: r.success ? r.data.metadata.name : undefined });
    return ident;
  }

  private replaceKeys(items: Json[]): void {
    this.keys.clear();
    for (const item of items) this.keyEvent('ADDED', item);
  }

  private keyEvent(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: Json): void {
    const r = IdentityKeyObjectSchema.safeParse(obj);
    if (!r.success) return;
    if (type === 'DELETED') {
      if (this.keys.get(r.data.metadata.name) === r.data.spec.identity) this.keys.delete(r.data.metadata.name);
    } else {
      this.keys.set(r.data.metadata.name, r.data.spec.identity);
    }
  }

  private emit(kind: 'added' | 'removed', identity: Identity): void {
    for (const l of this.listeners) l({ kind, identity });
  }
}
