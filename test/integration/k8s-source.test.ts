/**
 * KubeSource against a real kube-apiserver and etcd (src/devcluster/kube-cluster.ts),
 * objects written with the real kubectl: the first list before start()
 * resolves, typed events for changes, a missing CRD that does not block,
 * an invalid policy that changes nothing, an API server restart, and the
 * shipped ClusterRole being enough to read everything.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import type { ResourceEvent, SourceProblem } from '../../src/agent/resource-source.js';
import { KubeClient, resolveKubeConfig } from '../../src/k8s/client.js';
import { GATEWAY_KINDS } from '../../src/gateway/gateway-service.js';
import { KubeSource, type KubeSourceOptions } from '../../src/k8s/kube-source.js';
import { repoPath } from '../../src/util/paths.js';
import { AgentNode } from '../helpers/agent-node.js';
import { startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { echoServer, tryConnect } from '../helpers/pod-net.js';
import { requirePrivileges } from '../helpers/privileged.js';
import { eventually } from '../helpers/kube-nodes.js';

const FAST: Omit<KubeSourceOptions, 'client'> = { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };

/** Everything a source delivered, with a way to wait for what is expected. */
class Recorder {
  readonly batches: Array<{ events: ResourceEvent[]; beforeStartResolved: boolean }> = [];
  readonly problems: SourceProblem[] = [];
  started = false;
  /** Handling a batch takes a while, so a start() that did not wait for it would be caught. */
  constructor(private readonly handleMs = 0) {}

  get events(): ResourceEvent[] {
    return this.batches.flatMap((b) => b.events);
  }

  readonly handlers = {
    onBatch: async (events: ResourceEvent[]) => {
      if (this.handleMs > 0) await new Promise((r) => setTimeout(r, this.handleMs));
      this.batches.push({ events, beforeStartResolved: !this.started });
    },
    onProblems: (ps: SourceProblem[]) => void this.problems.push(...ps),
  };

  async until<T>(what: string, find: () => T | undefined, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = find();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last events: ${this.events.slice(-5).map((e) => `${e.type} ${e.key}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The first event after `since` (an index into events) for `key`. */
  next(key: string, since: number, type?: 'upsert' | 'delete'): Promise<ResourceEvent> {
    return this.until(`${type ?? 'an event'} of ${key}`, () => this.events.slice(since).find((e) => e.key === key && (type === undefined || e.type === type)));
  }
}

async function startSource(t: { after(fn: () => Promise<void>): void }, kubeconfigPath: string, rec: Recorder, extra: Partial<KubeSourceOptions> = {}): Promise<KubeSource> {
  const source = new KubeSource({ ...FAST, ...extra, client: new KubeClient(resolveKubeConfig({ kubeconfigPath, env: {} }).kubeConfig) });
  t.after(() => source.stop());
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`start() did not resolve; connection: ${JSON.stringify(source.connection())}`)), 30_000)));
  try {
    await Promise.race([source.start(rec.handlers), late]);
  } finally {
    clearTimeout(timer);
  }
  rec.started = true;
  return source;
}

async function applyCrds(kube: KubeCluster): Promise<void> {
  const dir = repoPath('install', 'crds');
  for (const f of readdirSync(dir).sort()) await kube.apply(readFileSync(join(dir, f), 'utf8'));
  const r = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/ciliumnetworkpolicies.cilium.io', 'crd/ciliumclusterwidenetworkpolicies.cilium.io']);
  assert.equal(r.code, 0, r.stderr);
}

const pod = (name: string, labels: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'app', labels },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'example.invalid/c', ports: [{ name: 'http', containerPort: 8080 }] }] },
});
const service = (name: string, port: number) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'app' },
  spec: { selector: { app: name }, ports: [{ name: 'http', port, targetPort: 8080 }] },
});
const cnp = (name: string, port: string) => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name, namespace: 'app' },
  spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port, protocol: 'TCP' }] }] }] },
});

const GATEWAY_KIND_NAMES: ReadonlySet<string> = new Set(GATEWAY_KINDS);

test('KubeSource against a real API server', async (t) => {
  const kube = await startKubeCluster({ t });
  await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'app', labels: { team: 'a' } } });
  await kube.ensureDefaultServiceAccount('app');

  // One source for the whole file, started before the cilium.io CRDs exist.
  const live = new Recorder();
  let source!: KubeSource;

  await t.test('a missing CRD does not block start(); the kind is reported and read once it appears', async () => {
    source = await startSource(t, kube.kubeconfigPath, live);
    const notServed = live.problems.filter((p) => p.code === 'KIND_NOT_SERVED').map((p) => p.origin).sort();
    const gatewayApi = ['backendtlspolicies', 'gatewayclasses', 'gateways', 'grpcroutes', 'httproutes'].map((r) => `k8s:/apis/gateway.networking.k8s.io/v1/${r}`);
    assert.deepEqual(notServed, ['k8s:/apis/cilium.io/v2/ciliumcidrgroups', 'k8s:/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies', 'k8s:/apis/cilium.io/v2/ciliumloadbalancerippools', 'k8s:/apis/cilium.io/v2/ciliumnetworkpolicies', 'k8s:/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies', ...gatewayApi, 'k8s:/apis/gateway.networking.k8s.io/v1beta1/referencegrants']);
    const conn = source.connection();
    assert.equal(conn.state, 'connected');
    assert.equal(conn.kinds.CiliumNetworkPolicy?.served, false);
    assert.equal(conn.kinds.Pod?.served, true);
    assert.ok(live.events.some((e) => e.key === 'Namespace/app' && e.object.kind === 'Namespace' && e.object.metadata.labels.team === 'a'));

    await applyCrds(kube);
    const since = live.events.length;
    await kube.apply(cnp('early', '80'));
    const ev = await live.next('CiliumNetworkPolicy/app/early', since, 'upsert');
    assert.equal(ev.object.kind, 'CiliumNetworkPolicy');
    assert.match(ev.origin, /^k8s:CiliumNetworkPolicy\/app\/early@\d+$/);
    assert.equal(source.connection().kinds.CiliumNetworkPolicy?.served, true);
  });

  await t.test('start() resolves only after the first batch, holding every kind, was handled', async (t2) => {
    await kube.apply([pod('web', { app: 'web' }), service('web', 80), cnp('allow-web', '8080')]);
    const rec = new Recorder(200);
    const s2 = await startSource(t2, kube.kubeconfigPath, rec);
    assert.equal(rec.batches.length, 1, 'one first batch');
    const first = rec.batches[0];
    assert.ok(first?.beforeStartResolved, 'handled before start() resolved');
    const keys = new Set(first.events.map((e) => e.key));
    for (const k of ['Namespace/app', 'Namespace/default', 'Pod/app/web', 'Service/app/web', 'Service/default/kubernetes', 'CiliumNetworkPolicy/app/allow-web', 'CiliumNetworkPolicy/app/early']) assert.ok(keys.has(k), `${k} in the first batch`);
    assert.ok(first.events.every((e) => e.type === 'upsert'));
    const web = first.events.find((e) => e.key === 'Pod/app/web')?.object;
    assert.equal(web?.kind, 'Pod');
    if (web?.kind === 'Pod') assert.deepEqual(web.spec.containers[0]?.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    // The Gateway API kinds' CRDs are not installed here: synced as not served (test/integration/gateway-api.test.ts reads them).
    for (const [name, kind] of Object.entries(s2.connection().kinds)) assert.ok(kind.synced && (kind.resourceVersion !== '' || (GATEWAY_KIND_NAMES.has(name) && !kind.served)), name);
    assert.equal(s2.connection().kinds.CiliumNetworkPolicy?.objects, 2);
  });

  await t.test('create, update and delete of a Pod, a Service and a CiliumNetworkPolicy arrive as typed events', async () => {
    let since = live.events.length;
    await kube.apply(pod('db', { app: 'db' }));
    const created = await live.next('Pod/app/db', since, 'upsert');
    assert.ok(created.object.kind === 'Pod' && created.object.metadata.labels.app === 'db');
    since = live.events.length;
    assert.equal((await kube.kubectl(['label', '-n', 'app', 'pod/db', 'tier=backend'])).code, 0);
    const relabelled = await live.next('Pod/app/db', since, 'upsert');
    assert.ok(relabelled.object.kind === 'Pod' && relabelled.object.metadata.labels.tier === 'backend');
    since = live.events.length;
    // No kubelet confirms a graceful deletion here, so the Pod goes at once.
    assert.equal((await kube.kubectl(['delete', '-n', 'app', 'pod/db', '--grace-period=0', '--force'])).code, 0);
    const gone = await live.next('Pod/app/db', since, 'delete');
    assert.ok(gone.object.kind === 'Pod' && gone.object.metadata.labels.tier === 'backend', 'a delete carries the last version');

    since = live.events.length;
    await kube.apply(service('api', 80));
    assert.equal((await live.next('Service/app/api', since, 'upsert')).object.kind, 'Service');
    since = live.events.length;
    await kube.apply(service('api', 8443));
    const svc = (await live.next('Service/app/api', since, 'upsert')).object;
    assert.ok(svc.kind === 'Service' && svc.spec.ports[0]?.port === 8443);
    since = live.events.length;
    assert.equal((await kube.kubectl(['delete', '-n', 'app', 'service/api'])).code, 0);
    await live.next('Service/app/api', since, 'delete');

    since = live.events.length;
    await kube.apply(cnp('p1', '80'));
    await live.next('CiliumNetworkPolicy/app/p1', since, 'upsert');
    since = live.events.length;
    await kube.apply(cnp('p1', '443'));
    const p1 = (await live.next('CiliumNetworkPolicy/app/p1', since, 'upsert')).object;
    assert.ok(p1.kind === 'CiliumNetworkPolicy' && JSON.stringify(p1.spec).includes('"443"'));
    since = live.events.length;
    assert.equal((await kube.kubectl(['delete', '-n', 'app', 'cnp/p1'])).code, 0);
    await live.next('CiliumNetworkPolicy/app/p1', since, 'delete');
  });

  await t.test('an invalid CiliumNetworkPolicy is reported with its field path and produces no event; the previous version stays', async () => {
    let since = live.events.length;
    await kube.apply(cnp('guarded', '80'));
    await live.next('CiliumNetworkPolicy/app/guarded', since, 'upsert');
    since = live.events.length;
    const problemsBefore = live.problems.length;
    await kube.apply(cnp('guarded', '99999'));
    const problem = await live.until('a problem for the invalid policy', () => live.problems.slice(problemsBefore).find((p) => p.ref?.name === 'guarded'));
    assert.equal(problem.code, 'INVALID_PORT');
    assert.deepEqual(problem.path, ['spec', 'ingress', 0, 'toPorts', 0, 'ports', 0, 'port']);
    assert.match(problem.origin, /^k8s:CiliumNetworkPolicy\/app\/guarded@\d+$/);
    assert.deepEqual(problem.ref, { kind: 'CiliumNetworkPolicy', namespace: 'app', name: 'guarded' });
    // Another object changed after the bad one: once its event is here, the bad one would have been too.
    await kube.apply(service('marker', 80));
    await live.next('Service/app/marker', since, 'upsert');
    assert.equal(live.events.slice(since).filter((e) => e.key === 'CiliumNetworkPolicy/app/guarded').length, 0, 'no event for the invalid version');
    // Fixed again: a new upsert.
    await kube.apply(cnp('guarded', '81'));
    const fixed = (await live.next('CiliumNetworkPolicy/app/guarded', since, 'upsert')).object;
    assert.ok(fixed.kind === 'CiliumNetworkPolicy' && JSON.stringify(fixed.spec).includes('"81"'));
    assert.equal(live.problems.slice(problemsBefore).filter((p) => p.ref?.name === 'guarded').length, 1, 'reported once');
  });

  await t.test('API server stopped and restarted: the source says so, reconnects and delivers what changed', async (t) => {
    const problemsBefore = live.problems.length;
    await kube.stopApiServer();
    const down = await live.until('the disconnected state', () => (source.connection().state === 'disconnected' ? source.connection() : undefined));
    assert.ok(down.lastError && ['MESHD_K8S_UNREACHABLE', 'MESHD_K8S_API_STATUS'].includes(down.lastError.code), JSON.stringify(down.lastError));
    assert.ok(Date.parse(down.since) <= Date.now());
    await kube.startApiServer();
    const since = live.events.length;
    await kube.apply(pod('late', { app: 'late' }));
    assert.equal((await kube.kubectl(['delete', '-n', 'app', 'service/marker'])).code, 0);
    const late = await live.next('Pod/app/late', since, 'upsert');
    assert.ok(late.object.kind === 'Pod' && late.object.metadata.labels.app === 'late');
    await live.next('Service/app/marker', since, 'delete');
    await live.until('the connected state', () => (source.connection().state === 'connected' ? true : undefined));
    const lists = Object.entries(source.connection().kinds).map(([k, st]) => `${k}:${st.lists}`);
    t.diagnostic(`lists per kind after the restart: ${lists.join(' ')}`);
    // Nothing was replayed as new: objects that did not change produced no events.
    assert.equal(live.events.slice(since).filter((e) => e.key === 'Pod/app/web' || e.key === 'CiliumNetworkPolicy/app/guarded').length, 0);
    assert.equal(live.problems.slice(problemsBefore).filter((p) => p.code !== 'SCAN_FAILED').length, 0);
  });

  await t.test('the shipped ClusterRole lets the agent read every kind it watches', async (t2) => {
    await kube.apply(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
    // Secrets: those of the TLS Secrets' namespace only (the rbac.yaml grants no other).
    const secret = (namespace: string, name: string) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { namespace, name }, stringData: { 'tls.crt': 'x' } });
    await kube.apply([secret('cilium-secrets', 'intercept'), secret('app', 'elsewhere')]);
    const tok = await kube.kubectl(['create', 'token', 'meshd', '-n', 'kube-system']);
    assert.equal(tok.code, 0, tok.stderr);
    const kubeconfigPath = join(kube.dir, 'meshd-agent.kubeconfig');
    writeFileSync(
      kubeconfigPath,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: kube.server, 'certificate-authority': kube.caPath } }],
        users: [{ name: 'meshd', user: { token: tok.stdout.trim() } }],
        contexts: [{ name: 'meshd', context: { cluster: 'c', user: 'meshd' } }],
        'current-context': 'meshd',
      }),
    );
    const rec = new Recorder();
    const s = await startSource(t2, kubeconfigPath, rec);
    assert.equal(s.connection().state, 'connected');
    assert.equal(s.connection().lastError, undefined, 'no request was refused');
    assert.ok(rec.events.some((e) => e.key === 'CiliumNetworkPolicy/app/guarded'));
    assert.ok(rec.events.some((e) => e.key === 'Pod/app/web'));
    assert.ok(rec.events.some((e) => e.key === 'Secret/cilium-secrets/intercept'));
    assert.ok(!rec.events.some((e) => e.key === 'Secret/app/elsewhere'), 'no Secret of another namespace is read');
  });
});

test('meshd agent on the cluster: a CiliumNetworkPolicy applied with kubectl is enforced in the kernel, and lifted when deleted', async (t) => {
  requirePrivileges();
  // Cleaned up before the cluster closes (hooks run in order): pods are deleted while the agent still runs.
  const node = new AgentNode();
  t.after(() => node.cleanup());
  mkdirSync(node.manifests, { recursive: true }); // cleanup() restarts a stopped agent in standalone mode for CNI DEL
  const kube = await startKubeCluster({ t });
  await applyCrds(kube);
  await kube.ensureDefaultServiceAccount('default');
  await kube.apply(
    ['client', 'server', 'intruder'].map((name) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'default', labels: { app: name } },
      spec: { nodeName: node.config.nodeName, containers: [{ name: 'c', image: 'example.invalid/c' }] },
    })),
  );
  const running = await node.start({ standaloneDir: undefined, kubeconfigPath: kube.kubeconfigPath, kubeSource: FAST });
  assert.equal(running.agent.status().agent.mode, 'kubernetes');
  assert.equal(running.kube?.connection().state, 'connected');
  const src = running.agent.status().source;
  assert.ok(src.type === 'kubernetes' && src.state === 'connected' && src.server === kube.server, JSON.stringify(src));
  assert.ok(Object.values(src.kinds).every((k) => k.synced), 'meshd status: every kind synced');
  assert.equal(src.kinds.Pod?.objects, 3);

  const client = await node.addPod('client');
  const server = await node.addPod('server');
  const intruder = await node.addPod('intruder');
  await echoServer(t, server.ns, [8080]);
  assert.equal(await tryConnect(intruder.ns, server.ip, 8080), 'connected', 'no policy selects the server yet');

  await kube.apply({
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'server-l4', namespace: 'default' },
    spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'client' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }] },
  });
  await eventually('the policy to be enforced', async () => (await tryConnect(intruder.ns, server.ip, 8080, 500)) === 'timeout');
  assert.equal(await tryConnect(client.ns, server.ip, 8080), 'connected', 'the allowed peer still connects');

  assert.equal((await kube.kubectl(['delete', 'cnp', 'server-l4'])).code, 0);
  await eventually('the policy to be lifted', async () => (await tryConnect(intruder.ns, server.ip, 8080, 500)) === 'connected');
});
