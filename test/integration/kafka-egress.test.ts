/**
 * Egress Kafka rules on the node as the agent runs them: the client pod's
 * egress policy (the broker has no policy at all) → policy engine →
 * translator (`meshd-kafka-egress`) → the node's real Envoy and the Kafka
 * processor → the real kernel datapath's egress redirect → a real Kafka 4.4
 * broker in the broker pod. Also, through the same path: Kafka's own Java
 * producer at its default settings (idempotent: InitProducerId before its
 * first Produce) under `role: produce`; SASL PLAIN against the broker's
 * SASL_PLAINTEXT listener, passed through where a rule names SaslHandshake
 * and SaslAuthenticate and refused with SASL's own error elsewhere; that
 * listener's port is inside a port range of the rule (one chain per port).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { run } from '../../src/util/exec.js';
import { kafkaLibDir, startKafkaBroker, startKafkaClient } from '../helpers/kafka-broker.js';
import { startL7World } from '../helpers/l7-world.js';
import { requirePrivileges } from '../helpers/privileged.js';

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: order-service-kafka-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: order-service } }
  egress:
    - toEndpoints: [{ matchLabels: { app: kafka } }]
      toPorts:
        - ports: [{ port: "9092", protocol: TCP }]
          rules:
            kafka:
              - { role: produce, topic: orders, clientID: order-service }
    - toEndpoints: [{ matchLabels: { app: kafka } }]
      toPorts:
        - ports: [{ port: "9093", endPort: 9094, protocol: TCP }]
          rules:
            kafka:
              - { apiKey: saslhandshake, clientID: sasl-ok }
              - { apiKey: saslauthenticate, clientID: sasl-ok }
              - { role: produce, topic: orders }
`;

test('egress Kafka rules, the idempotent Java producer and SASL pass-through, through the node Envoy against a real broker', { timeout: 300_000 }, async (t) => {
  requirePrivileges();
  const w = await startL7World(t, { tag: 'keg', octet: 93, portBase: 34000, pods: [['kafka', 0], ['order-service', 4]], policies: POLICY });
  const { sb, proxy, pod, sync } = w;
  const broker = pod('kafka');
  const first = await sync();
  assert.deepEqual(first.unsupported, []);
  assert.deepEqual(first.redirects, [{ endpointId: 'default/order-service', direction: 'egress', kind: 'kafka', proxyPort: proxy.proxyPort('kafka', 'egress') }]);

  await startKafkaBroker(t, {
    netns: broker.ns,
    ip: broker.ip,
    port: 9092,
    extraListeners: [{ name: 'SASL', port: 9093, advertised: `${broker.ip}:9093`, protocol: 'SASL_PLAINTEXT' }],
    saslUsers: { alice: 'alice-secret' },
  });
  const address = `${broker.ip}:9092`;
  const setup = await startKafkaClient(sb, broker.ns, address);
  assert.equal((await setup.send({ op: 'createTopics', clientId: 'setup', topics: ['orders', 'order-events'] })).ok, true);

  // kafkajs from the client pod: allowed produce; a denied one gets 29 and the next allowed one works.
  const order = await startKafkaClient(sb, pod('order-service').ns, address);
  const produced = await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 1' });
  assert.deepEqual([produced.ok, produced.errorCode], [true, 0], JSON.stringify(produced));
  const forged = await order.send({ op: 'produce', clientId: 'order-service', topic: 'order-events', value: 'forged' });
  assert.equal(forged.ok, false);
  assert.equal(forged.type, 'TOPIC_AUTHORIZATION_FAILED', JSON.stringify(forged));
  assert.equal((await order.send({ op: 'produce', clientId: 'order-service', topic: 'orders', value: 'order 2' })).ok, true);
  const rogue = await order.send({ op: 'connect', clientId: 'rogue' });
  assert.equal(rogue.ok, false);
  assert.equal(rogue.type, 'CLUSTER_AUTHORIZATION_FAILED', JSON.stringify(rogue));

  // Kafka's own Java producer, default settings (idempotent), from the client pod.
  const lib = await kafkaLibDir();
  const java = await run(
    'ip',
    ['netns', 'exec', pod('order-service').ns, 'java', '-Xmx256m', '-XX:TieredStopAtLevel=1', '-cp', `${lib}/*`, 'org.apache.kafka.tools.ConsoleProducer', '--bootstrap-server', address, '--topic', 'orders', '--command-property', 'client.id=order-service'],
    { input: 'order java\n', timeoutMs: 120_000 },
  );
  assert.doesNotMatch(java.stdout + java.stderr, /ERROR|Exception/, java.stdout + java.stderr);

  // SASL PLAIN on 9093 (inside the rule's 9093–9094 range): passed through for sasl-ok, refused for another client ID.
  const saslAddress = `${broker.ip}:9093`;
  const saslClient = await startKafkaClient(sb, pod('order-service').ns, saslAddress);
  const sasl = { username: 'alice', password: 'alice-secret' };
  const authed = await saslClient.send({ op: 'produce', clientId: 'sasl-ok', topic: 'orders', value: 'order sasl', sasl });
  assert.deepEqual([authed.ok, authed.errorCode], [true, 0], JSON.stringify(authed));
  const refused = await saslClient.send({ op: 'connect', clientId: 'sasl-no', sasl });
  assert.equal(refused.ok, false);
  assert.equal(refused.type, 'UNSUPPORTED_SASL_MECHANISM', JSON.stringify(refused));

  // Everything allowed reached the broker.
  const seen = await setup.send({ op: 'consume', clientId: 'setup', topic: 'orders', groupId: 'verify', count: 4 });
  assert.deepEqual(seen.values?.sort(), ['order 1', 'order 2', 'order java', 'order sasl']);
});
