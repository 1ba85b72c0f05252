/**
 * Writes one MeshdEndpoint per local pod (src/k8s/meshd-endpoint.ts) and
 * keeps it equal to what the agent has: identity, addresses, named ports,
 * state and policy enforcement. Kubernetes mode only.
 *
 * - `changed()` is cheap and may be called after every agent mutation: the
 *   writer waits `coalesceMs`, asks `desired()` for the state of every local
 *   pod, and writes only the objects whose content differs from what it last
 *   wrote (compared without health.lastUpdate, which moves only with the
 *   rest). Nothing changed, nothing written.
 * - Objects of pods that are no longer local endpoints are deleted.
 * - On start it first adopts this node's objects (listed by the
 *   `meshd.io/node` label): those matching a local pod count as written, so
 *   a restart with nothing changed writes nothing; the others (pods deleted
 *   while the agent was down) are deleted.
 * - Writes run outside the agent's serial queue and never hold the datapath
 *   up. A failed write (API server away, …) is retried with exponential
 *   backoff; `status()` shows the pending writes and the last error.
 *
 * Create is a POST with an ownerReference to the Pod (its uid read once);
 * update is a JSON merge patch of labels and status (no status subresource:
 * one request per change, as Cilium's CiliumEndpoint).
 *
 *   const w = new EndpointObjectWriter({ client, nodeName, desired: () => statuses });
 *   w.start();      // adopt, then write
 *   w.changed();    // after a mutation
 *   await w.stop();
 */
import { z } from 'zod';
import type { EndpointObjectsStatus } from '../api/status.js';
import { KubeApiError, type KubeClient } from '../k8s/client.js';
import { buildMeshdEndpoint, MEP_NODE_LABEL, MEP_PATH, mepPath, parseMeshdEndpoint, statusDigest, type MeshdEndpointStatus } from '../k8s/meshd-endpoint.js';
import { backoffMs } from '../k8s/reflector.js';
import type { Logger } from '../util/log.js';

/** One local pod's object, as the agent has it now (health.lastUpdate is set by the writer). */
export interface DesiredEndpoint {
  namespace: string;
  name: string;
  status: MeshdEndpointStatus;
}

export interface EndpointObjectWriterOptions {
  client: KubeClient;
  nodeName: string;
  /** Every local pod's object content now, by "namespace/name". Called synchronously, often: keep it cheap. */
  desired(): ReadonlyMap<string, DesiredEndpoint>;
  log?: Logger;
  /** Changes within this window go out in one round. */
  coalesceMs?: number;
  backoff?: { initialMs: number; maxMs: number };
}

/** A planned request. */
export type WriteOp = { op: 'upsert'; id: string; desired: DesiredEndpoint } | { op: 'delete'; id: string };

interface Written {
  digest: string;
  lastUpdate: string;
  namespace: string;
  name: string;
}

/** The requests that make the written objects equal to the desired ones (pure; unit-tested). */
export function planWrites(desired: ReadonlyMap<string, DesiredEndpoint>, written: ReadonlyMap<string, { digest: string }>): WriteOp[] {
  const ops: WriteOp[] = [];
  for (const [id, d] of desired) if (written.get(id)?.digest !== statusDigest(d.status)) ops.push({ op: 'upsert', id, desired: d });
  for (const id of written.keys()) if (!desired.has(id)) ops.push({ op: 'delete', id });
  return ops;
}

const PodUidSchema = z.object({ metadata: z.object({ uid: z.string().min(1) }) });
const ListSchema = z.object({ metadata: z.object({ continue: z.string().optional() }).default({}), items: z.array(z.unknown()).nullish() });

const isStatus = (e: unknown, status: number): boolean => e instanceof KubeApiError && e.status === status;

export class EndpointObjectWriter {
  private readonly written = new Map<string, Written>();
  private adopted = false;
  private started = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private failures = 0;
  private writes = 0;
  private lastError: { code: string; message: string; at: string } | null = null;

  constructor(private readonly o: EndpointObjectWriterOptions) {}

  /** Adopts this node's objects, then writes what differs; in the background. */
  start(): void {
    this.started = true;
    this.schedule(0);
  }

  /** Something the objects show may have changed. */
  changed(): void {
    if (this.started) this.schedule(this.o.coalesceMs ?? 50);
  }

  /** Ends the writes in flight and stops; objects stay as written. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /**
   * This node's object as the watch shows it (undefined: deleted). One deleted or changed by someone
   * else is written again; the echo of the writer's own writes changes nothing.
   */
  observed(id: string, status: MeshdEndpointStatus | undefined): void {
    const w = this.written.get(id);
    if (!this.adopted || !w) return;
    if (status === undefined) this.written.delete(id);
    else if (status.health.lastUpdate < w.lastUpdate) return; // the echo of an earlier write of ours
    else if (statusDigest(status) !== w.digest) w.digest = '';
    else return;
    this.changed();
  }

  status(): z.input<typeof EndpointObjectsStatus>['writer'] {
    let pending = 0;
    try {
      pending = this.adopted ? planWrites(this.o.desired(), this.written).length : this.o.desired().size;
    } catch {
      // The agent's state is not readable yet (starting): nothing to count.
    }
    return { adopted: this.adopted, objects: this.written.size, pendingWrites: pending, writes: this.writes, lastError: this.lastError };
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.round().then((retryMs) => {
        this.running = null;
        const again = this.again;
        this.again = false;
        // A failed round waits out its backoff (changes meanwhile go out with the retry).
        if (retryMs !== undefined) this.schedule(retryMs);
        else if (again) this.schedule(this.o.coalesceMs ?? 50);
      });
    }, ms);
  }

  /** One round of writes; resolves to the delay before a retry when something failed. */
  private async round(): Promise<number | undefined> {
    try {
      if (!this.adopted) await this.adopt();
      const ops = planWrites(this.o.desired(), this.written);
      const failed: unknown[] = [];
      // A few at a time: a node's pods all change at once when a policy selects them all.
      const todo = [...ops];
      const worker = async (): Promise<void> => {
        for (let op = todo.shift(); op && !this.stopped; op = todo.shift()) {
          await this.apply(op).catch((e: unknown) => failed.push(e));
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      if (failed.length > 0) throw failed[0];
      this.failures = 0;
      return undefined;
    } catch (e) {
      if (this.stopped) return undefined;
      this.failures++;
      const err = e instanceof KubeApiError ? e : undefined;
      this.lastError = { code: err?.code ?? 'MESHD_K8S_ENDPOINT_WRITE_FAILED', message: e instanceof Error ? e.message : String(e), at: new Date().toISOString() };
      const delay = backoffMs(this.failures, this.o.backoff ?? { initialMs: 500, maxMs: 30_000 });
      this.o.log?.warn('MeshdEndpoint writes failed; retrying', { code: 'MESHD_K8S_ENDPOINT_WRITE_FAILED', err: this.lastError.message, retryInMs: delay });
      return delay;
    }
  }

  /** This node's objects: the ones of local pods count as written, the others go in the next plan. */
  private async adopt(): Promise<void> {
    let cont = '';
    const found = new Map<string, Written>();
    do {
      const query: Record<string, string> = { labelSelector: `${MEP_NODE_LABEL}=${this.o.nodeName}`, limit: '500' };
      if (cont) query.continue = cont;
      const list = ListSchema.safeParse(await this.o.client.getJson(MEP_PATH, query));
      if (!list.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `GET ${MEP_PATH}: not a list`);
      for (const item of list.data.items ?? []) {
        const r = parseMeshdEndpoint(item);
        if (!r.ok) {
          // Not ours to read, but named as ours: rewritten if its pod is local, deleted otherwise.
          const meta = z.object({ metadata: z.object({ name: z.string(), namespace: z.string() }) }).safeParse(item);
          if (meta.success) found.set(`${meta.data.metadata.namespace}/${meta.data.metadata.name}`, { digest: '', lastUpdate: '', ...meta.data.metadata });
          continue;
        }
        const m = r.value.metadata;
        found.set(`${m.namespace}/${m.name}`, { digest: statusDigest(r.value.status), lastUpdate: r.value.status.health.lastUpdate, namespace: m.namespace, name: m.name });
      }
      cont = list.data.metadata.continue ?? '';
    } while (cont);
    for (const [id, w] of found) this.written.set(id, w);
    this.adopted = true;
    this.o.log?.info('MeshdEndpoint objects of this node adopted', { objects: found.size });
  }

  private async apply(op: WriteOp): Promise<void> {
    if (op.op === 'delete') {
      const w = this.written.get(op.id);
      if (!w) return;
      try {
        await this.o.client.send('DELETE', mepPath(w.namespace, w.name));
      } catch (e) {
        if (!isStatus(e, 404)) throw e;
      }
      this.written.delete(op.id);
      this.writes++;
      return;
    }
    const { namespace, name } = op.desired;
    const digest = statusDigest(op.desired.status);
    const lastUpdate = new Date().toISOString();
    const status: MeshdEndpointStatus = { ...op.desired.status, health: { ...op.desired.status.health, lastUpdate } };
    const patch = { metadata: { labels: { [MEP_NODE_LABEL]: this.o.nodeName } }, status };
    let exists = this.written.has(op.id);
    if (exists) {
      try {
        await this.o.client.send('PATCH', mepPath(namespace, name), patch);
      } catch (e) {
        if (!isStatus(e, 404)) throw e;
        exists = false; // deleted behind our back: created again below
      }
    }
    if (!exists) {
      const uid = await this.podUid(namespace, name);
      try {
        await this.o.client.send('POST', mepPath(namespace), buildMeshdEndpoint({ namespace, name, ...(uid ? { podUid: uid } : {}), status }));
      } catch (e) {
        if (!isStatus(e, 409)) throw e;
        await this.o.client.send('PATCH', mepPath(namespace, name), patch); // there already (a previous agent's): take it over
      }
    }
    this.written.set(op.id, { digest, lastUpdate, namespace, name });
    this.writes++;
  }

  /** The Pod's uid for the ownerReference; undefined when no Pod object exists (then the object has no owner). */
  private async podUid(namespace: string, name: string): Promise<string | undefined> {
    try {
      const r = PodUidSchema.safeParse(await this.o.client.getJson(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`));
      return r.success ? r.data.metadata.uid : undefined;
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      throw e;
    }
  }
}
