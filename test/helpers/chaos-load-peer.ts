/**
 * A steady HTTP load inside a namespace, counting every request's outcome,
 * run as `node dist/test/helpers/chaos-load-peer.js '<json options>'`:
 *
 *   {"url": "http://10.1.2.6:8080", "allowPath": "/api/v1/users", "denyPath": "/admin",
 *    "mode": "h1-keepalive" | "h1-new-conn" | "h2", "concurrency": 4, "denyEvery": 10}
 *
 * `concurrency` loops send requests back to back; every `denyEvery`-th
 * request of a loop asks for `denyPath`, which the policy denies (Envoy's
 * 403). Prints "ready" once the first request was answered, then runs until
 * stdin closes, then prints one JSON line: the counts (ok, denied, failed,
 * wronglyAllowed, wronglyDenied, retried) and the first failures with their
 * time. A failure is a connection error, a reset, a timeout or a status
 * other than the expected 200/403. HTTP/2 requests the server refused before
 * processing them (REFUSED_STREAM, or sent after its GOAWAY) are retried once,
 * as RFC 9113 §8.7 allows, and counted as `retried`.
 */
import { Agent, request as h1request } from 'node:http';
import { type ClientHttp2Session, connect as h2connect, constants as h2c } from 'node:http2';
import { z } from 'zod';

const optionsSchema = z.strictObject({
  url: z.string().url(),
  allowPath: z.string().startsWith('/'),
  denyPath: z.string().startsWith('/'),
  mode: z.enum(['h1-keepalive', 'h1-new-conn', 'h2']),
  concurrency: z.number().int().min(1).max(64),
  denyEvery: z.number().int().min(2),
  timeoutMs: z.number().int().positive().default(10_000),
});
type Options = z.infer<typeof optionsSchema>;

interface Outcome {
  status?: number;
  error?: string;
  /** When the connection the request went on was established (ms since the epoch); absent if it never was. */
  connectedAt?: number;
  /** The server refused the stream before processing it (safe to retry). */
  refused?: boolean;
  /** The start of the body of an answer other than 200 and 403 (Envoy's local replies say why, e.g. the upstream's reset reason). */
  body?: string;
}

/** Keeps the first bytes of an unexpected answer's body: the expected ones are only counted. */
function bodyStart(status: number, stream: { on(ev: 'data', fn: (b: Buffer) => void): unknown }): () => string | undefined {
  if (status === 200 || status === 403) return () => undefined;
  let head = '';
  stream.on('data', (b: Buffer) => {
    if (head.length < 300) head += b.toString('utf8', 0, 300 - head.length);
  });
  return () => head;
}

const counts = { requests: 0, ok: 0, denied: 0, failed: 0, wronglyAllowed: 0, wronglyDenied: 0, retried: 0, maxLatencyMs: 0 };
const failures: Array<{ at: string; path: string; what: string; startedAt: number; connectedAt: number | null; body?: string }> = [];
/** When each socket got connected: a reused keep-alive socket keeps its first time. */
const connectedAt = new WeakMap<object, number>();
const errors: Record<string, number> = {};

function h1(o: Options, agent: Agent | false, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    let sock: object | null = null;
    const at = () => (sock ? connectedAt.get(sock) : undefined);
    const req = h1request(o.url + path, { agent, headers: agent === false ? { connection: 'close' } : {}, timeout: o.timeoutMs }, (res) => {
      const status = res.statusCode ?? 0;
      const body = bodyStart(status, res);
      res.resume();
      res.on('end', () => resolve({ status, ...(body() !== undefined ? { body: body() } : {}) }));
      res.on('error', (e) => resolve({ error: `response: ${(e as NodeJS.ErrnoException).code ?? e.message}`, ...(at() ? { connectedAt: at() } : {}) }));
    });
    req.on('socket', (s) => {
      sock = s;
      if (!s.connecting) return;
      s.once('connect', () => connectedAt.set(s, Date.now()));
    });
    req.on('timeout', () => req.destroy(new Error('TIMEOUT')));
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message, ...(at() ? { connectedAt: at() } : {}) }));
    req.end();
  });
}

class H2Client {
  private session: ClientHttp2Session | null = null;
  constructor(private readonly o: Options) {}

  private current(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const s = h2connect(this.o.url);
    s.on('error', () => undefined);
    s.once('connect', () => connectedAt.set(s, Date.now()));
    // After a GOAWAY the session takes no new streams: the next request opens another one.
    s.on('goaway', () => {
      if (this.session === s) this.session = null;
    });
    s.on('close', () => {
      if (this.session === s) this.session = null;
    });
    this.session = s;
    return s;
  }

  request(path: string): Promise<Outcome> {
    return new Promise((resolve) => {
      let stream;
      let session: ClientHttp2Session;
      try {
        session = this.current();
        stream = session.request({ ':path': path, ':method': 'GET' });
      } catch (e) {
        resolve({ error: (e as NodeJS.ErrnoException).code ?? String(e), refused: true });
        return;
      }
      let status = 0;
      let body: () => string | undefined = () => undefined;
      const timer = setTimeout(() => stream.close(h2c.NGHTTP2_CANCEL), this.o.timeoutMs);
      stream.on('response', (h) => {
        status = Number(h[':status']);
        body = bodyStart(status, stream);
      });
      stream.resume();
      stream.on('end', () => {
        clearTimeout(timer);
        const b = body();
        resolve({ status, ...(b !== undefined ? { body: b } : {}) });
      });
      const at = () => connectedAt.get(session);
      stream.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve({ error: e.code ?? e.message, refused: stream.rstCode === h2c.NGHTTP2_REFUSED_STREAM || e.code === 'ERR_HTTP2_GOAWAY_SESSION', ...(at() ? { connectedAt: at() } : {}) });
      });
      stream.on('close', () => {
        clearTimeout(timer);
        if (status === 0) resolve({ error: `stream closed (${stream.rstCode})`, refused: stream.rstCode === h2c.NGHTTP2_REFUSED_STREAM, ...(at() ? { connectedAt: at() } : {}) });
      });
    });
  }

  close(): void {
    this.session?.close();
  }
}

async function main(): Promise<void> {
  const o = optionsSchema.parse(JSON.parse(process.argv[2] ?? '{}'));
  const agent = o.mode === 'h1-keepalive' ? new Agent({ keepAlive: true, maxSockets: o.concurrency }) : false;
  const h2 = o.mode === 'h2' ? new H2Client(o) : null;
  const send = (path: string) => (h2 ? h2.request(path) : h1(o, agent, path));
  let running = true;
  let ready = false;
  process.stdin.resume();
  process.stdin.on('end', () => {
    running = false;
  });
  process.stdin.on('close', () => {
    running = false;
  });

  const loop = async () => {
    for (let n = 1; running; n++) {
      const deny = n % o.denyEvery === 0;
      const path = deny ? o.denyPath : o.allowPath;
      const t0 = Date.now();
      let r = await send(path);
      if (r.refused && r.status === undefined) {
        counts.retried += 1;
        r = await send(path);
      }
      counts.maxLatencyMs = Math.max(counts.maxLatencyMs, Date.now() - t0);
      counts.requests += 1;
      let what: string | null = null;
      if (r.status === undefined) what = r.error ?? 'no answer';
      else if (deny && r.status === 403) counts.denied += 1;
      else if (!deny && r.status === 200) counts.ok += 1;
      else if (deny && r.status === 200) {
        counts.wronglyAllowed += 1;
        what = 'denied path answered 200';
      } else if (!deny && r.status === 403) {
        counts.wronglyDenied += 1;
        what = 'allowed path denied (403)';
      } else what = `status ${r.status}`;
      if (what !== null) {
        if (r.status === undefined || (r.status !== 200 && r.status !== 403)) counts.failed += 1;
        errors[what] = (errors[what] ?? 0) + 1;
        if (failures.length < 1000) failures.push({ at: new Date().toISOString(), path, what, startedAt: t0, connectedAt: r.connectedAt ?? null, ...(r.body !== undefined ? { body: r.body } : {}) });
      } else if (!ready) {
        ready = true;
        process.stdout.write('ready\n');
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, loop));
  if (agent) agent.destroy();
  h2?.close();
  process.stdout.write(`${JSON.stringify({ ...counts, errors, failures })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`chaos-load-peer: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(2);
});
