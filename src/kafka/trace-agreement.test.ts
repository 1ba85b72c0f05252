/**
 * `meshd policy trace` and the Kafka processor agree: the shipped example
 * policy (examples/policies/l7-kafka.yaml) goes through the policy engine;
 * trace answers each request from the engine's rows, and the enforcement path
 * (translator → per-chain rules → processor decision) answers the same
 * request; both must say the same.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { kafkaPolicyKey, translateKafka } from '../proxy/kafka-listener.js';
import { buildScenarioEngine, parseScenario, traceScenario } from '../policy/trace.js';
import { repoPath } from '../util/paths.js';
import { APIS } from './api.js';
import { decide, decideAll } from './policy.js';
import type { KafkaRequestInfo } from './request.js';

const example = parseYaml(readFileSync(repoPath('examples', 'policies', 'l7-kafka.yaml'), 'utf8')) as unknown;

const requests: Array<[string, string, number, string, string | undefined, 'ALLOWED' | 'DENIED']> = [
  ['order-service', 'produce', 7, 'order-service', 'orders', 'ALLOWED'],
  ['order-service', 'produce', 7, 'order-service', 'order-events', 'DENIED'],
  ['order-service', 'fetch', 11, 'order-service', 'order-events', 'ALLOWED'],
  ['order-service', 'fetch', 11, 'order-service', 'orders', 'DENIED'],
  ['order-service', 'joingroup', 5, 'order-service', undefined, 'ALLOWED'],
  ['order-service', 'produce', 7, 'rogue', 'orders', 'DENIED'],
  ['order-service', 'apiversions', 2, 'rogue', undefined, 'DENIED'],
  ['analytics-service', 'fetch', 11, 'analytics', 'orders', 'ALLOWED'],
  ['analytics-service', 'offsetcommit', 5, 'analytics', 'orders', 'ALLOWED'],
  ['analytics-service', 'produce', 7, 'analytics', 'orders', 'DENIED'],
  ['analytics-service', 'metadata', 6, 'analytics', 'orders', 'ALLOWED'],
  ['analytics-service', 'createtopics', 4, 'analytics', undefined, 'DENIED'],
  ['intruder', 'metadata', 6, 'x', 'orders', 'DENIED'],
];

const scenarioText = JSON.stringify({
  endpoints: [
    { namespace: 'default', name: 'kafka', labels: { app: 'kafka' }, ips: ['10.0.3.10'] },
    { namespace: 'default', name: 'order-service', labels: { app: 'order-service' }, ips: ['10.0.3.11'] },
    { namespace: 'default', name: 'analytics-service', labels: { app: 'analytics-service' }, ips: ['10.0.3.12'] },
    { namespace: 'default', name: 'intruder', labels: { app: 'intruder' }, ips: ['10.0.3.13'] },
  ],
  policies: [example],
  flows: requests.map(([src, apiKey, apiVersion, clientID, topic]) => ({ src: `default/${src}`, dst: 'default/kafka', dport: 9092, kafka: { apiKey, apiVersion, clientID, ...(topic ? { topic } : {}) } })),
});

test('policy trace and the processor give every request of the example the same verdict', async () => {
  const loaded = parseScenario(scenarioText);
  const traced = await traceScenario(loaded);
  assert.deepEqual(traced.problems, []);
  const { engine } = await buildScenarioEngine(loaded);
  const ipsOf = new Map<number, string[]>();
  for (const e of engine.ipcache()) ipsOf.set(e.identity, [...(ipsOf.get(e.identity) ?? []), e.prefix.replace(/\/32$/, '')]);
  const broker = engine.endpointPolicy('default/kafka');
  assert.ok(broker);
  const k = translateKafka({ endpoints: [{ policy: broker, ips: ['10.0.3.10'] }], identityIps: ipsOf, ports: { ingress: 15001, egress: 15002 }, processorSocket: '/run/meshd/kafka.sock' });
  const byName = new Map([...APIS].map(([key, info]) => [info.name, key]));
  requests.forEach(([src, apiKey, apiVersion, clientId, topic, want], i) => {
    const identity = engine.endpointIdentity(`default/${src}`) ?? 0;
    // The chain a connection from `src` matches: its identity's own, else the one for every other client.
    const rules = k.policies.get(kafkaPolicyKey('default/kafka', 'ingress', identity, 9092)) ?? k.policies.get(kafkaPolicyKey('default/kafka', 'ingress', 0, 9092)) ?? [];
    const req: KafkaRequestInfo = { apiKey: byName.get(apiKey) ?? -1, apiVersion, correlationId: i, clientId, readable: true, topics: topic ? [{ name: topic, partitions: [0] }] : null, allTopics: false, groups: [] };
    const enforced = decide(rules, req).verdict === 'allow' ? 'ALLOWED' : 'DENIED';
    const t = traced.flows[i];
    const traceVerdict = t?.l4 === 'DENIED' ? 'DENIED' : t?.verdict;
    assert.equal(traceVerdict, want, `trace: ${src} ${apiKey} ${topic ?? ''} (${JSON.stringify(t)})`);
    assert.equal(enforced, want, `processor: ${src} ${apiKey} ${topic ?? ''}`);
  });
});

type Json = Record<string, unknown>;
type Prefix = { address_prefix: string; prefix_len: number };

const ipNum = (ip: string): number => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const inPrefix = (ip: string, p: Prefix): boolean => p.prefix_len === 0 || Math.floor(ipNum(ip) / 2 ** (32 - p.prefix_len)) === Math.floor(ipNum(p.address_prefix) / 2 ** (32 - p.prefix_len));

/** Envoy's filter chain selection, in its order: destination port, then the most specific destination prefix, then the most specific source prefix. */
function selectChain(listener: Json, dst: string, dport: number, src: string): Json | undefined {
  const chains = (listener.filter_chains as Json[]).map((c) => ({ c, m: c.filter_chain_match as { destination_port?: number; prefix_ranges?: Prefix[]; source_prefix_ranges?: Prefix[] } }));
  const best = <T>(items: T[], len: (x: T) => number): T[] => {
    const max = Math.max(...items.map(len));
    return items.filter((x) => len(x) === max);
  };
  const longest = (ps: Prefix[] | undefined, ip: string): number => (ps === undefined ? -1 : Math.max(-2, ...ps.filter((p) => inPrefix(ip, p)).map((p) => p.prefix_len)));
  let cands = chains.filter((x) => x.m.destination_port === dport);
  if (cands.length === 0) cands = chains.filter((x) => x.m.destination_port === undefined);
  cands = best(
    cands.filter((x) => longest(x.m.prefix_ranges, dst) !== -2),
    (x) => longest(x.m.prefix_ranges, dst),
  );
  cands = best(
    cands.filter((x) => longest(x.m.source_prefix_ranges, src) !== -2),
    (x) => longest(x.m.source_prefix_ranges, src),
  );
  assert.ok(cands.length <= 1, `ambiguous chains for ${src} → ${dst}:${dport}`);
  return cands[0]?.c;
}

function chainKeys(chain: Json): string[] {
  const filters = chain.filters as Array<{ name: string; typed_config: { grpc_service?: { initial_metadata?: Array<{ value: string }> } } }>;
  const ext = filters.find((f) => f.name === 'envoy.filters.network.ext_proc');
  return (ext?.typed_config.grpc_service?.initial_metadata?.[0]?.value ?? '').split(' ');
}

const EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: order-service-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: order-service } }
  egress:
    - toEndpoints: [{ matchLabels: { app: kafka } }]
      toPorts:
        - ports: [{ port: "9092", protocol: TCP }]
          rules: { kafka: [{ role: produce, topic: orders, clientID: order-service }] }
    - toEndpoints: [{ matchLabels: { app: kafka-b } }]
      toPorts:
        - ports: [{ port: "9092", endPort: 9094, protocol: TCP }]
          rules: { kafka: [{ role: produce, clientID: order-service }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: audit-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: audit } }
  egress:
    - toEntities: [cluster]
      toPorts:
        - ports: [{ port: "9092", protocol: TCP }]
          rules: { kafka: [{ role: produce, topic: audit }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: kafka-b-ingress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: kafka-b } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: order-service } }]
      toPorts:
        - ports: [{ port: "9093", protocol: TCP }]
          rules: { kafka: [{ role: produce, topic: orders }] }
    - fromEndpoints: [{ matchLabels: { app: order-service } }]
      toPorts: [{ ports: [{ port: "9094", protocol: TCP }] }]
`;

test('egress Kafka rules: the chain each connection selects and trace give every request the same verdict', async () => {
  // The eighth field, when there: the request's transactional ID (InitProducerId).
  const flows: Array<[string, string, number, string, string, string, 'ALLOWED' | 'DENIED', string?]> = [
    ['order-service', 'kafka', 9092, 'produce', 'order-service', 'orders', 'ALLOWED'],
    ['order-service', 'kafka', 9092, 'produce', 'order-service', 'audit', 'DENIED'],
    ['order-service', 'kafka', 9092, 'produce', 'rogue', 'orders', 'DENIED'],
    ['order-service', 'kafka', 9092, 'fetch', 'order-service', 'orders', 'DENIED'],
    ['order-service', 'kafka', 9092, 'initproducerid', 'order-service', '', 'ALLOWED'],
    // A transactional producer needs a rule naming InitProducerId; role produce does not cover it.
    ['order-service', 'kafka', 9092, 'initproducerid', 'order-service', '', 'DENIED', 'tx-1'],
    // A port range: one chain per port; 9093 also needs kafka-b's ingress rules (one redirect, at egress).
    ['order-service', 'kafka-b', 9094, 'produce', 'order-service', 'audit', 'ALLOWED'],
    ['order-service', 'kafka-b', 9093, 'produce', 'order-service', 'orders', 'ALLOWED'],
    ['order-service', 'kafka-b', 9093, 'produce', 'order-service', 'audit', 'DENIED'],
    ['audit', 'kafka', 9092, 'produce', 'audit', 'audit', 'ALLOWED'],
    ['audit', 'kafka', 9092, 'produce', 'audit', 'orders', 'DENIED'],
  ];
  const ips: Record<string, string> = { kafka: '10.0.4.10', 'kafka-b': '10.0.4.11', 'order-service': '10.0.4.20', audit: '10.0.4.21' };
  const loaded = parseScenario(
    JSON.stringify({
      endpoints: Object.entries(ips).map(([name, ip]) => ({ namespace: 'default', name, labels: { app: name }, ips: [ip] })),
      policies: EGRESS.split('\n---\n').map((d) => parseYaml(d) as unknown),
      flows: flows.map(([src, dst, dport, apiKey, clientID, topic, , transactionalID]) => ({
        src: `default/${src}`,
        dst: `default/${dst}`,
        dport,
        kafka: { apiKey, apiVersion: 7, clientID, ...(topic ? { topic } : {}), ...(transactionalID ? { transactionalID } : {}) },
      })),
    }),
  );
  const traced = await traceScenario(loaded);
  assert.deepEqual(traced.problems, []);
  const { engine } = await buildScenarioEngine(loaded);
  const identityIps = new Map<number, string[]>();
  for (const e of engine.ipcache()) identityIps.set(e.identity, [...(identityIps.get(e.identity) ?? []), e.prefix]);
  const endpoints = Object.entries(ips).map(([name, ip]) => {
    const policy = engine.endpointPolicy(`default/${name}`);
    assert.ok(policy);
    return { policy, ips: [ip] };
  });
  const k = translateKafka({ endpoints, identityIps, ports: { ingress: 15001, egress: 15002 }, processorSocket: '/run/meshd/kafka.sock' });
  assert.deepEqual(k.unsupported, []);
  const egress = k.listeners.find((l) => l.name === 'meshd-kafka-egress');
  assert.ok(egress);
  const byName = new Map([...APIS].map(([key, info]) => [info.name, key]));
  flows.forEach(([src, dst, dport, apiKey, clientId, topic, want, transactionalId], i) => {
    const chain = selectChain(egress, ips[dst] ?? '', dport, ips[src] ?? '');
    assert.ok(chain, `no chain for ${src} → ${dst}:${dport}`);
    const sets = chainKeys(chain).map((key) => k.policies.get(key) ?? []);
    const req: KafkaRequestInfo = { apiKey: byName.get(apiKey) ?? -1, apiVersion: 7, correlationId: i, clientId, readable: true, topics: topic ? [{ name: topic, partitions: [0] }] : null, allTopics: false, groups: [], ...(transactionalId ? { transactionalId } : {}) };
    const enforced = decideAll(sets, req).verdict === 'allow' ? 'ALLOWED' : 'DENIED';
    const t = traced.flows[i];
    const traceVerdict = t?.l4 === 'DENIED' ? 'DENIED' : t?.verdict;
    assert.equal(traceVerdict, want, `trace: ${src} → ${dst}:${dport} ${apiKey} ${topic} (${JSON.stringify(t)})`);
    assert.equal(enforced, want, `processor: ${src} → ${dst}:${dport} ${apiKey} ${topic} (${chain.name as string})`);
  });
});
