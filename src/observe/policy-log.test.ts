// log.value (Cilium's `log` on a rule) → Hubble's Flow.policy_log: the policy engine's rows carry the
// deciding rules' values, the agent's resolver reads them for kernel verdicts and proxy (L7) verdicts,
// the compact output shows them and the flow schema (meshd observe, the relay) keeps them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FlowRecord } from '../datapath/endpoint/flow-events.js';
import { loadPolicyText, PolicyEngine } from '../policy/index.js';
import { compactLine } from './flow-format.js';
import { parseFlowsResponse } from './flow-schema.js';
import { FlowParser } from './parser.js';
import { AgentResolver } from './resolver.js';

const POLICIES = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-ingress, namespace: default}
specs:
  - endpointSelector: {matchLabels: {app: api}}
    log: {value: api-http}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET}]}}]
  - endpointSelector: {matchLabels: {app: api}}
    log: {value: api-metrics}
    ingress:
      - fromEndpoints: [{}]
        toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
  - endpointSelector: {matchLabels: {app: api}}
    log: {value: no-other}
    ingressDeny:
      - fromEndpoints: [{matchLabels: {app: other}}]
        toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
`;

async function setup() {
  const engine = new PolicyEngine();
  await engine.upsertNamespace('default');
  for (const [name, ip] of [['client', '10.1.0.2'], ['api', '10.1.0.3'], ['other', '10.1.0.4']] as const) {
    await engine.upsertEndpoint({ namespace: 'default', name, labels: { app: name }, ips: [ip] });
  }
  const r = loadPolicyText(POLICIES);
  assert.deepEqual(r.problems, []);
  for (const p of r.policies) await engine.upsertPolicy(p.document);
  engine.flush();
  const clock = { wallNs: (m: bigint) => 1_700_000_000_000_000_000n + m, nowNs: () => 1_700_000_000_000_000_000n };
  const parser = new FlowParser({ nodeName: 'n1', resolver: new AgentResolver({ engine }), clock });
  const id = (ep: string) => engine.endpointIdentity(`default/${ep}`) ?? 0;
  const rec = (from: string, fromIp: string, port: number, over: Partial<FlowRecord>): FlowRecord => ({
    monotonicNs: 5n,
    type: 'verdict',
    direction: 'ingress',
    verdict: 'ALLOW',
    endpointNumericId: 7,
    ifindex: 12,
    srcIdentity: id(from),
    dstIdentity: id('api'),
    family: 4,
    protocol: 6,
    src: { ip: fromIp, port: 40000 },
    dst: { ip: '10.1.0.3', port },
    ...over,
  });
  return { parser, rec };
}

test('kernel verdicts carry the deciding rules log.value: allow, deny, redirect; default deny none', async () => {
  const { parser, rec } = await setup();
  assert.deepEqual(parser.fromDatapath(rec('client', '10.1.0.2', 9090, {})).policy_log, ['api-metrics']);
  const denied = parser.fromDatapath(rec('other', '10.1.0.4', 9090, { type: 'drop', verdict: 'DENY', dropReason: 'POLICY_DENY' }));
  assert.deepEqual(denied.policy_log, ['no-other']);
  assert.deepEqual(parser.fromDatapath(rec('client', '10.1.0.2', 8080, { type: 'redirect', verdict: 'REDIRECT', proxyPort: 15001 })).policy_log, ['api-http']);
  const dflt = parser.fromDatapath(rec('client', '10.1.0.2', 7000, { type: 'drop', verdict: 'DENY', dropReason: 'POLICY_DEFAULT_DENY' }));
  assert.equal(dflt.policy_log, undefined);
  assert.match(compactLine(denied), / policy-log=no-other$/);
});

test('proxy (L7) verdicts carry the log.value of the rule whose HTTP rules decided, allowed and denied', async () => {
  const { parser } = await setup();
  const base = { time: new Date(0).toISOString(), logName: 'default_api_ingress_id5', source: '10.1.0.2:40000', destination: '10.1.0.3:8080', authority: 'api', path: '/x' };
  const [req, res] = parser.fromHttp({ ...base, method: 'GET', status: 200, details: 'via_upstream', verdict: 'FORWARDED' });
  assert.deepEqual(req.policy_log, ['api-http']);
  assert.deepEqual(res.policy_log, ['api-http']);
  const [dreq] = parser.fromHttp({ ...base, method: 'POST', status: 403, details: 'rbac_access_denied_matched_policy[none]', verdict: 'DENIED' });
  assert.deepEqual(dreq.policy_log, ['api-http']);
  // What a remote observer receives (meshd observe, the relay) keeps the field.
  const parsed = parseFlowsResponse({ response_types: 'flow', flow: { ...dreq }, node_name: 'n1' });
  assert.ok(parsed.kind === 'flow');
  assert.deepEqual(parsed.flow.policy_log, ['api-http']);
});
