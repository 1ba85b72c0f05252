/**
 * Policy engine benchmark: full compile and single-change update.
 *
 *   npm run bench:policy [-- --json] [-- --write-doc]
 *
 * World: 1,000 policies (CiliumNetworkPolicy and clusterwide; L3, L4 ranges,
 * HTTP rules, deny, CIDR and entity peers), 500 identities, 5,000 endpoints
 * (and a second world with 50,000). Update: one policy change selecting the
 * 10 endpoints of one identity, measured as the median of repeated
 * alternating changes (each really changes the entries).
 *
 * Side by side, the alternative an engine without incremental recomputation
 * has: recompiling every endpoint after the change (`full_recompute_ms`).
 * `--json` makes the last line of stdout one JSON object.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadPolicyDocuments } from '../src/policy/api/loader.js';
import type { PolicyDocument } from '../src/policy/api/schema.js';
import { PolicyEngine } from '../src/policy/engine.js';
import { repoPath } from '../src/util/paths.js';
import { median } from './stats.js';

const json = process.argv.includes('--json');
const writeDoc = process.argv.includes('--write-doc');

// Heap numbers mean something only after a collection: re-run with --expose-gc when needed.
const gc = globalThis.gc;
if (!gc) {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const POLICIES = 1000;
const IDENTITIES = 500; // 499 app identities + the update target
const NAMESPACES = 10;

function log(s: string): void {
  if (!json) process.stdout.write(`${s}\n`);
}

function app(i: number): { ns: string; app: string } {
  return { ns: `ns-${i % NAMESPACES}`, app: `app-${i}` };
}

function policies(): PolicyDocument[] {
  const raw: unknown[] = [];
  const apps = IDENTITIES - 1;
  for (let j = 0; j < POLICIES; j++) {
    const subject = app(j % apps);
    const peerA = app((j * 7 + 1) % apps);
    const peerB = app((j * 13 + 5) % apps);
    const port = String(8000 + (j % 50));
    const peers = [
      { matchLabels: { app: peerA.app, 'k8s:io.kubernetes.pod.namespace': peerA.ns } },
      { matchLabels: { app: peerB.app, 'k8s:io.kubernetes.pod.namespace': peerB.ns } },
    ];
    const ingress: unknown[] = [{ fromEndpoints: peers, toPorts: [{ ports: [{ port, protocol: 'TCP' }] }] }];
    if (j % 10 === 0) {
      ingress.push({ fromEndpoints: [{}], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: `/v${j % 3}/.*` }] } }] });
    }
    if (j % 7 === 0) ingress.push({ fromEntities: ['host', 'remote-node'], toPorts: [{ ports: [{ port: '9000', endPort: 9100, protocol: 'TCP' }] }] });
    const spec: Record<string, unknown> = { endpointSelector: { matchLabels: { app: subject.app } }, ingress };
    if (j % 20 === 0) spec.egress = [{ toCIDRSet: [{ cidr: `10.${j % 250}.0.0/16`, except: [`10.${j % 250}.1.0/24`] }] }, { toEntities: ['kube-apiserver'] }];
    if (j % 25 === 0) spec.ingressDeny = [{ fromEndpoints: [{ matchLabels: { app: app((j + 3) % apps).app } }] }];
    if (j % 4 === 0) {
      // Clusterwide variant: the subject named with its namespace label.
      spec.endpointSelector = { matchLabels: { app: subject.app, 'k8s:io.kubernetes.pod.namespace': subject.ns } };
      raw.push({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name: `ccnp-${j}` }, spec });
    } else {
      raw.push({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: `cnp-${j}`, namespace: subject.ns }, spec });
    }
  }
  const r = loadPolicyDocuments(raw);
  if (r.problems.length > 0) throw new Error(`benchmark policies invalid: ${r.problems[0]?.path} ${r.problems[0]?.message}`);
  return r.policies.map((p) => p.document);
}

function targetPolicy(port: number): PolicyDocument {
  const r = loadPolicyDocuments([
    {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: 'bench-update', namespace: 'ns-0' },
      spec: {
        endpointSelector: { matchLabels: { app: 'bench-target' } },
        ingress: [{ fromEndpoints: [{ matchLabels: { app: app(10).app, 'k8s:io.kubernetes.pod.namespace': app(10).ns } }], toPorts: [{ ports: [{ port: String(port), protocol: 'TCP' }] }] }],
      },
    },
  ]);
  const p = r.policies[0];
  if (!p) throw new Error('update policy invalid');
  return p.document;
}

async function buildWorld(endpoints: number): Promise<PolicyEngine> {
  const e = new PolicyEngine();
  for (let i = 0; i < NAMESPACES; i++) await e.upsertNamespace(`ns-${i}`, { env: i % 2 === 0 ? 'prod' : 'dev' });
  // 10 endpoints share the update target's identity; the rest spread over 499 app identities.
  for (let r = 0; r < 10; r++) await e.upsertEndpoint({ namespace: 'ns-0', name: `target-${r}`, labels: { app: 'bench-target' }, ips: [`10.255.0.${r + 1}`] });
  const apps = IDENTITIES - 1;
  for (let n = 0; n < endpoints - 10; n++) {
    const a = app(n % apps);
    await e.upsertEndpoint({ namespace: a.ns, name: `${a.app}-${n}`, labels: { app: a.app }, ips: [`10.${128 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`] });
  }
  return e;
}

function heapMb(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

interface Run {
  endpoints: number;
  compileMs: number;
  updateMs: number;
  recomputedPerUpdate: number;
  fullRecomputeMs: number;
  heapMb: number;
  entries: number;
}

async function run(endpoints: number, docs: PolicyDocument[]): Promise<Run> {
  const base = heapMb();
  const e = await buildWorld(endpoints);
  e.flush();
  const t0 = performance.now();
  for (const d of docs) await e.upsertPolicy(d);
  const compiled = e.flush();
  const compileMs = performance.now() - t0;
  const entries = compiled.reduce((n, p) => n + p.ingress.entries.length + p.egress.entries.length, 0);
  const heap = heapMb() - base;

  // Sub-millisecond timings: many samples, a collection before (not during) the loop, the median.
  const times: number[] = [];
  let recomputed = 0;
  gc?.();
  for (let i = 0; i < 401; i++) {
    const before = e.stats.recomputedEndpoints;
    const t = performance.now();
    await e.upsertPolicy(targetPolicy(7000 + (i % 2)));
    const changed = e.flush();
    const dt = performance.now() - t;
    if (i > 0) times.push(dt); // the first adds the policy; the rest change it
    recomputed = e.stats.recomputedEndpoints - before;
    if (changed.length !== 10) throw new Error(`update changed ${changed.length} endpoints, expected 10`);
  }

  // The non-incremental alternative: after the same change, recompile every endpoint from scratch.
  const e2 = await buildWorld(endpoints);
  e2.flush();
  const t1 = performance.now();
  for (const d of docs) await e2.upsertPolicy(d);
  await e2.upsertPolicy(targetPolicy(7001));
  e2.flush();
  const fullRecomputeMs = performance.now() - t1;
  return { endpoints, compileMs, updateMs: median(times), recomputedPerUpdate: recomputed, fullRecomputeMs, heapMb: heap, entries };
}

const docs = policies();
log(`policy engine: ${POLICIES} policies, ${IDENTITIES} identities`);
const r5 = await run(5000, docs);
log(
  `  5,000 endpoints: full compile ${r5.compileMs.toFixed(0)} ms (${r5.entries} entries), heap +${r5.heapMb.toFixed(1)} MB; ` +
    `update ${r5.updateMs.toFixed(3)} ms (${r5.recomputedPerUpdate} endpoints recomputed) vs full recompute ${r5.fullRecomputeMs.toFixed(0)} ms`,
);
const r50 = await run(50000, docs);
log(
  ` 50,000 endpoints: full compile ${r50.compileMs.toFixed(0)} ms (${r50.entries} entries), heap +${r50.heapMb.toFixed(1)} MB; ` +
    `update ${r50.updateMs.toFixed(3)} ms (${r50.recomputedPerUpdate} endpoints recomputed) vs full recompute ${r50.fullRecomputeMs.toFixed(0)} ms`,
);
const ratio = r50.updateMs / r5.updateMs;
log(`update cost ratio 50k/5k: ${ratio.toFixed(2)} (target < 1.5)`);

const result = {
  full_compile_ms: Number(r5.compileMs.toFixed(1)),
  update_ms_5k: Number(r5.updateMs.toFixed(3)),
  update_ms_50k: Number(r50.updateMs.toFixed(3)),
  heap_mb: Number(r5.heapMb.toFixed(1)),
};

if (writeDoc) {
  const md = `# Policy engine benchmark

\`npm run bench:policy\` (source: \`bench/policy.ts\`). ${POLICIES} policies (namespaced and clusterwide; L3 peers,
L4 ports and ranges, HTTP rules on every 10th, deny on every 25th, CIDR-with-except and entity peers),
${IDENTITIES} identities. "Update" is one policy change selecting the 10 endpoints of one identity (median of
400 alternating changes, each really changing the entries). "Full recompute" is the alternative without
incremental recomputation: rebuilding every endpoint's policy after the same change.

Node ${process.version}, ${new Date().toISOString().slice(0, 10)}, a 2-core machine shared with other work
(absolute numbers are noisy; the ratios are the point).

| endpoints | full compile | entries | heap (engine) | update (incremental) | endpoints recomputed | full recompute |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| 5,000 | ${r5.compileMs.toFixed(0)} ms | ${r5.entries} | ${r5.heapMb.toFixed(1)} MB | ${r5.updateMs.toFixed(3)} ms | ${r5.recomputedPerUpdate} | ${r5.fullRecomputeMs.toFixed(0)} ms |
| 50,000 | ${r50.compileMs.toFixed(0)} ms | ${r50.entries} | ${r50.heapMb.toFixed(1)} MB | ${r50.updateMs.toFixed(3)} ms | ${r50.recomputedPerUpdate} | ${r50.fullRecomputeMs.toFixed(0)} ms |

"entries" counts the rows of every endpoint's policy; endpoints sharing an identity share one array, which is why
50,000 endpoints cost little more heap and compile time than 5,000.

Update cost with 50,000 endpoints relative to 5,000: **${ratio.toFixed(2)}×** (target < 1.5×). The work of a
change is proportional to the endpoints it selects and the number of identities, not to the cluster size; at
well under a millisecond per change the ratio is dominated by timer and garbage-collector noise, so it moves
between runs (typically 0.8–1.3×).

Why: rules are indexed by subject selector; every distinct selector is evaluated once against the identities
(not endpoints) in the selector cache; policy is computed once per identity and shared by the endpoints
carrying it; only ingress named ports are resolved per endpoint.

\`--json\` last line: \`${JSON.stringify(result)}\`
`;
  writeFileSync(repoPath('docs', 'benchmarks', 'policy.md'), md);
  log('wrote docs/benchmarks/policy.md');
}

if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
