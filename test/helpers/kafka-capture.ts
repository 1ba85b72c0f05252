/**
 * A recording TCP relay for Kafka traffic, and the script that captured
 * test/fixtures/kafka/ with it: a real broker (kafka-broker.ts) in a network
 * namespace advertising the relay, and kafkajs producing, consuming in a
 * group and committing through it. Each client connection's two byte
 * streams are written as <n>-requests.bin and <n>-responses.bin.
 *
 *   node dist/test/helpers/kafka-capture.js <out-dir>     (root; regenerates the fixtures)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { run } from '../../src/util/exec.js';
import { kafkaLibDir, startKafkaBroker } from './kafka-broker.js';
import { Sandbox } from '../../src/devcluster/netns.js';

export interface RecordedConnection {
  requests: Buffer[];
  responses: Buffer[];
}

/** A relay on 127.0.0.1:`port` to `target`, keeping every chunk per direction and connection. */
export async function recordingRelay(port: number, target: { host: string; port: number }): Promise<{ server: Server; connections: RecordedConnection[]; close(): Promise<void> }> {
  const connections: RecordedConnection[] = [];
  const server = createServer((client) => {
    const rec: RecordedConnection = { requests: [], responses: [] };
    connections.push(rec);
    const upstream = createConnection(target);
    client.on('data', (b) => {
      rec.requests.push(Buffer.from(b));
      upstream.write(b);
    });
    upstream.on('data', (b) => {
      rec.responses.push(Buffer.from(b));
      client.write(b);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { server, connections, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function main(out: string): Promise<void> {
  const afters: Array<() => Promise<void> | void> = [];
  const t = { after: (fn: () => Promise<void> | void) => afters.push(fn) };
  const sb = new Sandbox('kcap');
  try {
    const ns = await sb.netns('b');
    await sb.vethToHost(ns, { hostIf: sb.name('h'), podIf: 'eth0', hostIp: '10.251.7.1/30', podIp: '10.251.7.2/30' });
    const relayPort = 19092;
    await startKafkaBroker(t, { netns: ns, ip: '10.251.7.2', advertised: `127.0.0.1:${relayPort}` });
    const relay = await recordingRelay(relayPort, { host: '10.251.7.2', port: 9092 });
    afters.push(() => relay.close());
    const kafka = new Kafka({ clientId: 'order-service', brokers: [`127.0.0.1:${relayPort}`], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: 'orders', numPartitions: 2 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: 'orders', messages: [{ key: 'k1', value: 'order 1' }, { key: 'k2', value: 'order 2' }] });
    await producer.disconnect();
    const consumer = kafka.consumer({ groupId: 'order-consumer-group' });
    await consumer.connect();
    await consumer.subscribe({ topic: 'orders', fromBeginning: true });
    let seen = 0;
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async () => {
          seen += 1;
          if (seen === 2) resolve();
        },
      });
    });
    await consumer.disconnect();
    // Kafka's own Java clients: the flexible versions (and Produce/Fetch by topic ID, which the
    // processor's ApiVersions cap keeps clients from choosing).
    const kafkajsConnections = relay.connections.length;
    const lib = await kafkaLibDir();
    const java = ['-cp', `${lib}/*`, '-Xmx256m'];
    await run('java', [...java, 'org.apache.kafka.tools.ConsoleProducer', '--bootstrap-server', `127.0.0.1:${relayPort}`, '--topic', 'orders', '--command-property', 'client.id=java-producer'], {
      input: 'order 3\norder 4\n',
      timeoutMs: 60_000,
    });
    await run(
      'java',
      [...java, 'org.apache.kafka.tools.consumer.ConsoleConsumer', '--bootstrap-server', `127.0.0.1:${relayPort}`, '--topic', 'orders', '--group', 'java-group', '--from-beginning', '--max-messages', '4', '--command-property', 'client.id=java-consumer'],
      { timeoutMs: 60_000 },
    );
    mkdirSync(out, { recursive: true });
    relay.connections.forEach((c, i) => {
      const name = i < kafkajsConnections ? `kafkajs-${i}` : `java-${i - kafkajsConnections}`;
      writeFileSync(join(out, `${name}-requests.bin`), Buffer.concat(c.requests));
      writeFileSync(join(out, `${name}-responses.bin`), Buffer.concat(c.responses));
    });
    console.log(`captured ${relay.connections.length} connections into ${out}`);
  } finally {
    for (const fn of afters.reverse()) await fn();
    await sb.cleanup();
  }
}

if (process.argv[1]?.endsWith('kafka-capture.js')) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: kafka-capture.js <out-dir>');
  await main(out);
}
