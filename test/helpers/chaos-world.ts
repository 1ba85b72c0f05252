/**
 * The world of the chaos tests and the chaos benchmark: a client and an api
 * pod on veths, the docs' HTTP policy (GET /api/v1/users allowed, /admin
 * denied by Envoy with 403), the api's HTTP/1.1 + HTTP/2 server, the node's
 * Envoys and the kernel datapath (test/helpers/l7-world.ts), and steady loads
 * from the client: HTTP/1.1 keep-alive, HTTP/1.1 one connection per request,
 * HTTP/2.
 *
 *   const c = await startChaosWorld(t, { tag: 'chr', octet: 91, portBase: 23000, replicas: 2 });
 *   const loads = await c.startLoads();
 *   …chaos…
 *   const r = await stopLoads(loads);   // per mode: ok, denied, failed, wronglyAllowed, wronglyDenied
 *
 * CHAOS_FULL (MESHD_CHAOS_FULL=1, `npm run test:chaos`) selects the full
 * counts of every event; the default is the short form `npm test` runs.
 */
import { readFileSync } from 'node:fs';
import { repoPath } from '../../src/util/paths.js';
import { type Load, type LoadSummary, startLoads } from './chaos-load.js';
import { startHttpServer } from './l7-peers.js';
import { type L7World, startL7World } from './l7-world.js';

export const CHAOS_FULL = process.env.MESHD_CHAOS_FULL === '1';

export const API_POLICY = readFileSync(repoPath('examples', 'demo', 'api-policy.yaml'), 'utf8');

export interface ChaosWorld extends L7World {
  /** The api's HTTP address (port 8080, L7 policy). */
  apiUrl: string;
  startLoads(): Promise<Load[]>;
}

export async function startChaosWorld(
  t: { after(fn: () => unknown): void },
  o: { tag: string; octet: number; portBase: number; replicas?: number; drainTimeS?: number },
): Promise<ChaosWorld> {
  const w = await startL7World(t, {
    tag: o.tag,
    octet: o.octet,
    portBase: o.portBase,
    pods: [['client', 0], ['api', 4]],
    policies: API_POLICY,
    ...(o.replicas !== undefined ? { replicas: o.replicas } : {}),
    ...(o.drainTimeS !== undefined ? { drainTimeS: o.drainTimeS } : {}),
  });
  await startHttpServer(w.sb, w.pod('api').ns, 'api', [8080], { recordRequests: false });
  await w.sync();
  const apiUrl = `http://${w.pod('api').ip}:8080`;
  return {
    ...w,
    apiUrl,
    startLoads: () => startLoads(w.sb, w.pod('client').ns, { url: apiUrl, allowPath: '/api/v1/users', denyPath: '/admin', concurrency: 3, denyEvery: 10 }),
  };
}

/** Sums over the loads, for assertions and reports. */
export function totals(r: Record<string, LoadSummary>): { requests: number; failed: number; wronglyAllowed: number; wronglyDenied: number; denied: number } {
  const all = Object.values(r);
  const sum = (f: (x: LoadSummary) => number) => all.reduce((a, x) => a + f(x), 0);
  return { requests: sum((x) => x.requests), failed: sum((x) => x.failed), wronglyAllowed: sum((x) => x.wronglyAllowed), wronglyDenied: sum((x) => x.wronglyDenied), denied: sum((x) => x.denied) };
}

/** Resident set size of a process in bytes (VmRSS), or 0 when it is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Allows the client one more path on the api's L7 port: never the loads' paths. */
export function churnPolicy(n: number): string {
  return `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: churn, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: api } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: /churn/${n} }] }
`;
}
