/**
 * The Kafka listeners' chains without Envoy (the real Envoy judges them in
 * test/integration/kafka-translate-envoy.test.ts): port ranges, egress, and
 * what the policy loader refuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPolicyText } from '../policy/index.js';
import { KAFKA_MAX_RANGE_PORTS } from '../policy/l7-match.js';
import type { EndpointPolicy, PolicyEntry } from '../policy/types.js';
import { KAFKA_EGRESS_LISTENER, KAFKA_INGRESS_LISTENER, kafkaPolicyKey, translateKafka } from '../proxy/kafka-listener.js';

type Json = Record<string, unknown>;

function policy(id: string, identity: number, ingress: PolicyEntry[], egress: PolicyEntry[] = []): EndpointPolicy {
  return { endpointId: id, identity, revision: 1, ingress: { defaultDeny: true, entries: ingress }, egress: { defaultDeny: egress.length > 0, entries: egress } };
}
const row = (remoteIdentity: number, port: number, endPort: number, topic: string): PolicyEntry => ({
  remoteIdentity,
  protocol: 6,
  port,
  endPort,
  verdict: 'REDIRECT',
  derivedFrom: ['default/p'],
  l7: { kind: 'kafka', rules: [{ role: 'produce', topic }] },
});
const chainsOf = (l: Json | undefined): Array<{ name: string; port: unknown }> =>
  ((l?.filter_chains as Json[] | undefined) ?? []).filter((c) => c.name !== 'direct-connection').map((c) => ({ name: String(c.name), port: (c.filter_chain_match as Json).destination_port }));

test('a port range under Kafka rules becomes one chain per port; a range wider than the cap, or any port, is unsupported', () => {
  const out = translateKafka({
    endpoints: [
      { policy: policy('default/a', 300, [row(0, 9092, 9094, 'orders')]), ips: ['10.0.5.1'] },
      { policy: policy('default/b', 301, [row(0, 10000, 10000 + KAFKA_MAX_RANGE_PORTS, 'orders'), row(0, 9092, 9092, 'x')]), ips: ['10.0.5.2'] },
      { policy: policy('default/c', 302, [row(0, 0, 0, 'orders')]), ips: ['10.0.5.3'] },
    ],
    identityIps: new Map(),
    ports: { ingress: 15001, egress: 15002 },
    processorSocket: '/run/meshd/kafka.sock',
  });
  const ingress = chainsOf(out.listeners.find((l) => l.name === KAFKA_INGRESS_LISTENER));
  assert.deepEqual(ingress, [
    { name: 'default/a/ingress/kafka/any/9092', port: 9092 },
    { name: 'default/a/ingress/kafka/any/9093', port: 9093 },
    { name: 'default/a/ingress/kafka/any/9094', port: 9094 },
    { name: 'default/b/ingress/kafka/any/9092', port: 9092 },
  ]);
  assert.deepEqual(out.policies.get(kafkaPolicyKey('default/a', 'ingress', 0, 9093)), [{ role: 'produce', topic: 'orders' }]);
  assert.deepEqual(
    out.unsupported.map((u) => u.endpointId),
    ['default/b', 'default/c'],
  );
});

test('egress chains: per client and destination identity, a wildcard chain, and a combined chain into a local endpoint with ingress rules', () => {
  const out = translateKafka({
    endpoints: [
      { policy: policy('default/client', 400, [], [row(500, 9092, 9092, 'orders'), row(0, 9092, 9092, 'any')]), ips: ['10.0.6.1'] },
      { policy: policy('default/other', 401, [], [row(0, 9092, 9092, 'other')]), ips: ['10.0.6.2'] },
      { policy: policy('default/broker', 500, [row(400, 9092, 9092, 'orders')]), ips: ['10.0.6.3'] },
    ],
    identityIps: new Map([[500, ['10.0.6.3/32']], [400, ['10.0.6.1/32']]]),
    ports: { ingress: 15001, egress: 15002 },
    processorSocket: '/run/meshd/kafka.sock',
  });
  assert.deepEqual(
    out.redirects,
    [
      { endpointId: 'default/broker', direction: 'ingress' },
      { endpointId: 'default/client', direction: 'egress' },
      { endpointId: 'default/other', direction: 'egress' },
    ],
  );
  const egress = out.listeners.find((l) => l.name === KAFKA_EGRESS_LISTENER);
  const chains = (egress?.filter_chains as Json[]).filter((c) => c.name !== 'direct-connection');
  const keysOf = (name: string): string => {
    const c = chains.find((x) => x.name === name);
    assert.ok(c, name);
    return JSON.stringify(c.filters).match(/"x-meshd-kafka-policy","value":"([^"]*)"/)?.[1] ?? '';
  };
  // The broker's prefix: one chain per client (merged with the chain into the local broker), so that
  // `other` is not left without a chain at the more specific destination.
  assert.equal(keysOf('default/client/egress/kafka/id500/9092'), `${kafkaPolicyKey('default/client', 'egress', 500, 9092)} ${kafkaPolicyKey('default/broker', 'ingress', 400, 9092)}`);
  assert.equal(keysOf('default/other/egress/kafka/id500/9092'), `${kafkaPolicyKey('default/other', 'egress', 0, 9092)} ${kafkaPolicyKey('default/broker', 'ingress', 401, 9092)}`);
  assert.deepEqual(out.policies.get(kafkaPolicyKey('default/broker', 'ingress', 401, 9092)), []);
  assert.equal(keysOf('default/client/egress/kafka/any/9092'), kafkaPolicyKey('default/client', 'egress', 0, 9092));
  assert.equal(chains.length, 4);
});

test('the loader refuses Kafka rules without a port or on a range wider than the cap', () => {
  const doc = (ports: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: k, namespace: default }
spec:
  endpointSelector: {}
  egress:
    - toPorts: [{ ports: [${ports}], rules: { kafka: [{ role: produce }] } }]
`;
  const codes = (ports: string) => loadPolicyText(doc(ports)).problems.map((p) => [p.path, p.code]);
  assert.deepEqual(codes(`{ port: "9092", endPort: ${9092 + KAFKA_MAX_RANGE_PORTS - 1} }`), []);
  assert.deepEqual(codes(`{ port: "9092", endPort: ${9092 + KAFKA_MAX_RANGE_PORTS} }`), [['spec.egress[0].toPorts[0].ports[0].endPort', 'INVALID_KAFKA']]);
  assert.deepEqual(codes(`{ protocol: TCP }`), [['spec.egress[0].toPorts[0].ports[0].port', 'INVALID_KAFKA']]);
});
