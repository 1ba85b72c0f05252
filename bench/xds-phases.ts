/**
 * The server's side of bench:xds, phase by phase and without Envoy, so the
 * share of each step can be read at sizes where Envoy alone takes minutes
 * (50,000). `npm run bench:xds -- --phases [--phase-sizes 100,1000,10000,50000]`.
 *
 * For N clusters and N listeners (the bench's resources), one ADS stream per
 * mode subscribed to both, driven in-process through the stream handlers
 * the gRPC server uses (every response ACKed at once, as Envoy would):
 *
 * - pack: validating and encoding every resource (ResourceCodec.pack), alone;
 * - hash: what recognising an unchanged resource costs (the JSON text's
 *   hash) plus the content hash of every encoding, alone;
 * - build: buildSnapshot(), which does both (and reuses unchanged encodings
 *   of the previous snapshot);
 * - consistency: checkConsistency();
 * - publish: SnapshotCache.setSnapshot() of the built snapshot, which answers
 *   the stream's watches: per-stream work plus `encode`, the response
 *   encoding (DiscoveryResponse bytes as the gRPC server writes them),
 *   measured inside it;
 * - then the same for a snapshot where one cluster changed, built from fresh
 *   objects (as the bench's Envoy runs do) and from the same objects except
 *   the changed one ("same objects": an agent that keeps its resources).
 */
import { createHash } from 'node:crypto';
import { AckTracker } from '../xds/ack-tracker.js';
import { SnapshotCache } from '../xds/cache.js';
import { MemoryLogger } from '../xds/log.js';
import { type DeltaDiscoveryRequest, deltaCodec, sotwCodec } from '../xds/messages.js';
import { ResourceCodec, contentVersion } from '../xds/resource-codec.js';
import { type SnapshotInput, buildSnapshot, checkConsistency } from '../xds/snapshot.js';
import { DeltaStream } from '../xds/stream-delta.js';
import { SotwStream } from '../xds/stream-sotw.js';
import type { ResponseSink } from '../xds/stream.js';
import { TYPE_URL } from '../xds/type-urls.js';

export type Resources = (n: number) => { clusters: Array<Record<string, unknown>>; listeners: Array<Record<string, unknown>> };

export interface PhaseRow {
  n: number;
  mode: 'sotw' | 'delta';
  packMs: number;
  hashMs: number;
  buildMs: number;
  consistencyMs: number;
  publishMs: number;
  encodeMs: number;
  bytes: number;
  change: { buildMs: number; consistencyMs: number; publishMs: number; encodeMs: number; bytes: number };
  sameObjectsBuildMs: number;
}

const time = <T>(f: () => T): [T, number] => {
  const t0 = performance.now();
  const r = f();
  return [r, performance.now() - t0];
};

export function runPhases(n: number, mode: 'sotw' | 'delta', resources: Resources): PhaseRow {
  const codec = new ResourceCodec();
  const res = resources(n);
  const all = [...res.clusters, ...res.listeners];
  const [anys, packMs] = time(() => all.map((r) => codec.pack(r)));
  const [, hashMs] = time(() => {
    for (const r of all) createHash('sha256').update(JSON.stringify(r)).digest('base64');
    for (const a of anys) contentVersion(a);
  });

  const cache = new SnapshotCache();
  const tracker = new AckTracker();
  const log = new MemoryLogger();
  const nodeId = `phases-${mode}-${n}`;
  const node = { id: nodeId, cluster: '' };
  let encodeMs = 0;
  let bytes = 0;
  const acks: Array<() => void> = [];
  const kinds = [TYPE_URL.clusters, TYPE_URL.listeners];
  /** A sink that encodes each response as the gRPC server does (timed) and queues its ACK. */
  const sink = <R>(encode: (r: R) => Buffer, ack: (r: R) => void): ResponseSink<R> => ({
    send: (r) => {
      const t0 = performance.now();
      bytes += encode(r).length;
      encodeMs += performance.now() - t0;
      acks.push(() => ack(r));
    },
    fail: (code, message) => {
      throw new Error(`${code}: ${message}`);
    },
  });
  if (mode === 'sotw') {
    const codecS = sotwCodec();
    const stream: SotwStream = new SotwStream({
      source: cache,
      tracker,
      log,
      sink: sink(codecS.encode, (r) => stream.receive({ version_info: r.version_info, node, resource_names: [], type_url: r.type_url, response_nonce: r.nonce })),
    });
    for (const t of kinds) stream.receive({ version_info: '', node, resource_names: [], type_url: t, response_nonce: '' });
  } else {
    const codecD = deltaCodec();
    const request = (typeUrl: string, nonce: string): DeltaDiscoveryRequest => ({
      node,
      type_url: typeUrl,
      resource_names_subscribe: [],
      resource_names_unsubscribe: [],
      initial_resource_versions: {},
      response_nonce: nonce,
    });
    const stream: DeltaStream = new DeltaStream({ source: cache, tracker, log, sink: sink(codecD.encode, (r) => stream.receive(request(r.type_url, r.nonce))) });
    for (const t of kinds) stream.receive(request(t, ''));
  }
  const ackAll = (): void => {
    while (acks.length > 0) acks.shift()?.();
  };
  cache.setSnapshot(nodeId, { version: 'empty', resources: {} });
  ackAll();

  const publish = (input: SnapshotInput): { buildMs: number; consistencyMs: number; publishMs: number; encodeMs: number; bytes: number } => {
    const prev = cache.getSnapshot(nodeId)?.snapshot;
    const [snap, buildMs] = time(() => buildSnapshot(input, undefined, prev));
    const [, consistencyMs] = time(() => checkConsistency(snap));
    encodeMs = 0;
    bytes = 0;
    const [, publishMs] = time(() => cache.setSnapshot(nodeId, snap, { skipConsistency: true }));
    const out = { buildMs, consistencyMs, publishMs, encodeMs, bytes };
    ackAll();
    return out;
  };
  const first = publish({ version: 'full', resources: res });
  if (first.bytes === 0) throw new Error(`${mode} N=${n}: the stream was sent nothing`);

  const fresh = resources(n);
  const c0 = fresh.clusters[0];
  if (c0) c0.connect_timeout = '2s';
  const change = publish({ version: 'change', resources: fresh });
  if (change.bytes === 0) throw new Error(`${mode} N=${n}: the change was not sent`);

  const same = { clusters: [...fresh.clusters], listeners: fresh.listeners };
  same.clusters[0] = { ...c0, connect_timeout: '3s' };
  const prev = cache.getSnapshot(nodeId)?.snapshot;
  const [, sameObjectsBuildMs] = time(() => buildSnapshot({ version: 'same', resources: same }, undefined, prev));
  return { n, mode, packMs, hashMs, buildMs: first.buildMs, consistencyMs: first.consistencyMs, publishMs: first.publishMs, encodeMs: first.encodeMs, bytes: first.bytes, change, sameObjectsBuildMs };
}

/** Markdown table of the rows (ms; medians are the caller's business). */
export function phaseTable(rows: PhaseRow[]): string[] {
  const head = [
    'N',
    'mode',
    'pack alone',
    'hash alone',
    'build',
    'consistency',
    'publish',
    'of which encode',
    'response MB',
    'change: build',
    'change: consistency',
    'change: publish',
    'change: of which encode',
    'change, same objects: build',
  ];
  const f = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(0));
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map(
      (r) =>
        `| ${[
          r.n,
          r.mode,
          f(r.packMs),
          f(r.hashMs),
          f(r.buildMs),
          f(r.consistencyMs),
          f(r.publishMs),
          f(r.encodeMs),
          (r.bytes / 1e6).toFixed(2),
          f(r.change.buildMs),
          f(r.change.consistencyMs),
          f(r.change.publishMs),
          f(r.change.encodeMs),
          f(r.sameObjectsBuildMs),
        ].join(' | ')} |`,
    ),
  ];
}
