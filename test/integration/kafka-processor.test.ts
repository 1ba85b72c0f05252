/**
 * Kafka policy through a real Envoy's network ext_proc filter and the agent's
 * Kafka processor, against a real Kafka 4.4 broker (KRaft) in a network
 * namespace, with kafkajs as the client: the seed example of docs/kafka.md
 * (order-service produces to `orders` and consumes `order-events` as
 * `order-consumer-group`; analytics-service only consumes `orders`).
 *
 * Each client identity gets its own Envoy listener (the per-identity filter
 * chain of the node's listener, with its policy key), and its own broker
 * listener advertising that Envoy listener, so a client keeps coming back
 * through its own chain. A third broker listener, not proxied, sets up topics.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { KafkaProcessor } from '../../src/kafka/processor.js';
import type { KafkaRule } from '../../src/policy/types.js';
import { createLogger } from '../../src/util/log.js';
import { freePort, startEnvoy } from '../helpers/envoy.js';
import { kafkaProxyBootstrap, startKafkaBroker } from '../helpers/kafka-broker.js';
import { Sandbox } from '../../src/devcluster/netns.js';
import { requirePrivileges } from '../helpers/privileged.js';

const BROKER_IP = '10.247.15.2';
const ORDER_KEY = 'kafka/ingress/id1001/9092';
const ANALYTICS_KEY = 'kafka/ingress/id1002/9092';

/** The seed example's rules, as the translator hands them to the processor. */
const SEED: ReadonlyMap<string, KafkaRule[]> = new Map([
  [
    ORDER_KEY,
    [
      { role: 'produce', topic: 'orders', clientID: 'order-service' },
      { role: 'consume', topic: 'order-events', clientID: 'order-service' },
    ],
  ],
  [ANALYTICS_KEY, [{ role: 'consume', topic: 'orders' }]],
]);

function protocolErrorType(e: unknown): string | undefined {
  // kafkajs wraps a protocol error in its retrier's errors; the protocol error carries `type`.
  for (let x: unknown = e; typeof x === 'object' && x !== null; x = 'cause' in x ? x.cause : 'originalError' in x ? x.originalError : undefined) {
    if ('type' in x && typeof x.type === 'string') return x.type;
  }
  return undefined;
}

test('Kafka seed example through Envoy network ext_proc and the processor, against a real broker', { timeout: 240_000 }, async (t) => {
  requirePrivileges();
  const sb = new Sandbox('kproc');
  t.after(() => sb.cleanup());
  const ns = await sb.netns('b');
  await sb.vethToHost(ns, { hostIf: sb.name('h'), podIf: 'eth0', hostIp: '10.247.15.1/30', podIp: `${BROKER_IP}/30` });

  const dir = mkdtempSync(join(tmpdir(), 'meshd-kafka-proc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const processor = await KafkaProcessor.start({ socketPath: join(dir, 'kafka.sock'), log: createLogger({ test: 'kafka' }, { level: 'warn' }) });
  t.after(() => processor.close());
  processor.setPolicies(SEED);

  const orderPort = await freePort();
  const analyticsPort = await freePort();
  await startEnvoy(t, (admin) =>
    kafkaProxyBootstrap(admin, join(dir, 'kafka.sock'), [
      { name: 'order', port: orderPort, policyKey: ORDER_KEY, broker: { ip: BROKER_IP, port: 9092 } },
      { name: 'analytics', port: analyticsPort, policyKey: ANALYTICS_KEY, broker: { ip: BROKER_IP, port: 9094 } },
    ]),
  );
  await startKafkaBroker(t, {
    netns: ns,
    ip: BROKER_IP,
    port: 9092,
    advertised: `127.0.0.1:${orderPort}`,
    extraListeners: [
      { name: 'ANALYTICS', port: 9094, advertised: `127.0.0.1:${analyticsPort}` },
      { name: 'SETUP', port: 9096, advertised: `${BROKER_IP}:9096` },
    ],
  });

  const client = (clientId: string, port: number) => new Kafka({ clientId, brokers: [`127.0.0.1:${port}`], logLevel: logLevel.NOTHING, retry: { retries: 8, initialRetryTime: 100 }, connectionTimeout: 5000 });
  const clients: Array<{ disconnect(): Promise<void> }> = [];
  t.after(async () => {
    for (const c of clients) await c.disconnect().catch(() => undefined);
  });
  const producerOf = async (k: Kafka): Promise<Producer> => {
    const p = k.producer({ allowAutoTopicCreation: false });
    clients.push(p);
    await p.connect();
    return p;
  };

  // Topics and a record on order-events, through the broker listener nobody proxies.
  const setup = new Kafka({ clientId: 'setup', brokers: [`${BROKER_IP}:9096`], logLevel: logLevel.NOTHING });
  const admin = setup.admin();
  clients.push(admin);
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'orders' }, { topic: 'order-events' }], waitForLeaders: true });
  const setupProducer = await producerOf(setup);
  await setupProducer.send({ topic: 'order-events', messages: [{ value: 'event 1' }] });

  // order-service produces to orders.
  const orders = await producerOf(client('order-service', orderPort));
  const sent = await orders.send({ topic: 'orders', messages: [{ key: 'o1', value: 'order 1' }] });
  assert.equal(sent[0]?.errorCode, 0);

  // A denied produce (order-service may not produce to order-events): error 29 in kafkajs's own error,
  // and the same producer's next allowed request, on the same connection, succeeds.
  const streamsBefore = processor.stats().streams;
  await assert.rejects(orders.send({ topic: 'order-events', messages: [{ value: 'forged event' }] }), (e: unknown) => protocolErrorType(e) === 'TOPIC_AUTHORIZATION_FAILED');
  const again = await orders.send({ topic: 'orders', messages: [{ key: 'o2', value: 'order 2' }] });
  assert.equal(again[0]?.errorCode, 0);
  assert.equal(processor.stats().streams, streamsBefore, 'no new connection after the refusal');

  // order-service consumes order-events in its group.
  const orderConsumer = client('order-service', orderPort).consumer({ groupId: 'order-consumer-group' });
  clients.push(orderConsumer);
  await orderConsumer.connect();
  await orderConsumer.subscribe({ topic: 'order-events', fromBeginning: true });
  const events: string[] = [];
  await new Promise<void>((resolve) => {
    void orderConsumer.run({
      eachMessage: async ({ message }) => {
        events.push(message.value?.toString() ?? '');
        resolve();
      },
    });
  });
  assert.deepEqual(events, ['event 1']);
  await orderConsumer.disconnect();

  // analytics-service consumes orders…
  const analytics = client('analytics-service', analyticsPort);
  const analyticsConsumer = analytics.consumer({ groupId: 'analytics' });
  clients.push(analyticsConsumer);
  await analyticsConsumer.connect();
  await analyticsConsumer.subscribe({ topic: 'orders', fromBeginning: true });
  const seen: string[] = [];
  await new Promise<void>((resolve) => {
    void analyticsConsumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message.value?.toString() ?? '');
        if (seen.length === 2) resolve();
      },
    });
  });
  assert.deepEqual(seen.sort(), ['order 1', 'order 2']);
  await analyticsConsumer.disconnect();

  // …but may not produce to it.
  const analyticsProducer = await producerOf(analytics);
  await assert.rejects(analyticsProducer.send({ topic: 'orders', messages: [{ value: 'not mine' }] }), (e: unknown) => protocolErrorType(e) === 'TOPIC_AUTHORIZATION_FAILED');

  // A policy edit applies to the next request of the open connection.
  processor.setPolicies(new Map([...SEED, [ANALYTICS_KEY, [{ role: 'consume', topic: 'orders' }, { role: 'produce', topic: 'orders' }]]]));
  const now = await analyticsProducer.send({ topic: 'orders', messages: [{ value: 'allowed now' }] });
  assert.equal(now[0]?.errorCode, 0);

  // An unlisted client ID on order-service's chain is refused from its first request.
  const rogue = client('rogue', orderPort).producer();
  clients.push(rogue);
  await assert.rejects(rogue.connect(), (e: unknown) => protocolErrorType(e) === 'CLUSTER_AUTHORIZATION_FAILED');

  // Bytes that are not a Kafka request: Envoy closes the connection and nothing is answered.
  const raw = connect({ host: '127.0.0.1', port: orderPort });
  const received: Buffer[] = [];
  raw.on('data', (b: Buffer) => received.push(b));
  raw.on('error', () => undefined);
  await once(raw, 'connect');
  const closedBefore = processor.stats().closed;
  raw.write(Buffer.from('00000003000001', 'hex'));
  await Promise.race([once(raw, 'close'), sleep(10_000).then(() => assert.fail('the connection stayed open'))]);
  assert.deepEqual(received, []);
  assert.equal(processor.stats().closed, closedBefore + 1);

  const s = processor.stats();
  assert.ok(s.denied >= 3 && s.allowed > 10, JSON.stringify(s));
});
