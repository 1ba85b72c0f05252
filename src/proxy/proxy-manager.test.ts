/**
 * What a rejected snapshot concerns, told from the snapshots themselves
 * (snapshotChange), and the proxy errors' codes. The ProxyManager with a real
 * Envoy is exercised by test/integration/l7-http and agent-reconcile.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPolicyText, PolicyEngine } from '../policy/index.js';
import { isMeshdError } from '../util/errors.js';
import { type ProxyApplyInput, ProxyError, snapshotChange } from './proxy-manager.js';
import { translateL7 } from './translate.js';

const API_INGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: api-l7, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: api } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: /api/v1/users }] }
`;

const CLIENT_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints: [{ matchLabels: { app: api } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: "/api/v1/.*" }] }
`;

const IPS: Record<string, string> = { client: '10.9.0.2', api: '10.9.0.6', other: '10.9.0.10' };
const ports = { portFor: (_kind: string, direction: string) => (direction === 'ingress' ? 15001 : 15002) };

async function world(policies: string[]): Promise<{ engine: PolicyEngine; snap: () => Promise<{ out: ReturnType<typeof translateL7>; input: ProxyApplyInput }> }> {
  const engine = new PolicyEngine();
  await engine.upsertNamespace('default');
  for (const [name, ip] of Object.entries(IPS)) await engine.upsertEndpoint({ namespace: 'default', name, labels: { app: name }, ips: [ip], local: true });
  const load = async (text: string) => {
    const r = loadPolicyText(text);
    assert.deepEqual(r.problems, []);
    for (const p of r.policies) await engine.upsertPolicy(p.document);
  };
  for (const p of policies) await load(p);
  const snap = async () => {
    engine.flush();
    const identityIps = new Map<number, string[]>();
    for (const e of engine.ipcache()) identityIps.set(e.identity, [...(identityIps.get(e.identity) ?? []), e.prefix]);
    const input: ProxyApplyInput = { endpoints: engine.endpointPolicies().map((policy) => ({ policy, ips: [IPS[policy.endpointId.split('/')[1] ?? ''] ?? ''] })), identityIps };
    return { out: translateL7({ ...input, ports }), input };
  };
  return { engine, snap };
}

test('snapshotChange: a new egress policy concerns the egress listener, the endpoints of its chains and only that policy', async () => {
  const w = await world([API_INGRESS]);
  const before = await w.snap();
  const r = loadPolicyText(CLIENT_EGRESS);
  for (const p of r.policies) await w.engine.upsertPolicy(p.document);
  const after = await w.snap();
  const c = snapshotChange(before, after);
  assert.deepEqual(c.listeners, ['meshd-http-egress']);
  // The client's egress chain, and its chain toward the api (which also carries the api's ingress rules).
  assert.deepEqual(c.endpoints, ['default/api', 'default/client']);
  assert.deepEqual(c.policies, ['default/client-egress']);
});

test('snapshotChange: nothing changed, nothing concerned; before the first ACK everything is', async () => {
  const w = await world([API_INGRESS, CLIENT_EGRESS]);
  const s = await w.snap();
  assert.deepEqual(snapshotChange(s, await w.snap()), { listeners: [], endpoints: [], policies: [] });
  const first = snapshotChange(null, s);
  assert.deepEqual(first.listeners, ['meshd-http-egress', 'meshd-http-ingress']);
  assert.deepEqual(first.policies, ['default/api-l7', 'default/client-egress']);
});

test('snapshotChange: a chain that changed only because an address did names the policies of its rows', async () => {
  const w = await world([API_INGRESS]);
  const before = await w.snap();
  await w.engine.upsertEndpoint({ namespace: 'default', name: 'api', labels: { app: 'api' }, ips: ['10.9.0.7'], local: true });
  IPS.api = '10.9.0.7';
  try {
    const c = snapshotChange(before, await w.snap());
    assert.deepEqual(c.listeners, ['meshd-http-ingress']);
    assert.deepEqual(c.endpoints, ['default/api']);
    assert.deepEqual(c.policies, ['default/api-l7']);
  } finally {
    IPS.api = '10.9.0.6';
  }
});

test('ProxyError: a MeshdError with one code per failure and the change it concerns', () => {
  const nack = new ProxyError('MESHD_PROXY_NACKED', 'rejected', { version: 'v3', envoyMessage: 'from Envoy', change: { listeners: ['l'], endpoints: ['e'], policies: ['p'] } });
  assert.ok(isMeshdError(nack, 'MESHD_PROXY_NACKED'));
  assert.equal(nack.kind, 'invalid');
  assert.deepEqual([nack.version, nack.envoyMessage, nack.policies], ['v3', 'from Envoy', ['p']]);
  const timeout = new ProxyError('MESHD_PROXY_ACK_TIMEOUT', 'no answer', { version: 'v4' });
  assert.ok(isMeshdError(timeout, 'MESHD_PROXY_ACK_TIMEOUT'));
  assert.equal(timeout.kind, 'unavailable');
  assert.deepEqual(timeout.policies, []);
});
