/**
 * The Kafka processor of the node's Envoy: a gRPC server implementing
 * envoy.service.network_ext_proc.v3.NetworkExternalProcessor (Envoy 1.40's
 * `envoy.filters.network.ext_proc`). Envoy opens one stream per downstream
 * connection and sends every chunk it reads from the client (read_data) and
 * every chunk the broker sends back (write_data); each is answered with
 * exactly one message carrying the bytes to pass on in that direction
 * (connection.ts decides what they are), or CLOSE. Answering every message
 * matters: the filter closes a connection whose message is not answered
 * within its message_timeout.
 *
 * The filter chain says whose connection it is: its gRPC service sends the
 * initial-metadata header `x-meshd-kafka-policy` with a key the translator
 * made (kafka-listener.ts), or several separated by spaces that must all
 * allow; the rules for each key are looked up for every request, so `setPolicies()` takes effect on the next request of every
 * open connection. An unknown key has no rules: every request is denied.
 *
 *   const p = await KafkaProcessor.start({ socketPath: '<stateDir>/kafka.sock', log });
 *   p.setPolicies(new Map([['ep1/ingress/id1234/9092', [{ role: 'produce', topic: 'orders' }]]]));
 *   await p.close();
 */
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { KafkaRule } from '../policy/types.js';
import type { Logger } from '../util/log.js';
import { grpcTarget, prepareUnixSocket, restrictUnixSocket } from '../../xds/listen.js';
import { xdsProtos } from '../../xds/protos.js';
import { KafkaConnection } from './connection.js';
import { apiName } from './policy.js';

export const POLICY_KEY_HEADER = 'x-meshd-kafka-policy';
const SERVICE = 'envoy.service.network_ext_proc.v3.NetworkExternalProcessor';

export interface KafkaProcessorOptions {
  socketPath: string;
  log: Logger;
}

export interface KafkaProcessorStats {
  streams: number;
  open: number;
  allowed: number;
  denied: number;
  closed: number;
}

interface Data {
  data: Buffer;
  endOfStream: boolean;
}

const identity = (b: Buffer): Buffer => b;

export class KafkaProcessor {
  private policies: ReadonlyMap<string, readonly KafkaRule[]> = new Map();
  private readonly calls = new Set<grpc.ServerDuplexStream<Buffer, Buffer>>();
  private readonly counters: KafkaProcessorStats = { streams: 0, open: 0, allowed: 0, denied: 0, closed: 0 };
  private readonly reqType: protobuf.Type;
  private readonly resType: protobuf.Type;

  private constructor(
    private readonly o: KafkaProcessorOptions,
    private readonly server: grpc.Server,
  ) {
    const root = xdsProtos();
    this.reqType = root.lookupType('envoy.service.network_ext_proc.v3.ProcessingRequest');
    this.resType = root.lookupType('envoy.service.network_ext_proc.v3.ProcessingResponse');
  }

  static async start(o: KafkaProcessorOptions): Promise<KafkaProcessor> {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 128 * 1024 * 1024, 'grpc.max_send_message_length': 128 * 1024 * 1024 });
    const p = new KafkaProcessor(o, server);
    const definition: grpc.ServiceDefinition = {
      Process: {
        path: `/${SERVICE}/Process`,
        requestStream: true,
        responseStream: true,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
        originalName: 'Process',
      },
    };
    server.addService(definition, { Process: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => p.stream(call) });
    await prepareUnixSocket(o.socketPath);
    await new Promise<number>((res, rej) => server.bindAsync(grpcTarget({ kind: 'unix', path: o.socketPath }), grpc.ServerCredentials.createInsecure(), (e, port) => (e ? rej(e) : res(port))));
    restrictUnixSocket(o.socketPath);
    o.log.info('Kafka processor listening', { socket: o.socketPath });
    return p;
  }

  /** The rules per policy key (kafka-listener.ts); replaces the previous table at once. */
  setPolicies(policies: ReadonlyMap<string, readonly KafkaRule[]>): void {
    this.policies = policies;
  }

  stats(): KafkaProcessorStats {
    return { ...this.counters, open: this.calls.size };
  }

  private data(d: unknown): Data | undefined {
    if (typeof d !== 'object' || d === null) return undefined;
    const bytes = 'data' in d && d.data instanceof Uint8Array ? Buffer.from(d.data.buffer, d.data.byteOffset, d.data.byteLength) : Buffer.alloc(0);
    return { data: bytes, endOfStream: 'end_of_stream' in d && d.end_of_stream === true };
  }

  private stream(call: grpc.ServerDuplexStream<Buffer, Buffer>): void {
    this.counters.streams++;
    this.calls.add(call);
    const key = call.metadata.get(POLICY_KEY_HEADER)[0];
    const policyKey = typeof key === 'string' ? key : '';
    // One key, or several separated by spaces that must all allow (kafka-listener.ts).
    const keys = policyKey.split(' ').filter((k) => k !== '');
    const log = this.o.log.child({ policy: policyKey });
    const conn = new KafkaConnection({
      rules: () => keys.map((k) => this.policies.get(k)),
      onDecision: ({ request, verdict }) => {
        if (verdict.verdict === 'allow') this.counters.allowed++;
        else this.counters.denied++;
        if (verdict.verdict !== 'allow') {
          log.debug('Kafka request refused', { api: apiName(request.apiKey), version: request.apiVersion, clientId: request.clientId, topics: request.topics?.map((t) => t.name), verdict });
        }
      },
    });
    let done = false;
    const send = (msg: Record<string, unknown>): void => {
      if (!done) call.write(Buffer.from(this.resType.encode(this.resType.fromObject(msg)).finish()));
    };
    call.on('data', (buf: Buffer) => {
      let msg: { read_data?: unknown; write_data?: unknown };
      try {
        msg = this.reqType.toObject(this.reqType.decode(buf), { defaults: false });
      } catch (e) {
        log.warn('undecodable ext_proc message; closing the connection', { error: e instanceof Error ? e.message : String(e) });
        send({ connection_status: 'CLOSE' });
        return;
      }
      const read = this.data(msg.read_data);
      const write = read ? undefined : this.data(msg.write_data);
      const input = read ?? write;
      if (!input) return; // neither direction: nothing to answer
      const r = read ? conn.onRead(input.data) : conn.onWrite(input.data);
      if (r.close) {
        this.counters.closed++;
        log.info('closing Kafka connection', { reason: r.reason });
        send({ connection_status: 'CLOSE' });
        return;
      }
      const out = { data: r.data, end_of_stream: input.endOfStream };
      send(read ? { read_data: out, data_processing_status: 'MODIFIED' } : { write_data: out, data_processing_status: 'MODIFIED' });
    });
    const finish = (): void => {
      if (done) return;
      done = true;
      this.calls.delete(call);
      call.end();
    };
    call.on('end', finish);
    call.on('error', finish);
    call.on('cancelled', finish);
  }

  async close(): Promise<void> {
    for (const c of this.calls) c.end();
    this.calls.clear();
    await new Promise<void>((r) => this.server.tryShutdown(() => r()));
    this.server.forceShutdown();
  }
}
