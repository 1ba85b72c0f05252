/**
 * The Kubernetes API as a ResourceSource: one Reflector (list + watch) per
 * kind meshd reads, every object parsed by its kind's module, typed events
 * delivered in serial batches.
 *
 * - `start()` resolves only after every kind has been listed (or found not
 *   served) and the first batch, holding everything, has been handled: the
 *   agent writes nothing before it has read the whole cluster. Until the API
 *   server answers, start() keeps waiting (with backoff); stop() makes it
 *   reject with MESHD_K8S_SOURCE_STOPPED.
 * - An object that does not parse is reported once per resourceVersion (origin
 *   `k8s:Kind/ns/name@rv`, field path) and produces no event: its last good
 *   version stays in force. Deleting it deletes that last good version.
 * - Changes are coalesced for `batchDelayMs` and delivered one batch at a time;
 *   the next batch goes out only after the previous one resolved. The state is
 *   updated before a batch is handed over, so a failing handler (reported as
 *   SCAN_FAILED) does not get the same events again.
 * - An update that changes nothing meshd reads (a Pod's status conditions,
 *   say) produces no event: objects are compared after parsing.
 * - A kind whose CRD is not installed is reported (KIND_NOT_SERVED), is empty
 *   until it appears, and is re-checked every `missingRecheckMs`.
 * - `connection()` says whether the API server is reachable, since when, and
 *   the last error, for `meshd status`.
 *
 *   const source = new KubeSource({ client: new KubeClient(resolveKubeConfig().kubeConfig) });
 *   await Agent.start({ config, source, mode: 'kubernetes' });
 */
import { createHash } from 'node:crypto';
import type { SourceStatus } from '../api/status.js';
import { z } from 'zod';
import type { ResourceEvent, ResourceHandlers, ResourceSource, SourceProblem } from '../agent/resource-source.js';
import { MeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import type { Json, KubeApiError, KubeClient } from './client.js';
import { KINDS, parseResource, RESOURCE_KINDS, resourceKey, scopeOf, type Resource, type ResourceKey, type ResourceKind, type ResourceRef } from './kinds.js';
import { Reflector } from './reflector.js';

/** The collection (all namespaces, except for Secrets) each kind is read from. */
export const KIND_PATHS: Readonly<Record<ResourceKind, string>> = {
  Namespace: '/api/v1/namespaces',
  Pod: '/api/v1/pods',
  Node: '/api/v1/nodes',
  Service: '/api/v1/services',
  EndpointSlice: '/apis/discovery.k8s.io/v1/endpointslices',
  NetworkPolicy: '/apis/networking.k8s.io/v1/networkpolicies',
  // Gateway API (read with gatewayAPI.enabled, src/gateway).
  GatewayClass: '/apis/gateway.networking.k8s.io/v1/gatewayclasses',
  Gateway: '/apis/gateway.networking.k8s.io/v1/gateways',
  HTTPRoute: '/apis/gateway.networking.k8s.io/v1/httproutes',
  GRPCRoute: '/apis/gateway.networking.k8s.io/v1/grpcroutes',
  ReferenceGrant: '/apis/gateway.networking.k8s.io/v1beta1/referencegrants',
  BackendTLSPolicy: '/apis/gateway.networking.k8s.io/v1/backendtlspolicies',
  ConfigMap: '/api/v1/configmaps',
  CiliumNetworkPolicy: '/apis/cilium.io/v2/ciliumnetworkpolicies',
  CiliumClusterwideNetworkPolicy: '/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies',
  CiliumCIDRGroup: '/apis/cilium.io/v2/ciliumcidrgroups',
  CiliumLoadBalancerIPPool: '/apis/cilium.io/v2/ciliumloadbalancerippools',
  CiliumL2AnnouncementPolicy: '/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies',
  // TLS interception's Secrets: one namespace (Cilium's default tls.secretsNamespace.name), never every Secret.
  Secret: '/api/v1/namespaces/cilium-secrets/secrets',
};

export interface KubeSourceOptions {
  client: KubeClient;
  /** The kinds to read; all of src/k8s/kinds.ts by default. */
  kinds?: readonly ResourceKind[];
  /** A kind read from another collection than KIND_PATHS's (e.g. Secrets of one namespace only). */
  kindPaths?: Partial<Record<ResourceKind, string>>;
  /** How long changes are collected into one batch. */
  batchDelayMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  watchTimeoutS?: number;
  log?: Logger;
}

export interface KindState {
  /** Listed at least once (or found not served). */
  synced: boolean;
  /** False while the API server does not serve the kind (CRD missing). */
  served: boolean;
  resourceVersion: string;
  /** Objects of the kind meshd holds now (valid versions). */
  objects: number;
  /** Complete lists so far: the first, plus one per relist (410 Gone, or the kind appearing). */
  lists: number;
}

export interface KubeConnectionState {
  server: string;
  state: 'connecting' | 'connected' | 'disconnected';
  /** When `state` was entered (ISO 8601). */
  since: string;
  lastError?: { code: string; status?: number; message: string; at: string };
  kinds: Record<string, KindState>;
}

interface Known {
  ref: ResourceRef;
  object: Resource;
  rv: string;
  /** Hash of the parsed object: an update that leaves it equal is no change. */
  digest: string;
}

const MetaSchema = z.object({
  metadata: z.object({ name: z.string().min(1), namespace: z.string().optional(), resourceVersion: z.string().default('') }),
});

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class KubeSource implements ResourceSource {
  private readonly kinds: readonly ResourceKind[];
  private readonly known = new Map<ResourceKey, Known>();
  /** resourceVersion of the last rejected version per object, so each bad version is reported once. */
  private readonly rejected = new Map<ResourceKey, string>();
  private readonly kindState = new Map<ResourceKind, KindState>();
  private readonly reflectors: Reflector[] = [];
  private readonly failing = new Set<ResourceKind>();
  private conn: Omit<KubeConnectionState, 'kinds' | 'server'> = { state: 'connecting', since: new Date().toISOString() };
  private handlers: ResourceHandlers | null = null;
  private pending: ResourceEvent[] = [];
  /** Set once the first batch went out; until then everything accumulates into it. */
  private live = false;
  private timer: NodeJS.Timeout | null = null;
  private delivering: Promise<void> = Promise.resolve();
  private stopped = false;
  private onSynced: (() => void) | null = null;

  constructor(private readonly o: KubeSourceOptions) {
    this.kinds = o.kinds ?? RESOURCE_KINDS;
    for (const k of this.kinds) this.kindState.set(k, { synced: false, served: true, resourceVersion: '', objects: 0, lists: 0 });
  }

  private pathOf(kind: ResourceKind): string {
    return this.o.kindPaths?.[kind] ?? KIND_PATHS[kind];
  }

  async start(handlers: ResourceHandlers): Promise<void> {
    if (this.handlers || this.stopped) throw new MeshdError('MESHD_K8S_SOURCE_REUSED', 'a KubeSource starts once', { kind: 'failed' });
    this.handlers = handlers;
    const synced = new Promise<void>((resolve) => (this.onSynced = resolve));
    for (const kind of this.kinds) {
      const r = new Reflector(
        { client: this.o.client, path: this.pathOf(kind), ...(this.o.backoff ? { backoff: this.o.backoff } : {}), ...(this.o.missingRecheckMs ? { missingRecheckMs: this.o.missingRecheckMs } : {}), ...(this.o.watchTimeoutS ? { watchTimeoutS: this.o.watchTimeoutS } : {}) },
        {
          onList: (items, rv) => this.replace(kind, items, rv),
          onEvent: (type, obj) => (type === 'DELETED' ? this.remove(kind, obj) : this.upsert(kind, obj)),
          onMissing: (err) => this.missing(kind, err),
          onError: (err) => this.failed(kind, err),
          onHealthy: () => this.healthy(kind),
        },
      );
      this.reflectors.push(r);
      r.start();
    }
    this.checkSynced();
    await synced;
    // Stopped before the cluster was read: resolving would let the agent act on a partial (empty) world.
    if (this.stopped) throw new MeshdError('MESHD_K8S_SOURCE_STOPPED', 'stopped before the cluster was read', { kind: 'unavailable' });
    const first = this.take();
    this.o.log?.info('cluster read', { objects: this.known.size, events: first.length });
    if (first.length > 0) await handlers.onBatch(first);
    this.live = true;
    this.schedule();
  }

  status(): SourceStatus {
    const c = this.connection();
    return { type: 'kubernetes', server: c.server, state: c.state, since: c.since, lastError: c.lastError ?? null, kinds: c.kinds };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.onSynced?.(); // a start() still waiting for the first list returns
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await Promise.all(this.reflectors.map((r) => r.stop()));
    await this.delivering;
    this.handlers = null;
  }

  connection(): KubeConnectionState {
    const counts = new Map<ResourceKind, number>();
    for (const k of this.known.values()) counts.set(k.ref.kind, (counts.get(k.ref.kind) ?? 0) + 1);
    const kinds = [...this.kindState].map(([kind, st]): [string, KindState] => [kind, { ...st, objects: counts.get(kind) ?? 0 }]);
    return { server: this.o.client.server, ...this.conn, kinds: Object.fromEntries(kinds) };
  }

  // ---- delivery ------------------------------------------------------------------------------

  private take(): ResourceEvent[] {
    const batch = this.pending;
    this.pending = [];
    return batch;
  }

  private schedule(): void {
    if (!this.live || this.stopped || this.timer || this.pending.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.delivering = this.delivering.then(() => this.deliver());
    }, this.o.batchDelayMs ?? 20);
  }

  private async deliver(): Promise<void> {
    const handlers = this.handlers;
    const batch = this.take();
    if (!handlers || batch.length === 0) return;
    try {
      await handlers.onBatch(batch);
    } catch (e) {
      this.problems([{ origin: `k8s:${this.o.client.server}`, path: [], code: 'SCAN_FAILED', message: `applying ${batch.length} change(s) failed: ${e instanceof Error ? e.message : String(e)}` }]);
    }
    this.schedule(); // what arrived while this batch was being applied
  }

  private push(ev: ResourceEvent): void {
    this.pending.push(ev);
    this.schedule();
  }

  private problems(ps: SourceProblem[]): void {
    try {
      this.handlers?.onProblems(ps);
    } catch (e) {
      // The problem handler itself failed: nothing else can report it but the log, and the watches must go on.
      this.o.log?.error('problem handler failed', { err: e });
    }
  }

  // ---- objects -------------------------------------------------------------------------------

  private refOf(kind: ResourceKind, raw: Json): (ResourceRef & { rv: string }) | null {
    const m = MetaSchema.safeParse(raw);
    if (!m.success) return null;
    const { name, namespace, resourceVersion } = m.data.metadata;
    return scopeOf(kind) === 'cluster' ? { kind, name, rv: resourceVersion } : { kind, namespace: namespace ?? 'default', name, rv: resourceVersion };
  }

  private upsert(kind: ResourceKind, raw: Json): void {
    const meta = this.refOf(kind, raw);
    if (!meta || !isRecord(raw)) return; // the API server never sends an object without a name
    const { rv, ...ref } = meta;
    const key = resourceKey(ref);
    const prev = this.known.get(key);
    if (prev && prev.rv === rv) return;
    const origin = `k8s:${key}@${rv}`;
    // List items of built-in kinds carry no kind/apiVersion; the collection says what they are.
    const r = parseResource({ ...raw, kind, apiVersion: typeof raw.apiVersion === 'string' ? raw.apiVersion : KINDS[kind].apiVersions[0] });
    if (!r.ok) {
      if (this.rejected.get(key) === rv) return;
      this.rejected.set(key, rv);
      this.problems(r.problems.map((p) => ({ origin, ref, path: p.path, code: p.code, message: p.message })));
      return;
    }
    this.rejected.delete(key);
    const digest = createHash('sha256').update(JSON.stringify(r.value)).digest('base64');
    this.known.set(key, { ref, object: r.value, rv, digest });
    if (prev?.digest === digest) return;
    this.push({ type: 'upsert', ref, key, object: r.value, origin });
  }

  private remove(kind: ResourceKind, raw: Json): void {
    const meta = this.refOf(kind, raw);
    if (!meta) return;
    const { rv, ...ref } = meta;
    const key = resourceKey(ref);
    this.rejected.delete(key);
    const prev = this.known.get(key);
    if (!prev) return;
    this.known.delete(key);
    this.push({ type: 'delete', ref: prev.ref, key, object: prev.object, origin: `k8s:${key}@${rv || prev.rv}` });
  }

  /** A full list of `kind`: upsert what it holds, delete what it no longer does. */
  private replace(kind: ResourceKind, items: Json[], rv: string, served = true): void {
    const seen = new Set<ResourceKey>();
    for (const item of items) {
      const meta = this.refOf(kind, item);
      if (!meta) continue;
      seen.add(resourceKey({ kind, name: meta.name, ...(meta.namespace ? { namespace: meta.namespace } : {}) }));
      this.upsert(kind, item);
    }
    for (const [key, k] of [...this.known]) if (k.ref.kind === kind && !seen.has(key)) this.remove(kind, { metadata: { name: k.ref.name, namespace: k.ref.namespace, resourceVersion: rv } });
    for (const key of [...this.rejected.keys()]) if (key.startsWith(`${kind}/`) && !seen.has(key)) this.rejected.delete(key);
    const st = this.state(kind);
    const wasServed = st.served;
    Object.assign(st, { synced: true, served, resourceVersion: rv, lists: st.lists + (served ? 1 : 0) });
    if (served && !wasServed) this.o.log?.info('kind is served now', { kind });
    this.checkSynced();
  }

  private missing(kind: ResourceKind, err: KubeApiError): void {
    const st = this.state(kind);
    const first = st.served || !st.synced;
    this.replace(kind, [], '', false);
    if (first) {
      this.problems([{ origin: `k8s:${this.pathOf(kind)}`, path: [], code: 'KIND_NOT_SERVED', message: `${kind} is not served by the API server (${err.message}); is its CRD installed? Treated as empty until it appears.` }]);
    }
    this.healthy(kind); // the server answered
  }

  private state(kind: ResourceKind): KindState {
    let st = this.kindState.get(kind);
    if (!st) this.kindState.set(kind, (st = { synced: false, served: true, resourceVersion: '', objects: 0, lists: 0 }));
    return st;
  }

  private checkSynced(): void {
    if (this.kinds.every((k) => this.kindState.get(k)?.synced)) this.onSynced?.();
  }

  // ---- connection ----------------------------------------------------------------------------

  private failed(kind: ResourceKind, err: KubeApiError): void {
    if ((err.status === 401 || err.status === 403) && !this.failing.has(kind)) {
      // Not an outage: the credentials lack a right (see install/rbac.yaml). The kind is retried, and start() waits for it.
      this.o.log?.error('the API server refuses to serve a kind meshd needs', { kind, path: this.pathOf(kind), status: err.status, err: err.message });
    }
    this.failing.add(kind);
    const at = new Date().toISOString();
    this.conn.lastError = { code: err.code, ...(err.status === undefined ? {} : { status: err.status }), message: err.message, at };
    if (this.conn.state !== 'disconnected') {
      this.conn = { ...this.conn, state: 'disconnected', since: at };
      this.o.log?.warn('API server connection lost; enforcing the last known state', { server: this.o.client.server, err: err.message, code: err.code });
    }
  }

  private healthy(kind: ResourceKind): void {
    this.failing.delete(kind);
    if (this.failing.size > 0 || this.conn.state === 'connected') return;
    const was = this.conn.state;
    this.conn = { ...this.conn, state: 'connected', since: new Date().toISOString() };
    if (was === 'disconnected') this.o.log?.info('API server connection back', { server: this.o.client.server });
  }
}
