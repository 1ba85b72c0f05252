/**
 * Identity allocation: a label set → a numeric security identity, the same
 * number for the same set, shared by every endpoint carrying it.
 *
 * Callers depend only on IdentityAllocator, so a cluster-wide allocator (one
 * backed by Kubernetes CiliumIdentity objects) can replace LocalIdentityAllocator
 * without changing them. Allocation is reference counted: allocate() once per
 * holder, release() once per holder; the identity disappears at zero.
 *
 * allocate() is asynchronous because a cluster-wide allocator has to ask the
 * API server for a number (create or find the CiliumIdentity for the label
 * set) and may be refused. release() is synchronous: it only drops this
 * agent's reference, which cannot fail; a cluster-wide allocator gives the
 * shared number back later (garbage collection under a lease, as Cilium's
 * operator does), so a caller never has to undo a committed change because
 * a release failed.
 *
 *   const alloc = new LocalIdentityAllocator();
 *   const id = await alloc.allocate(podLabels({ namespace: 'default', labels: { app: 'web' } }));
 *   alloc.release(id.id);
 */
import { MeshdError } from '../util/errors.js';
import { LabelSet } from './labels.js';
import type { Label } from './labels.js';
import { CLUSTER_IDENTITY_MIN, LOCAL_IDENTITY_MIN, RESERVED_NAMES, ReservedIdentity, reservedLabel } from './reserved.js';
import type { ReservedName } from './reserved.js';

export type IdentityScope = 'reserved' | 'cluster' | 'local';

export interface Identity {
  readonly id: number;
  readonly labels: LabelSet;
  readonly scope: IdentityScope;
}

/** An identity could not be allocated (the number space is exhausted, or a cluster-wide allocator refused). */
export class IdentityAllocationError extends MeshdError {
  constructor(message: string, opts: { cause?: unknown; kind?: 'failed' | 'unavailable' } = {}) {
    super('MESHD_IDENTITY_ALLOCATION', message, { kind: opts.kind ?? 'failed', cause: opts.cause });
  }
}

export type IdentityChange = { kind: 'added' | 'removed'; identity: Identity };

export interface IdentityAllocator {
  /**
   * Identity for these labels, allocating a new number when the set is new; takes one reference.
   * Rejects with a MeshdError (MESHD_IDENTITY_ALLOCATION) when no number can be had; a rejected call
   * holds no reference. Listeners hear of a new identity before the promise resolves.
   */
  allocate(labels: LabelSet): Promise<Identity>;
  /**
   * Drops one reference; returns true when the identity was removed (here: from this agent's view).
   * Never fails. Reserved identities are never removed.
   */
  release(id: number): boolean;
  get(id: number): Identity | undefined;
  /** Every live identity (reserved ones included). */
  all(): Iterable<Identity>;
  /**
   * Sets the node-local labels of a reserved identity (the local node's labels on `host`, so nodeSelector
   * and fromNodes can select it). Listeners see the old identity removed and the new one added.
   */
  setReservedLabels(name: ReservedName, extra: Label[]): Identity;
  /** Called after an identity appears (added) or disappears (removed). */
  subscribe(listener: (change: IdentityChange) => void): () => void;
}

/** Highest number of each scope (Cilium's cluster identities are 16 bits; local ones use the 24-bit local scope). */
const CLUSTER_IDENTITY_MAX = 0xffff;
const LOCAL_IDENTITY_MAX = LOCAL_IDENTITY_MIN + 0xffffff;

/** Identities local to this agent: cluster scope from 256, CIDR/FQDN (any label set containing a `cidr:` label) from 1<<24. */
export class LocalIdentityAllocator implements IdentityAllocator {
  private readonly byId = new Map<number, Identity>();
  private readonly byKey = new Map<string, Identity>();
  private readonly refs = new Map<number, number>();
  private readonly listeners = new Set<(change: IdentityChange) => void>();
  private nextCluster = CLUSTER_IDENTITY_MIN;
  private nextLocal = LOCAL_IDENTITY_MIN;
  private readonly freeCluster: number[] = [];
  private readonly freeLocal: number[] = [];

  constructor() {
    for (const name of RESERVED_NAMES) {
      const id = ReservedIdentity[name];
      const extra: Label[] = [];
      // world stands for every address no narrower identity covers: it carries the /0 CIDR labels so that
      // toCIDR 0.0.0.0/0 selects it, as Cilium does.
      if (name === 'world') {
        extra.push({ source: 'cidr', key: '0.0.0.0/0', value: '' }, { source: 'cidr', key: '::/0', value: '' });
      }
      this.setReserved(id, LabelSet.from([reservedLabel(name), ...extra]));
    }
  }

  setReservedLabels(name: ReservedName, extra: Label[]): Identity {
    const id = ReservedIdentity[name];
    const old = this.byId.get(id);
    if (old) {
      this.byKey.delete(old.labels.key);
      this.emit('removed', old);
    }
    const ident = this.setReserved(id, LabelSet.from([reservedLabel(name), ...extra]));
    this.emit('added', ident);
    return ident;
  }

  private setReserved(id: number, labels: LabelSet): Identity {
    const ident: Identity = { id, labels, scope: 'reserved' };
    this.byId.set(id, ident);
    this.byKey.set(labels.key, ident);
    return ident;
  }

  allocate(labels: LabelSet): Promise<Identity> {
    try {
      return Promise.resolve(this.allocateNow(labels));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private allocateNow(labels: LabelSet): Identity {
    const existing = this.byKey.get(labels.key);
    if (existing) {
      if (existing.scope !== 'reserved') this.refs.set(existing.id, (this.refs.get(existing.id) ?? 0) + 1);
      return existing;
    }
    const local = labels.labels.some((l) => l.source === 'cidr' || l.source === 'fqdn');
    const id = local ? this.freeLocal.pop() : this.freeCluster.pop();
    if (id === undefined) {
      const next = local ? this.nextLocal : this.nextCluster;
      if (next > (local ? LOCAL_IDENTITY_MAX : CLUSTER_IDENTITY_MAX)) {
        throw new IdentityAllocationError(`no ${local ? 'local' : 'cluster'} identity left for ${labels.key}`);
      }
      if (local) this.nextLocal++;
      else this.nextCluster++;
      return this.insert(next, labels, local);
    }
    return this.insert(id, labels, local);
  }

  private insert(id: number, labels: LabelSet, local: boolean): Identity {
    const ident: Identity = { id, labels, scope: local ? 'local' : 'cluster' };
    this.byId.set(id, ident);
    this.byKey.set(labels.key, ident);
    this.refs.set(id, 1);
    this.emit('added', ident);
    return ident;
  }

  release(id: number): boolean {
    const ident = this.byId.get(id);
    if (!ident || ident.scope === 'reserved') return false;
    const n = (this.refs.get(id) ?? 1) - 1;
    if (n > 0) {
      this.refs.set(id, n);
      return false;
    }
    this.refs.delete(id);
    this.byId.delete(id);
    this.byKey.delete(ident.labels.key);
    // Numbers are reused only after release so that a number never means two label sets at once.
    (ident.scope === 'local' ? this.freeLocal : this.freeCluster).push(id);
    this.emit('removed', ident);
    return true;
  }

  get(id: number): Identity | undefined {
    return this.byId.get(id);
  }

  lookup(labels: LabelSet): Identity | undefined {
    return this.byKey.get(labels.key);
  }

  all(): Iterable<Identity> {
    return this.byId.values();
  }

  subscribe(listener: (change: IdentityChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(kind: 'added' | 'removed', identity: Identity): void {
    for (const l of this.listeners) l({ kind, identity });
  }
}
