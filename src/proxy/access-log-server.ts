/**
 * Envoy's access logs, received over gRPC ALS
 * (envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs) on a unix
 * socket, turned into L7 flow records: who asked what, and what the proxy
 * answered (a policy denial shows as 403 with response code details
 * "rbac_access_denied…").
 *
 *   const als = new AccessLogServer({ socketPath, onRecord: (r) => … });
 *   await als.listen();   // the bootstrap's meshd-als cluster points here
 *   als.recent();         // last N records, for the CLI
 *   als.subscribe((rs) => …);  // the records of each message Envoy sends, as they arrive
 */
import * as grpc from '@grpc/grpc-js';
import { z } from 'zod';
import { prepareSocketPath } from '../util/unix-socket.js';
import { accessLogDecoder } from './access-log-decode.js';

export interface L7FlowRecord {
  time: string;
  logName: string;
  source: string;
  destination: string;
  method: string;
  authority: string;
  path: string;
  status: number;
  /** Envoy's response code details, e.g. "via_upstream" or "rbac_access_denied_matched_policy[none]". */
  details: string;
  verdict: 'FORWARDED' | 'DENIED' | 'ERROR';
  /** From the request's start to the last byte sent downstream (Envoy's time_to_last_downstream_tx_byte), when Envoy reports it. */
  latencyNs?: number;
  /** "HTTP/1.0", "HTTP/1.1", "HTTP/2" or "HTTP/3", when Envoy reports it. */
  protocol?: string;
}

const addr = z
  .object({ socket_address: z.object({ address: z.string().optional(), port_value: z.number().optional() }).optional() })
  .optional();
const httpVersions: Record<string, string> = { HTTP10: 'HTTP/1.0', HTTP11: 'HTTP/1.1', HTTP2: 'HTTP/2', HTTP3: 'HTTP/3' };
const entrySchema = z.object({
  protocol_version: z.string().optional(),
  common_properties: z
    .object({
      downstream_remote_address: addr,
      upstream_remote_address: addr,
      downstream_local_address: addr,
      start_time: z.object({ seconds: z.number().optional(), nanos: z.number().optional() }).optional(),
      time_to_last_downstream_tx_byte: z.object({ seconds: z.number().optional(), nanos: z.number().optional() }).optional(),
    })
    .optional(),
  request: z.object({ request_method: z.string().optional(), authority: z.string().optional(), path: z.string().optional() }).optional(),
  // UInt32Value wrapper, as proto-loader decodes it.
  response: z.object({ response_code: z.object({ value: z.number().optional() }).optional(), response_code_details: z.string().optional() }).optional(),
});
const messageSchema = z.object({
  identifier: z.object({ log_name: z.string().optional() }).optional(),
  http_logs: z.object({ log_entry: z.array(z.unknown()) }).optional(),
});

/**
 * AccessLogService with the decoder of access-log-decode.ts for the client's messages (a generic
 * decoder would materialise every field Envoy sends); the reply is an empty StreamAccessLogsResponse.
 */
const ALS_SERVICE = (decode: (b: Uint8Array) => unknown): grpc.ServiceDefinition => ({
  StreamAccessLogs: {
    path: '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs',
    requestStream: true,
    responseStream: false,
    requestSerialize: () => Buffer.alloc(0),
    requestDeserialize: decode,
    responseSerialize: () => Buffer.alloc(0),
    responseDeserialize: () => ({}),
  },
});

const fmt = (a: z.infer<typeof addr>) => (a?.socket_address ? `${a.socket_address.address ?? '?'}:${a.socket_address.port_value ?? 0}` : '');

export class AccessLogServer {
  private server: grpc.Server | null = null;
  private readonly ring: L7FlowRecord[] = [];
  private readonly listeners = new Set<(rs: readonly L7FlowRecord[]) => void>();
  readonly counters = { forwarded: 0, denied: 0, error: 0, malformed: 0 };

  constructor(private readonly opts: { socketPath: string; keep?: number; onRecord?: (r: L7FlowRecord) => void }) {}

  async listen(): Promise<void> {
    const decode = accessLogDecoder();
    const server = new grpc.Server();
    server.addService(ALS_SERVICE(decode), {
      StreamAccessLogs: (call: grpc.ServerReadableStream<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => {
        let logName = '';
        call.on('data', (msg: unknown) => {
          logName = this.handle(msg, logName);
        });
        call.on('end', () => done(null, {}));
        call.on('error', () => undefined);
      },
    });
    await prepareSocketPath(this.opts.socketPath, 'access-log server');
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${this.opts.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
  }

  /**
   * Hears every record as it arrives (the flow observer), a message's records in one call: Envoy
   * batches entries (buffer_size_bytes, buffer_flush_interval) and so does the store. Returns the
   * unsubscribe function.
   */
  subscribe(fn: (rs: readonly L7FlowRecord[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  recent(): L7FlowRecord[] {
    return [...this.ring];
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.tryShutdown(() => r()));
  }

  /** One decoded StreamAccessLogsMessage; returns the stream's log name (sent with its first message only). */
  handle(msg: unknown, logName: string): string {
    const m = messageSchema.safeParse(msg);
    if (!m.success) {
      this.counters.malformed += 1;
      return logName;
    }
    const name = m.data.identifier?.log_name ?? logName;
    const batch: L7FlowRecord[] = [];
    for (const raw of m.data.http_logs?.log_entry ?? []) {
      const rec = this.record(name, raw);
      if (rec) batch.push(rec);
    }
    if (batch.length > 0) for (const l of this.listeners) l(batch);
    return name;
  }

  private record(logName: string, raw: unknown): L7FlowRecord | null {
    const e = entrySchema.safeParse(raw);
    if (!e.success) {
      this.counters.malformed += 1;
      return null;
    }
    const status = e.data.response?.response_code?.value ?? 0;
    const details = e.data.response?.response_code_details ?? '';
    const st = e.data.common_properties?.start_time;
    const verdict = details.startsWith('rbac_access_denied') ? 'DENIED' : status === 0 || details !== 'via_upstream' ? 'ERROR' : 'FORWARDED';
    this.counters[verdict === 'FORWARDED' ? 'forwarded' : verdict === 'DENIED' ? 'denied' : 'error'] += 1;
    const rec: L7FlowRecord = {
      time: new Date(((st?.seconds ?? 0) * 1000 + (st?.nanos ?? 0) / 1e6) || Date.now()).toISOString(),
      logName,
      source: fmt(e.data.common_properties?.downstream_remote_address),
      destination: fmt(e.data.common_properties?.downstream_local_address),
      method: e.data.request?.request_method ?? '',
      authority: e.data.request?.authority ?? '',
      path: e.data.request?.path ?? '',
      status,
      details,
      verdict,
    };
    const lat = e.data.common_properties?.time_to_last_downstream_tx_byte;
    if (lat) rec.latencyNs = (lat.seconds ?? 0) * 1e9 + (lat.nanos ?? 0);
    const proto = httpVersions[e.data.protocol_version ?? ''];
    if (proto) rec.protocol = proto;
    this.ring.push(rec);
    if (this.ring.length > (this.opts.keep ?? 1000)) this.ring.shift();
    this.opts.onRecord?.(rec);
    return rec;
  }
}
