/**
 * List + watch of one collection, kept going for as long as it runs: what
 * client-go's Reflector does, for one API path.
 *
 * - List (paged) gives the full set and a resourceVersion; the watch resumes
 *   from it with bookmarks on, so a quiet collection still advances its
 *   resourceVersion and a reconnect does not replay or relist.
 * - `410 Gone` (as the HTTP status of a list or watch, or as a watch ERROR
 *   event) means the resourceVersion was compacted away: relist at once. The
 *   relist is the full set again, and `onList` tells the consumer to diff it
 *   against what it has (objects deleted meanwhile only show up that way).
 * - A stream the server ends (its watch timeout, a restart) is resumed from
 *   the last resourceVersion without delay; any other failure is reported and
 *   retried with exponential backoff and jitter.
 * - A list answered `404` means the API server does not serve the kind (its
 *   CRD is not installed): reported through `onMissing` and re-checked on a
 *   timer; the kind is empty meanwhile.
 *
 * client-node's ListWatch/makeInformer was not used: it stops for good on
 * the first error (no retry, no backoff), never asks for bookmarks, and has no
 * signal for "the list has been delivered".
 *
 *   const r = new Reflector({ client, path: '/api/v1/pods' }, {
 *     onList: (items) => replaceAll(items), onEvent: (type, obj) => …,
 *     onMissing, onError, onHealthy });
 *   r.start(); … await r.stop();
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { KubeApiError, type Json, type KubeClient } from './client.js';

export interface ReflectorHandlers {
  /** The complete collection as of `resourceVersion` (first list and every relist). */
  onList(items: Json[], resourceVersion: string): void;
  onEvent(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Json): void;
  /** The collection is not served (404 on list); it is re-checked every `missingRecheckMs`. */
  onMissing(err: KubeApiError): void;
  /** A request failed; the reflector retries after a backoff. */
  onError(err: KubeApiError): void;
  /** A list or a watch request succeeded (the connection works). */
  onHealthy(): void;
}

export interface ReflectorOptions {
  client: KubeClient;
  /** Collection path, e.g. /api/v1/pods or /apis/cilium.io/v2/ciliumnetworkpolicies. */
  path: string;
  /** Backoff after a failure: starts at initialMs, doubles, capped at maxMs (±20% jitter). */
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  /** Server-side watch timeout; the watch is resumed from its resourceVersion after it. */
  watchTimeoutS?: number;
  pageSize?: number;
}

const ListSchema = z.object({
  metadata: z.object({ resourceVersion: z.string().optional(), continue: z.string().optional() }).default({}),
  items: z.array(z.unknown()).nullish(),
});
const WatchEventSchema = z.object({ type: z.enum(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']), object: z.unknown() });
const VersionedSchema = z.object({ metadata: z.object({ resourceVersion: z.string().optional() }) });
const StatusSchema = z.object({ code: z.number().optional(), message: z.string().optional() });

export class Reflector {
  private readonly abort = new AbortController();
  private running: Promise<void> | null = null;
  private rv = '';

  constructor(
    private readonly o: ReflectorOptions,
    private readonly h: ReflectorHandlers,
  ) {}

  /** The resourceVersion the next watch resumes from ('' before the first list or after a 410). */
  get resourceVersion(): string {
    return this.rv;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the watch and the loop; resolves once nothing more is delivered. Idempotent. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (this.rv === '') {
          const { items, resourceVersion } = await this.list();
          if (this.stopped) return;
          this.rv = resourceVersion;
          failures = 0;
          this.h.onHealthy();
          this.h.onList(items, resourceVersion);
        }
        const opened = Date.now();
        await this.watchOnce(() => {
          failures = 0;
          this.h.onHealthy();
        });
        // A server that ends every watch at once would otherwise be asked again in a tight loop.
        if (Date.now() - opened < 1_000) await this.pause(1_000);
      } catch (e) {
        if (this.stopped) return;
        const err = e instanceof KubeApiError ? e : new KubeApiError('MESHD_K8S_BAD_RESPONSE', `${this.o.path}: ${e instanceof Error ? e.message : String(e)}`, undefined, { cause: e });
        if (err.status === 410) {
          this.rv = ''; // compacted: relist now
          continue;
        }
        if (err.status === 404 && this.rv === '') {
          this.h.onMissing(err);
          await this.pause(this.o.missingRecheckMs ?? 30_000);
          continue;
        }
        this.h.onError(err);
        failures++;
        await this.pause(backoffMs(failures, this.o.backoff ?? { initialMs: 500, maxMs: 30_000 }));
      }
    }
  }

  private async pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.abort.signal });
    } catch {
      // Aborted by stop(): the loop sees `stopped` and ends.
    }
  }

  private async list(): Promise<{ items: Json[]; resourceVersion: string }> {
    const items: Json[] = [];
    let cont = '';
    for (;;) {
      const query: Record<string, string> = { limit: String(this.o.pageSize ?? 500) };
      if (cont) query.continue = cont;
      const body = ListSchema.safeParse(await this.o.client.getJson(this.o.path, query, this.abort.signal));
      if (!body.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `GET ${this.o.path}: not a list (${body.error.issues[0]?.message ?? ''})`);
      items.push(...(body.data.items ?? []));
      cont = body.data.metadata.continue ?? '';
      if (!cont) return { items, resourceVersion: body.data.metadata.resourceVersion ?? '' };
    }
  }

  private async watchOnce(onOpen: () => void): Promise<void> {
    const query = {
      resourceVersion: this.rv,
      allowWatchBookmarks: 'true',
      // Spread the reconnects of many agents (client-go: min-request-timeout × [1, 2)).
      timeoutSeconds: String(Math.round((this.o.watchTimeoutS ?? 300) * (1 + Math.random()))),
    };
    await this.o.client.watch(this.o.path, query, { onOpen, onLine: (line) => this.onWatchLine(line) }, this.abort.signal);
  }

  private onWatchLine(line: Json): void {
    const ev = WatchEventSchema.safeParse(line);
    if (!ev.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `watch ${this.o.path}: not a watch event`);
    const { type, object } = ev.data;
    if (type === 'ERROR') {
      const st = StatusSchema.safeParse(object);
      const code = st.success ? st.data.code : undefined;
      throw new KubeApiError('MESHD_K8S_API_STATUS', `watch ${this.o.path}: ${(st.success ? st.data.message : undefined) ?? 'error event'}`, code);
    }
    const meta = VersionedSchema.safeParse(object);
    if (type !== 'BOOKMARK' && !this.stopped) this.h.onEvent(type, object);
    if (meta.success && meta.data.metadata.resourceVersion) this.rv = meta.data.metadata.resourceVersion;
  }
}

/** Exponential backoff with ±20% jitter, so agents that lost the server together do not return together. */
export function backoffMs(failures: number, b: { initialMs: number; maxMs: number }): number {
  const base = Math.min(b.maxMs, b.initialMs * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}
