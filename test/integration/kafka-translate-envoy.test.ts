/**
 * The translator's Kafka listener and clusters, from the shipped example
 * policy through the policy engine, are accepted by the real Envoy 1.40
 * (`--mode validate`, which checks every typed config, the ext_proc filter's
 * included), and map each client identity to its own chain and policy key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { findEnvoy } from '../../envoy/binary.js';
import { buildScenarioEngine, parseScenario } from '../../src/policy/trace.js';
import { KAFKA_EGRESS_LISTENER, KAFKA_INGRESS_LISTENER, kafkaPolicyKey } from '../../src/proxy/kafka-listener.js';
import { translateL7 } from '../../src/proxy/translate.js';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';

const example = parseYaml(readFileSync(repoPath('examples', 'policies', 'l7-kafka.yaml'), 'utf8')) as unknown;

function withoutType(r: Record<string, unknown>): Record<string, unknown> {
  const { '@type': _t, ...rest } = r;
  return rest;
}


async function assertEnvoyAccepts(t: { after(fn: () => void): void }, out: { listeners: Array<Record<string, unknown>>; clusters: Array<Record<string, unknown>> }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-kafka-validate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bootstrap.json');
  writeFileSync(
    file,
    JSON.stringify({
      node: { id: 'kafka-validate', cluster: 'meshd' },
      admin: { address: { pipe: { path: join(dir, 'admin.sock') } } },
      static_resources: { listeners: out.listeners.map(withoutType), clusters: out.clusters.map(withoutType) },
    }),
  );
  const r = await run(findEnvoy().path, ['--mode', 'validate', '-c', file, '--log-level', 'error'], { timeoutMs: 60_000 });
  assert.match(r.stdout, /OK/);
}

test('the example Kafka policy translates to a listener and clusters the real Envoy accepts', async (t) => {
  const loaded = parseScenario(
    JSON.stringify({
      endpoints: [
        { namespace: 'default', name: 'kafka', labels: { app: 'kafka' }, ips: ['10.0.3.10'] },
        { namespace: 'default', name: 'order-service', labels: { app: 'order-service' }, ips: ['10.0.3.11'] },
        { namespace: 'default', name: 'analytics-service', labels: { app: 'analytics-service' }, ips: ['10.0.3.12'] },
      ],
      policies: [example],
      flows: [],
    }),
  );
  const { engine } = await buildScenarioEngine(loaded);
  const ipsOf = new Map<number, string[]>();
  for (const e of engine.ipcache()) ipsOf.set(e.identity, [...(ipsOf.get(e.identity) ?? []), e.prefix.replace(/\/32$/, '')]);
  const broker = engine.endpointPolicy('default/kafka');
  assert.ok(broker);
  const out = translateL7({ endpoints: [{ policy: broker, ips: ['10.0.3.10'] }], identityIps: ipsOf, ports: { portFor: (k) => (k === 'kafka' ? 15010 : 15001) }, kafka: { processorSocket: '/run/meshd/kafka.sock' } });
  assert.deepEqual(out.unsupported, []);
  assert.deepEqual(out.redirects, [{ endpointId: 'default/kafka', direction: 'ingress', kind: 'kafka', proxyPort: 15010 }]);
  const order = engine.endpointIdentity('default/order-service') ?? 0;
  const analytics = engine.endpointIdentity('default/analytics-service') ?? 0;
  assert.deepEqual([...(out.kafkaPolicies?.keys() ?? [])].sort(), [kafkaPolicyKey('default/kafka', 'ingress', 0, 9092), kafkaPolicyKey('default/kafka', 'ingress', analytics, 9092), kafkaPolicyKey('default/kafka', 'ingress', order, 9092)].sort());
  assert.deepEqual(out.kafkaPolicies?.get(kafkaPolicyKey('default/kafka', 'ingress', 0, 9092)), []);
  const listener = out.listeners.find((l) => l.name === KAFKA_INGRESS_LISTENER);
  assert.ok(listener);

  await assertEnvoyAccepts(t, out);
});

test('egress Kafka chains (per destination identity, wildcard, into a local endpoint with ingress rules, a port range) are accepted by the real Envoy', async (t) => {
  const egress = {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name: 'order-egress', namespace: 'default' },
    spec: {
      endpointSelector: { matchLabels: { app: 'order-service' } },
      egress: [
        { toEndpoints: [{ matchLabels: { app: 'kafka' } }], toPorts: [{ ports: [{ port: '9092', endPort: 9095, protocol: 'TCP' }], rules: { kafka: [{ role: 'produce', topic: 'orders' }] } }] },
        { toEntities: ['cluster'], toPorts: [{ ports: [{ port: '9092', protocol: 'TCP' }], rules: { kafka: [{ role: 'consume' }] } }] },
      ],
    },
  };
  const loaded = parseScenario(
    JSON.stringify({
      endpoints: [
        { namespace: 'default', name: 'kafka', labels: { app: 'kafka' }, ips: ['10.0.3.10'] },
        { namespace: 'default', name: 'order-service', labels: { app: 'order-service' }, ips: ['10.0.3.11'] },
      ],
      policies: [example, egress],
      flows: [],
    }),
  );
  const { engine } = await buildScenarioEngine(loaded);
  const ipsOf = new Map<number, string[]>();
  for (const e of engine.ipcache()) ipsOf.set(e.identity, [...(ipsOf.get(e.identity) ?? []), e.prefix]);
  const endpoints = [
    { id: 'default/kafka', ip: '10.0.3.10' },
    { id: 'default/order-service', ip: '10.0.3.11' },
  ].map(({ id, ip }) => {
    const policy = engine.endpointPolicy(id);
    assert.ok(policy);
    return { policy, ips: [ip] };
  });
  const out = translateL7({ endpoints, identityIps: ipsOf, ports: { portFor: (k, d) => (k === 'kafka' ? (d === 'egress' ? 15011 : 15010) : 15001) }, kafka: { processorSocket: '/run/meshd/kafka.sock' } });
  assert.deepEqual(out.unsupported, []);
  assert.deepEqual(
    out.redirects.map((r) => `${r.endpointId} ${r.direction} ${r.proxyPort}`),
    ['default/kafka ingress 15010', 'default/order-service egress 15011'],
  );
  const listener = out.listeners.find((l) => l.name === KAFKA_EGRESS_LISTENER);
  assert.ok(listener);
  const ports = new Set((listener.filter_chains as Array<{ filter_chain_match: { destination_port?: number } }>).map((c) => c.filter_chain_match.destination_port));
  assert.deepEqual([...ports].sort((a, b) => (a ?? 0) - (b ?? 0)), [9092, 9093, 9094, 9095, 15011]);
  await assertEnvoyAccepts(t, out);
});
