/**
 * Writes this node's entry in the status of each CiliumNetworkPolicy and
 * CiliumClusterwideNetworkPolicy, as `kubectl get cnp -o yaml` users expect
 * from Cilium: `status.nodes[<node>]` with ok, enforcing, error, lastUpdated,
 * plus the metadata.generation the entry describes and, when rejected, each
 * problem with its field path.
 *
 *   const writer = new PolicyStatusWriter({ client, nodeName, log });   // client: the agent's KubeClient (keep-alive)
 *   writer.note({ ref, ok: true, enforcing: true, generation: 3, problems: [] });
 *   …
 *   await writer.stop();
 *
 * Each agent merge-patches only its own key under status.nodes on the
 * status subresource, so agents never overwrite each other and no
 * resourceVersion is needed (a merge patch cannot conflict). Writes are
 * coalesced: the latest wanted entry per object wins, one patch per object
 * per change, none when the object already says so (the status it was read
 * with, or what this writer wrote last). A failed write is retried with
 * backoff in the background; note() never blocks and never throws, so the
 * API server being away delays statuses, never enforcement.
 *
 * One agent at a time (the holder of the node housekeeping Lease, as
 * Cilium's operator validates policies under its leader election) also
 * keeps the cluster-wide `status.conditions[type=Valid]` that `kubectl get
 * cnp` shows in its VALID column: True with "Policy validation succeeded",
 * or False with the problems (setConditionWriter()). Other condition types
 * in the list are kept; the transition time moves only when the status does.
 */
import { z } from 'zod';
import { KubeApiError, type KubeClient } from './client.js';
import type { Logger } from '../util/log.js';
import { resourceKey, type ResourceRef } from './kinds.js';

export interface PolicyStatusProblem {
  /** Field path as formatPath renders it (`spec.ingress[0].toPorts[0].ports[0].port`). */
  path: string;
  code: string;
  message: string;
}

/** What the agent knows about one policy on this node. */
export interface PolicyStatusChange {
  ref: ResourceRef;
  /** The object is gone: nothing to write, forget it. */
  deleted?: boolean;
  /** This generation was accepted and is enforced. */
  ok: boolean;
  /** Some generation of it is enforced (the previous one, when this one was rejected). */
  enforcing: boolean;
  /** metadata.generation of the version this is about; read from the API server when unknown. */
  generation?: number | undefined;
  problems: PolicyStatusProblem[];
  /** The object's `status` as last read, so an unchanged entry is not written again after a restart. */
  reported?: unknown;
}

/** One node's entry, as stored (lastUpdated aside). */
interface NodeEntry {
  ok: boolean;
  enforcing: boolean;
  observedGeneration: number;
  error: string | null;
  problems: PolicyStatusProblem[] | null;
}

const reportedEntry = z.looseObject({
  ok: z.boolean().optional(),
  enforcing: z.boolean().optional(),
  observedGeneration: z.number().optional(),
  error: z.string().optional(),
  problems: z.array(z.object({ path: z.string(), code: z.string().optional(), message: z.string() })).optional(),
});
const reportedCondition = z.looseObject({ type: z.string(), status: z.string(), message: z.string().optional(), lastTransitionTime: z.string().optional() });
type ReportedCondition = z.infer<typeof reportedCondition>;
const reportedStatus = z.looseObject({ nodes: z.record(z.string(), reportedEntry).optional(), conditions: z.array(reportedCondition).optional() });

/** Cilium's policy condition type (pkg/k8s/apis/cilium.io/v2: PolicyConditionValid) and its message when valid. */
export const POLICY_CONDITION_VALID = 'Valid';
const VALID_MESSAGE = 'Policy validation succeeded';

/** The Valid condition as compared: status and message (the transition time follows from them). */
const conditionFingerprint = (c: { status: string; message?: string | undefined }): string => JSON.stringify([c.status, c.message ?? '']);

function reportedConditions(status: unknown): ReportedCondition[] | undefined {
  const s = reportedStatus.safeParse(status);
  return s.success ? s.data.conditions : undefined;
}
const objectMeta = z.looseObject({ metadata: z.looseObject({ generation: z.number().int().optional() }) });

const PLURALS: Partial<Record<ResourceRef['kind'], string>> = {
  CiliumNetworkPolicy: 'ciliumnetworkpolicies',
  CiliumClusterwideNetworkPolicy: 'ciliumclusterwidenetworkpolicies',
};

/** A stable rendering for comparisons (key order fixed by construction). */
const fingerprint = (e: NodeEntry): string => JSON.stringify([e.ok, e.enforcing, e.observedGeneration, e.error, e.problems]);

function fromReported(status: unknown, node: string): NodeEntry | undefined {
  const s = reportedStatus.safeParse(status);
  const e = s.success ? s.data.nodes?.[node] : undefined;
  if (!e || e.ok === undefined || e.observedGeneration === undefined) return undefined;
  return {
    ok: e.ok,
    enforcing: e.enforcing ?? false,
    observedGeneration: e.observedGeneration,
    error: e.error ?? null,
    problems: e.problems ? e.problems.map((p) => ({ path: p.path, code: p.code ?? '', message: p.message })) : null,
  };
}

interface Pending {
  key: string;
  ref: ResourceRef;
  plural: string;
  change: PolicyStatusChange;
  attempts: number;
  notBefore: number;
}

export interface PolicyStatusWriterOptions {
  /** The agent's API client: its connections are kept alive, so a burst of status writes pays no TLS handshake each. */
  client: KubeClient;
  nodeName: string;
  log?: Logger;
  /** Changes arriving within this window go out together (default 50 ms). */
  coalesceMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  now?: () => Date;
}

export class PolicyStatusWriter {
  private readonly entries = new Map<string, Pending>();
  /**
   * Per object, the fingerprint of what the API server holds for this node as
   * far as this writer knows (read with the object, or written by it). Kept
   * apart from the entries so a change noted while its predecessor's patch is
   * in flight still sees that patch's result.
   */
  private readonly written = new Map<string, string>();
  /** Per object, the conditions as last read or written (only kept while this writer writes conditions or has read them). */
  private readonly conditions = new Map<string, ReportedCondition[]>();
  /** Whether this writer keeps the cluster-wide Valid condition (setConditionWriter). */
  private conditionWriter = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly counts = { patches: 0, failures: 0 };

  constructor(private readonly o: PolicyStatusWriterOptions) {}

  /** Records what this node wants the object's status to say; writes later, only if that differs from what it says. */
  note(change: PolicyStatusChange): void {
    const plural = PLURALS[change.ref.kind];
    if (plural === undefined || this.stopped) return;
    const key = resourceKey(change.ref);
    if (change.deleted) {
      this.entries.delete(key);
      this.written.delete(key);
      this.conditions.delete(key);
      return;
    }
    const reported = change.reported === undefined ? undefined : fromReported(change.reported, this.o.nodeName);
    if (reported) this.written.set(key, fingerprint(reported));
    const conds = change.reported === undefined ? undefined : reportedConditions(change.reported);
    if (conds) this.conditions.set(key, conds);
    this.entries.set(key, { key, ref: change.ref, plural, change, attempts: 0, notBefore: 0 });
    this.schedule(this.o.coalesceMs ?? 50);
  }

  /**
   * Makes this writer keep (true) or leave alone (false) the policies' cluster-wide Valid condition.
   * Gaining the role looks at every known policy again.
   */
  setConditionWriter(on: boolean): void {
    if (this.conditionWriter === on) return;
    this.conditionWriter = on;
    if (on && this.entries.size > 0) this.schedule(this.o.coalesceMs ?? 50);
  }

  /** Patches sent and failed so far (for `meshd status` and the tests). */
  stats(): { patches: number; failures: number; pending: number } {
    return { ...this.counts, pending: [...this.entries.values()].filter((p) => !this.upToDate(p)).length };
  }

  /** Stops writing; waits for a patch in flight. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private want(p: Pending, generation: number): NodeEntry {
    const c = p.change;
    return {
      ok: c.ok,
      enforcing: c.enforcing,
      observedGeneration: generation,
      error: c.ok ? null : c.problems.map((x) => `${x.path}: ${x.message}`).join('; ') || 'rejected',
      problems: c.ok ? null : c.problems,
    };
  }

  /** The Valid condition this node's verdict on the object calls for. */
  private wantCondition(p: Pending): { status: 'True' | 'False'; message: string } {
    const c = p.change;
    return c.ok ? { status: 'True', message: VALID_MESSAGE } : { status: 'False', message: c.problems.map((x) => `${x.path}: ${x.message}`).join('; ') || 'rejected' };
  }

  private conditionUpToDate(p: Pending): boolean {
    if (!this.conditionWriter) return true;
    const have = this.conditions.get(p.key)?.find((c) => c.type === POLICY_CONDITION_VALID);
    return have !== undefined && conditionFingerprint(have) === conditionFingerprint(this.wantCondition(p));
  }

  /** The object's conditions with the Valid one as this node sees it (others kept; the transition time kept while the status stays). */
  private nextConditions(p: Pending, now: string): ReportedCondition[] {
    const want = this.wantCondition(p);
    const list = this.conditions.get(p.key) ?? [];
    const prev = list.find((c) => c.type === POLICY_CONDITION_VALID);
    const valid: ReportedCondition = { type: POLICY_CONDITION_VALID, status: want.status, lastTransitionTime: prev?.status === want.status && prev.lastTransitionTime ? prev.lastTransitionTime : now, message: want.message };
    return [...list.filter((c) => c.type !== POLICY_CONDITION_VALID), valid];
  }

  private upToDate(p: Pending): boolean {
    return p.change.generation !== undefined && this.written.get(p.key) === fingerprint(this.want(p, p.change.generation)) && this.conditionUpToDate(p);
  }

  private schedule(ms: number): void {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.running) {
        this.schedule(ms); // one flush at a time; look again when it is done
        return;
      }
      this.running = this.flush().finally(() => (this.running = undefined));
    }, ms);
    this.timer.unref();
  }

  private async flush(): Promise<void> {
    const backoff = this.o.backoff ?? { initialMs: 500, maxMs: 30_000 };
    let retryIn: number | undefined;
    for (const [key, p] of [...this.entries]) {
      if (this.stopped) return;
      if (this.upToDate(p)) continue;
      const now = Date.now();
      if (p.notBefore > now) {
        retryIn = Math.min(retryIn ?? Infinity, p.notBefore - now);
        continue;
      }
      try {
        await this.write(p);
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 404) {
          if (this.entries.get(key) === p) this.entries.delete(key); // the object is gone; its delete event follows
          this.written.delete(key);
          continue;
        }
        this.counts.failures++;
        p.attempts++;
        const delay = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (p.attempts - 1));
        p.notBefore = Date.now() + delay;
        retryIn = Math.min(retryIn ?? Infinity, delay);
        this.o.log?.warn('writing policy status failed; will retry', { code: 'MESHD_K8S_STATUS_WRITE_FAILED', object: key, attempt: p.attempts, status: e instanceof KubeApiError ? e.status : undefined, err: e instanceof Error ? e.message : String(e) });
      }
    }
    // Changes that arrived during this flush, or retries that are due later.
    const more = [...this.entries.values()].some((p) => !this.upToDate(p) && p.notBefore <= Date.now());
    if (more) this.schedule(this.o.coalesceMs ?? 50);
    else if (retryIn !== undefined) this.schedule(retryIn);
  }

  private async write(p: Pending): Promise<void> {
    const { ref, plural } = p;
    const path = `/apis/cilium.io/v2/${ref.namespace ? `namespaces/${ref.namespace}/` : ''}${plural}/${ref.name}`;
    if (p.change.generation === undefined) {
      // A rejected object reaches the agent without its metadata; its generation is on the server.
      const raw: unknown = await this.o.client.getJson(path);
      const m = objectMeta.safeParse(raw);
      p.change = { ...p.change, generation: m.success ? (m.data.metadata.generation ?? 0) : 0 };
    }
    const entry = this.want(p, p.change.generation ?? 0);
    const fp = fingerprint(entry);
    const writeConditions = !this.conditionUpToDate(p);
    if (this.written.get(p.key) === fp && !writeConditions) return;
    const now = (this.o.now?.() ?? new Date()).toISOString();
    // A merge patch replaces a list whole: the conditions go out complete, the other types as read.
    const conditions = writeConditions ? this.nextConditions(p, now) : undefined;
    // Merge patch: null removes a field, so an entry that turns ok drops the old error and problems.
    const body = { status: { nodes: { [this.o.nodeName]: { ...entry, lastUpdated: now } }, ...(conditions ? { conditions } : {}) } };
    await this.o.client.send('PATCH', `${path}/status`, body);
    this.counts.patches++;
    this.written.set(p.key, fp);
    if (conditions) this.conditions.set(p.key, conditions);
    p.attempts = 0;
  }
}
