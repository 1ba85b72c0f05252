/**
 * A real Apache Kafka 4.x broker for tests: one KRaft node (broker and
 * controller in one process) from the jars scripts/kafka-jars.sh copies into
 * the cache, formatted in a fresh directory and started inside a network
 * namespace. It listens on `ip:port` inside that namespace and advertises
 * `advertised` (the address clients are told to use — the proxy's, when the
 * test puts one in front). Stopped and removed in t.after.
 *
 *   const broker = await startKafkaBroker(t, { netns: ns, ip: '10.251.0.2', advertised: '127.0.0.1:19092' });
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { run } from '../../src/util/exec.js';
import { repoPath } from '../../src/util/paths.js';
import { buildKafkaFilters, buildKafkaProcessorCluster } from '../../src/proxy/kafka-listener.js';
import type { Sandbox } from '../../src/devcluster/netns.js';

interface After {
  after(fn: () => Promise<void> | void): void;
}

export interface KafkaBrokerOptions {
  /** Network namespace the broker runs in (its veth address is `ip`). */
  netns: string;
  ip: string;
  port?: number;
  /** host:port advertised to clients; default ip:port. */
  advertised?: string;
  /**
   * More client listeners on `ip`, each advertising its own address (a client is told the address of
   * the listener it came in through): e.g. one per proxy listener, and one that is not proxied.
   */
  extraListeners?: Array<{ name: string; port: number; advertised: string; protocol?: 'PLAINTEXT' | 'SASL_PLAINTEXT' }>;
  /** Users of the SASL_PLAINTEXT listeners (mechanism PLAIN): name → password. */
  saslUsers?: Record<string, string>;
}

export interface KafkaBroker {
  ip: string;
  port: number;
  dir: string;
  log(): string;
  stop(): Promise<void>;
}

export async function kafkaLibDir(): Promise<string> {
  const r = await run('bash', [repoPath('scripts', 'kafka-jars.sh'), '--print-lib-dir']);
  const dir = r.stdout.trim();
  if (!existsSync(join(dir, '.complete'))) throw new Error(`Kafka jars missing in ${dir}: run scripts/kafka-jars.sh (scripts/setup.sh does)`);
  return dir;
}

async function exited(p: ChildProcess, ms: number): Promise<boolean> {
  if (p.exitCode !== null || p.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function startKafkaBroker(t: After, o: KafkaBrokerOptions): Promise<KafkaBroker> {
  const lib = await kafkaLibDir();
  const port = o.port ?? 9092;
  const dir = mkdtempSync(join(tmpdir(), 'meshd-kafka-'));
  const controllerPort = 9999;
  const listeners = [{ name: 'PLAINTEXT', port, advertised: o.advertised ?? `${o.ip}:${port}`, protocol: 'PLAINTEXT' }, ...(o.extraListeners ?? [])];
  const sasl = listeners.filter((l) => l.protocol === 'SASL_PLAINTEXT');
  const users = Object.entries(o.saslUsers ?? {})
    .map(([u, pw]) => `user_${u}="${pw}"`)
    .join(' ');
  const props = [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@${o.ip}:${controllerPort}`,
    `listeners=${[...listeners.map((l) => `${l.name}://${o.ip}:${l.port}`), `CONTROLLER://${o.ip}:${controllerPort}`].join(',')}`,
    `advertised.listeners=${listeners.map((l) => `${l.name}://${l.advertised}`).join(',')}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `listener.security.protocol.map=${[...listeners.map((l) => `${l.name}:${l.protocol ?? 'PLAINTEXT'}`), 'CONTROLLER:PLAINTEXT'].join(',')}`,
    ...(sasl.length > 0 ? ['sasl.enabled.mechanisms=PLAIN'] : []),
    ...sasl.map((l) => `listener.name.${l.name.toLowerCase()}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${users};`),
    `log.dirs=${join(dir, 'data')}`,
    'num.partitions=1',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=true',
  ];
  const config = join(dir, 'server.properties');
  writeFileSync(config, `${props.join('\n')}\n`);
  const java = ['-Xms128m', '-Xmx512m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-cp', `${lib}/*`];
  const clusterId = randomBytes(16).toString('base64url');
  // `--cluster-id=`: a base64url id may begin with '-', which the tool's parser would take for an option.
  await run('java', [...java, 'kafka.tools.StorageTool', 'format', `--cluster-id=${clusterId}`, '-c', config], { timeoutMs: 120_000 });

  let out = '';
  const proc = spawn('ip', ['netns', 'exec', o.netns, 'java', ...java, 'kafka.Kafka', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (b: Buffer): void => {
    out = (out + b.toString()).slice(-200_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    proc.kill('SIGTERM');
    if (!(await exited(proc, 15_000))) {
      proc.kill('SIGKILL');
      await exited(proc, 5_000);
    }
  };
  t.after(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 120_000;
  while (!/Kafka Server started/.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`Kafka broker did not start:\n${out.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ip: o.ip, port, dir, log: () => out, stop };
}

export interface KafkaProxyListener {
  name: string;
  /** Loopback port Envoy listens on. */
  port: number;
  policyKey: string;
  /** Where the chain's tcp_proxy goes. */
  broker: { ip: string; port: number };
}

/**
 * A static Envoy bootstrap putting the Kafka processor in front of a broker: per listener one
 * chain with the translator's filters (ext_proc with the listener's policy key, then tcp_proxy to
 * a STATIC cluster for the broker) — the node listener's chain without the datapath's redirect.
 */
export function kafkaProxyBootstrap(adminSock: string, processorSocket: string, listeners: readonly KafkaProxyListener[]): Record<string, unknown> {
  const strip = (r: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(r).filter(([k]) => k !== '@type'));
  const clusterName = (l: KafkaProxyListener): string => `broker-${l.name}`;
  return {
    node: { id: 'kafka-proxy', cluster: 'meshd' },
    admin: { address: { pipe: { path: adminSock } } },
    static_resources: {
      listeners: listeners.map((l) => ({
        name: l.name,
        address: { socket_address: { address: '127.0.0.1', port_value: l.port } },
        enable_reuse_port: false,
        filter_chains: [{ filters: buildKafkaFilters({ policyKey: l.policyKey, statPrefix: l.name, cluster: clusterName(l) }) }],
      })),
      clusters: [
        strip(buildKafkaProcessorCluster(processorSocket)),
        ...listeners.map((l) => ({
          name: clusterName(l),
          type: 'STATIC',
          connect_timeout: '2s',
          load_assignment: { cluster_name: clusterName(l), endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: l.broker.ip, port_value: l.broker.port } } } }] }] },
        })),
      ],
    },
  };
}

const peerAnswerSchema = z.object({
  id: z.number(),
  ok: z.boolean(),
  type: z.string().optional(),
  name: z.string().optional(),
  message: z.string().optional(),
  errorCode: z.number().optional(),
  values: z.array(z.string()).optional(),
});
export type KafkaPeerAnswer = z.infer<typeof peerAnswerSchema>;

export interface KafkaClientPeer {
  send(
    cmd: { op: 'produce' | 'consume' | 'createTopics' | 'connect'; clientId: string; topic?: string; topics?: string[]; value?: string; groupId?: string; count?: number; sasl?: { username: string; password: string } },
    timeoutMs?: number,
  ): Promise<KafkaPeerAnswer>;
}

/**
 * A kafkajs client (test/helpers/kafka-client-peer.ts) running in network namespace `ns`, talking to `broker`
 * (with `sasl` in a command: SASL PLAIN, SaslHandshake v1 then SaslAuthenticate).
 */
export async function startKafkaClient(sb: Sandbox, ns: string, broker: string): Promise<KafkaClientPeer> {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, repoPath('dist', 'test', 'helpers', 'kafka-client-peer.js'), broker], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  sb.defer(async () => {
    proc.stdin?.end();
    if (!(await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]))) proc.kill('SIGKILL');
    await exited;
  });
  const waiting = new Map<number, (a: KafkaPeerAnswer) => void>();
  let ready: () => void = () => undefined;
  const isReady = new Promise<void>((r) => (ready = r));
  let buf = '';
  let err = '';
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      if (l === 'ready') ready();
      else if (l.startsWith('{')) {
        const a = peerAnswerSchema.safeParse(JSON.parse(l));
        if (a.success) waiting.get(a.data.id)?.(a.data);
      }
    }
  });
  await Promise.race([isReady, new Promise((_, rej) => setTimeout(() => rej(new Error(`kafka client in ${ns} did not start: ${err}`)), 15_000))]);
  let seq = 0;
  return {
    send(cmd, timeoutMs = 60_000) {
      const id = ++seq;
      return new Promise<KafkaPeerAnswer>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`kafka client in ${ns}: no answer to ${JSON.stringify(cmd)} in ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, (a) => {
          clearTimeout(timer);
          waiting.delete(id);
          resolve(a);
        });
        proc.stdin?.write(`${JSON.stringify({ id, ...cmd })}\n`);
      });
    },
  };
}
