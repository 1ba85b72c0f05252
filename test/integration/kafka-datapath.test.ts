/**
 * Kafka policy on the node as the agent runs it: the example policy
 * (examples/policies/l7-kafka.yaml) → policy engine → translator → xDS → the
 * node's real Envoy (ProxyManager, which runs the Kafka processor) → the real
 * kernel datapath (EndpointManager on veths) → pods in namespaces: a real
 * Kafka 4.4 broker in the kafka pod, kafkajs clients in the order-service and
 * analytics-service pods; Envoy killed mid-stream, then the agent's proxy
 * manager (Envoy and the processor) restarted. The test plays the agent's part: engine.flush() →
 * proxy.apply() → only once Envoy ACKed, dp.updatePolicy().
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoPath } from '../../src/util/paths.js';
import { startKafkaBroker, startKafkaClient } from '../helpers/kafka-broker.js';
import { policyDocs, startL7World } from '../helpers/l7-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

const EXAMPLE = readFileSync(repoPath('examples', 'policies', 'l7-kafka.yaml'), 'utf8');

// A later edit: analytics-service may produce to orders too.
const ANALYTICS_PRODUCE = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: analytics-produce, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: kafka } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: analytics-service } }]
      toPorts:
        - ports: [{ port: "9092", protocol: TCP }]
          rules: { kafka: [{ role: produce, topic: orders }] }
`;

test('Kafka policy through the node Envoy, the Kafka processor and the kernel datapath, against a real broker', { timeout: 300_000 }, async (t) => {
  requirePrivileges();
  const w = await startL7World(t, { tag: 'kdp', octet: 89, portBase: 23000, pods: [['kafka', 0], ['order-service', 4], ['analytics-service', 8]], policies: EXAMPLE });
  const { sb, engine, proxy, pod, sync } = w;
  const broker = pod('kafka');
  const first = await sync();
  assert.deepEqual(first.unsupported, []);
  assert.deepEqual(first.redirects, [{ endpointId: 'default/kafka', direction: 'ingress', kind: 'kafka', proxyPort: proxy.proxyPort('kafka', 'ingress') }]);

  await startKafkaBroker(t, { netns: broker.ns, ip: broker.ip, port: 9092 });
  const address = `${broker.ip}:9092`;
  // Inside the broker's pod: local traffic, no datapath, no proxy.
  const setup = await startKafkaClient(sb, broker.ns, address);
  assert.equal((await setup.send({ op: 'createTopics', clientId: 'setup', topics: ['orders', 'order-events'] })).ok, true);
  assert.equal((await setup.send({ op: 'produce', clientId: 'setup', topic: 'order-events', value: 'event 1' })).ok, true);

  const order = await startKafkaClient(sb, pod('order-service').ns, address);
  const analytics = await startKafkaClient(sb, pod('analytics-service').ns, address);

  // Allowed produce; a denied produce gets error 29 in kafkajs's own error; the next allowed one succeeds.
  const produced = await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 1' });
  assert.deepEqual([produced.ok, produced.errorCode], [true, 0], JSON.stringify(produced));
  const forged = await order.send({ op: 'produce', clientId: 'order-service', topic: 'order-events', value: 'forged' });
  assert.equal(forged.ok, false);
  assert.equal(forged.type, 'TOPIC_AUTHORIZATION_FAILED');
  assert.equal((await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 2' })).ok, true);

  // Allowed consume in the order service's group.
  const events = await order.send({ op: 'consume', clientId: 'order-service', topic: 'order-events', groupId: 'order-consumer-group', count: 1 });
  assert.deepEqual(events.values, ['event 1']);

  // analytics-service consumes orders but may not produce to it.
  const seen = await analytics.send({ op: 'consume', clientId: 'analytics-service', topic: 'orders', groupId: 'analytics', count: 2 });
  assert.deepEqual(seen.values?.sort(), ['order 1', 'order 2']);
  const refused = await analytics.send({ op: 'produce', clientId: 'analytics-service', topic: 'orders', value: 'not mine' });
  assert.equal(refused.type, 'TOPIC_AUTHORIZATION_FAILED');

  // An unlisted client ID from order-service's pod is refused.
  const rogue = await order.send({ op: 'connect', clientId: 'rogue' });
  assert.equal(rogue.ok, false);
  assert.equal(rogue.type, 'CLUSTER_AUTHORIZATION_FAILED');

  // A policy edit takes effect on the next request (the analytics producer's connection stays open).
  for (const d of policyDocs(ANALYTICS_PRODUCE)) await engine.upsertPolicy(d);
  await sync();
  assert.equal((await analytics.send({ op: 'produce', clientId: 'analytics-service', topic: 'orders', value: 'allowed now' })).ok, true);

  // Envoy killed mid-stream: the supervisor restarts it, the clients reconnect and go on under the same rules.
  const pid = proxy.status().envoy.pid;
  assert.ok(pid);
  process.kill(pid, 'SIGKILL');
  const end = Date.now() + 30_000;
  while (!(proxy.status().envoy.state === 'ready' && proxy.status().envoy.pid !== pid)) {
    assert.ok(Date.now() < end, `envoy not back: ${JSON.stringify(proxy.status().envoy)}`);
    await sleep(100);
  }
  const after = await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 3' });
  assert.equal(after.ok, true, JSON.stringify(after));
  assert.equal((await order.send({ op: 'produce', clientId: 'order-service', topic: 'order-events', value: 'forged' })).type, 'TOPIC_AUTHORIZATION_FAILED');

  // Agent restart mid-stream: the proxy manager (Envoy and the Kafka processor) stops and a new one starts on the
  // same state directory; the datapath keeps redirecting to the same port; the clients reconnect.
  const kafkaPort = proxy.proxyPort('kafka', 'ingress');
  await proxy.stop();
  const again = await w.restartProxy();
  assert.equal(again.proxyPort('kafka', 'ingress'), kafkaPort);
  await sync(again);
  const resumed = await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 4' });
  assert.equal(resumed.ok, true, JSON.stringify(resumed));
  assert.equal((await analytics.send({ op: 'produce', clientId: 'analytics-service', topic: 'orders', value: 'still allowed' })).ok, true);
  assert.equal((await order.send({ op: 'produce', clientId: 'order-service', topic: 'order-events', value: 'forged' })).type, 'TOPIC_AUTHORIZATION_FAILED');
});
