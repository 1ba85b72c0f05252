// The datapath-shaped lookup (most specific entry per identity/protocol
// group) must decide exactly as the reference lookup on every scenario's
// policies, including overlapping port ranges, deny, L7 and any-port rules.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { repoPath } from '../util/paths.js';
import { loadPolicyText } from './api/loader.js';
import { PolicyEngine } from './engine.js';
import { lookupByGroups, lookupEntries } from './lookup.js';
import type { LookupResult } from './lookup.js';
import { buildScenarioEngine, loadScenarioFile } from './trace.js';
import { Proto } from './types.js';
import type { DirectionPolicy, EndpointPolicy } from './types.js';

function summary(r: LookupResult): string {
  const l7 = r.l7 ? `${r.l7.kind}:${JSON.stringify(r.l7.rules.map((x) => JSON.stringify(x)).sort())}` : '';
  return `${r.verdict} ${l7}`;
}

function compareAll(policies: EndpointPolicy[]): number {
  let checks = 0;
  for (const p of policies) {
    for (const dir of [p.ingress, p.egress] satisfies DirectionPolicy[]) {
      const ids = new Set<number>([2, 999999]);
      const ports = new Set<number>([1, 53, 80, 443, 65535]);
      for (const e of dir.entries) {
        ids.add(e.remoteIdentity);
        for (const x of [e.port - 1, e.port, e.port + 1, e.endPort - 1, e.endPort, e.endPort + 1]) if (x > 0 && x < 65536) ports.add(x);
      }
      for (const id of ids) {
        for (const proto of [Proto.TCP, Proto.UDP, Proto.SCTP, Proto.ICMP]) {
          for (const port of ports) {
            checks++;
            assert.equal(
              summary(lookupByGroups(dir, id, proto, port)),
              summary(lookupEntries(dir, id, proto, port)),
              `${p.endpointId} id=${id} proto=${proto} port=${port}`,
            );
          }
        }
      }
    }
  }
  return checks;
}

/**
 * A REDIRECT row is complete: for its identity (or, for identity 0, for any
 * identity without rows of its own) the row's L7 rules are exactly what the
 * reference lookup gives at its ports.
 */
function checkRedirectRows(policies: EndpointPolicy[]): number {
  let checks = 0;
  const l7key = (r: LookupResult): string => (r.l7 ? `${r.l7.kind}:${JSON.stringify(r.l7.rules.map((x) => JSON.stringify(x)).sort())}` : '-');
  for (const p of policies) {
    for (const dir of [p.ingress, p.egress] satisfies DirectionPolicy[]) {
      for (const e of dir.entries) {
        if (e.verdict !== 'REDIRECT' || !e.l7) continue;
        const stranger = 987654321;
        const id = e.remoteIdentity === 0 ? stranger : e.remoteIdentity;
        for (const port of e.port === 0 ? [1, 80, 65535] : [e.port, e.endPort]) {
          checks++;
          const ref = lookupEntries(dir, id, e.protocol, port);
          assert.equal(ref.verdict, 'REDIRECT', `${p.endpointId} row ${JSON.stringify(e)}`);
          assert.equal(l7key(ref), l7key({ verdict: 'REDIRECT', reason: 'entry', l7: e.l7, policies: [], matched: [] }), `${p.endpointId} row ${JSON.stringify(e)}`);
        }
      }
    }
  }
  return checks;
}

test('group lookup equals reference lookup on every scenario', async () => {
  const dir = repoPath('src', 'policy', 'testdata');
  let checks = 0;
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
    const { engine } = await buildScenarioEngine(loadScenarioFile(`${dir}/${f}`));
    checks += compareAll(engine.endpointPolicies());
    checkRedirectRows(engine.endpointPolicies());
  }
  assert.ok(checks > 1000, `only ${checks} checks`);
});

test('overlapping ranges are split, and any-port and L3 rules fold into them', async () => {
  const r = loadPolicyText(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: o, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: s}}
  ingress:
    - toPorts: [{ports: [{port: "8000", endPort: 8100, protocol: TCP}]}]
    - toPorts: [{ports: [{port: "8050", endPort: 8200, protocol: TCP}], rules: {http: [{method: GET}]}}]
    - fromEndpoints: [{matchLabels: {app: c}}]
      toPorts: [{ports: [{protocol: TCP}]}]
  ingressDeny:
    - toPorts: [{ports: [{port: "8075", protocol: TCP}]}]
`);
  assert.deepEqual(r.problems, []);
  const e = new PolicyEngine();
  await e.upsertEndpoint({ namespace: 'default', name: 's', labels: { app: 's' } });
  await e.upsertEndpoint({ namespace: 'default', name: 'c', labels: { app: 'c' } });
  for (const p of r.policies) await e.upsertPolicy(p.document);
  e.flush();
  const ing = e.endpointPolicy('default/s')?.ingress;
  assert.ok(ing);
  const wild = ing.entries.filter((x) => x.remoteIdentity === 0).map((x) => [x.port, x.endPort, x.verdict]);
  assert.deepEqual(wild, [
    [8000, 8049, 'ALLOW'],
    [8050, 8074, 'REDIRECT'],
    [8075, 8075, 'DENY'],
    [8076, 8100, 'REDIRECT'],
    [8101, 8200, 'REDIRECT'],
  ]);
  const c = e.endpointIdentity('default/c') ?? -1;
  // c's TCP any-port allow plus the L7 range: HTTP with allow-all for c.
  const hit = lookupByGroups(ing, c, Proto.TCP, 8060);
  assert.equal(hit.verdict, 'REDIRECT');
  assert.ok(hit.l7?.rules.some((x) => JSON.stringify(x) === '{}'));
  assert.equal(lookupByGroups(ing, c, Proto.TCP, 8075).verdict, 'DENY');
  const pol = e.endpointPolicy('default/s');
  assert.ok(pol);
  assert.ok(compareAll([pol]) > 0);
  assert.ok(checkRedirectRows([pol]) > 0);
  // c has its own complete row on the L7 range: GET rules plus allow-all from its L4-only rule.
  const own = ing.entries.find((x) => x.remoteIdentity === c && x.verdict === 'REDIRECT' && x.port === 8101);
  assert.ok(own?.l7, JSON.stringify(ing.entries));
  assert.deepEqual(own.l7.rules, [{ method: 'GET' }, {}]);
});
