/**
 * Hubble's `observer.Observer` gRPC service over a FlowObserver: GetFlows
 * (filters, follow, since/until, first/last N, lost events), ServerStatus,
 * GetNodes and GetNamespaces, on a unix socket (hubble.socketPath) and
 * optionally TCP (hubble.listenAddress). The real `hubble` CLI talks to it
 * unchanged: `hubble observe --server unix://<socket>`.
 *
 *   const srv = new ObserverServer({ observer, socketPath: join(stateDir, 'hubble.sock') });
 *   await srv.listen();  …  await srv.close();   // close is idempotent
 *
 * Requests are validated once here (zod); a filter meshd cannot evaluate is
 * INVALID_ARGUMENT before any flow is sent. Agent and debug events are not
 * produced by meshd (UNIMPLEMENTED).
 */
import * as grpc from '@grpc/grpc-js';
import { chmodSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { z } from 'zod';
import { isMeshdError, MeshdError } from '../util/errors.js';
import { prepareSocketPath } from '../util/unix-socket.js';
import { timestampNs } from './flow.js';
import type { FlowObserver, FlowsResponse, FlowsSink, StoreEntry } from './observer.js';
import { addHealthService } from './health.js';
import { flowsResponseEncoder } from './flow-codec.js';
import { HubbleProtosMissingError, loadHubbleProtos } from './protos.js';

export class ObserverListenError extends MeshdError {
  constructor(message: string, cause?: unknown) {
    super('MESHD_OBSERVE_LISTEN', message, { kind: 'conflict', cause });
  }
}

const timestamp = z.object({ seconds: z.string().regex(/^-?\d+$/).optional(), nanos: z.number().int().optional() });
const GetFlowsRequest = z.object({
  number: z.string().regex(/^\d+$/).optional(),
  first: z.boolean().optional(),
  follow: z.boolean().optional(),
  whitelist: z.array(z.unknown()).optional(),
  blacklist: z.array(z.unknown()).optional(),
  since: timestamp.optional(),
  until: timestamp.optional(),
  // Accepted and not applied: meshd always sends whole flows.
  field_mask: z.unknown().optional(),
  experimental: z.unknown().optional(),
  extensions: z.unknown().optional(),
});

/**
 * Bytes a GetFlows stream may hold unsent (in grpc-js and HTTP/2, not yet in the socket) before the
 * observer waits for it to drain: about 75,000 flows, so that a follower whose process is not
 * scheduled for a moment (or whose terminal is slow) is not lapped by a busy store at once. Past it
 * the follower reads from the store again and is told what it lost.
 */
export const FOLLOWER_BUFFER_BYTES = 16 * 1024 * 1024;

const tsNs = (t: z.infer<typeof timestamp> | undefined) => (t ? timestampNs({ seconds: t.seconds ?? '0', nanos: t.nanos ?? 0 }) : undefined);

/**
 * grpc-js's server stream hands HTTP/2 one message at a time and waits for that write's callback
 * before the next (it has `_write` only), so a follower would get at most one flow per event-loop
 * turn. With `_writev`, Node's Writable hands over everything buffered at once: each message still
 * goes through the stream's own `_write` (serialization, framing), and HTTP/2 sends them together.
 */
export function batchWrites(w: Writable): void {
  const write = w._write.bind(w);
  w._writev = (chunks, cb) => {
    let left = chunks.length;
    let failed = false;
    for (const c of chunks) {
      write(c.chunk, c.encoding, (err) => {
        if (failed) return;
        if (err) {
          failed = true;
          cb(err);
        } else if (--left === 0) cb();
      });
    }
  };
}

export interface ObserverServerOptions {
  observer: FlowObserver;
  /** Unsent bytes per GetFlows stream before the stream waits (default FOLLOWER_BUFFER_BYTES). */
  followerBufferBytes?: number;
  socketPath: string;
  /** "host:port" for a TCP listener as well (Cilium's hubble.listenAddress, e.g. ":4244"); none when empty. */
  listenAddress?: string;
  /** This node's address as GetNodes reports it. */
  nodeAddress?: string;
}

function grpcError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/**
 * Hubble's observer.Observer service definition with GetFlows responses encoded by the one-pass
 * encoder (flow-codec.ts; a response it cannot write goes through proto-loader's), and passed
 * through as they are when already encoded (a store entry's cached bytes). Shared by the node's
 * observer and the relay.
 */
export function observerService(): { service: grpc.ServiceDefinition; encode: (v: unknown) => Buffer } {
  const { Observer, dir } = loadHubbleProtos();
  const getFlowsDef = Observer.service.GetFlows;
  if (!getFlowsDef) throw new HubbleProtosMissingError('observer.Observer has no GetFlows in the loaded protos');
  const slow = getFlowsDef.responseSerialize;
  const fast = flowsResponseEncoder(dir);
  const encode = (v: unknown): Buffer => {
    if (typeof v !== 'object' || v === null) return slow(v);
    try {
      return fast(v);
    } catch (e) {
      if (isMeshdError(e, 'MESHD_OBSERVE_ENCODE')) return slow(v);
      throw e;
    }
  };
  const service: grpc.ServiceDefinition = {
    ...Observer.service,
    GetFlows: { ...getFlowsDef, responseSerialize: (v: unknown) => (v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : encode(v)) },
  };
  return { service, encode };
}

export class ObserverServer {
  private server: grpc.Server | null = null;
  private encode: (v: unknown) => Buffer = () => Buffer.alloc(0);
  private readonly active = new Set<() => void>();
  /** The TCP port bound when listenAddress was given (its port may be 0). */
  tcpPort: number | undefined;

  constructor(private readonly opts: ObserverServerOptions) {}

  async listen(): Promise<void> {
    const obs = this.opts.observer;
    const server = new grpc.Server();
    const { service, encode } = observerService();
    this.encode = encode;
    const unimplemented = (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', grpcError(grpc.status.UNIMPLEMENTED, 'meshd produces no agent or debug events'));
    server.addService(service, {
      GetFlows: (call: grpc.ServerWritableStream<unknown, unknown>) => this.getFlows(call),
      GetAgentEvents: unimplemented,
      GetDebugEvents: unimplemented,
      ServerStatus: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        cb(null, { ...obs.status(), num_connected_nodes: { value: 1 }, num_unavailable_nodes: { value: 0 } });
      },
      GetNodes: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const s = obs.status();
        cb(null, {
          nodes: [
            {
              name: obs.nodeName,
              version: s.version,
              address: this.opts.nodeAddress ?? '',
              state: 'NODE_CONNECTED',
              uptime_ns: s.uptime_ns,
              num_flows: s.num_flows,
              max_flows: s.max_flows,
              seen_flows: s.seen_flows,
            },
          ],
        });
      },
      GetNamespaces: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const seen = new Set<string>();
        for (let pos = obs.ring.tail; pos < obs.ring.head; pos += 1) {
          const f = obs.ring.at(pos).flow;
          if (!f) continue;
          if (f.source.namespace) seen.add(f.source.namespace);
          if (f.destination.namespace) seen.add(f.destination.namespace);
        }
        cb(null, { namespaces: [...seen].sort().map((namespace) => ({ cluster: '', namespace })) });
      },
    });
    addHealthService(server);
    await prepareSocketPath(this.opts.socketPath, 'Hubble observer');
    await this.bind(server, `unix:${this.opts.socketPath}`);
    chmodSync(this.opts.socketPath, 0o600);
    if (this.opts.listenAddress) {
      const a = this.opts.listenAddress;
      this.tcpPort = await this.bind(server, a.startsWith(':') ? `0.0.0.0${a}` : a);
    }
    this.server = server;
  }

  private bind(server: grpc.Server, address: string): Promise<number> {
    return new Promise((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(new ObserverListenError(`Hubble observer: cannot listen on ${address}: ${err.message}`, err)) : resolve(port),
      ),
    );
  }

  private getFlows(call: grpc.ServerWritableStream<unknown, unknown>): void {
    const parsed = GetFlowsRequest.safeParse(call.request);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      call.emit('error', grpcError(grpc.status.INVALID_ARGUMENT, `GetFlowsRequest.${(i?.path ?? []).map(String).join('.')}: ${i?.message ?? 'invalid'}`));
      return;
    }
    const r = parsed.data;
    batchWrites(call);
    const budget = this.opts.followerBufferBytes ?? FOLLOWER_BUFFER_BYTES;
    const encode = this.encode;
    // Unsent bytes of this stream: counted up on write, down when grpc-js handed the message to HTTP/2.
    let unsent = 0;
    let waiter: (() => void) | null = null;
    const sent = (n: number) => () => {
      unsent -= n;
      if (waiter && unsent <= budget / 2) {
        const w = waiter;
        waiter = null;
        w();
      }
    };
    const sink: FlowsSink = {
      // The stream's own high-water mark is 16 messages: a follower would wait for a drain every 16
      // flows. Keep writing up to `budget` unsent bytes; past it, wait until half of them went out.
      write: (resp: FlowsResponse, entry?: StoreEntry) => {
        const bytes = entry ? (entry.encoded ??= encode(resp)) : encode(resp);
        unsent += bytes.byteLength;
        call.write(bytes, sent(bytes.byteLength));
        return unsent < budget;
      },
      drained: () =>
        new Promise<void>((resolve) => {
          const done = () => {
            waiter = null;
            call.off('cancelled', done);
            resolve();
          };
          waiter = done;
          call.on('cancelled', done);
        }),
      end: () => call.end(),
    };
    let q: { done: Promise<void>; cancel(): void };
    try {
      q = this.opts.observer.getFlows(
        {
          number: Number(r.number ?? '0'),
          first: r.first ?? false,
          follow: r.follow ?? false,
          ...(r.since ? { sinceNs: tsNs(r.since) } : {}),
          ...(r.until ? { untilNs: tsNs(r.until) } : {}),
          whitelist: r.whitelist ?? [],
          blacklist: r.blacklist ?? [],
        },
        sink,
      );
    } catch (e) {
      call.emit('error', grpcError(isMeshdError(e) && e.kind === 'invalid' ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL, e instanceof Error ? e.message : String(e)));
      return;
    }
    const stop = () => {
      q.cancel();
      call.end();
    };
    this.active.add(stop);
    call.on('cancelled', q.cancel);
    void q.done.finally(() => this.active.delete(stop));
  }

  /** Stops listening and ends every open GetFlows stream. Idempotent. */
  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    for (const c of this.active) c();
    this.active.clear();
    if (s) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          s.forceShutdown();
          resolve();
        }, 2000);
        s.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}
