/**
 * The worker's policy mirror, fed only by PolicyMirrorSource's deltas (through
 * a structured clone, as postMessage carries them): the judge over it must
 * give the engine's verdicts and identities after every change, and a delta
 * must carry only what changed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPolicyText } from '../policy/api/loader.js';
import { FqdnCache } from '../policy/dns-cache.js';
import { PolicyEngine } from '../policy/engine.js';
import { DnsJudge, judgeDnsQuery } from './dns-policy.js';
import { PolicyMirror, PolicyMirrorSource } from './policy-mirror.js';

const policy = (name: string, dnsRule: string, cidr: string) => {
  const d = loadPolicyText(
    `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
    - toCIDRSet: [{cidr: "${cidr}"}]
      toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [${dnsRule}]}}]
`,
    `${name}.yaml`,
  ).policies[0]?.document;
  assert.ok(d);
  return d;
};

test('a mirror fed by deltas judges and resolves identities as the engine does, after every change', async () => {
  const e = new PolicyEngine({ dns: new FqdnCache({}) });
  await e.upsertEndpoint({ namespace: 'default', name: 'web', labels: { app: 'web' }, ips: ['10.1.0.1', 'fd00::1'] });
  await e.upsertPolicy(policy('wide', '{matchPattern: "*.example.com"}', '198.51.100.0/24'));
  e.flush();
  const src = new PolicyMirrorSource(e);
  const m = new PolicyMirror();
  m.apply(structuredClone(src.full()));
  const j = new DnsJudge(m);
  const servers = ['198.51.100.53', '198.51.100.1', '203.0.113.53', '10.1.0.1', '10.1.0.77', 'fd00::53'];
  const names = ['a.example.com', 'example.com', 'api.github.com'];
  const agree = (what: string) => {
    for (const serverIp of servers) {
      assert.equal(m.identityOfIp(serverIp), e.identityOfIp(serverIp), `${what}: identity of ${serverIp}`);
      for (const name of names) {
        for (const clientIp of ['10.1.0.1', 'fd00::1', '10.1.0.9']) {
          const f = { clientIp, serverIp, serverPort: 53, protocol: 17 as const, name };
          assert.deepEqual(j.judge(f), judgeDnsQuery(e, f), `${what}: ${JSON.stringify(f)}`);
        }
      }
    }
  };
  agree('first');
  assert.equal(src.delta(), null, 'nothing changed, nothing sent');

  // A narrower CIDR with other rules: only the policy and the ipcache travel.
  await e.upsertPolicy(policy('narrow', '{matchName: api.github.com}', '198.51.100.53/32'));
  e.flush();
  const d = src.delta();
  assert.ok(d);
  assert.deepEqual(Object.keys(d).sort(), ['ipcache', 'policies']);
  assert.deepEqual(d.policies?.map(([id]) => id), ['default/web']);
  m.apply(structuredClone(d));
  agree('after a policy change');
  assert.equal(m.identityOfIp('198.51.100.53') === m.identityOfIp('198.51.100.1'), false, 'the longest prefix wins');

  // The resolver becomes an endpoint; then the client goes away.
  await e.upsertEndpoint({ namespace: 'kube-system', name: 'dns', labels: { 'k8s-app': 'kube-dns' }, ips: ['10.1.0.77'] });
  e.flush();
  m.apply(structuredClone(src.delta() ?? {}));
  agree('after the resolver appeared');
  assert.equal(m.endpointByIp('10.1.0.77'), 'kube-system/dns');
  await e.removeEndpoint('default/web');
  e.flush();
  const gone = src.delta();
  assert.deepEqual(gone?.policies, [['default/web', null]]);
  m.apply(structuredClone(gone ?? {}));
  agree('after the client left');
  assert.equal(m.endpointPolicy('default/web'), undefined);
});
