/**
 * The relay: one observer.Observer API for a cluster, over every node's
 * observer. GetFlows is asked of each connected node with the same request;
 * the answers are merged in time order (history: all of them sorted, then the
 * first or last N; follow: a sort buffer of at most 100 flows drained after
 * 1 s, as Hubble Relay does) and a node that fails shows as a NodeStatusEvent
 * in the stream. ServerStatus adds up the nodes' numbers and names the
 * unavailable ones; GetNodes lists every node with its state.
 *
 *   const relay = new Relay({ peers: [{ name: 'node-1', address: 'unix:///var/run/meshd/hubble.sock' }] });
 *   await relay.listen({ socketPath, listenAddress: ':4245' });  …  await relay.close();
 *
 * Peers are a static list (`meshd relay --peer NAME=ADDR`); finding them from
 * the Kubernetes Node objects is not implemented yet.
 */
import * as grpc from '@grpc/grpc-js';
import { chmodSync } from 'node:fs';
import { z } from 'zod';
import { MeshdError } from '../util/errors.js';
import { prepareSocketPath } from '../util/unix-socket.js';
import { timestampNs, type Timestamp } from './flow.js';
import { parseFlowsResponse } from './flow-schema.js';
import { addHealthService } from './health.js';
import { batchWrites, observerService } from './observer-server.js';
import { HUBBLE_CHANNEL_OPTIONS, loadHubbleProtos } from './protos.js';

export interface RelayPeer {
  name: string;
  /** unix:///path or host:port */
  address: string;
}

export class RelayPeerError extends MeshdError {
  constructor(message: string) {
    super('MESHD_OBSERVE_RELAY_PEER', message, { kind: 'invalid' });
  }
}

/** "name=unix:///path" or "name=host:port" → a peer. */
export function parsePeer(s: string): RelayPeer {
  const eq = s.indexOf('=');
  const name = eq > 0 ? s.slice(0, eq) : '';
  const address = eq > 0 ? s.slice(eq + 1) : '';
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || !(address.startsWith('unix://') || /^[^\s/]+:\d+$/.test(address))) {
    throw new RelayPeerError(`--peer "${s}": expected NAME=unix:///path or NAME=host:port`);
  }
  return { name, address };
}

const target = (address: string) => (address.startsWith('unix://') ? `unix:${address.slice('unix://'.length)}` : address);

const Status = z.object({
  num_flows: z.string().default('0'),
  max_flows: z.string().default('0'),
  seen_flows: z.string().default('0'),
  uptime_ns: z.string().default('0'),
  version: z.string().default(''),
  flows_rate: z.number().default(0),
});
type PeerStatus = z.output<typeof Status>;

type Response = Record<string, unknown> & { time?: Timestamp };

interface Conn {
  peer: RelayPeer;
  client: grpc.Client;
  call<T>(method: string, req: unknown, deadlineMs: number): Promise<T>;
  stream(req: unknown): grpc.ClientReadableStream<unknown>;
}

const SORT_BUFFER_MAX = 100;
const SORT_BUFFER_DRAIN_MS = 1000;

function responseNs(r: Response): bigint {
  const t = r.time;
  return t ? timestampNs(t) : 0n;
}

export class Relay {
  private readonly conns: Conn[];
  private server: grpc.Server | null = null;
  private readonly open = new Set<() => void>();
  readonly startedNs = process.hrtime.bigint();

  constructor(private readonly opts: { peers: readonly RelayPeer[]; version?: string; deadlineMs?: number }) {
    const { Observer } = loadHubbleProtos();
    this.conns = opts.peers.map((peer) => {
      const client = new Observer(target(peer.address), grpc.credentials.createInsecure(), HUBBLE_CHANNEL_OPTIONS);
      const fn = (method: string): ((...a: unknown[]) => unknown) => {
        const m: unknown = Reflect.get(client, method);
        if (typeof m !== 'function') throw new MeshdError('MESHD_OBSERVE_PROTOS_MISSING', `observer.Observer has no ${method}`, { kind: 'failed' });
        return (...a: unknown[]) => Reflect.apply(m, client, a);
      };
      return {
        peer,
        client,
        call: <T>(method: string, req: unknown, deadlineMs: number) =>
          new Promise<T>((resolve, reject) => {
            fn(method)(req, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
          }),
        stream: (req: unknown): grpc.ClientReadableStream<unknown> => {
          const m = client.getFlows;
          if (typeof m !== 'function') throw new MeshdError('MESHD_OBSERVE_PROTOS_MISSING', 'observer.Observer has no GetFlows', { kind: 'failed' });
          const s: grpc.ClientReadableStream<unknown> = m.call(client, req);
          return s;
        },
      };
    });
  }

  /** Each node's status, or the reason it is unavailable. */
  async peerStatuses(): Promise<Array<{ peer: RelayPeer; status?: PeerStatus; error?: string }>> {
    const deadline = this.opts.deadlineMs ?? 2000;
    return Promise.all(
      this.conns.map(async (c) => {
        try {
          const raw = await c.call<unknown>('serverStatus', {}, deadline);
          const st = Status.safeParse(raw);
          return st.success ? { peer: c.peer, status: st.data } : { peer: c.peer, error: 'malformed ServerStatus' };
        } catch (e) {
          return { peer: c.peer, error: e instanceof Error ? e.message : String(e) };
        }
      }),
    );
  }

  async listen(o: { socketPath?: string; listenAddress?: string }): Promise<number | undefined> {
    const server = new grpc.Server();
    server.addService(observerService().service, {
      GetFlows: (call: grpc.ServerWritableStream<unknown, unknown>) => void this.getFlows(call),
      GetAgentEvents: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not relayed' }),
      GetDebugEvents: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not relayed' }),
      ServerStatus: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => {
        void this.peerStatuses().then((all) => {
          const up = all.filter((a) => a.status);
          const sum = (k: 'num_flows' | 'max_flows' | 'seen_flows') => up.reduce((acc, a) => acc + BigInt(a.status?.[k] ?? '0'), 0n).toString();
          cb(null, {
            num_flows: sum('num_flows'),
            max_flows: sum('max_flows'),
            seen_flows: sum('seen_flows'),
            uptime_ns: String(process.hrtime.bigint() - this.startedNs),
            num_connected_nodes: { value: up.length },
            num_unavailable_nodes: { value: all.length - up.length },
            unavailable_nodes: all.filter((a) => !a.status).map((a) => a.peer.name),
            version: `meshd-relay ${this.opts.version ?? ''}`.trim(),
            flows_rate: up.reduce((acc, a) => acc + (a.status?.flows_rate ?? 0), 0),
          });
        });
      },
      GetNodes: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => {
        void this.peerStatuses().then((all) =>
          cb(null, {
            nodes: all.map((a) => ({
              name: a.peer.name,
              address: a.peer.address,
              state: a.status ? 'NODE_CONNECTED' : 'NODE_UNAVAILABLE',
              ...(a.status ? { version: a.status.version, uptime_ns: a.status.uptime_ns, num_flows: a.status.num_flows, max_flows: a.status.max_flows, seen_flows: a.status.seen_flows } : {}),
            })),
          }),
        );
      },
      GetNamespaces: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => {
        const deadline = this.opts.deadlineMs ?? 2000;
        void Promise.all(this.conns.map((c) => c.call<unknown>('getNamespaces', {}, deadline).catch(() => ({})))).then((all) => {
          const seen = new Map<string, { cluster: string; namespace: string }>();
          for (const r of all) {
            const p = z.object({ namespaces: z.array(z.object({ cluster: z.string().default(''), namespace: z.string().default('') })).default([]) }).safeParse(r);
            for (const n of p.success ? p.data.namespaces : []) seen.set(`${n.cluster}/${n.namespace}`, n);
          }
          cb(null, { namespaces: [...seen.values()].sort((a, b) => a.namespace.localeCompare(b.namespace)) });
        });
      },
    });
    addHealthService(server);
    if (o.socketPath) {
      await prepareSocketPath(o.socketPath, 'Hubble relay');
      await this.bind(server, `unix:${o.socketPath}`);
      chmodSync(o.socketPath, 0o600);
    }
    let port: number | undefined;
    if (o.listenAddress) port = await this.bind(server, o.listenAddress.startsWith(':') ? `0.0.0.0${o.listenAddress}` : o.listenAddress);
    this.server = server;
    return port;
  }

  private bind(server: grpc.Server, address: string): Promise<number> {
    return new Promise((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(new MeshdError('MESHD_OBSERVE_LISTEN', `relay: cannot listen on ${address}: ${err.message}`, { kind: 'conflict', cause: err })) : resolve(p))),
    );
  }

  private async getFlows(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
    const req = call.request;
    batchWrites(call);
    const follow = z.object({ follow: z.boolean().optional() }).safeParse(req).data?.follow ?? false;
    const number = Number(z.object({ number: z.string().optional() }).safeParse(req).data?.number ?? '0');
    const first = z.object({ first: z.boolean().optional() }).safeParse(req).data?.first ?? false;
    const statuses = await this.peerStatuses();
    const nodeStatus = (state: string, names: string[], message = '') => ({ response_types: 'node_status', node_status: { state_change: state, node_names: names, message }, node_name: '' });
    const down = statuses.filter((s) => !s.status);
    if (down.length > 0) call.write(nodeStatus('NODE_UNAVAILABLE', down.map((d) => d.peer.name)));
    const up = this.conns.filter((c) => statuses.find((s) => s.peer.name === c.peer.name)?.status);

    const streams: Array<grpc.ClientReadableStream<unknown>> = [];
    let cancelled = false;
    const stop = () => {
      cancelled = true;
      for (const s of streams) s.cancel();
    };
    this.open.add(stop);
    call.on('cancelled', stop);

    // Sort buffer: flows from every node ordered by time; in follow mode drained when full or after the drain timeout.
    const buffer: Array<{ ns: bigint; at: number; r: Response }> = [];
    const send = (r: Response) => {
      if (!cancelled) call.write(r);
    };
    const drain = (all: boolean) => {
      buffer.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
      const now = Date.now();
      while (buffer.length > 0 && (all || buffer.length > SORT_BUFFER_MAX || (buffer[0]?.at ?? now) <= now - SORT_BUFFER_DRAIN_MS)) {
        const e = buffer.shift();
        if (e) send(e.r);
      }
    };
    const timer = follow ? setInterval(() => drain(false), 100) : null;

    await Promise.all(
      up.map(
        (c) =>
          new Promise<void>((resolve) => {
            const s = c.stream(req);
            streams.push(s);
            s.on('data', (msg: unknown) => {
              let parsed;
              try {
                parsed = parseFlowsResponse(msg);
              } catch (e) {
                send(nodeStatus('NODE_ERROR', [c.peer.name], e instanceof Error ? e.message : String(e)));
                return;
              }
              if (parsed.kind === 'node_status') return;
              const r = z.record(z.string(), z.unknown()).parse(msg);
              const nsTime = parsed.kind === 'flow' ? timestampNs(parsed.flow.time) : responseNs(r);
              const out: Response = { ...r, node_name: c.peer.name };
              buffer.push({ ns: nsTime, at: Date.now(), r: out });
              if (follow) drain(false);
            });
            s.on('error', (e: grpc.ServiceError) => {
              if (e.code !== grpc.status.CANCELLED) send(nodeStatus('NODE_ERROR', [c.peer.name], e.details || e.message));
              resolve();
            });
            s.on('end', () => resolve());
          }),
      ),
    );
    if (timer) clearInterval(timer);
    this.open.delete(stop);
    if (cancelled) return;
    if (!follow && number > 0) {
      // Each node answered with up to N; the cluster's first or last N of them.
      buffer.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
      const flows = buffer.filter((e) => e.r.response_types === 'flow');
      const keep = new Set(first ? flows.slice(0, number) : flows.slice(-number));
      const rest = buffer.filter((e) => e.r.response_types !== 'flow' || keep.has(e));
      buffer.length = 0;
      buffer.push(...rest);
    }
    drain(true);
    call.end();
  }

  /** Ends open streams, stops listening and closes the peer connections. Idempotent. */
  async close(): Promise<void> {
    for (const s of this.open) s();
    this.open.clear();
    const srv = this.server;
    this.server = null;
    if (srv) await new Promise<void>((r) => srv.tryShutdown(() => r()));
    for (const c of this.conns) c.client.close();
  }
}
