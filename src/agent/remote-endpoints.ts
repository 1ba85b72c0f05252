/**
 * Other nodes' pods from their MeshdEndpoint objects: a reflector on the
 * kind (all namespaces) keeps the objects whose `status.nodeName` is another
 * node, and hands each change to the endpoint subscriber, which feeds the
 * engine (address → identity for the ipcache, named ports for egress rules).
 *
 * - Objects of this node are ignored: the local CNI registrations are
 *   authoritative for local pods (this node's agent writes those objects).
 * - The identity comes from the object's labels (the same label set maps to
 *   the same identity cluster-wide); with cluster-wide numbering
 *   (identityAllocationMode=crd) the number the object names must be the one
 *   this node has for those labels. A mismatch is logged, listed in
 *   `meshd status` and kept until the object or the identity changes; the
 *   number this node has for the labels is what is enforced, since policies
 *   select labels and the node's selectors know that number.
 * - An object that does not parse is reported with its field path, and its
 *   previous version stays in force.
 * - `synced` resolves after the first list (or once the kind is found not
 *   served), so the agent's start waits for it like for every other kind.
 *
 *   const remote = new RemoteEndpoints({ client, nodeName, checkIdentity: true, log });
 *   remote.start((ids) => …sync those pods…);
 *   await remote.synced;
 */
import { z } from 'zod';
import type { EndpointObjectsStatus } from '../api/status.js';
import { LabelSet, type Label } from '../identity/labels.js';
import { parseLabel } from '../identity/kube-allocator.js';
import type { Json, KubeApiError, KubeClient } from '../k8s/client.js';
import { addressStrings, MEP_PATH, parseMeshdEndpoint, type MeshdEndpoint } from '../k8s/meshd-endpoint.js';
import { formatPath } from '../k8s/problem.js';
import { Reflector } from '../k8s/reflector.js';
import type { Logger } from '../util/log.js';

/** What the engine gets for another node's pod. */
export interface RemoteEndpoint {
  /** "namespace/name", the engine's endpoint id. */
  id: string;
  nodeName: string;
  /** The number the object names. */
  identity: number;
  labels: LabelSet;
  ips: string[];
  ports: Array<{ name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }>;
}

/** What the endpoint subscriber reads. */
export interface RemoteEndpointLookup {
  get(id: string): RemoteEndpoint | undefined;
}

export interface IdentityMismatch {
  endpoint: string;
  node: string;
  /** The number the object names. */
  objectIdentity: number;
  /** The number this node has for the object's labels (what is enforced). */
  localIdentity: number;
  at: string;
}

export interface RemoteEndpointsOptions {
  client: KubeClient;
  nodeName: string;
  /** Numbers are cluster-wide (identityAllocationMode=crd): compare them. */
  checkIdentity: boolean;
  log?: Logger;
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  /** Hears this node's own objects as the watch sees them (undefined: deleted), so the writer can repair them. */
  onOwnObject?: (id: string, status: MeshdEndpoint['status'] | undefined) => void;
}

/** The object → what the engine needs; undefined (with the reason) for labels that do not parse. */
export function remoteEndpointOf(o: MeshdEndpoint): { ok: true; value: RemoteEndpoint } | { ok: false; path: string; message: string } {
  const labels: Label[] = [];
  for (const [i, s] of o.status.identity.labels.entries()) {
    const l = parseLabel(s);
    if (!l) return { ok: false, path: `status.identity.labels[${i}]`, message: `${JSON.stringify(s)} is not source:key=value` };
    labels.push(l);
  }
  return {
    ok: true,
    value: {
      id: `${o.metadata.namespace}/${o.metadata.name}`,
      nodeName: o.status.nodeName,
      identity: o.status.identity.id,
      labels: LabelSet.from(labels),
      ips: addressStrings(o.status),
      ports: o.status.namedPorts.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
    },
  };
}

export class RemoteEndpoints implements RemoteEndpointLookup {
  private readonly byId = new Map<string, RemoteEndpoint>();
  private readonly mismatches = new Map<string, IdentityMismatch>();
  /** resourceVersion of the last rejected version per object, so each bad version is reported once. */
  private readonly rejected = new Map<string, string>();
  private readonly reflector: Reflector;
  private onChange: ((ids: string[]) => void) | null = null;
  private listed = false;
  private served = true;
  private lastError: { code: string; message: string; at: string } | null = null;
  readonly synced: Promise<void>;
  private markSynced!: () => void;

  constructor(private readonly o: RemoteEndpointsOptions) {
    this.synced = new Promise((r) => (this.markSynced = r));
    this.reflector = new Reflector(
      { client: o.client, path: MEP_PATH, ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.missingRecheckMs !== undefined ? { missingRecheckMs: o.missingRecheckMs } : {}) },
      {
        onList: (items) => this.replace(items),
        onEvent: (type, obj) => this.changed(this.event(type, obj)),
        onMissing: (e) => this.missing(e),
        onError: (e) => {
          this.lastError = { code: e.code, message: e.message, at: new Date().toISOString() };
          this.o.log?.warn('MeshdEndpoint watch failed; retrying', { code: e.code, err: e.message });
        },
        onHealthy: () => undefined,
      },
    );
  }

  /** Starts the watch; `onChange` gets the ids of the pods whose object changed (the first list included). */
  start(onChange: (ids: string[]) => void): void {
    this.onChange = onChange;
    this.reflector.start();
  }

  async stop(): Promise<void> {
    this.markSynced(); // a start still waiting returns
    await this.reflector.stop();
  }

  get(id: string): RemoteEndpoint | undefined {
    return this.byId.get(id);
  }

  /**
   * Called after the engine took an object's pod in: compares the number it gave the labels with
   * the object's (cluster-wide numbering only) and reports a mismatch once.
   */
  checkIdentity(id: string, local: number | undefined): void {
    const ep = this.byId.get(id);
    if (!this.o.checkIdentity || !ep || local === undefined || local === ep.identity) {
      this.mismatches.delete(id);
      return;
    }
    const prev = this.mismatches.get(id);
    if (prev && prev.objectIdentity === ep.identity && prev.localIdentity === local) return;
    const m: IdentityMismatch = { endpoint: id, node: ep.nodeName, objectIdentity: ep.identity, localIdentity: local, at: new Date().toISOString() };
    this.mismatches.set(id, m);
    this.o.log?.error('MeshdEndpoint names another identity than this node has for its labels; enforcing this node\'s number for the labels', {
      code: 'MESHD_K8S_ENDPOINT_IDENTITY_MISMATCH',
      endpoint: id,
      node: ep.nodeName,
      objectIdentity: ep.identity,
      localIdentity: local,
      labels: ep.labels.key,
    });
  }

  status(): z.input<typeof EndpointObjectsStatus>['remote'] {
    return {
      synced: this.listed,
      served: this.served,
      objects: this.byId.size,
      lastError: this.lastError,
      identityMismatches: [...this.mismatches.values()],
    };
  }

  private changed(ids: string[]): void {
    if (ids.length > 0) this.onChange?.(ids);
  }

  /** One object in or out; returns the ids whose remote entry changed. */
  private event(type: 'ADDED' | 'MODIFIED' | 'DELETED', raw: Json): string[] {
    const r = parseMeshdEndpoint(raw);
    if (!r.ok) {
      this.invalid(raw, r.problems.map((p) => `${formatPath(p.path)}: ${p.message}`));
      return [];
    }
    const id = `${r.value.metadata.namespace}/${r.value.metadata.name}`;
    const own = r.value.status.nodeName === this.o.nodeName;
    if (own) this.o.onOwnObject?.(id, type === 'DELETED' ? undefined : r.value.status);
    if (type === 'DELETED') return this.forget(id);
    if (own) return this.forget(id); // this node's own: the registry is authoritative
    const ep = remoteEndpointOf(r.value);
    if (!ep.ok) {
      this.invalid(raw, [`${ep.path}: ${ep.message}`]);
      return [];
    }
    this.rejected.delete(id);
    const prev = this.byId.get(id);
    if (prev && sameEndpoint(prev, ep.value)) return [];
    this.byId.set(id, ep.value);
    return [id];
  }

  private forget(id: string): string[] {
    this.rejected.delete(id);
    this.mismatches.delete(id);
    return this.byId.delete(id) ? [id] : [];
  }

  private invalid(raw: Json, problems: string[]): void {
    const meta = parseMeta(raw);
    const key = meta ? `${meta.namespace}/${meta.name}` : '?';
    if (meta && this.rejected.get(key) === meta.rv) return;
    if (meta) this.rejected.set(key, meta.rv);
    this.lastError = { code: 'MESHD_K8S_ENDPOINT_INVALID', message: `MeshdEndpoint ${key}: ${problems.join('; ')}`, at: new Date().toISOString() };
    this.o.log?.error('invalid MeshdEndpoint; its previous version stays in force', { code: 'MESHD_K8S_ENDPOINT_INVALID', object: `MeshdEndpoint/${key}`, problems });
  }

  /** A full list: what it holds replaces what was known (objects deleted meanwhile go). */
  private replace(items: Json[]): void {
    this.served = true;
    const seen = new Set<string>();
    const ids: string[] = [];
    for (const item of items) {
      const meta = parseMeta(item);
      if (meta) seen.add(`${meta.namespace}/${meta.name}`);
      ids.push(...this.event('ADDED', item));
    }
    for (const id of [...this.byId.keys()]) if (!seen.has(id)) ids.push(...this.forget(id));
    this.listed = true;
    this.changed(ids);
    this.markSynced();
  }

  private missing(e: KubeApiError): void {
    if (this.served) this.o.log?.warn('MeshdEndpoint is not served (CRD missing?); no remote endpoint objects until it is', { code: e.code, err: e.message });
    this.replace([]);
    this.served = false;
  }
}

function sameEndpoint(a: RemoteEndpoint, b: RemoteEndpoint): boolean {
  return a.nodeName === b.nodeName && a.identity === b.identity && a.labels.key === b.labels.key && JSON.stringify([a.ips, a.ports]) === JSON.stringify([b.ips, b.ports]);
}

const MetaSchema = z.object({ metadata: z.object({ name: z.string().min(1), namespace: z.string().min(1), resourceVersion: z.string().default('') }) });

function parseMeta(raw: Json): { namespace: string; name: string; rv: string } | undefined {
  const m = MetaSchema.safeParse(raw);
  return m.success ? { namespace: m.data.metadata.namespace, name: m.data.metadata.name, rv: m.data.metadata.resourceVersion } : undefined;
}
