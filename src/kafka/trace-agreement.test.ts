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
import { translateKafkaIngress, kafkaPolicyKey } from '../proxy/kafka-listener.js';
import { buildScenarioEngine, parseScenario, traceScenario } from '../policy/trace.js';
import { repoPath } from '../util/paths.js';
import { APIS } from './api.js';
import { decide } from './policy.js';
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
  const k = translateKafkaIngress({ endpoints: [{ policy: broker, ips: ['10.0.3.10'] }], identityIps: ipsOf, port: 15001, processorSocket: '/run/meshd/kafka.sock' });
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
