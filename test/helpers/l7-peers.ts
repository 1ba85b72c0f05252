/**
 * Drives test/helpers/l7-http-peer.ts inside namespaces: an HTTP server
 * (HTTP/1.1 + HTTP/2 prior knowledge + gRPC-shaped answers) and a client that
 * sends each request on a new connection. Both are killed by the sandbox's
 * cleanup.
 *
 *   const srv = await startHttpServer(sb, nsB, 'B', [8080, 9090]);
 *   const cli = await startHttpClient(sb, nsA, { flows: () => records });
 *   await cli.request({ url: 'http://10.0.0.6:8080/api/v1/users' });
 *   // { kind: 'answered', status: 200, body: 'B 8080 GET …' }, or { kind: 'denied' } (Envoy's 403),
 *   // { kind: 'dropped', reason: 'POLICY_DENY', … } (no SYN-ACK, and the datapath's drop event
 *   // for this connection says why), { kind: 'refused' } (RST), { kind: 'timed-out' }
 *   // (connected, no answer), …
 *
 * A connection whose SYN went unanswered is "dropped" only when the datapath
 * reported dropping it: the client gives its local port, and the flow
 * records (the agent's or an EndpointManager's events) must hold a drop of
 * that very connection. Otherwise it is "unanswered", which no test expects.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { FlowRecord } from '../../src/datapath/endpoint/flow-events.js';
import { ACCESS_DENIED_BODY } from '../../src/proxy/http-connection-manager.js';
import { repoPath } from '../../src/util/paths.js';
import type { Sandbox } from '../../src/devcluster/netns.js';

const PEER_JS = repoPath('dist', 'test', 'helpers', 'l7-http-peer.js');

const answerSchema = z.object({
  id: z.number(),
  status: z.number().optional(),
  body: z.string().optional(),
  grpcStatus: z.string().optional(),
  error: z.object({ code: z.string(), connected: z.boolean(), localPort: z.number().optional(), message: z.string() }).optional(),
});

/** How a request ended, from the client's side and the datapath's. */
export type HttpOutcome =
  /** An HTTP answer that is not the proxy's policy denial. */
  | { kind: 'answered'; status: number; body: string; grpcStatus?: string }
  /** Envoy's RBAC denial: 403 with its "Access denied" body, or gRPC PERMISSION_DENIED (7). */
  | { kind: 'denied'; status: number; body: string; grpcStatus?: string }
  /** No SYN-ACK, and the datapath reported dropping this connection's packet, with the reason. */
  | { kind: 'dropped'; reason: string; direction: 'ingress' | 'egress' }
  /** No SYN-ACK and no drop reported by the datapath: lost somewhere else (`seen`: the datapath's other events for it). */
  | { kind: 'unanswered'; localPort?: number; seen: string[] }
  /** The SYN was answered with a RST. */
  | { kind: 'refused' }
  /** Connected, then reset before an answer. */
  | { kind: 'reset' }
  /** Connected, no answer in time. */
  | { kind: 'timed-out' }
  | { kind: 'error'; code: string; message: string };

export type HttpOutcomeKind = HttpOutcome['kind'];

/** The answer, or fails with the outcome: for requests a test expects to be answered. */
export function answered(o: HttpOutcome): { status: number; body: string; grpcStatus?: string } {
  if (o.kind !== 'answered') throw new Error(`expected an HTTP answer, got ${JSON.stringify(o)}`);
  return o;
}

export interface HttpRequestSpec {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  h2?: boolean;
  grpc?: boolean;
  /** An HTTP/1.1 WebSocket upgrade, then one message: the answer's body is the server's echo. */
  websocket?: boolean;
  timeoutMs?: number;
}

/** `keep` chooses the output lines kept in `lines` (default all); onLine callbacks see every line. */
function spawnIn(sb: Sandbox, ns: string, args: string[], keep: (line: string) => boolean = () => true): { proc: ChildProcessWithoutNullStreams; lines: string[]; onLine: Set<(l: string) => void>; stderr: () => string } {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, PEER_JS, ...args]);
  const lines: string[] = [];
  const onLine = new Set<(l: string) => void>();
  let buf = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const p of parts) {
      if (keep(p)) lines.push(p);
      for (const f of onLine) f(p);
    }
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  sb.defer(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  return { proc, lines, onLine, stderr: () => err };
}

async function ready(p: ReturnType<typeof spawnIn>, what: string): Promise<void> {
  // Generous: a Node.js start inside a namespace takes seconds on a loaded machine.
  const deadline = Date.now() + 30_000;
  while (!p.lines.includes('ready')) {
    if (Date.now() > deadline || p.proc.exitCode !== null) throw new Error(`${what} did not start: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface HttpServerPeer {
  /** "req PORT METHOD PATH REMOTE" lines so far (none kept with `recordRequests: false`). */
  requests(): string[];
}

/**
 * `recordRequests: false` keeps no request line: a server under hours of load (the chaos long run, whose
 * RSS is measured in this process) would otherwise keep one string per request for the test's life.
 */
export async function startHttpServer(sb: Sandbox, ns: string, name: string, ports: number[], o: { recordRequests?: boolean; keepAliveMs?: number } = {}): Promise<HttpServerPeer> {
  const record = o.recordRequests ?? true;
  const args = ['serve', name, ...ports.map(String), ...(o.keepAliveMs !== undefined ? [`--keep-alive-ms=${o.keepAliveMs}`] : [])];
  const p = spawnIn(sb, ns, args, (l) => record || !l.startsWith('req '));
  await ready(p, `http server in ${ns}`);
  return { requests: () => p.lines.filter((l) => l.startsWith('req ')) };
}

export interface HttpClientPeer {
  request(r: HttpRequestSpec): Promise<HttpOutcome>;
}

export interface HttpClientOptions {
  /** The datapath's flow records so far (drop events), to tell a kernel drop and its reason. */
  flows: () => readonly FlowRecord[];
}

/** Waits for the datapath's drop event of the connection from `localPort` to `dst` (the ring buffer is read asynchronously). */
async function dropOf(flows: () => readonly FlowRecord[], dst: URL, localPort: number | undefined): Promise<FlowRecord | undefined> {
  if (localPort === undefined) return undefined;
  const port = Number(dst.port || 80);
  for (let i = 0; i < 20; i++) {
    const d = flows().find((f) => f.type === 'drop' && f.src.port === localPort && f.dst.ip === dst.hostname && f.dst.port === port);
    if (d) return d;
    await sleep(50);
  }
  return undefined;
}

async function classify(a: z.infer<typeof answerSchema>, url: string, o: HttpClientOptions): Promise<HttpOutcome> {
  const e = a.error;
  if (!e) {
    const status = a.status ?? 0;
    const body = a.body ?? '';
    const g = a.grpcStatus !== undefined ? { grpcStatus: a.grpcStatus } : {};
    const denied = (status === 403 && body === ACCESS_DENIED_BODY) || a.grpcStatus === '7';
    return { kind: denied ? 'denied' : 'answered', status, body, ...g };
  }
  if (!e.connected && e.code === 'TIMEOUT') {
    const d = await dropOf(o.flows, new URL(url), e.localPort);
    if (d?.dropReason !== undefined) return { kind: 'dropped', reason: d.dropReason, direction: d.direction };
    const u = new URL(url);
    const seen = o.flows().filter((f) => f.src.port === e.localPort && f.dst.ip === u.hostname).map((f) => `${f.type} ${f.direction}${f.verdict ? ` ${f.verdict}` : ''}${f.proxyPort ? ` ->${f.proxyPort}` : ''}`);
    return { kind: 'unanswered', ...(e.localPort !== undefined ? { localPort: e.localPort } : {}), seen };
  }
  if (!e.connected && e.code === 'ECONNREFUSED') return { kind: 'refused' };
  if (e.connected && e.code === 'TIMEOUT') return { kind: 'timed-out' };
  if (e.connected && (e.code === 'ECONNRESET' || e.code === 'ERR_HTTP2_SESSION_ERROR' || e.code === 'ERR_HTTP2_STREAM_ERROR')) return { kind: 'reset' };
  return { kind: 'error', code: e.code, message: e.message };
}

export async function startHttpClient(sb: Sandbox, ns: string, o: HttpClientOptions): Promise<HttpClientPeer> {
  const p = spawnIn(sb, ns, ['client']);
  await ready(p, `http client in ${ns}`);
  let seq = 0;
  return {
    async request(r) {
      const id = ++seq;
      const a = await new Promise<z.infer<typeof answerSchema>>((resolve) => {
        const f = (line: string) => {
          if (!line.startsWith('{')) return;
          const parsed = answerSchema.safeParse(JSON.parse(line));
          if (!parsed.success || parsed.data.id !== id) return;
          p.onLine.delete(f);
          resolve(parsed.data);
        };
        p.onLine.add(f);
        p.proc.stdin.write(`${JSON.stringify({ id, ...r })}\n`);
      });
      return classify(a, r.url, o);
    },
  };
}

/** Collects an EndpointManager's flow events for startHttpClient's `flows` (the agent keeps its own: agent.recentFlows()). */
export function collectFlows(source: { onFlowEvents(cb: (records: FlowRecord[]) => void): { close(): void } }): { flows: () => readonly FlowRecord[]; close(): void } {
  const records: FlowRecord[] = [];
  const sub = source.onFlowEvents((recs) => {
    records.push(...recs);
    if (records.length > 5000) records.splice(0, records.length - 5000);
  });
  return { flows: () => records, close: () => sub.close() };
}
