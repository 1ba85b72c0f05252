/**
 * DnsJudge keeps what a flow's policy says between queries: it must give
 * judgeDnsQuery's verdict for every name, and follow a policy change and an
 * identity change at the next query.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPolicyText } from '../policy/api/loader.js';
import { FqdnCache } from '../policy/dns-cache.js';
import { PolicyEngine } from '../policy/engine.js';
import { DnsJudge, judgeDnsQuery } from './dns-policy.js';

const doc = (rules: string) => {
  const d = loadPolicyText(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: app}}
  egress:
    - toCIDR: ["192.0.2.53/32"]
      toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [${rules}]}}]
    - toEndpoints: [{matchLabels: {k8s-app: kube-dns, k8s:io.kubernetes.pod.namespace: kube-system}}]
      toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [${rules}]}}]
`,
    'p.yaml',
  ).policies[0]?.document;
  assert.ok(doc);
  return d;
};

test('the cached judge agrees with judgeDnsQuery and follows policy and identity changes', async () => {
  const e = new PolicyEngine({ dns: new FqdnCache({}) });
  await e.upsertEndpoint({ namespace: 'default', name: 'app', labels: { app: 'app' }, ips: ['10.0.0.1'] });
  const d1 = doc('{matchPattern: "*.example.com"}');
  assert.ok(d1);
  await e.upsertPolicy(d1);
  e.flush();
  const j = new DnsJudge(e);
  const flows = [
    { clientIp: '10.0.0.1', serverIp: '192.0.2.53', serverPort: 53, protocol: 17 as const },
    { clientIp: '10.0.0.1', serverIp: '192.0.2.53', serverPort: 53, protocol: 6 as const },
    { clientIp: '10.0.0.1', serverIp: '10.0.0.53', serverPort: 53, protocol: 17 as const },
    { clientIp: '10.0.0.9', serverIp: '192.0.2.53', serverPort: 53, protocol: 17 as const },
  ];
  const names = ['a.example.com', 'b.example.com', 'example.com', 'a.b.example.com', 'api.github.com'];
  const agree = (what: string) => {
    for (const f of flows) for (const name of names) assert.deepEqual(j.judge({ ...f, name }), judgeDnsQuery(e, { ...f, name }), `${what}: ${JSON.stringify(f)} ${name}`);
  };
  agree('first');
  assert.equal(j.judge({ ...flows[0]!, name: 'a.example.com' }).allowed, true);
  assert.equal(j.judge({ ...flows[0]!, name: 'api.github.com' }).allowed, false);
  assert.equal(j.judge({ ...flows[2]!, name: 'a.example.com' }).allowed, false, 'no resolver pod yet');
  // A policy change: the next query sees it.
  const d2 = doc('{matchName: api.github.com}');
  assert.ok(d2);
  await e.upsertPolicy(d2);
  e.flush();
  agree('after a policy change');
  assert.equal(j.judge({ ...flows[0]!, name: 'api.github.com' }).allowed, true);
  assert.equal(j.judge({ ...flows[0]!, name: 'a.example.com' }).allowed, false);
  // An identity change: the resolver's address becomes a kube-dns pod.
  await e.upsertEndpoint({ namespace: 'kube-system', name: 'dns', labels: { 'k8s-app': 'kube-dns' }, ips: ['10.0.0.53'] });
  e.flush();
  agree('after the resolver appeared');
  assert.equal(j.judge({ ...flows[2]!, name: 'api.github.com' }).allowed, true);
});
