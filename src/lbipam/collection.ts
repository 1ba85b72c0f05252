/**
 * A collection of the API server kept in memory by a Reflector: parsed
 * objects by key, "synced" once listed (or found not served: then empty),
 * and one callback per change. An object that does not parse keeps its last
 * good version and its problems are logged once per resourceVersion. Used by LB IPAM and the L2
 * announcer, which each read pools or policies and Services.
 *
 *   const pools = new Collection({ client, path: LB_IP_POOLS_PATH, scope: 'cluster', parse, onChange: schedule });
 *   pools.start(); … pools.synced; pools.items.get('blue'); … await pools.stop();
 */
import { z } from 'zod';
import type { Json, KubeApiError, KubeClient } from '../k8s/client.js';
import { formatPath, type ParseResult } from '../k8s/problem.js';
import { Reflector } from '../k8s/reflector.js';
import type { Logger } from '../util/log.js';

const MetaSchema = z.object({ metadata: z.object({ name: z.string(), namespace: z.string().default('default'), resourceVersion: z.string().default('') }) });

export interface CollectionOptions<T> {
  client: KubeClient;
  path: string;
  /** Cluster-scoped objects are keyed by name, namespaced ones by "namespace/name". */
  scope: 'cluster' | 'namespaced';
  /** The typed object, or its problems (then the previous version stays, and the problems are logged once per resourceVersion). */
  parse(raw: Json): ParseResult<T>;
  /** What the objects are, for the log ("CiliumLoadBalancerIPPool"). */
  what: string;
  onChange(): void;
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  log?: Logger;
}

export class Collection<T> {
  readonly items = new Map<string, T>();
  synced = false;
  private readonly reflector: Reflector;
  /** resourceVersion of each object's last refused version, so each is reported once. */
  private readonly refused = new Map<string, string>();

  constructor(private readonly o: CollectionOptions<T>) {
    const keyOf = (raw: Json): string | undefined => {
      const r = MetaSchema.safeParse(raw);
      if (!r.success) return undefined;
      return o.scope === 'cluster' ? r.data.metadata.name : `${r.data.metadata.namespace}/${r.data.metadata.name}`;
    };
    const upsert = (raw: Json) => {
      const k = keyOf(raw);
      if (k === undefined) return;
      const r = o.parse(raw);
      if (r.ok) {
        this.items.set(k, r.value);
        this.refused.delete(k);
        return;
      }
      const rv = MetaSchema.safeParse(raw).data?.metadata.resourceVersion ?? '';
      if (this.refused.get(k) === rv) return;
      this.refused.set(k, rv);
      o.log?.error(`${o.what} refused; its last good version stays in force`, { object: k, problems: r.problems.map((p) => `${formatPath(p.path)}: ${p.message} (${p.code})`) });
    };
    this.reflector = new Reflector(
      { client: o.client, path: o.path, ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.missingRecheckMs ? { missingRecheckMs: o.missingRecheckMs } : {}) },
      {
        onList: (items) => {
          this.items.clear();
          for (const i of items) upsert(i);
          this.synced = true;
          o.onChange();
        },
        onEvent: (type, obj) => {
          if (type === 'DELETED') {
            this.items.delete(keyOf(obj) ?? '');
            this.refused.delete(keyOf(obj) ?? '');
          }
          else upsert(obj);
          o.onChange();
        },
        // The kind is not served (its CRD is missing): empty until it appears.
        onMissing: () => {
          this.items.clear();
          this.synced = true;
          o.onChange();
        },
        onError: (err: KubeApiError) => o.log?.warn(`reading ${o.path} failed; retrying`, { code: err.code, status: err.status, error: err.message }),
        onHealthy: () => undefined,
      },
    );
  }

  start(): void {
    this.reflector.start();
  }

  stop(): Promise<void> {
    return this.reflector.stop();
  }
}
