import assert from 'node:assert/strict';
import { test } from 'node:test';
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
function world(dns?: MemoryDnsCache): PolicyEngine {
  const e = new PolicyEngine(dns ? { dns } : {});
  for (let a = 0; a < 20; a++) {
    for (let r = 0; r < 10; r++) e.upsertEndpoint({ namespace: 'default', name: `app${a}-${r}`, labels: { app: `app${a}` }, ips: [`10.0.${a}.${r + 1}`] });
  }
  e.flush();
  return e;
}

function reset(e: PolicyEngine): void {
  e.stats.recomputedEndpoints = 0;
  e.stats.recomputedIdentities = 0;
}

test('a policy change recomputes only the endpoints it selects', () => {
  const e = world();
  reset(e);
  const p1 = cnp('p', 'app3', '  ingress: [{fromEndpoints: [{matchLabels: {app: app4}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n');
  e.upsertPolicy(p1);
  const changed = e.flush();
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(e.stats.recomputedIdentities, 1);
  assert.deepEqual(changed.map((c) => c.endpointId).sort(), Array.from({ length: 10 }, (_, r) => `default/app3-${r}`).sort());
  assert.ok(changed.every((c) => c.revision === 2 && c.ingress.defaultDeny && !c.egress.defaultDeny));

  // Same content again: recomputed, but nothing changed and revisions stay.
  reset(e);
  e.upsertPolicy(p1);
  assert.deepEqual(e.flush(), []);
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(e.endpointPolicy('default/app3-0')?.revision, 2);

  // Port change: the same 10, revision bumps.
  reset(e);
  e.upsertPolicy(cnp('p', 'app3', '  ingress: [{fromEndpoints: [{matchLabels: {app: app4}}], toPorts: [{ports: [{port: "81", protocol: TCP}]}]}]\n'));
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
  assert.ok(e.removePolicy('CiliumNetworkPolicy/default/p'));
  assert.equal(e.flush().length, 10);
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(e.endpointPolicy('default/app3-0')?.ingress.defaultDeny, false);
});

test('an endpoint joining a peer selector recomputes the endpoints that use the selector, and itself', () => {
  const e = world();
  e.upsertPolicy(cnp('p', 'app3', '  ingress: [{fromEndpoints: [{matchLabels: {role: scraper}}]}]\n'));
  e.flush();
  reset(e);
  // app9-0 gets a new label set (a new identity) that the app3 policy's peer selector matches.
  e.upsertEndpoint({ namespace: 'default', name: 'app9-0', labels: { app: 'app9', role: 'scraper' }, ips: ['10.0.9.1'] });
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 11); // 10 × app3 + the changed endpoint
  const id = e.endpointIdentity('default/app9-0') ?? -1;
  const ing = e.endpointPolicy('default/app3-0')?.ingress;
  assert.ok(ing);
  assert.equal(lookupEntries(ing, id, Proto.TCP, 443).verdict, 'ALLOW');
  // Changing a label of an endpoint nobody selects recomputes only that endpoint.
  reset(e);
  e.upsertEndpoint({ namespace: 'default', name: 'app12-0', labels: { app: 'app12', version: 'v2' }, ips: ['10.0.12.1'] });
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 1);
});

test('an FQDN change recomputes only endpoints whose policy uses a matching FQDN selector', () => {
  const dns = new MemoryDnsCache();
  const e = world(dns);
  e.upsertPolicy(cnp('gh', 'app1', '  egress: [{toFQDNs: [{matchPattern: "*.github.com"}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]\n'));
  e.upsertPolicy(cnp('other', 'app2', '  egress: [{toFQDNs: [{matchName: "example.org"}]}]\n'));
  e.flush();
  reset(e);
  dns.set('api.github.com', ['140.82.112.5']);
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 10);
  const egress = e.endpointPolicy('default/app1-3')?.egress;
  assert.ok(egress);
  assert.equal(lookupEntries(egress, e.identityOfIp('140.82.112.5'), Proto.TCP, 443).verdict, 'ALLOW');
  assert.ok(e.ipcache().some((c) => c.prefix === '140.82.112.5/32' && c.identity === e.identityOfIp('140.82.112.5')));
  // A name no selector matches touches nobody.
  reset(e);
  dns.set('unrelated.net', ['198.51.100.1']);
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 0);
  // The IP going away removes the entry again.
  reset(e);
  dns.set('api.github.com', []);
  e.flush();
  assert.equal(e.stats.recomputedEndpoints, 10);
  assert.equal(lookupEntries(e.endpointPolicy('default/app1-3')?.egress ?? { defaultDeny: true, entries: [] }, e.identityOfIp('140.82.112.5'), Proto.TCP, 443).verdict, 'DENY');
});

test('each distinct selector is evaluated once and shared by every rule using it', () => {
  const e = world();
  const cache = e.selectorCache;
  e.upsertPolicy(cnp('a', 'app1', '  ingress: [{fromEndpoints: [{matchLabels: {app: app7}}]}]\n'));
  e.flush();
  const size = cache.size;
  const evals = cache.evaluations;
  // Another policy with the same subject and peer selectors: no new selectors, no evaluation.
  e.upsertPolicy(cnp('b', 'app1', '  egress: [{toEndpoints: [{matchLabels: {app: app7}}]}]\n'));
  e.flush();
  assert.equal(cache.size, size);
  assert.equal(cache.evaluations, evals);
  assert.deepEqual(e.endpointPolicy('default/app1-0')?.egress.entries.map((x) => x.derivedFrom), [['default/b']]);
});

test('entries are keyed by remote identity, protocol and port range with explicit wildcards', () => {
  const e = world();
  e.upsertPolicy(
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

test('a namespace label change recomputes the endpoints whose policies select by namespace labels', () => {
  const e = new PolicyEngine();
  e.upsertNamespace('shop', { env: 'dev' });
  e.upsertNamespace('ops', {});
  for (let r = 0; r < 3; r++) e.upsertEndpoint({ namespace: 'shop', name: `api-${r}`, labels: { app: 'api' } });
  for (let r = 0; r < 4; r++) e.upsertEndpoint({ namespace: 'ops', name: `db-${r}`, labels: { app: 'db' } });
  for (let r = 0; r < 5; r++) e.upsertEndpoint({ namespace: 'ops', name: `other-${r}`, labels: { app: 'other' } });
  e.upsertPolicy(
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
  e.upsertNamespace('shop', { env: 'prod' });
  e.flush();
  // The 3 relabelled pods (new identity) and the 4 db pods whose peer selector now matches it.
  assert.equal(e.stats.recomputedEndpoints, 7);
  assert.equal(lookupEntries(db().ingress, api(), Proto.TCP, 5432).verdict, 'ALLOW');
});

test('nodes: remote node identities by labels, host relabel only on change, removal', () => {
  const e = new PolicyEngine();
  e.upsertNode({ name: 'a', labels: { zone: 'x' }, ips: ['192.168.0.1'], local: true });
  e.upsertNode({ name: 'b', labels: { zone: 'y' }, ips: ['192.168.0.2'] });
  e.upsertNode({ name: 'c', ips: ['192.168.0.3'] });
  e.upsertEndpoint({ namespace: 'default', name: 'w', labels: { app: 'w' } });
  e.upsertPolicy(
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
  e.upsertNode({ name: 'a', labels: { zone: 'x' }, ips: ['192.168.0.1'], local: true });
  assert.equal(e.selectorCache.evaluations, evals);
  e.removeNode('b');
  e.flush();
  assert.equal(e.identityOfIp('192.168.0.2'), 2);
  assert.equal(e.allocator.get(b), undefined);
  assert.deepEqual(e.endpointPolicy('default/w')?.egress.entries, []);
});

test('two L7 kinds on one port are a conflict: the port is denied and the entry says which policies conflict', () => {
  const e = world();
  e.upsertPolicy(cnp('http-rules', 'app1', `  ingress:
    - fromEndpoints: [{matchLabels: {app: app2}}]
      toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {http: [{method: GET}]}}]
`));
  e.upsertPolicy(cnp('kafka-rules', 'app1', `  ingress:
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
  e.removePolicy('CiliumNetworkPolicy/default/kafka-rules');
  e.flush();
  const again = e.endpointPolicy('default/app1-0')?.ingress.entries.find((x) => x.remoteIdentity === remote && x.port === 9092);
  assert.equal(again?.verdict, 'REDIRECT');
  assert.equal(again?.conflict, undefined);
});
