/**
 * npm run bench:kafka [-- --json] [--records N] [--latency-records N] [--rounds N]
 *
 * Produce throughput (MB/s and records/s, 1 KiB records, batches of 100,
 * 8 batches in flight) and produce latency (p50/p99 of one-record sends, one
 * at a time, acks=all) with kafkajs against a real Kafka 4.4 broker (KRaft,
 * one node, in its own network namespace), two paths in alternating rounds of
 * one run:
 *
 *   direct  the client connects to the broker;
 *   meshd   through the node's Envoy: the Kafka listener's chain
 *           (envoy.filters.network.ext_proc → the agent's Kafka processor,
 *           then tcp_proxy) with an allowing rule (role produce, topic bench).
 *
 * The client runs in this process for both paths. Writes
 * docs/benchmarks/kafka.md; with --json the last stdout line is
 * {"direct": {"mb_s", "records_s", "p50_ms", "p99_ms"}, "meshd": {…}}.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { EnvoySupervisor } from '../envoy/supervisor.js';
import { KafkaProcessor } from '../src/kafka/processor.js';
import { createLogger } from '../src/util/log.js';
import { repoPath } from '../src/util/paths.js';
import { freePort } from '../test/helpers/envoy.js';
import { kafkaProxyBootstrap, startKafkaBroker } from '../test/helpers/kafka-broker.js';
import { Sandbox } from '../src/devcluster/netns.js';
import { benchArgs } from './args.js';
import { median } from './stats.js';

const { json, num, log } = benchArgs();
const records = num('--records', 20_000);
const latencyRecords = num('--latency-records', 500);
const rounds = num('--rounds', 3);
const BATCH = 100;
const IN_FLIGHT = 8;
const BROKER_IP = '10.247.16.2';
const KEY = 'bench/ingress/id1001/9092';
const CASES = ['direct', 'meshd'] as const;
type Case = (typeof CASES)[number];

interface Sample {
  mb_s: number;
  records_s: number;
  p50_ms: number;
  p99_ms: number;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? 0;
}

async function measure(brokers: string[]): Promise<Sample> {
  const kafka = new Kafka({ clientId: 'bench', brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    const value = Buffer.alloc(1024, 0x61);
    const batch = Array.from({ length: BATCH }, () => ({ value }));
    await producer.send({ topic: 'bench', messages: batch }); // warm-up: metadata, connection
    let sent = 0;
    const t0 = process.hrtime.bigint();
    const worker = async (): Promise<void> => {
      while (sent < records) {
        sent += BATCH;
        await producer.send({ topic: 'bench', messages: batch, acks: -1 });
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const latencies: number[] = [];
    for (let i = 0; i < latencyRecords; i++) {
      const s = process.hrtime.bigint();
      await producer.send({ topic: 'bench', messages: [{ value }], acks: -1 });
      latencies.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    return { mb_s: (sent * 1024) / 1e6 / seconds, records_s: sent / seconds, p50_ms: percentile(latencies, 50), p99_ms: percentile(latencies, 99) };
  } finally {
    await producer.disconnect();
  }
}

async function main(): Promise<void> {
  const afters: Array<() => Promise<void> | void> = [];
  const t = { after: (fn: () => Promise<void> | void) => void afters.push(fn) };
  const sb = new Sandbox('kbench');
  const dir = mkdtempSync(join(tmpdir(), 'meshd-bench-kafka-'));
  try {
    const ns = await sb.netns('b');
    await sb.vethToHost(ns, { hostIf: sb.name('h'), podIf: 'eth0', hostIp: '10.247.16.1/30', podIp: `${BROKER_IP}/30` });
    const processor = await KafkaProcessor.start({ socketPath: join(dir, 'kafka.sock'), log: createLogger({ bench: 'kafka' }, { level: 'warn' }) });
    afters.push(() => processor.close());
    processor.setPolicies(new Map([[KEY, [{ role: 'produce', topic: 'bench' }]]]));
    const proxyPort = await freePort();
    const envoy = new EnvoySupervisor({ bootstrap: kafkaProxyBootstrap(join(dir, 'admin.sock'), join(dir, 'kafka.sock'), [{ name: 'meshd', port: proxyPort, policyKey: KEY, broker: { ip: BROKER_IP, port: 9094 } }]), workDir: join(dir, 'envoy'), drainTimeS: 0, concurrency: 1 });
    afters.push(() => envoy.stop());
    await envoy.start();
    await startKafkaBroker(t, { netns: ns, ip: BROKER_IP, port: 9092, extraListeners: [{ name: 'PROXIED', port: 9094, advertised: `127.0.0.1:${proxyPort}` }] });
    const admin = new Kafka({ clientId: 'setup', brokers: [`${BROKER_IP}:9092`], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: 'bench' }], waitForLeaders: true });
    await admin.disconnect();
    const brokers: Record<Case, string[]> = { direct: [`${BROKER_IP}:9092`], meshd: [`127.0.0.1:${proxyPort}`] };
    const samples: Record<Case, Sample[]> = { direct: [], meshd: [] };
    for (let r = 0; r < rounds; r++) {
      for (const c of CASES) {
        const s = await measure(brokers[c]);
        samples[c].push(s);
        log(`round ${r + 1} ${c}: ${s.mb_s.toFixed(1)} MB/s, ${Math.round(s.records_s)} records/s, p50 ${s.p50_ms.toFixed(2)} ms, p99 ${s.p99_ms.toFixed(2)} ms`);
      }
    }
    const result = Object.fromEntries(
      CASES.map((c) => [
        c,
        {
          mb_s: +median(samples[c].map((s) => s.mb_s)).toFixed(2),
          records_s: Math.round(median(samples[c].map((s) => s.records_s))),
          p50_ms: +median(samples[c].map((s) => s.p50_ms)).toFixed(3),
          p99_ms: +median(samples[c].map((s) => s.p99_ms)).toFixed(3),
        },
      ]),
    ) as Record<Case, Sample>;
    const ratio = result.meshd.mb_s / result.direct.mb_s;
    const md = `# Kafka produce: direct vs through meshd

Run: ${new Date().toISOString()}, ${process.env.MESHD_BENCH_NOTE ?? '2 vCPUs, the figures of the code at this commit'}.

\`npm run bench:kafka\` — kafkajs producing 1 KiB records (throughput: ${records} records in batches of ${BATCH}, ${IN_FLIGHT} batches in flight; latency: ${latencyRecords} one-record sends one at a time), acks=all, to a real Kafka 4.4 broker (KRaft, one node) in its own network namespace; ${rounds} alternating rounds per path, medians.

| path | MB/s | records/s | p50 latency (ms) | p99 latency (ms) |
| --- | --- | --- | --- | --- |
${CASES.map((c) => `| ${c} | ${result[c].mb_s} | ${result[c].records_s} | ${result[c].p50_ms} | ${result[c].p99_ms} |`).join('\n')}

meshd / direct throughput: ${ratio.toFixed(2)}× (target ≥ 0.5×).

- direct: the client connects to the broker.
- meshd: the client connects to Envoy 1.40 (--concurrency 1), whose chain is the Kafka listener's (\`envoy.filters.network.ext_proc\` → the Kafka processor over a unix socket, then \`tcp_proxy\`), with an allowing rule (role produce, topic bench); every request is parsed and decided, every response passes through the processor. The datapath's redirect to the listener is not part of this path.
`;
    writeFileSync(repoPath('docs', 'benchmarks', 'kafka.md'), md);
    log('wrote docs/benchmarks/kafka.md');
    if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    for (const fn of afters.reverse()) await fn();
    await sb.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
