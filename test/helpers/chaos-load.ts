/**
 * Steady HTTP loads for the chaos tests: test/helpers/chaos-load-peer.ts
 * inside a pod's namespace, one process per load; stop() ends it and returns
 * its counts. Killed by the sandbox's cleanup if the test fails first.
 *
 *   const load = await startLoad(sb, client.ns, { url: `http://${api.ip}:8080`, mode: 'h2', … });
 *   …chaos…
 *   const r = await load.stop();   // { requests, ok, denied, failed, wronglyAllowed, wronglyDenied, … }
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { repoPath } from '../../src/util/paths.js';
import type { Sandbox } from '../../src/devcluster/netns.js';

const PEER_JS = repoPath('dist', 'test', 'helpers', 'chaos-load-peer.js');

export const loadSummarySchema = z.object({
  requests: z.number(),
  ok: z.number(),
  denied: z.number(),
  failed: z.number(),
  wronglyAllowed: z.number(),
  wronglyDenied: z.number(),
  retried: z.number(),
  maxLatencyMs: z.number(),
  errors: z.record(z.string(), z.number()),
  failures: z.array(z.object({ at: z.string(), path: z.string(), what: z.string(), startedAt: z.number(), connectedAt: z.number().nullable(), body: z.string().optional() })),
});
export type LoadSummary = z.infer<typeof loadSummarySchema>;

export interface LoadOptions {
  url: string;
  allowPath: string;
  denyPath: string;
  mode: 'h1-keepalive' | 'h1-new-conn' | 'h2';
  concurrency?: number;
  denyEvery?: number;
}

export interface Load {
  mode: LoadOptions['mode'];
  stop(): Promise<LoadSummary>;
}

export async function startLoad(sb: Sandbox, ns: string, o: LoadOptions): Promise<Load> {
  const opts = { concurrency: 4, denyEvery: 10, ...o };
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, PEER_JS, JSON.stringify(opts)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  sb.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const lines = createInterface({ input: child.stdout });
  const it = lines[Symbol.asyncIterator]();
  const first = await Promise.race([it.next(), exited.then(() => ({ done: true, value: undefined }))]);
  if (first.done || first.value !== 'ready') throw new Error(`load ${o.mode}: no first answer (${String(first.value)})`);
  return {
    mode: o.mode,
    async stop() {
      child.stdin.end();
      const last = await it.next();
      await exited;
      if (last.done || typeof last.value !== 'string') throw new Error(`load ${o.mode}: ended without a summary`);
      return loadSummarySchema.parse(JSON.parse(last.value));
    },
  };
}

/** The loads of the chaos tests: both HTTP/1.1 client kinds and HTTP/2, on the pod's HTTP port. */
export async function startLoads(sb: Sandbox, ns: string, base: Omit<LoadOptions, 'mode'>): Promise<Load[]> {
  const out: Load[] = [];
  for (const mode of ['h1-keepalive', 'h1-new-conn', 'h2'] as const) out.push(await startLoad(sb, ns, { ...base, mode }));
  return out;
}

/** Stops every load; returns the summaries by mode. */
export async function stopLoads(loads: readonly Load[]): Promise<Record<string, LoadSummary>> {
  const out: Record<string, LoadSummary> = {};
  for (const l of loads) out[l.mode] = await l.stop();
  return out;
}

/**
 * The failures of a load whose request overlapped none of `windows` ([from,
 * to] in ms since the epoch, e.g. from an Envoy's SIGKILL to the moment the
 * agent saw it gone): requests that started after a window closed and
 * before the next one opened (for the connection-per-request load:
 * connections made then). A request outstanding at any moment of a window
 * (in flight at the kill, or made during the crash) is not one of them.
 */
export function failedOutside(s: LoadSummary, windows: ReadonlyArray<readonly [number, number]>): LoadSummary['failures'] {
  return s.failures.filter((f) => !windows.some(([from, to]) => f.startedAt <= to && Date.parse(f.at) >= from));
}

/** The failures of a load whose request started within one of `windows` ([from, to], ms since the epoch). */
export function failedStartedIn(s: LoadSummary, windows: ReadonlyArray<readonly [number, number]>): LoadSummary['failures'] {
  return s.failures.filter((f) => windows.some(([from, to]) => from <= f.startedAt && f.startedAt <= to));
}
