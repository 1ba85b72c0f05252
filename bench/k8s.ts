/**
 * npm run bench:k8s [-- --json] [--quick] [--changes N] [--pods N] [--nodes N]
 *                   [--policies N] [--window S] [--concurrency N]
 *
 * meshd against a real kube-apiserver and etcd (src/devcluster/kube-cluster.ts),
 * two agents in Kubernetes mode, each in its own process (bench/k8s-agent.ts:
 * own node name, pins, state, cgroup and pod CIDR), each running one pod that
 * the test kubelet (src/devcluster/kubelet.ts) started through meshd-cni.
 *
 * 1. apply → enforced: `--changes` (50) successive `kubectl apply` of one
 *    CiliumNetworkPolicy, each allowing a new port into the two local pods;
 *    per change, the time from starting kubectl until the new port's row is
 *    in the PINNED policy map of each agent (the pins polled every ~1 ms, so
 *    it is what the kernel enforces, not what the agent believes).
 * 2. Scale: `--pods` (5,000) Pods over `--nodes` (100) node names, Node
 *    objects for them, `--policies` (500) CNPs (endpointSelector +
 *    fromEndpoints/toPorts), one MeshdEndpoint per pod of the other nodes and
 *    the MeshdIdentity objects those name (what the other nodes' agents would
 *    have written). Only the two agents' nodes have real pods; the rest are
 *    objects created through the API (a bounded pool of concurrent requests),
 *    Pods with status.podIP set as kubelet would. Measured: the agents
 *    catching up with all of it; one agent restarted against the populated
 *    cluster until ready (every kind listed, the first batch applied, the
 *    datapath reconciled); apply → enforced again at this scale; API requests
 *    per second of each agent over a `--window` (60 s) steady period with a
 *    trickle of changes (one a second: a pod created, a pod deleted, a CNP
 *    changed, in turn), counted twice: by the agent's API client
 *    (src/k8s/client.ts) and by the API server's audit log (which also sees
 *    the requests of the client-node based writers); each agent's heap
 *    (heapUsed after a forced GC) and RSS at steady state.
 *
 * `--quick` is the short form the smoke test runs (small sizes, short window);
 * `--cpu-prof DIR` has the agent processes write V8 CPU profiles there.
 * Progress goes to stderr with --json; the last stdout line is
 * {"apply_to_enforced": {"p50_ms", "p99_ms", "changes", "kubectl_p50_ms", "write_p50_ms", "write_p99_ms",
 *                        "write_samples", "per_agent": {node: {p50_ms, p99_ms, max_ms}}},
 *  "scale": {"pods", "nodes", "policies", "endpoints", "identities", "populate_s", "catch_up_s", "ready_s",
 *            "heap_mb", "rss_mb", "api_rps", "api_rps_audit", "window_s", "apply_p50_ms", "apply_p99_ms",
 *            "write_p99_ms", "apply": {… as apply_to_enforced},
 *            "per_agent": {node: {heap_mb, rss_mb, api_rps, api_rps_audit, requests_by_verb}}}}
 * (heap_mb, rss_mb, api_rps: the larger of the two agents; write_*: from the API server's receipt
 * of kubectl's write, by its audit log, instead of from kubectl's start).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { BpfMap } from '../native/index.js';
import { PolicyKey } from '../src/datapath/maps.js';
import { KubeApiError, KubeClient, resolveKubeConfig } from '../src/k8s/client.js';
import { identityKeyName, IDENTITIES_PATH, IDENTITY_KEYS_PATH } from '../src/identity/kube-allocator.js';
import { podLabels } from '../src/identity/labels.js';
import { repoPath } from '../src/util/paths.js';
import { testSubnet } from '../test/helpers/cni-runtime.js';
import { startKubeCluster, type KubeCluster } from '../src/devcluster/kube-cluster.js';
import { TestKubelet } from '../src/devcluster/kubelet.js';
import { benchArgs } from './args.js';
import { AgentReply, type AgentRequest } from './k8s-agent.js';

const args = benchArgs();
const quick = process.argv.includes('--quick');
/** `--cpu-prof DIR`: the agent processes write V8 CPU profiles there when they exit. */
const cpuProfDir = ((i) => (i < 0 ? undefined : process.argv[i + 1]))(process.argv.indexOf('--cpu-prof'));
/** `--profile-scale DIR`: each agent profiles the at-scale apply → enforced changes only, into DIR/<node>.cpuprofile. */
const scaleProfDir = ((i) => (i < 0 ? undefined : process.argv[i + 1]))(process.argv.indexOf('--profile-scale'));
const SIZES = {
  changes: args.num('--changes', quick ? 5 : 50),
  pods: args.num('--pods', quick ? 200 : 5_000),
  nodes: args.num('--nodes', quick ? 10 : 100),
  policies: args.num('--policies', quick ? 20 : 500),
  windowS: args.num('--window', quick ? 5 : 60),
  concurrency: args.num('--concurrency', 16),
};
const NAMESPACES = 10;
/** Distinct `app` labels of the other nodes' pods: each (namespace, app) is one identity. */
const APPS = Math.min(500, Math.max(NAMESPACES, Math.floor(SIZES.pods / 10)));
/** A change not in the pins after this long counts as lost and fails the run. */
const ENFORCE_TIMEOUT_MS = 30_000;
/** The change after the population waits for the agents' whole backlog: that is what it measures. */
const CATCH_UP_TIMEOUT_MS = 600_000;
const AGENT_USERS = ['meshd-bench-a', 'meshd-bench-b'];
const log = args.log;

// ---- small helpers ---------------------------------------------------------------------------

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}
const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;
const mb = (bytes: number): number => round(bytes / 2 ** 20);

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

/** The API server answers 409 for an object that exists: creating the cluster's objects is idempotent. */
async function create(client: KubeClient, path: string, body: object): Promise<void> {
  try {
    await client.send('POST', path, body);
  } catch (e) {
    if (!(e instanceof KubeApiError) || e.status !== 409) throw e;
  }
}

const nodeName = (k: number): string => `bench-node-${String(k).padStart(3, '0')}`;
/** Pod addresses of the object-only nodes: 10.(100+k).0.0/16, far from the test pod subnets (10.244.x). */
const fakePodCidr = (k: number): string => `10.${100 + k}.0.0/16`;
const fakePodIp = (k: number, j: number): string => `10.${100 + k}.${(j >> 8) & 255}.${(j & 255) + 1 > 254 ? 254 : (j & 255) + 1}`;

// ---- one agent process -----------------------------------------------------------------------

class AgentProc {
  private readonly replies: AgentReply[] = [];
  private waiting: (() => void) | null = null;
  readonly exited: Promise<void>;
  info: { bpfRoot: string; cniConfDir: string; cniBinDir: string } | null = null;
  kubelet: TestKubelet | null = null;
  private maps: BpfMap[] = [];

  constructor(
    readonly nodeName: string,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (m: unknown) => {
      const r = AgentReply.safeParse(m);
      this.replies.push(r.success ? r.data : { op: 'error', message: `bad reply from ${nodeName}: ${JSON.stringify(m).slice(0, 200)}` });
      this.waiting?.();
    });
    this.exited = once(child, 'exit').then(() => {
      this.waiting?.();
    });
  }

  static spawn(node: string): AgentProc {
    const entry = join(fileURLToPath(new URL('.', import.meta.url)), 'k8s-agent.js');
    // stdout to our stderr: with --json the last stdout line must stay the figures.
    return new AgentProc(node, fork(entry, [], { execArgv: ['--expose-gc', ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [])], stdio: ['ignore', process.stderr, 'inherit', 'ipc'] }));
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.connected;
  }

  async call<O extends AgentReply['op']>(req: AgentRequest, expect: O, timeoutMs = 300_000): Promise<Extract<AgentReply, { op: O }>> {
    if (!this.alive) throw new Error(`${this.nodeName}: the agent process is gone`);
    this.replies.length = 0;
    this.child.send(req);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r) {
        if (r.op === expect) return r as Extract<AgentReply, { op: O }>;
        throw new Error(`${this.nodeName}: ${req.op}: ${r.op === 'error' ? r.message : `unexpected ${r.op}`}`);
      }
      if (!this.alive) throw new Error(`${this.nodeName}: the agent process exited during ${req.op}`);
      if (Date.now() > deadline) throw new Error(`${this.nodeName}: no answer to ${req.op} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 1_000);
      });
      this.waiting = null;
    }
  }

  /** Whether the pinned policy maps hold an ingress row for `port` (any endpoint, any peer). */
  enforcesPort(port: number): boolean {
    if (!this.info) return false;
    const bpfRoot = this.info.bpfRoot;
    if (this.maps.length === 0) this.maps = ['meshd_pol_exact', 'meshd_policy'].map((m) => BpfMap.fromPin(join(bpfRoot, 'meshd', m)));
    for (const m of this.maps) {
      for (const [k] of m.dump()) {
        const key = PolicyKey.decode(k);
        if (key.egress === 0 && key.dport === port) return true;
      }
    }
    return false;
  }

  closeMaps(): void {
    for (const m of this.maps) m.close();
    this.maps = [];
  }

  /** Pods first (CNI DEL needs the agent), then the agent and everything it made. */
  async stop(): Promise<void> {
    this.closeMaps();
    await this.kubelet?.cleanup();
    if (this.alive) await this.call({ op: 'stop' }, 'stopped', 120_000).catch((e: unknown) => log(`stopping ${this.nodeName}: ${String(e)}`));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

// ---- the cluster's objects -------------------------------------------------------------------

const applyPolicy = (port: number) => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'bench-apply', namespace: 'bench' },
  spec: {
    endpointSelector: { matchLabels: { app: 'bench-server' } },
    ingress: [{ fromEndpoints: [{ matchLabels: { app: 'bench-client' } }], toPorts: [{ ports: [{ port: String(port), protocol: 'TCP' }] }] }],
  },
});

const nsOf = (app: number): string => `ns-${app % NAMESPACES}`;

/** A CNP as users write them: one app's pods reachable from two other apps (in their namespaces) on one port. */
function scalePolicy(j: number, portShift = 0): object {
  const subject = j % APPS;
  const peer = (k: number) => ({ matchLabels: { app: `app-${k}`, 'k8s:io.kubernetes.pod.namespace': nsOf(k) } });
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: `cnp-${j}`, namespace: nsOf(subject) },
    spec: {
      endpointSelector: { matchLabels: { app: `app-${subject}` } },
      ingress: [{ fromEndpoints: [peer((j * 7 + 1) % APPS), peer((j * 13 + 5) % APPS)], toPorts: [{ ports: [{ port: String(8000 + ((j + portShift) % 50)), protocol: 'TCP' }] }] }],
    },
  };
}

/** The identity labels a pod of `app` gets (src/identity/labels.ts podLabels, as the engine derives them). */
function appLabels(app: number) {
  const ns = nsOf(app);
  return podLabels({ namespace: ns, labels: { app: `app-${app}` }, namespaceLabels: { 'kubernetes.io/metadata.name': ns }, serviceAccount: 'default' });
}

/** An equivalent of the MeshdEndpoint CRD (permissive schema; status in the object, no subresource), for a tree that does not ship it. */
const ENDPOINT_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'meshdendpoints.meshd.io' },
  spec: {
    group: 'meshd.io',
    names: { kind: 'MeshdEndpoint', listKind: 'MeshdEndpointList', plural: 'meshdendpoints', singular: 'meshdendpoint' },
    scope: 'Namespaced',
    versions: [{ name: 'v1alpha1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
};

interface FakePod {
  node: number;
  /** Index of the pod on its node. */
  j: number;
  app: number;
  name: string;
  ns: string;
  ip: string;
}

function fakePods(count: number, nodes: number): FakePod[] {
  const out: FakePod[] = [];
  const perNode = new Map<number, number>();
  // Nodes 0 and 1 are the agents' own: their pods are the real ones.
  for (let i = 0; i < count; i++) {
    const node = 2 + (i % Math.max(1, nodes - 2));
    const j = perNode.get(node) ?? 0;
    perNode.set(node, j + 1);
    const app = i % APPS;
    out.push({ node, j, app, name: `pod-${i}`, ns: nsOf(app), ip: fakePodIp(node, j) });
  }
  return out;
}

const podObject = (p: FakePod) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: p.name, namespace: p.ns, labels: { app: `app-${p.app}` } },
  spec: { nodeName: nodeName(p.node), containers: [{ name: 'c', image: 'example.invalid/c', ports: [{ name: 'http', containerPort: 8080 }] }] },
});

/** What kubelet reports for a running pod (a create drops status: it is a separate write, as kubelet's). */
const podStatus = (ip: string) => {
  const now = new Date().toISOString();
  return { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], startTime: now, conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }] } };
};

// ---- measurements ----------------------------------------------------------------------------

interface ApplyResult {
  samples: Record<string, number[]>;
  /** Per change: when kubectl started, and when each agent's pins showed it (epoch ms, fractional). */
  wall: Array<{ start: number; seen: Record<string, number> }>;
  /** kubectl's own run time per change (start → exit): the client's share of the figure. */
  kubectl: number[];
}

/** `changes` successive kubectl applies; per change and agent, kubectl start → new port's row in the pins. */
async function applyToEnforced(kube: KubeCluster, agents: readonly AgentProc[], changes: number, basePort: number, what: string, timeoutMs = ENFORCE_TIMEOUT_MS): Promise<ApplyResult> {
  const samples: Record<string, number[]> = Object.fromEntries(agents.map((a) => [a.nodeName, []]));
  const kubectl: number[] = [];
  const wall: ApplyResult['wall'] = [];
  for (let i = 0; i < changes; i++) {
    const port = basePort + i;
    const t0 = performance.now();
    const w: ApplyResult['wall'][number] = { start: performance.timeOrigin + t0, seen: {} };
    wall.push(w);
    let applyError: unknown = null;
    const applied = kube.apply(applyPolicy(port)).then(
      () => void kubectl.push(performance.now() - t0),
      (e: unknown) => void (applyError = e),
    );
    const pending = new Set(agents);
    while (pending.size > 0) {
      for (const a of [...pending]) {
        if (a.enforcesPort(port)) {
          const at = performance.now();
          samples[a.nodeName]?.push(at - t0);
          w.seen[a.nodeName] = performance.timeOrigin + at;
          pending.delete(a);
        }
      }
      if (applyError) throw applyError;
      if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: change ${i + 1} (port ${port}) not enforced by ${[...pending].map((a) => a.nodeName).join(', ')} within ${timeoutMs} ms`);
      await sleep(1);
    }
    await applied;
    if (applyError) throw applyError;
    const slow = agents.map((a) => samples[a.nodeName]?.at(-1) ?? 0);
    if (Math.max(...slow) > 1_000) log(`  ${what}: change ${i + 1} took ${slow.map((x) => `${round(x)} ms`).join(' / ')} (kubectl ${round(kubectl.at(-1) ?? 0)} ms)`);
    if ((i + 1) % 10 === 0 || i + 1 === changes) log(`  ${what}: ${i + 1}/${changes} changes enforced on both nodes`);
    await sleep(50); // distinct changes, not one coalesced batch
  }
  return { samples, kubectl, wall };
}

const AuditEvent = z.object({
  stage: z.string(),
  requestReceivedTimestamp: z.string(),
  user: z.object({ username: z.string() }),
  objectRef: z.object({ name: z.string().optional() }).optional(),
});
type AuditEvent = z.infer<typeof AuditEvent> & { at: number };

/** The API server's audit log: one event per request as it arrived (the policy omits the later stages). */
function auditEvents(file: string): AuditEvent[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return []; // nothing logged yet
  }
  const out: AuditEvent[] = [];
  for (const line of text.split('\n')) {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      continue; // an empty line, or the one being written right now
    }
    const ev = AuditEvent.safeParse(raw);
    // The timestamp has microseconds, Date.parse keeps milliseconds: figures from it are up to 1 ms off.
    if (ev.success && ev.data.stage === 'RequestReceived') out.push({ ...ev.data, at: Date.parse(ev.data.requestReceivedTimestamp) });
  }
  return out;
}

/**
 * Per change and agent: the API server receiving kubectl's write of the policy (its audit
 * event) → the pins showing it. kubectl's own start, discovery and GET are not in it.
 */
function writeToEnforced(r: ApplyResult, auditFile: string): number[] {
  const writes = auditEvents(auditFile)
    .filter((e) => e.objectRef?.name === 'bench-apply' && e.user.username === 'meshd-test-admin')
    .map((e) => e.at)
    .sort((a, b) => a - b);
  const out: number[] = [];
  for (const [i, w] of r.wall.entries()) {
    const until = r.wall[i + 1]?.start ?? Infinity;
    const write = writes.find((t) => t >= Math.floor(w.start) && t < until);
    if (write === undefined) continue;
    for (const seen of Object.values(w.seen)) out.push(Math.max(0, seen - write));
  }
  return out;
}

function summarize(r: ApplyResult, auditFile: string) {
  const all = Object.values(r.samples).flat();
  const fromWrite = writeToEnforced(r, auditFile);
  return {
    p50_ms: round(percentile(all, 50)),
    p99_ms: round(percentile(all, 99)),
    changes: Math.max(0, ...Object.values(r.samples).map((s) => s.length)),
    kubectl_p50_ms: round(percentile(r.kubectl, 50)),
    write_p50_ms: round(percentile(fromWrite, 50)),
    write_p99_ms: round(percentile(fromWrite, 99)),
    write_samples: fromWrite.length,
    per_agent: Object.fromEntries(Object.entries(r.samples).map(([n, s]) => [n, { p50_ms: round(percentile(s, 50)), p99_ms: round(percentile(s, 99)), max_ms: round(Math.max(...s)) }])),
  };
}

/** Requests of each user the audit log recorded in [from, to) (epoch ms). */
function auditCounts(file: string, from: number, to: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const ev of auditEvents(file)) if (ev.at >= from && ev.at < to) counts[ev.user.username] = (counts[ev.user.username] ?? 0) + 1;
  return counts;
}

async function waitFor(what: string, ms: number, fn: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(200);
  }
}

// ---- the run ---------------------------------------------------------------------------------

async function run(): Promise<object> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bench-k8s-'));
  const auditLog = join(dir, 'audit.log');
  const users = AGENT_USERS.map((u) => `system:serviceaccount:kube-system:${u}`);
  writeFileSync(
    join(dir, 'audit-policy.json'),
    JSON.stringify({
      apiVersion: 'audit.k8s.io/v1',
      kind: 'Policy',
      // One event per request, when it arrives: a watch counts once, like any other request.
      omitStages: ['ResponseStarted', 'ResponseComplete', 'Panic'],
      rules: [
        { level: 'Metadata', users },
        // The measured policy's writes, to time apply → enforced from the moment the API server got the write.
        { level: 'Metadata', users: ['meshd-test-admin'], verbs: ['create', 'patch', 'update'], resources: [{ group: 'cilium.io', resources: ['ciliumnetworkpolicies'], resourceNames: ['bench-apply'] }] },
        { level: 'None' },
      ],
    }),
  );
  const cleanups: Array<() => Promise<void>> = [];
  try {
    log('starting etcd and kube-apiserver');
    const kube = await startKubeCluster({ apiServerArgs: [`--audit-policy-file=${join(dir, 'audit-policy.json')}`, `--audit-log-path=${auditLog}`, '--audit-log-format=json', '--audit-log-mode=blocking'] });
    cleanups.push(() => kube.close());
    const admin = new KubeClient(resolveKubeConfig({ kubeconfigPath: kube.kubeconfigPath, env: {} }).kubeConfig);

    const crdDir = repoPath('install', 'crds');
    for (const f of readdirSync(crdDir).sort()) await kube.apply(readFileSync(join(crdDir, f), 'utf8'));
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench' } });
    await kube.ensureDefaultServiceAccount('bench');
    const nodeObjects = Array.from({ length: SIZES.nodes }, (_, k) => k);
    const cidrs = [testSubnet(0).cidr, testSubnet(1).cidr];
    await pool(nodeObjects, SIZES.concurrency, (k) =>
      create(admin, '/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: nodeName(k), labels: { 'kubernetes.io/hostname': nodeName(k) } },
        spec: { podCIDR: cidrs[k] ?? fakePodCidr(k), podCIDRs: [cidrs[k] ?? fakePodCidr(k)] },
      }),
    );

    // Each agent with its own ServiceAccount, so the audit log tells them apart.
    const kubeconfigs: string[] = [];
    for (const u of AGENT_USERS) {
      kubeconfigs.push((await kube.serviceAccountKubeconfig('kube-system', u)).kubeconfigPath);
      await kube.apply({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: u }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' }, subjects: [{ kind: 'ServiceAccount', name: u, namespace: 'kube-system' }] });
    }

    log('starting two agents');
    const agents = [0, 1].map((k) => AgentProc.spawn(nodeName(k)));
    for (const a of agents) cleanups.push(() => a.stop());
    await Promise.all(
      agents.map(async (a, k) => {
        const r = await a.call({ op: 'start', nodeName: a.nodeName, podCIDR: cidrs[k] ?? '', kubeconfigPath: kubeconfigs[k] ?? '' }, 'started');
        a.info = r;
        a.kubelet = new TestKubelet({ kube, nodeName: a.nodeName, cniConfDir: r.cniConfDir, cniBinDir: r.cniBinDir });
        log(`  ${a.nodeName} ready in ${round(r.ms / 1000, 2)} s`);
      }),
    );
    // The MeshdEndpoint CRD: install/crds/ ships it once the agent writes endpoint objects; until then, an equivalent.
    const endpointCrd = await admin.getJson('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/meshdendpoints.meshd.io').then(
      () => 'served (meshd\'s own)',
      async (e: unknown) => {
        if (!(e instanceof KubeApiError) || e.status !== 404) throw e;
        await kube.apply(ENDPOINT_CRD);
        return 'installed by the benchmark';
      },
    );
    const est = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/meshdendpoints.meshd.io']);
    if (est.code !== 0) throw new Error(`MeshdEndpoint CRD: ${est.stderr}`);
    log(`  MeshdEndpoint CRD ${endpointCrd}`);

    // One real pod per node, selected by the policy; its peer is an object on another node.
    for (const [k, a] of agents.entries()) await a.kubelet?.runPod(`server-${k}`, { namespace: 'bench', labels: { app: 'bench-server' }, containerPorts: [8080] });
    const clientIp = fakePodIp(2, 60_000);
    await create(admin, '/api/v1/namespaces/bench/pods', { ...podObject({ node: 2, j: 0, app: 0, name: 'bench-client', ns: 'bench', ip: clientIp }), metadata: { name: 'bench-client', namespace: 'bench', labels: { app: 'bench-client' } } });
    await admin.send('PATCH', '/api/v1/namespaces/bench/pods/bench-client/status', podStatus(clientIp));
    // The first apply creates the policy (and each agent its status entry); the measured ones change it.
    // The first change of it is not measured either: kubectl's first patch of a cilium.io/v2 object
    // fetches the group's OpenAPI v3 document, which the API server builds on first request (seconds here).
    for (const port of [19_998, 19_999]) {
      await kube.apply(applyPolicy(port));
      await waitFor('the first policy enforced', 60_000, async () => agents.every((a) => a.enforcesPort(port)));
    }

    log(`apply → enforced: ${SIZES.changes} changes, small cluster`);
    const small = summarize(await applyToEnforced(kube, agents, SIZES.changes, 20_000, 'small'), auditLog);
    log(`  p50 ${small.p50_ms} ms, p99 ${small.p99_ms} ms; from the API write: p50 ${small.write_p50_ms} ms, p99 ${small.write_p99_ms} ms`);

    // ---- scale ----
    log(`populating: ${SIZES.pods} pods over ${SIZES.nodes} nodes, ${SIZES.policies} CNPs, endpoints and identities (${SIZES.concurrency} requests in flight)`);
    const tPop = performance.now();
    for (let n = 0; n < NAMESPACES; n++) {
      await create(admin, '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${n}` } });
      await kube.ensureDefaultServiceAccount(`ns-${n}`);
    }
    // The identities other nodes' agents would have allocated for their pods.
    const identityOfApp = new Map<number, { id: number; labels: string[] }>();
    await pool(
      Array.from({ length: APPS }, (_, k) => k),
      SIZES.concurrency,
      async (app) => {
        const labels = appLabels(app);
        const id = 30_000 + app;
        const key = identityKeyName(labels);
        await create(admin, IDENTITIES_PATH, { apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdIdentity', metadata: { name: String(id) }, spec: { labels: labels.toStrings(), key } });
        await create(admin, IDENTITY_KEYS_PATH, { apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdIdentityKey', metadata: { name: key }, spec: { identity: id } });
        identityOfApp.set(app, { id, labels: labels.toStrings() });
      },
    );
    const pods = fakePods(SIZES.pods - agents.length - 1, SIZES.nodes);
    await pool(pods, SIZES.concurrency, async (p) => {
      await create(admin, `/api/v1/namespaces/${p.ns}/pods`, podObject(p));
      await admin.send('PATCH', `/api/v1/namespaces/${p.ns}/pods/${p.name}/status`, podStatus(p.ip));
    });
    log(`  ${pods.length + agents.length + 1} pods in ${round((performance.now() - tPop) / 1000)} s`);
    const now = new Date().toISOString();
    await pool(pods, SIZES.concurrency, async (p) => {
      const ident = identityOfApp.get(p.app);
      const status = {
        nodeName: nodeName(p.node),
        endpointID: p.j + 1,
        identity: { id: ident?.id ?? 0, labels: ident?.labels ?? [] },
        networking: { addresses: [{ ipv4: p.ip }] },
        namedPorts: [{ name: 'http', port: 8080, protocol: 'TCP' }],
        state: 'ready',
        policy: { ingress: { enforcing: false }, egress: { enforcing: false } },
        health: { healthy: true, lastUpdate: now },
      };
      const path = `/apis/meshd.io/v1alpha1/namespaces/${p.ns}/meshdendpoints`;
      const made = await admin.send('POST', path, { apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdEndpoint', metadata: { name: p.name, namespace: p.ns, labels: { 'meshd.io/node': nodeName(p.node) } }, status });
      // meshd's CRD keeps status in the object (as CiliumEndpoint does); a CRD with a status
      // subresource drops it on create, and then it is written through /status.
      if (!z.object({ status: z.object({ nodeName: z.string() }) }).safeParse(made).success) await admin.send('PATCH', `${path}/${p.name}/status`, { status });
    });
    await pool(
      Array.from({ length: SIZES.policies }, (_, j) => j),
      SIZES.concurrency,
      (j) => create(admin, `/apis/cilium.io/v2/namespaces/${nsOf(j % APPS)}/ciliumnetworkpolicies`, scalePolicy(j)),
    );
    const populateS = (performance.now() - tPop) / 1000;
    log(`  populated in ${round(populateS)} s`);
    const wantPods = pods.length + agents.length + 1;
    const caughtUp = async (a: AgentProc) => {
      const s = await a.call({ op: 'stats', gc: false }, 'stats');
      // Endpoint objects count too when the agent reads them (a kind its source does not have is absent).
      const endpointsRead = s.objects.MeshdEndpoint === undefined || s.objects.MeshdEndpoint >= pods.length;
      return (s.objects.Pod ?? 0) >= wantPods && (s.objects.CiliumNetworkPolicy ?? 0) >= SIZES.policies + 1 && endpointsRead;
    };
    await waitFor('the agents to hold every pod and policy', 600_000, async () => (await Promise.all(agents.map(caughtUp))).every(Boolean));
    // A change goes through the same queue as everything before it: once it is enforced, the backlog is applied.
    const catchUp = await applyToEnforced(kube, agents, 1, 29_000, 'catch-up', CATCH_UP_TIMEOUT_MS);
    const catchUpS = (performance.now() - tPop) / 1000;
    log(`  agents caught up ${round(catchUpS)} s after population started (last change enforced after ${round(Math.max(...Object.values(catchUp.samples).flat()))} ms)`);

    const first = agents[0];
    if (!first) throw new Error('no agent');
    first.closeMaps();
    log(`restarting ${first.nodeName} against the populated cluster`);
    const readyMs = (await first.call({ op: 'restart' }, 'restarted', 600_000)).ms;
    log(`  ready in ${round(readyMs / 1000, 2)} s`);

    log(`apply → enforced: ${SIZES.changes} changes at scale`);
    if (scaleProfDir) await Promise.all(agents.map((a) => a.call({ op: 'profile' }, 'profiled')));
    const scaledRaw = await applyToEnforced(kube, agents, SIZES.changes, 30_000, 'scale');
    if (scaleProfDir) await Promise.all(agents.map((a) => a.call({ op: 'profile', file: join(scaleProfDir, `${a.nodeName}.cpuprofile`) }, 'profiled')));
    const scaled = summarize(scaledRaw, auditLog);
    log(`  p50 ${scaled.p50_ms} ms, p99 ${scaled.p99_ms} ms; from the API write: p50 ${scaled.write_p50_ms} ms, p99 ${scaled.write_p99_ms} ms`);

    log(`steady window: ${SIZES.windowS} s, one change a second`);
    const before = await Promise.all(agents.map((a) => a.call({ op: 'stats', gc: true }, 'stats')));
    const w0 = Date.now();
    const t0 = performance.now();
    let tick = 0;
    while (performance.now() - t0 < SIZES.windowS * 1000) {
      const step = tick % 3;
      const p: FakePod = { node: 2, j: 50_000 + tick, app: tick % APPS, name: `churn-${Math.floor(tick / 3)}`, ns: nsOf(tick % APPS), ip: fakePodIp(2, 50_000 + tick) };
      if (step === 0) {
        await create(admin, `/api/v1/namespaces/${p.ns}/pods`, podObject(p));
        await admin.send('PATCH', `/api/v1/namespaces/${p.ns}/pods/${p.name}/status`, podStatus(p.ip));
      } else if (step === 1) {
        const made = `churn-${Math.floor(tick / 3)}`;
        await admin.send('DELETE', `/api/v1/namespaces/${nsOf((tick - 1) % APPS)}/pods/${made}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0 });
      } else {
        const j = tick % SIZES.policies;
        await admin.send('PUT', `/apis/cilium.io/v2/namespaces/${nsOf(j % APPS)}/ciliumnetworkpolicies/cnp-${j}`, await withVersion(admin, `/apis/cilium.io/v2/namespaces/${nsOf(j % APPS)}/ciliumnetworkpolicies/cnp-${j}`, scalePolicy(j, tick)));
      }
      tick += 1;
      const nextAt = t0 + tick * 1000;
      await sleep(Math.max(0, nextAt - performance.now()));
    }
    const windowS = (performance.now() - t0) / 1000;
    const w1 = Date.now();
    const after = await Promise.all(agents.map((a) => a.call({ op: 'stats', gc: true }, 'stats')));
    await sleep(1_000); // the audit log is written as requests arrive; give the last line time
    const audit = auditCounts(auditLog, w0, w1);
    const perAgent = Object.fromEntries(
      agents.map((a, k) => {
        const b = before[k];
        const s = after[k];
        const byVerb = Object.fromEntries(Object.entries(s?.requests.byVerb ?? {}).map(([v, n]) => [v, n - (b?.requests.byVerb[v] ?? 0)]));
        return [
          a.nodeName,
          {
            heap_mb: mb(s?.heapUsed ?? 0),
            rss_mb: mb(s?.rss ?? 0),
            api_rps: round(((s?.requests.total ?? 0) - (b?.requests.total ?? 0)) / windowS, 2),
            api_rps_audit: round((audit[users[k] ?? ''] ?? 0) / windowS, 2),
            requests_by_verb: byVerb,
          },
        ];
      }),
    );
    const figures = Object.values(perAgent);
    const identityList = z.object({ items: z.array(z.object({ metadata: z.object({ name: z.string() }), spec: z.object({ labels: z.array(z.string()) }) })) }).parse(await admin.getJson(IDENTITIES_PATH)).items;
    const identities = identityList.length;
    // The benchmark made one per app; what else exists the agents allocated (the bench pods, reserved-like sets).
    const byAgents = identityList.filter((i) => ![...identityOfApp.values()].some((x) => String(x.id) === i.metadata.name));
    log(`  identities: ${identities}, ${byAgents.length} allocated by the agents: ${byAgents.slice(0, 5).map((i) => i.spec.labels.filter((l) => !l.includes('cluster=')).join(',')).join(' | ')}`);
    const endpoints = z.object({ items: z.array(z.unknown()) }).parse(await admin.getJson('/apis/meshd.io/v1alpha1/meshdendpoints')).items.length;
    return {
      apply_to_enforced: small,
      scale: {
        pods: wantPods,
        nodes: SIZES.nodes,
        policies: SIZES.policies + 1,
        endpoints,
        identities,
        populate_s: round(populateS),
        catch_up_s: round(catchUpS),
        ready_s: round(readyMs / 1000, 2),
        heap_mb: Math.max(...figures.map((f) => f.heap_mb)),
        rss_mb: Math.max(...figures.map((f) => f.rss_mb)),
        api_rps: Math.max(...figures.map((f) => f.api_rps)),
        api_rps_audit: Math.max(...figures.map((f) => f.api_rps_audit)),
        window_s: round(windowS),
        apply_p50_ms: scaled.p50_ms,
        apply_p99_ms: scaled.p99_ms,
        write_p99_ms: scaled.write_p99_ms,
        apply: scaled,
        per_agent: perAgent,
      },
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e: unknown) => log(`cleanup: ${String(e)}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A full object for PUT, carrying the stored object's resourceVersion (optimistic concurrency). */
async function withVersion(client: KubeClient, path: string, obj: object): Promise<object> {
  const cur = z.object({ metadata: z.object({ resourceVersion: z.string() }) }).parse(await client.getJson(path));
  const o = z.object({ metadata: z.record(z.string(), z.unknown()) }).passthrough().parse(obj);
  return { ...o, metadata: { ...o.metadata, resourceVersion: cur.metadata.resourceVersion } };
}

const result = await run();
if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
else log(JSON.stringify(result, null, 2));
