/**
 * What `meshd demo` checks, on one node or on two (demo.ts, demo-nodes.ts):
 * the requests, their expected verdicts and paths, the API server the `api`
 * pod runs, how a request's result and path are read from the flows the
 * agents report, and the table both print.
 *
 *   const api = await startApiServer(apiPod.ns);        // stopped by api.kill()
 *   const res = await requestRow(from, to, row, flowsOfEveryNode);
 *   io.out(rowTable(results).text);
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import type { FlowRecordJson } from '../api/flow.js';
import type { apiRoutes } from '../api/index.js';
import { withParentDeathSignal } from '../devcluster/kube-cluster.js';
import { run } from '../util/exec.js';
import { repoPath } from '../util/paths.js';

/** A pod of the demo: its name in examples/demo/pods.yaml, its network namespace and address. */
export interface DemoPod {
  name: string;
  ns: string;
  ip: string;
}

export interface Row {
  who: 'client' | 'intruder';
  method: string;
  path: string;
  port: number;
  headers?: Record<string, string>;
  expected: string;
  expectedPath: 'via Envoy' | 'kernel only' | 'dropped in kernel';
}

/** Every request the demo sends to the `api` pod, against examples/demo/api-policy.yaml. */
export const ROWS: readonly Row[] = [
  { who: 'client', method: 'GET', path: '/api/v1/users', port: 8080, expected: '200', expectedPath: 'via Envoy' },
  { who: 'client', method: 'GET', path: '/api/v1/products', port: 8080, expected: '200', expectedPath: 'via Envoy' },
  { who: 'client', method: 'POST', path: '/api/v1/orders', port: 8080, headers: { 'Content-Type': 'application/json' }, expected: '200', expectedPath: 'via Envoy' },
  { who: 'client', method: 'POST', path: '/api/v1/orders', port: 8080, headers: { 'Content-Type': 'text/plain' }, expected: '403', expectedPath: 'via Envoy' },
  { who: 'client', method: 'DELETE', path: '/api/v1/users', port: 8080, expected: '403', expectedPath: 'via Envoy' },
  { who: 'client', method: 'GET', path: '/admin', port: 8080, expected: '403', expectedPath: 'via Envoy' },
  { who: 'client', method: 'GET', path: '/metrics', port: 9090, expected: '200', expectedPath: 'kernel only' },
  { who: 'intruder', method: 'GET', path: '/api/v1/users', port: 8080, expected: 'dropped', expectedPath: 'dropped in kernel' },
  { who: 'intruder', method: 'GET', path: '/metrics', port: 9090, expected: 'dropped', expectedPath: 'dropped in kernel' },
];

/** The demo's manifests: the pods (their labels) and the policy. */
export const DEMO_DIR = repoPath('examples', 'demo');

const PodDoc = z.object({ kind: z.literal('Pod'), metadata: z.object({ name: z.string(), labels: z.record(z.string(), z.string()).default({}) }) });

/** The labels of each Pod of examples/demo/pods.yaml, by name. */
export function demoPodLabels(): Map<string, Record<string, string>> {
  const file = repoPath('examples', 'demo', 'pods.yaml');
  const out = new Map<string, Record<string, string>>();
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    const pod = PodDoc.safeParse(doc.toJS());
    if (pod.success) out.set(pod.data.metadata.name, pod.data.metadata.labels);
  }
  return out;
}

const SERVER = `
const http = require('http');
for (const port of [8080, 9090]) {
  http.createServer((req, res) => { res.setHeader('content-type', 'text/plain'); res.end('api ' + port + ' ' + req.method + ' ' + req.url + '\\n'); })
    .listen(port, '0.0.0.0');
}
console.log('ready');
`;

/** The `api` pod's HTTP server on 8080 and 9090, in the pod's namespace; the caller kills it. */
export async function startApiServer(ns: string): Promise<ChildProcess> {
  // `ip netns exec` execs the server in its own process: with the parent-death signal it dies with the demo even when no cleanup runs.
  const child = spawn(...withParentDeathSignal('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER]), { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await Promise.race([once(child.stdout, 'data'), sleep(10_000).then(() => ['timeout'])])) as [Buffer | string];
  if (!String(line).includes('ready')) {
    child.kill('SIGKILL');
    throw new Error('the API server did not start');
  }
  return child;
}

export interface RowResult {
  row: Row;
  got: string;
  path: string;
  detail: string;
}

/**
 * Sends one row's request from `from` to `to` with curl in `from`'s
 * namespace, and reads its path from the flows `flows` returns (every node's
 * agent that can see it): a drop event means dropped in the kernel, a
 * redirect means via Envoy, other flows kernel only.
 */
export async function requestRow(from: DemoPod, to: DemoPod, r: Row, flows: () => Promise<FlowRecordJson[]>): Promise<RowResult> {
  const args = ['netns', 'exec', from.ns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', '-X', r.method];
  for (const [k, v] of Object.entries(r.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (r.method === 'POST') args.push('--data', '{}');
  args.push(`http://${to.ip}:${r.port}${r.path}`);
  const before = new Set((await flows()).map((f) => JSON.stringify(f)));
  let got: string;
  try {
    got = (await run('ip', args, { timeoutMs: 10_000 })).stdout.trim();
  } catch {
    got = 'dropped';
  }
  if (got === '000') got = 'dropped';
  await sleep(150);
  const fresh = (await flows()).filter((f) => !before.has(JSON.stringify(f)));
  const mine = fresh.filter((f) => f.src.ip === from.ip && f.dst.ip === to.ip && f.dst.port === r.port);
  const drop = mine.find((f) => f.type === 'drop');
  const redirect = mine.find((f) => f.type === 'redirect' || f.verdict === 'REDIRECT');
  const path = drop ? 'dropped in kernel' : redirect ? 'via Envoy' : mine.length > 0 ? 'kernel only' : got === 'dropped' ? 'dropped in kernel' : 'unknown';
  const detail = drop?.dropReason ?? (redirect?.proxyPort ? `proxy port ${redirect.proxyPort}` : '');
  return { row: r, got, path, detail };
}

export function rowMatches(res: RowResult): boolean {
  return res.got === res.row.expected && res.path === res.row.expectedPath;
}

/** The results as the demo prints them, and whether every row matched. */
export function rowTable(results: readonly RowResult[], target = 'api'): { text: string; ok: boolean } {
  const rows = results.map((res) => {
    const r = res.row;
    const hdr = r.headers ? ` (${Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join(', ')})` : '';
    return [`${r.who} ${r.method} ${r.path}${hdr} → ${target}:${r.port}`, r.expected, res.got, res.path, res.detail, rowMatches(res) ? 'ok' : `MISMATCH (expected ${r.expectedPath})`];
  });
  const head = ['request', 'expected', 'got', 'path', 'detail', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return { text: `${line(head)}\n${rows.map(line).join('\n')}\n`, ok: results.every(rowMatches) };
}

type StatusView = z.output<(typeof apiRoutes.status)['response']>;

/** Waits (up to 60 s) until an agent's Envoy is ready with the policy's listener and its datapath has nothing pending. */
export async function waitForProxy(who: string, status: () => Promise<StatusView>): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last: unknown;
  while (Date.now() < deadline) {
    const s = await status();
    last = s;
    const envoyReady = 'envoy' in s.envoy && s.envoy.envoy.state === 'ready';
    if (envoyReady && s.proxy?.version && !s.proxy.error && Object.keys(s.datapath.pending).length === 0) return;
    await sleep(250);
  }
  throw new Error(`Envoy of ${who} did not get the policy's listener within 60 s: ${JSON.stringify(last)}`);
}
