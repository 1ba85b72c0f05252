/**
 * The xDS gRPC server: ADS (state-of-the-world and delta) and the per-type
 * services (LDS, CDS, RDS, EDS, SDS: Stream*, Delta*, Fetch*), over one
 * snapshot cache.
 *
 *   const server = new XdsServer();
 *   const bound = await server.listen('unix:/run/meshd/xds.sock');
 *   server.setSnapshot('node-1', { version: 'v1', resources: { … } });
 *   await server.waitForAck('node-1', 'v1', { kinds: ['listeners'], timeoutMs: 10_000 });
 *   await server.close();
 *
 * Requests arrive as raw bytes and are decoded here (protobuf, then zod): an
 * undecodable request or an unknown type URL ends that stream alone with
 * INVALID_ARGUMENT. Streams are adapted to the handlers' ResponseSink; the
 * handlers hold all protocol state.
 */
import { lstatSync, rmSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { AckTracker, type NodeStatus } from './ack-tracker.js';
import { type CachedSnapshot, SnapshotCache, type SnapshotCacheOptions } from './cache.js';
import { XdsError } from './errors.js';
import { DEFAULT_LISTEN, type ListenAddress, grpcTarget, parseListenAddress, prepareUnixSocket, restrictUnixSocket } from './listen.js';
import { type XdsLogger, stderrLogger } from './log.js';
import { type MessageCodec, deltaCodec, sotwCodec } from './messages.js';
import { XdsMetrics } from './metrics.js';
import { xdsProtos } from './protos.js';
import { type Snapshot, type SnapshotInput, snapshotCounts } from './snapshot.js';
import { DeltaStream } from './stream-delta.js';
import { SotwStream } from './stream-sotw.js';
import type { ResponseSink, StreamFailure } from './stream.js';
import { KIND_ORDER, type ResourceKind, TYPE_URL } from './type-urls.js';

export interface XdsServerOptions extends SnapshotCacheOptions {
  cache?: SnapshotCache;
  log?: XdsLogger;
  /** prom-client registry for the server's metrics (default: a private one). */
  registry?: Registry;
}

export interface BoundAddress {
  address: ListenAddress;
  /** grpc target a client dials ("unix:/path" or "127.0.0.1:port"). */
  target: string;
}

const SERVICES: Array<{ service: string; kind?: ResourceKind }> = [
  { service: 'envoy.service.discovery.v3.AggregatedDiscoveryService' },
  { service: 'envoy.service.cluster.v3.ClusterDiscoveryService', kind: 'clusters' },
  { service: 'envoy.service.endpoint.v3.EndpointDiscoveryService', kind: 'endpoints' },
  { service: 'envoy.service.listener.v3.ListenerDiscoveryService', kind: 'listeners' },
  { service: 'envoy.service.route.v3.RouteDiscoveryService', kind: 'routes' },
  { service: 'envoy.service.secret.v3.SecretDiscoveryService', kind: 'secrets' },
];

const GRPC_STATUS: Record<StreamFailure, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
};

const identity = (b: Buffer): Buffer => b;

/** What the transport needs from a stream handler. */
interface StreamHandler<Req> {
  receive(req: Req): void;
  fail(code: StreamFailure, message: string): void;
  close(): void;
}

function statusError(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details });
}

function inode(path: string): number | undefined {
  try {
    return lstatSync(path).ino;
  } catch {
    // no file (or none we may see): there is no inode to compare with
    return undefined;
  }
}

interface SnapshotSummary {
  version: string;
  seq: number;
  typeVersions: Readonly<Record<ResourceKind, string>>;
  nonEmpty: ReadonlySet<ResourceKind>;
}

export interface WaitForAckOptions {
  /** Types that must be ACKed (default: every type the snapshot has resources of). */
  kinds?: readonly ResourceKind[];
  timeoutMs?: number;
  signal?: AbortSignal;
}

export class XdsServer {
  readonly cache: SnapshotCache;
  readonly tracker = new AckTracker();
  readonly metrics: XdsMetrics;
  readonly log: XdsLogger;
  private readonly grpcServer: grpc.Server;
  private readonly streams = new Set<{ close(): void }>();
  /** Recent snapshots per group, without their resources (waitForAck looks versions up here). */
  private readonly history = new Map<string, SnapshotSummary[]>();
  private bound: BoundAddress | undefined;
  private socketIno: number | undefined;
  private closing: Promise<void> | undefined;

  constructor(opts: XdsServerOptions = {}) {
    this.cache = opts.cache ?? new SnapshotCache(opts);
    this.log = opts.log ?? stderrLogger;
    this.metrics = new XdsMetrics(opts.registry);
    this.grpcServer = new grpc.Server({
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      // notice a peer that vanished without closing (TCP): its streams and watches are released
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
    this.cache.onSnapshot((group, snap) => {
      const h = this.history.get(group) ?? [];
      const nonEmpty = new Set(KIND_ORDER.filter((k) => snap.snapshot.types[k].items.size > 0));
      h.push({ version: snap.snapshot.version, seq: snap.seq, typeVersions: snap.typeVersions, nonEmpty });
      if (h.length > 64) h.shift();
      this.history.set(group, h);
      this.tracker.changed();
    });
    this.addServices();
  }

  private addServices(): void {
    const root = xdsProtos();
    for (const { service, kind } of SERVICES) {
      const svc = root.lookupService(service);
      const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
      const impl: grpc.UntypedServiceImplementation = {};
      for (const m of svc.methodsArray) {
        definition[m.name] = {
          path: `/${service}/${m.name}`,
          requestStream: m.requestStream === true,
          responseStream: m.responseStream === true,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
          originalName: m.name,
        };
        if (m.requestStream !== true) {
          impl[m.name] = this.fetchHandler(kind);
        } else if (m.requestType.endsWith('DeltaDiscoveryRequest')) {
          impl[m.name] = this.streamHandler('delta', kind);
        } else {
          impl[m.name] = this.streamHandler('sotw', kind);
        }
      }
      this.grpcServer.addService(definition, impl);
    }
  }

  private streamHandler(mode: 'sotw' | 'delta', kind: ResourceKind | undefined): grpc.handleBidiStreamingCall<Buffer, Buffer> {
    return (call) => {
      let ended = false;
      const peer = call.getPeer();
      const attach = <Req, Res>(codec: MessageCodec<Req, Res>, make: (sink: ResponseSink<Res>) => StreamHandler<Req>): void => {
        const sink: ResponseSink<Res> = {
          send: (res) => {
            if (!ended) call.write(codec.encode(res));
          },
          fail: (code, message) => {
            if (ended) return;
            ended = true;
            call.emit('error', statusError(GRPC_STATUS[code], message));
          },
        };
        const handler = make(sink);
        this.streams.add(handler);
        const finish = (): void => {
          handler.close();
          this.streams.delete(handler);
        };
        call.on('data', (buf: Buffer) => {
          const d = codec.decode(buf);
          if (d.ok) handler.receive(d.value);
          else handler.fail('INVALID_ARGUMENT', d.error);
        });
        call.on('end', () => {
          finish();
          if (!ended) {
            ended = true;
            call.end();
          }
        });
        call.on('error', finish);
        call.on('close', finish);
        call.on('cancelled', finish);
      };
      const base = { source: this.cache, tracker: this.tracker, log: this.log, metrics: this.metrics, fixedKind: kind, peer };
      if (mode === 'sotw') attach(sotwCodec(), (sink) => new SotwStream({ ...base, sink }));
      else attach(deltaCodec(), (sink) => new DeltaStream({ ...base, sink }));
    };
  }

  private fetchHandler(kind: ResourceKind | undefined): grpc.handleUnaryCall<Buffer, Buffer> {
    return (call, callback) => {
      const codec = sotwCodec();
      const d = codec.decode(call.request);
      if (!d.ok) return callback(statusError(grpc.status.INVALID_ARGUMENT, d.error));
      const req = d.value;
      if (!req.node?.id) return callback(statusError(grpc.status.INVALID_ARGUMENT, 'request must carry node.id'));
      const want = req.type_url === '' ? kind : KIND_ORDER.find((k) => TYPE_URL[k] === req.type_url);
      if (!want || (kind && want !== kind)) return callback(statusError(grpc.status.INVALID_ARGUMENT, `unknown type_url "${req.type_url}"`));
      const names = new Set(req.resource_names.filter((n) => n !== '*'));
      const r = this.cache.fetch({ id: req.node.id, cluster: req.node.cluster ?? '' }, want, names);
      if (!r) return callback(statusError(grpc.status.UNAVAILABLE, `no snapshot for node ${req.node.id}`));
      callback(null, codec.encode({ version_info: r.version, resources: r.resources.map((x) => x.any), type_url: TYPE_URL[want], nonce: '' }));
    };
  }

  /**
   * Starts serving (default: unix:/run/meshd/xds.sock). `unix:PATH` (socket mode 0600, directory created, stale
   * socket replaced) or a loopback `HOST:PORT` (port 0 picks one).
   */
  async listen(address: string | ListenAddress = DEFAULT_LISTEN): Promise<BoundAddress> {
    if (this.bound) throw new XdsError('MESHD_XDS_ALREADY_LISTENING', `already listening on ${this.bound.target}`);
    const a = typeof address === 'string' ? parseListenAddress(address) : address;
    if (a.kind === 'unix') await prepareUnixSocket(a.path);
    const port = await new Promise<number>((res, rej) => {
      this.grpcServer.bindAsync(grpcTarget(a), grpc.ServerCredentials.createInsecure(), (err, p) => (err ? rej(err) : res(p)));
    });
    if (a.kind === 'unix') {
      restrictUnixSocket(a.path);
      this.socketIno = inode(a.path);
    }
    const actual: ListenAddress = a.kind === 'unix' ? a : { ...a, port };
    this.bound = { address: actual, target: grpcTarget(actual) };
    this.log.info('xDS server listening', { target: this.bound.target });
    return this.bound;
  }

  /** Validates, publishes and logs a snapshot; on error the previous one stays in force. */
  setSnapshot(group: string, input: Snapshot | SnapshotInput): CachedSnapshot {
    try {
      const snap = this.cache.setSnapshot(group, input);
      this.metrics.snapshots.inc({ result: 'published' });
      this.log.info('snapshot published', { group, version: snap.snapshot.version, ...snapshotCounts(snap.snapshot) });
      return snap;
    } catch (e) {
      this.metrics.snapshots.inc({ result: 'rejected' });
      this.log.warn('snapshot rejected', { group, code: e instanceof XdsError ? e.code : 'ERROR', message: e instanceof Error ? e.message : String(e) });
      throw e;
    }
  }

  /** Per-node protocol status (last sent / ACKed / NACKed version per type). */
  status(nodeId: string): NodeStatus | undefined {
    return this.tracker.status(nodeId);
  }

  allStatus(): NodeStatus[] {
    return this.tracker.allStatus();
  }

  /** Forgets the ACK status of a node that is gone for good (AckTracker.forget). */
  forgetNode(nodeId: string): void {
    this.tracker.forget(nodeId);
  }

  /**
   * Resolves once node `nodeId` ACKed snapshot `snapshotVersion` (or a later
   * one) for every type in `kinds`. Rejects with NACKED (carrying Envoy's
   * message) if the node rejects it, ACK_TIMEOUT, or ABORTED.
   */
  waitForAck(nodeId: string, snapshotVersion: string, opts: WaitForAckOptions = {}): Promise<void> {
    return this.tracker.waitFor(
      nodeId,
      (s) => {
        const h = this.history.get(this.cache.nodeGroup(s.node)) ?? [];
        const target = [...h].reverse().find((x) => x.version === snapshotVersion);
        if (!target) return false;
        const kinds = opts.kinds ?? KIND_ORDER.filter((k) => target.nonEmpty.has(k));
        for (const k of kinds) {
          const t = s.types[k];
          const acked = t?.acked;
          const ok = acked?.complete === true && (acked.version === target.typeVersions[k] || acked.seq > target.seq);
          if (ok) continue;
          const n = t?.nacked;
          if (n && n.seq >= target.seq && (!acked || n.nackedAt >= acked.ackedAt)) {
            return new XdsError('MESHD_XDS_NACKED', `node ${nodeId} rejected ${k} of snapshot ${n.snapshotVersion}: ${n.message}`);
          }
          return false;
        }
        return true;
      },
      opts,
    );
  }

  /** Stops serving: ends every stream, closes the socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.resolve().then(() => {
      for (const s of this.streams) s.close();
      this.streams.clear();
      this.grpcServer.forceShutdown();
      const b = this.bound;
      // remove our socket, not one a successor server bound at the same path since
      if (b?.address.kind === 'unix' && this.socketIno !== undefined && inode(b.address.path) === this.socketIno) {
        rmSync(b.address.path, { force: true });
      }
    });
    return this.closing;
  }
}
