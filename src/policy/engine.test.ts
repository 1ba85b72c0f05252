import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdentityAllocationError, LocalIdentityAllocator } from '../identity/allocator.js';
import type { Identity } from '../identity/allocator.js';
import type { LabelSet } from '../identity/labels.js';
import { isMeshdError } from '../util/errors.js';
import { loadPolicyText } from './api/loader.js';
import type { PolicyDocument } from './api/schema.js';
import { MemoryDnsCache } from './dns-cache.js';
import { PolicyEngine } from './engine.js';
import { lookupEntries } from './lookup.js';
import { Proto } from './types.js';

function doc(text: string): PolicyDocument {
  const r = loadPolicyText(text);
  assert.deepEqual(r.problems, []);
  const p = r.policies[0];
  assert.ok(p);
  return p.document;
}

function cnp(name: string, app: string, body: string): PolicyDocument {
  return doc(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: ${app}}}
${body}`);
}

/** 20 apps × 10 replicas; app-N replicas share one identity. */
async function world(dns?: MemoryDnsCache): Promise<PolicyEngine> {
  const e = new PolicyEngine(dns ? { dns } : {});
  for (let a = 0; a < 20; a++) {
    for (let r = 0; r < 10; r++) await e.upsertEndpoint({ namespace: 'default', name: `app${a}-${r}`, labels: { app: `app${a}` }, ips: [`10.0.${a}.${r + 1}`] });
  }
  e.flush();
  return e;
}

function reset(e: PolicyEngine): void {
  e.stats.recomputedEndpoints = 0;
  e.stats.recomputedIdentities = 0;
}

test('a policy change recomputes only the endpoints it selects', async () => {
  const e = await world();
  reset(e);
  const p1 = cnp('p', 'app3', '  ingress: [{fromEndpoints: [{matchLabels: {app: app4}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n');
  await e.upsertPolicy(p1);
  const changed = e.flush();
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(e.stats.recomputedIdentities, 1);
  assert.deepEqual(changed.map((c) => c.endpointId).sort(), Array.from({ length: 10 }, (_, r) => `default/app3-${r}`).sort());
  assert.ok(changed.every((c) => c.revision === 2 && c.ingress.defaultDeny && !c.egress.defaultDeny));

  // Same content again: recomputed, but nothing changed and revisions stay.
  reset(e);
  await e.upsertPolicy(p1);
  assert.deepEqual(e.flush(), []);
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(e.endpointPolicy('default/app3-0')?.revision, 2);

  // Port change: the same 10, revision bumps.
  reset(e);
  await e.upsertPolicy(cnp('p', 'app3', '  ingress: [{fromEndpoints: [{matchLabels: {app: app4}}], toPorts: [{ports: [{port: "81", protocol: TCP}]}]}]\n'));
  assert.equal(e.flush().length, 10);
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(e.endpointPolicy('default/app3-0')?.revision, 3);
  const app4 = e.endpointIdentity('default/app4-0') ?? -1;
  const ing = e.endpointPolicy('default/app3-5')?.ingress;
  assert.ok(ing);
  assert.equal(lookupEntries(ing, app4, Proto.TCP, 81).verdict, 'ALLOW');
  assert.equal(lookupEntries(ing, app4, Proto.TCP, 80).verdict, 'DENY');

  // Removal: the same 10 go back to no enforcement.
  reset(e);
  assert.ok(await e.removePolicy('CiliumNetworkPolicy/default/p'));
  assert.equal(e.flush().length, 10);
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(e.endpointPolicy('default/app3-0')?.ingress.defaultDeny, false);
});

test('an endpoint joining a peer selector recomputes the endpoints that use the selector, and itself', async () => {
  const e = await world();
  await e.upsertPolicy(cnp('p', 'app3', '  ingress: [{fromEndpoints: [{matchLabels: {role: scraper}}]}]\n'));
  e.flush();
  reset(e);
  // app9-0 gets a new label set (a new identity) that the app3 policy's peer selector matches.
  await e.upsertEndpoint({ namespace: 'default', name: 'app9-0', labels: { app: 'app9', role: 'scraper' }, ips: ['10.0.9.1'] });
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 11); // 10 × app3 + the changed endpoint
  const id = e.endpointIdentity('default/app9-0') ?? -1;
  const ing = e.endpointPolicy('default/app3-0')?.ingress;
  assert.ok(ing);
  assert.equal(lookupEntries(ing, id, Proto.TCP, 443).verdict, 'ALLOW');
  // Changing a label of an endpoint nobody selects recomputes only that endpoint.
  reset(e);
  await e.upsertEndpoint({ namespace: 'default', name: 'app12-0', labels: { app: 'app12', version: 'v2' }, ips: ['10.0.12.1'] });
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 1);
});

test('an FQDN change recomputes only endpoints whose policy uses a matching FQDN selector', async () => {
  const dns = new MemoryDnsCache();
  const e = await world(dns);
  await e.upsertPolicy(cnp('gh', 'app1', '  egress: [{toFQDNs: [{matchPattern: "*.github.com"}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]\n'));
  await e.upsertPolicy(cnp('other', 'app2', '  egress: [{toFQDNs: [{matchName: "example.org"}]}]\n'));
  e.flush();
  reset(e);
  dns.set('api.github.com', ['140.82.112.5']);
  await e.settled();
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 10);
  const egress = e.endpointPolicy('default/app1-3')?.egress;
  assert.ok(egress);
  assert.equal(lookupEntries(egress, e.identityOfIp('140.82.112.5'), Proto.TCP, 443).verdict, 'ALLOW');
  assert.ok(e.ipcache().some((c) => c.prefix === '140.82.112.5/32' && c.identity === e.identityOfIp('140.82.112.5')));
  // A name no selector matches touches nobody.
  reset(e);
  dns.set('unrelated.net', ['198.51.100.1']);
  await e.settled();
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 0);
  // The IP going away removes the entry again.
  reset(e);
  dns.set('api.github.com', []);
  await e.settled();
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(lookupEntries(e.endpointPolicy('default/app1-3')?.egress ?? { defaultDeny: true, entries: [] }, e.identityOfIp('140.82.112.5'), Proto.TCP, 443).verdict, 'DENY');
});

test('each distinct selector is evaluated once and shared by every rule using it', async () => {
  const e = await world();
  const cache = e.selectorCache;
  await e.upsertPolicy(cnp('a', 'app1', '  ingress: [{fromEndpoints: [{matchLabels: {app: app7}}]}]\n'));
  e.flush();
  const size = cache.size;
  const evals = cache.evaluations;
  // Another policy with the same subject and peer selectors: no new selectors, no evaluation.
  await e.upsertPolicy(cnp('b', 'app1', '  egress: [{toEndpoints: [{matchLabels: {app: app7}}]}]\n'));
  e.flush();
  assert.equal(cache.size, size);
  assert.equal(cache.evaluations, evals);
  assert.deepEqual(e.endpointPolicy('default/app1-0')?.egress.entries.map((x) => x.derivedFrom), [['default/b']]);
});

test('entries are keyed by remote identity, protocol and port range with explicit wildcards', async () => {
  const e = await world();
  await e.upsertPolicy(
    cnp(
      'k',
      'app0',
      `  ingress:
    - fromEndpoints: [{matchLabels: {app: app1}}]
    - toPorts: [{ports: [{port: "8000", endPort: 8100, protocol: TCP}]}]
    - fromEndpoints: [{matchLabels: {app: app2}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: app3}}]
`,
    ),
  );
  e.flush();
  const id = (n: number): number => e.endpointIdentity(`default/app${n}-0`) ?? -1;
  assert.deepEqual(
    e.endpointPolicy('default/app0-0')?.ingress.entries.map((x) => [x.remoteIdentity, x.protocol, x.port, x.endPort, x.verdict, x.l7?.kind ?? null]),
    [
      [0, Proto.TCP, 8000, 8100, 'ALLOW', null],
      [1, 0, 0, 0, 'ALLOW', null], // allow-localhost: the local host reaches local endpoints
      [id(1), 0, 0, 0, 'ALLOW', null],
      [id(2), Proto.TCP, 80, 80, 'REDIRECT', 'http'],
      [id(3), 0, 0, 0, 'DENY', null],
    ],
  );
});

test('a namespace label change recomputes the endpoints whose policies select by namespace labels', async () => {
  const e = new PolicyEngine();
  await e.upsertNamespace('shop', { env: 'dev' });
  await e.upsertNamespace('ops', {});
  for (let r = 0; r < 3; r++) await e.upsertEndpoint({ namespace: 'shop', name: `api-${r}`, labels: { app: 'api' } });
  for (let r = 0; r < 4; r++) await e.upsertEndpoint({ namespace: 'ops', name: `db-${r}`, labels: { app: 'db' } });
  for (let r = 0; r < 5; r++) await e.upsertEndpoint({ namespace: 'ops', name: `other-${r}`, labels: { app: 'other' } });
  await e.upsertPolicy(
    doc(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: ops}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.cilium.k8s.namespace.labels.env: prod}}]
`),
  );
  e.flush();
  const api = (): number => e.endpointIdentity('shop/api-0') ?? -1;
  const db = (): NonNullable<ReturnType<PolicyEngine['endpointPolicy']>> => {
    const p = e.endpointPolicy('ops/db-0');
    assert.ok(p);
    return p;
  };
  assert.equal(lookupEntries(db().ingress, api(), Proto.TCP, 5432).verdict, 'DENY');
  reset(e);
  await e.upsertNamespace('shop', { env: 'prod' });
  e.flush();
  // The 3 relabelled pods (new identity) and the 4 db pods whose peer selector now matches it.
  assert.equal(e.stats.recomputedEndpoints, 7);
  assert.equal(lookupEntries(db().ingress, api(), Proto.TCP, 5432).verdict, 'ALLOW');
});

test('nodes: remote node identities by labels, host relabel only on change, removal', async () => {
  const e = new PolicyEngine();
  await e.upsertNode({ name: 'a', labels: { zone: 'x' }, ips: ['192.168.0.1'], local: true });
  await e.upsertNode({ name: 'b', labels: { zone: 'y' }, ips: ['192.168.0.2'] });
  await e.upsertNode({ name: 'c', ips: ['192.168.0.3'] });
  await e.upsertEndpoint({ namespace: 'default', name: 'w', labels: { app: 'w' } });
  await e.upsertPolicy(
    doc(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: n, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: w}}
  egress:
    - toNodes: [{matchLabels: {zone: y}}]
`),
  );
  e.flush();
  assert.equal(e.identityOfIp('192.168.0.1'), 1);
  assert.equal(e.identityOfIp('192.168.0.3'), 6); // an unlabelled remote node is plain remote-node
  const b = e.identityOfIp('192.168.0.2');
  assert.ok(b >= 256);
  const eg = e.endpointPolicy('default/w')?.egress;
  assert.ok(eg);
  assert.equal(lookupEntries(eg, b, Proto.TCP, 10250).verdict, 'ALLOW');
  assert.equal(lookupEntries(eg, 6, Proto.TCP, 10250).verdict, 'DENY');
  const evals = e.selectorCache.evaluations;
  await e.upsertNode({ name: 'a', labels: { zone: 'x' }, ips: ['192.168.0.1'], local: true });
  assert.equal(e.selectorCache.evaluations, evals);
  await e.removeNode('b');
  e.flush();
  assert.equal(e.identityOfIp('192.168.0.2'), 2);
  assert.equal(e.allocator.get(b), undefined);
  assert.deepEqual(e.endpointPolicy('default/w')?.egress.entries, []);
});

test('kube-apiserver: off-node addresses are the reserved identity, a remote node\'s get remote-node + kube-apiserver, the host gets the label', async () => {
  const e = new PolicyEngine();
  await e.upsertNode({ name: 'a', labels: { zone: 'x' }, ips: ['192.168.0.1'], local: true });
  await e.upsertNode({ name: 'b', labels: { zone: 'y' }, ips: ['192.168.0.2', '10.9.9.2'] });
  await e.upsertNode({ name: 'c', labels: { zone: 'y' }, ips: ['192.168.0.3'] });
  await e.upsertEndpoint({ namespace: 'default', name: 'w', labels: { app: 'w' }, local: true, ips: ['10.0.0.5'] });
  await e.upsertPolicy(cnp('api', 'w', '  egress:\n    - toEntities: [kube-apiserver]\n      toPorts: [{ports: [{port: "6443", protocol: TCP}]}]\n    - toEntities: [remote-node]\n      toPorts: [{ports: [{port: "10250", protocol: TCP}]}]\n'));
  await e.setKubeApiServerAddresses(['192.168.0.2', '198.51.100.1']);
  e.flush();
  const verdict = (ip: string, port: number): string => {
    const eg = e.endpointPolicy('default/w')?.egress;
    assert.ok(eg);
    return lookupEntries(eg, e.identityOfIp(ip), Proto.TCP, port).verdict;
  };
  // Off every node: the reserved identity.
  assert.equal(e.identityOfIp('198.51.100.1'), 7);
  assert.equal(verdict('198.51.100.1', 6443), 'ALLOW');
  // On node b: one identity with both entities and b's labels, for that address only.
  const api = e.identityOfIp('192.168.0.2');
  const labels = e.allocator.get(api)?.labels;
  assert.ok(labels?.has('reserved', 'kube-apiserver') && labels.has('reserved', 'remote-node') && labels.has('k8s', 'zone'), labels?.key);
  assert.notEqual(e.identityOfIp('10.9.9.2'), api);
  assert.equal(e.identityOfIp('10.9.9.2'), e.identityOfIp('192.168.0.3'));
  assert.equal(verdict('192.168.0.2', 6443), 'ALLOW');
  assert.equal(verdict('192.168.0.2', 10250), 'ALLOW');
  assert.equal(verdict('10.9.9.2', 6443), 'DENY');
  assert.equal(verdict('192.168.0.3', 6443), 'DENY');
  assert.equal(verdict('192.168.0.3', 10250), 'ALLOW');
  assert.ok(e.ipcache().some((x) => x.prefix === '192.168.0.2/32' && x.identity === api));
  assert.equal(e.allocator.get(1)?.labels.has('reserved', 'kube-apiserver'), false);
  // The API server moves to the local node: host gets the label (its identity stays 1), b's combined identity goes.
  await e.setKubeApiServerAddresses(['192.168.0.1']);
  e.flush();
  assert.equal(e.identityOfIp('192.168.0.1'), 1);
  assert.equal(e.allocator.get(1)?.labels.has('reserved', 'kube-apiserver'), true);
  assert.equal(e.allocator.get(1)?.labels.has('k8s', 'zone'), true);
  assert.equal(e.allocator.get(api), undefined);
  assert.equal(e.identityOfIp('192.168.0.2'), e.identityOfIp('192.168.0.3'));
  assert.equal(e.identityOfIp('198.51.100.1'), 2);
  assert.equal(verdict('192.168.0.1', 6443), 'ALLOW');
  assert.equal(verdict('192.168.0.2', 6443), 'DENY');
  // The local node's labels change: host keeps kube-apiserver. None left: host loses it.
  await e.upsertNode({ name: 'a', labels: { zone: 'z' }, ips: ['192.168.0.1'], local: true });
  assert.equal(e.allocator.get(1)?.labels.has('reserved', 'kube-apiserver'), true);
  await e.setKubeApiServerAddresses([]);
  assert.equal(e.allocator.get(1)?.labels.has('reserved', 'kube-apiserver'), false);
  // A node whose address becomes the API server's (an address change) gets the combined identity; leaving releases it.
  await e.setKubeApiServerAddresses(['192.168.0.30']);
  await e.upsertNode({ name: 'c', labels: { zone: 'y' }, ips: ['192.168.0.30'] });
  const moved = e.identityOfIp('192.168.0.30');
  assert.equal(e.allocator.get(moved)?.labels.has('reserved', 'kube-apiserver'), true);
  assert.equal(e.identityOfIp('192.168.0.3'), 2);
  await e.removeNode('c');
  assert.equal(e.allocator.get(moved), undefined);
  assert.equal(e.identityOfIp('192.168.0.30'), 7);
});

test('two L7 kinds on one port are a conflict: the port is denied and the entry says which policies conflict', async () => {
  const e = await world();
  await e.upsertPolicy(cnp('http-rules', 'app1', `  ingress:
    - fromEndpoints: [{matchLabels: {app: app2}}]
      toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {http: [{method: GET}]}}]
`));
  await e.upsertPolicy(cnp('kafka-rules', 'app1', `  ingress:
    - fromEndpoints: [{matchLabels: {app: app2}}]
      toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {kafka: [{topic: orders}]}}]
`));
  e.flush();
  const p = e.endpointPolicy('default/app1-0');
  assert.ok(p);
  const remote = e.endpointIdentity('default/app2-0') ?? -1;
  const row = p.ingress.entries.find((x) => x.remoteIdentity === remote && x.port === 9092);
  assert.equal(row?.verdict, 'DENY');
  assert.match(row?.conflict ?? '', /conflicting L7 rules on one port: http and default\/kafka-rules \(kafka\)/);
  assert.equal(lookupEntries(p.ingress, remote, Proto.TCP, 9092).verdict, 'DENY');

  // Removing one of them resolves the conflict.
  await e.removePolicy('CiliumNetworkPolicy/default/kafka-rules');
  e.flush();
  const again = e.endpointPolicy('default/app1-0')?.ingress.entries.find((x) => x.remoteIdentity === remote && x.port === 9092);
  assert.equal(again?.verdict, 'REDIRECT');
  assert.equal(again?.conflict, undefined);
});

/** An allocator whose allocations can be held back (to interleave calls) or made to fail. */
class ControlledAllocator extends LocalIdentityAllocator {
  refuse = false;
  readonly held: Array<() => void> = [];
  hold = false;

  override async allocate(labels: LabelSet): Promise<Identity> {
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    if (this.refuse) throw new IdentityAllocationError('refused for the test', { kind: 'unavailable' });
    return super.allocate(labels);
  }
}

test('a rejected allocation leaves the previous state enforced: endpoint relabel, new endpoint, CIDR policy, namespace', async () => {
  const alloc = new ControlledAllocator();
  const e = new PolicyEngine({ allocator: alloc });
  await e.upsertEndpoint({ namespace: 'default', name: 's', labels: { app: 's' }, ips: ['10.0.0.1'] });
  await e.upsertEndpoint({ namespace: 'default', name: 'c', labels: { app: 'c' }, ips: ['10.0.0.2'] });
  await e.upsertPolicy(cnp('s', 's', '  ingress: [{fromEndpoints: [{matchLabels: {app: c}}]}]\n'));
  e.flush();
  const before = { policy: e.endpointPolicy('default/s'), ipcache: e.ipcache(), c: e.endpointIdentity('default/c'), ids: [...e.allocator.all()].length };
  const isRefusal = (err: unknown) => isMeshdError(err, 'MESHD_IDENTITY_ALLOCATION');

  alloc.refuse = true;
  await assert.rejects(e.upsertEndpoint({ namespace: 'default', name: 'c', labels: { app: 'other' }, ips: ['10.0.0.3'] }), isRefusal);
  await assert.rejects(e.upsertEndpoint({ namespace: 'default', name: 'n', labels: { app: 'n' }, ips: ['10.0.0.9'] }), isRefusal);
  await assert.rejects(e.upsertPolicy(cnp('s', 's', '  ingress: [{fromCIDR: [10.1.0.0/16]}]\n')), isRefusal);
  await assert.rejects(e.upsertNamespace('default', { env: 'prod' }), isRefusal);
  await assert.rejects(e.upsertNode({ name: 'remote', ips: ['192.168.1.1'] }), isRefusal);
  assert.deepEqual(e.flush(), [], 'nothing changed');
  assert.equal(e.endpointIdentity('default/c'), before.c);
  assert.equal(e.hasEndpoint('default/n'), false);
  assert.deepEqual(e.ipcache(), before.ipcache);
  assert.deepEqual(e.endpointPolicy('default/s'), before.policy);
  assert.equal([...e.allocator.all()].length, before.ids, 'no identity leaked');
  assert.equal(lookupEntries(before.policy?.ingress ?? { defaultDeny: true, entries: [] }, before.c ?? -1, Proto.TCP, 80).verdict, 'ALLOW');

  // The same calls succeed once the allocator answers again.
  alloc.refuse = false;
  await e.upsertPolicy(cnp('s', 's', '  ingress: [{fromCIDR: [10.1.0.0/16]}]\n'));
  assert.equal(e.flush().length, 1);
  assert.equal(lookupEntries(e.endpointPolicy('default/s')?.ingress ?? { defaultDeny: true, entries: [] }, e.identityOfIp('10.1.2.3'), Proto.TCP, 80).verdict, 'ALLOW');
});

test('mutations apply one at a time in call order, and queries never see one half-applied', async () => {
  const alloc = new ControlledAllocator();
  const e = new PolicyEngine({ allocator: alloc });
  alloc.hold = true;
  const first = e.upsertEndpoint({ namespace: 'default', name: 'x', labels: { v: '1' }, ips: ['10.0.0.1'] });
  const second = e.upsertEndpoint({ namespace: 'default', name: 'x', labels: { v: '2' }, ips: ['10.0.0.2'] });
  const removed = e.removeEndpoint('default/x');
  await new Promise((r) => setImmediate(r));
  assert.equal(alloc.held.length, 1, 'the second allocation waits for the first mutation');
  assert.equal(e.hasEndpoint('default/x'), false, 'nothing visible while the allocation is pending');
  alloc.hold = false;
  alloc.held.shift()?.();
  await first;
  assert.equal(e.endpointByIp('10.0.0.1'), 'default/x');
  await second;
  assert.equal(e.endpointByIp('10.0.0.1'), undefined);
  assert.equal(e.endpointByIp('10.0.0.2'), 'default/x');
  await removed;
  assert.equal(e.hasEndpoint('default/x'), false);
  assert.deepEqual([...e.allocator.all()].filter((i) => i.scope !== 'reserved'), [], 'both identities released');
});

test('host addresses carry the host identity with or without a Node object, merged with the Node\'s own', async () => {
  const e = new PolicyEngine();
  await e.upsertEndpoint({ namespace: 'default', name: 'p', labels: { app: 'p' }, ips: ['10.0.0.5'] });
  await e.upsertPolicy(cnp('deny-all', 'p', '  ingress: [{}]\n'));
  e.flush();
  assert.equal(e.identityOfIp('192.0.2.10'), 2, 'unknown before the host reports it');
  e.setHostAddresses(['192.0.2.10', '2001:db8::a', 'not-an-address']);
  assert.deepEqual(e.hostAddresses(), ['192.0.2.10', '2001:db8::a']);
  assert.equal(e.identityOfIp('192.0.2.10'), 1);
  assert.ok(e.ipcache().some((x) => x.prefix === '2001:db8::a/128' && x.identity === 1));
  // allow-localhost lets exactly this identity in under default deny.
  const ing = e.endpointPolicy('default/p')?.ingress;
  assert.ok(ing?.defaultDeny);
  assert.equal(lookupEntries(ing, e.identityOfIp('192.0.2.10'), Proto.TCP, 80).verdict, 'ALLOW');
  assert.equal(lookupEntries(ing, e.identityOfIp('198.51.100.1'), Proto.TCP, 80).verdict, 'DENY');

  // The local Node adds its addresses; removing it keeps the host's own.
  await e.upsertNode({ name: 'me', local: true, ips: ['192.0.2.20'] });
  assert.equal(e.identityOfIp('192.0.2.20'), 1);
  assert.equal(e.identityOfIp('192.0.2.10'), 1);
  await e.removeNode('me');
  assert.equal(e.identityOfIp('192.0.2.20'), 2);
  assert.equal(e.identityOfIp('192.0.2.10'), 1);
  // An endpoint's address is the endpoint's, whatever the host reports.
  e.setHostAddresses(['10.0.0.5']);
  assert.equal(e.identityOfIp('10.0.0.5'), e.endpointIdentity('default/p'));
  assert.equal(e.ipcache().find((x) => x.prefix === '10.0.0.5/32')?.identity, e.endpointIdentity('default/p'));
  assert.equal(e.identityOfIp('192.0.2.10'), 2, 'replaced, not merged');
});

test('a DNS change whose addresses get no identity leaves the FQDN state as it was and is reported', async () => {
  const alloc = new ControlledAllocator();
  const dns = new MemoryDnsCache();
  const reported: unknown[] = [];
  const e = new PolicyEngine({ allocator: alloc, dns, onError: (err) => reported.push(err) });
  await e.upsertEndpoint({ namespace: 'default', name: 'c', labels: { app: 'c' } });
  await e.upsertPolicy(cnp('gh', 'c', '  egress: [{toFQDNs: [{matchName: "api.github.com"}]}]\n'));
  e.flush();
  alloc.refuse = true;
  dns.set('api.github.com', ['140.82.112.5']);
  await e.settled();
  assert.equal(reported.length, 1);
  assert.ok(isMeshdError(reported[0], 'MESHD_IDENTITY_ALLOCATION'));
  assert.deepEqual(e.flush(), []);
  assert.equal(e.identityOfIp('140.82.112.5'), 2);
  alloc.refuse = false;
  dns.set('api.github.com', ['140.82.112.5', '140.82.112.6']);
  await e.settled();
  assert.equal(e.flush().length, 1);
  const eg = e.endpointPolicy('default/c')?.egress;
  assert.ok(eg);
  assert.equal(lookupEntries(eg, e.identityOfIp('140.82.112.5'), Proto.TCP, 443).verdict, 'ALLOW');

  // Without onError the failure surfaces from the next settled(), once.
  const a2 = new ControlledAllocator();
  const d2 = new MemoryDnsCache();
  const e2 = new PolicyEngine({ allocator: a2, dns: d2 });
  await e2.upsertEndpoint({ namespace: 'default', name: 'c', labels: { app: 'c' } });
  await e2.upsertPolicy(cnp('x', 'c', '  egress: [{toFQDNs: [{matchName: "x.example"}]}]\n'));
  a2.refuse = true;
  d2.set('x.example', ['198.51.100.9']);
  await assert.rejects(e2.settled(), (err) => isMeshdError(err, 'MESHD_IDENTITY_ALLOCATION'));
  await e2.settled();
});

test('CIDR groups: a policy follows its group when the group appears, changes and goes away', async () => {
  const e = new PolicyEngine();
  await e.upsertEndpoint({ namespace: 'default', name: 'app', labels: { app: 'app' }, ips: ['10.0.0.1'] });
  await e.upsertPolicy(cnp('p', 'app', '  egress: [{toCIDRSet: [{cidrGroupRef: partners, except: [198.51.100.128/25]}]}]\n'));
  e.flush();
  const verdict = (ip: string): string => {
    const pol = e.endpointPolicy('default/app');
    assert.ok(pol);
    return lookupEntries(pol.egress, e.identityOfIp(ip), Proto.TCP, 443).verdict;
  };
  // The group does not exist yet: the rule selects nothing, the endpoint is in default deny.
  assert.equal(verdict('198.51.100.10'), 'DENY');
  await e.upsertCidrGroup({ name: 'partners', labels: {}, cidrs: ['198.51.100.0/24'] });
  assert.ok(e.flush().some((p) => p.endpointId === 'default/app'));
  assert.equal(verdict('198.51.100.10'), 'ALLOW');
  assert.equal(verdict('198.51.100.200'), 'DENY', 'except applies to the group CIDR');
  // The group moves: the old CIDR stops matching, the new one starts.
  await e.upsertCidrGroup({ name: 'partners', labels: {}, cidrs: ['203.0.113.0/24'] });
  e.flush();
  assert.equal(verdict('198.51.100.10'), 'DENY');
  assert.equal(verdict('203.0.113.7'), 'ALLOW');
  // Another group changes nothing for this policy.
  reset(e);
  await e.upsertCidrGroup({ name: 'unrelated', labels: {}, cidrs: ['192.0.2.0/24'] });
  assert.deepEqual(e.flush(), []);
  await e.removeCidrGroup('partners');
  e.flush();
  assert.equal(verdict('203.0.113.7'), 'DENY');
});

test('fromRequires narrows peers that appear after the policy (a new identity is judged with the requirement)', async () => {
  const e = new PolicyEngine();
  await e.upsertEndpoint({ namespace: 'default', name: 'db', labels: { app: 'db', env: 'prod' }, ips: ['10.0.0.1'] });
  await e.upsertPolicy(cnp('req', 'db', '  ingress: [{fromRequires: [{matchLabels: {env: prod}}]}]\n'));
  await e.upsertPolicy(cnp('fe', 'db', '  ingress: [{fromEndpoints: [{matchLabels: {role: fe}}]}]\n'));
  e.flush();
  await e.upsertEndpoint({ namespace: 'default', name: 'fe-prod', labels: { role: 'fe', env: 'prod' }, ips: ['10.0.0.2'] });
  await e.upsertEndpoint({ namespace: 'default', name: 'fe-dev', labels: { role: 'fe', env: 'dev' }, ips: ['10.0.0.3'] });
  e.flush();
  const pol = e.endpointPolicy('default/db');
  assert.ok(pol);
  const of = (id: string): string => lookupEntries(pol.ingress, e.endpointIdentity(id) ?? 0, Proto.TCP, 80).verdict;
  assert.equal(of('default/fe-prod'), 'ALLOW');
  assert.equal(of('default/fe-dev'), 'DENY');
  // Removing the requirement widens the other rule again.
  await e.removePolicy('CiliumNetworkPolicy/default/req');
  e.flush();
  const after = e.endpointPolicy('default/db');
  assert.ok(after);
  assert.equal(lookupEntries(after.ingress, e.endpointIdentity('default/fe-dev') ?? 0, Proto.TCP, 80).verdict, 'ALLOW');
});

test('ipcache() is the same list until an address, a node, an endpoint or an identity changes', async () => {
  const dns = new MemoryDnsCache();
  const e = await world(dns);
  const first = e.ipcache();
  assert.equal(first.length, 200);
  // A policy edit changes no address: the list is kept, not recomputed.
  await e.upsertPolicy(cnp('p', 'app3', '  egress: [{toFQDNs: [{matchName: "api.example.com"}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]\n'));
  e.flush();
  assert.equal(e.ipcache(), first);
  const changed = (before: readonly unknown[]): readonly unknown[] => {
    const now = e.ipcache();
    assert.notEqual(now, before);
    return now;
  };
  // Each thing the ipcache is made of gives a new list with the change in it.
  await e.upsertEndpoint({ namespace: 'default', name: 'new', labels: { app: 'app1' }, ips: ['10.9.0.1'] });
  let last = changed(first);
  assert.ok(e.ipcache().some((x) => x.prefix === '10.9.0.1/32' && x.identity === e.endpointIdentity('default/new')));
  await e.removeEndpoint('default/new');
  last = changed(last);
  assert.ok(!e.ipcache().some((x) => x.prefix === '10.9.0.1/32'));
  await e.upsertNode({ name: 'n2', ips: ['192.0.2.2'] });
  last = changed(last);
  assert.ok(e.ipcache().some((x) => x.prefix === '192.0.2.2/32'));
  await e.removeNode('n2');
  last = changed(last);
  e.setHostAddresses(['192.0.2.9']);
  last = changed(last);
  assert.equal(e.ipcache().find((x) => x.prefix === '192.0.2.9/32')?.identity, 1);
  e.setReservedAddresses('kube-apiserver', ['192.0.2.7']);
  last = changed(last);
  assert.ok(e.ipcache().some((x) => x.prefix === '192.0.2.7/32'));
  // An address learned by DNS gets a local identity outside any call on the engine.
  dns.set('api.example.com', ['203.0.113.5']);
  await e.settled();
  last = changed(last);
  assert.ok(e.ipcache().some((x) => x.prefix === '203.0.113.5/32'));
  assert.equal(e.ipcache(), last);
});
