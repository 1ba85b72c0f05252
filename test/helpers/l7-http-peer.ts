/**
 * HTTP peers for the L7 end-to-end tests and the L7 benchmark, run inside a
 * namespace as `node dist/test/helpers/l7-http-peer.js …`:
 *
 *   serve NAME PORT… [--keep-alive-ms=N]
 *                      HTTP/1.1 and HTTP/2 with prior knowledge on every port
 *                      (the first bytes decide), answering "NAME PORT METHOD PATH from ADDR";
 *                      content-type application/grpc gets a gRPC-framed answer and
 *                      grpc-status 0; an HTTP/1.1 WebSocket upgrade is answered with 101 and every
 *                      message after it echoed as "NAME echo MESSAGE". Prints "ready", then
 *                      "req PORT METHOD PATH ADDR" per request. HTTP/1.1 connections idle
 *                      for N ms (default Node's 5,000) are closed by the server.
 *   client             reads JSON requests on stdin (one per line), answers JSON lines:
 *                      {id, status, body, grpcStatus} or {id, error: {code, connected, localPort}};
 *                      every request on a new connection (`websocket: true`: an upgrade, then one
 *                      message; its echo is the body). The TCP handshake is done first
 *                      with its own outcome, so that the caller can tell "no SYN-ACK"
 *                      (code TIMEOUT, connected false) from "refused" (ECONNREFUSED) and
 *                      from "connected, no answer" (code TIMEOUT, connected true).
 */
import { request as h1request, createServer as createH1 } from 'node:http';
import { connect as h2connect, createServer as createH2, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect as netConnect, createServer as createNet, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { Duplex } from 'node:stream';
import { z } from 'zod';

const H2_PREFACE = 'PRI * HTTP/2.0';

function grpcFrame(payload: string): Buffer {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

function serve(name: string, ports: number[], keepAliveMs: number | undefined): void {
  for (const port of ports) {
    const text = (method: string, path: string, remote: string) => {
      process.stdout.write(`req ${port} ${method} ${path} ${remote}\n`);
      return `${name} ${port} ${method} ${path} from ${remote}`;
    };
    const h1 = createH1((req, res) => {
      req.resume();
      req.on('end', () => res.end(text(req.method ?? '', req.url ?? '', req.socket.remoteAddress ?? '')));
    });
    if (keepAliveMs !== undefined) h1.keepAliveTimeout = keepAliveMs;
    // WebSocket: the upgrade is answered and the bytes after it echoed (no framing: the proxies only relay them).
    h1.on('upgrade', (req, sock: Socket) => {
      text(req.method ?? '', req.url ?? '', req.socket.remoteAddress ?? '');
      if (String(req.headers.upgrade).toLowerCase() !== 'websocket') {
        sock.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      sock.on('data', (d: Buffer) => sock.write(`${name} echo ${d.toString('utf8')}`));
      sock.on('error', () => undefined);
    });
    const h2 = createH2();
    // The HTTP/2 session gets a JS duplex (see below); its peer address is remembered per session.
    const remotes = new WeakMap<object, string>();
    let connecting = '';
    h2.on('session', (session) => remotes.set(session, connecting));
    h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      const body = text(String(headers[':method']), String(headers[':path']), (stream.session && remotes.get(stream.session)) ?? '');
      stream.resume();
      stream.on('end', () => {
        if (headers['content-type'] === 'application/grpc') {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(grpcFrame(body));
        } else {
          stream.respond({ ':status': 200, 'content-type': 'text/plain' });
          stream.end(body);
        }
      });
    });
    const server = createNet((sock: Socket) => {
      sock.once('data', (first: Buffer) => {
        sock.pause();
        if (!first.toString('latin1').startsWith(H2_PREFACE)) {
          sock.unshift(first);
          h1.emit('connection', sock);
          sock.resume();
          return;
        }
        // node's HTTP/2 reads a net.Socket's handle directly (bytes put back with unshift would be lost):
        // hand it a duplex that replays the first chunk and then relays the socket.
        const d = new Duplex({
          read: () => void sock.resume(),
          write: (chunk: Buffer, _enc, cb) => void sock.write(chunk, cb),
          final: (cb) => {
            sock.end();
            cb();
          },
          destroy: (err, cb) => {
            sock.destroy();
            cb(err);
          },
        });
        d.push(first);
        sock.on('data', (c: Buffer) => {
          if (!d.push(c)) sock.pause();
        });
        sock.on('end', () => d.push(null));
        sock.on('close', () => d.destroy());
        connecting = sock.remoteAddress ?? '';
        h2.emit('connection', d);
      });
      sock.on('error', () => undefined);
    });
    server.listen(port, '0.0.0.0');
  }
  setTimeout(() => process.stdout.write('ready\n'), 100);
}

const requestSchema = z.object({
  id: z.number(),
  url: z.string(),
  method: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  body: z.string().optional(),
  h2: z.boolean().optional(),
  grpc: z.boolean().optional(),
  websocket: z.boolean().optional(),
  timeoutMs: z.number().optional(),
});
type ClientRequest = z.infer<typeof requestSchema>;

interface ClientFailure {
  /** An errno code (ECONNREFUSED, ECONNRESET, …) or TIMEOUT. */
  code: string;
  /** Whether the TCP handshake completed. */
  connected: boolean;
  /** The connection's local port (to find its packets in the datapath's events). */
  localPort?: number;
  message: string;
}

interface ClientAnswer {
  id: number;
  status?: number;
  body?: string;
  grpcStatus?: string;
  error?: ClientFailure;
}

const errnoOf = (e: unknown): string => (e instanceof Error && 'code' in e && typeof e.code === 'string' ? e.code : 'ERROR');

/**
 * The TCP handshake alone: the connected socket, or how it failed. A SYN
 * without SYN-ACK is a TIMEOUT with connected false; the local port is read
 * from the half-open socket, which the kernel bound when it sent the SYN.
 */
function handshake(u: URL, timeoutMs: number): Promise<{ sock: Socket } | { error: ClientFailure }> {
  return new Promise((resolve) => {
    const sock = netConnect({ host: u.hostname, port: Number(u.port || 80) });
    const timer = setTimeout(() => {
      const localPort = sock.localPort;
      sock.destroy();
      resolve({ error: { code: 'TIMEOUT', connected: false, ...(localPort !== undefined ? { localPort } : {}), message: `no answer to the SYN within ${timeoutMs} ms` } });
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve({ sock });
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      resolve({ error: { code: errnoOf(e), connected: false, ...(sock.localPort !== undefined ? { localPort: sock.localPort } : {}), message: e.message } });
    });
  });
}

const failed = (sock: Socket, code: string, message: string): ClientFailure => ({ code, connected: true, ...(sock.localPort !== undefined ? { localPort: sock.localPort } : {}), message });

function h1(r: ClientRequest, sock: Socket, timeoutMs: number): Promise<ClientAnswer> {
  return new Promise((resolve) => {
    // A timer of our own: the request's `timeout` option does not arm on a socket handed in already connected.
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`connected, no answer within ${timeoutMs} ms`), { code: 'TIMEOUT' })), timeoutMs);
    const done = (a: ClientAnswer) => {
      clearTimeout(timer);
      resolve(a);
    };
    const headers = { ...(r.headers ?? {}), ...(r.websocket ? { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } : {}) };
    const req = h1request(r.url, { method: r.method ?? 'GET', headers, createConnection: () => sock }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => done({ id: r.id, status: res.statusCode ?? 0, body }));
    });
    // Upgraded: one message through the tunnel, its echo is the body.
    req.on('upgrade', (res, up: Socket) => {
      up.once('data', (d: Buffer) => {
        done({ id: r.id, status: res.statusCode ?? 0, body: d.toString('utf8') });
        up.destroy();
      });
      up.on('error', (e) => done({ id: r.id, error: failed(sock, errnoOf(e), e.message) }));
      up.write('hello');
    });
    req.on('error', (e) => done({ id: r.id, error: failed(sock, errnoOf(e), e.message) }));
    req.end(r.body);
  });
}

function h2(r: ClientRequest, sock: Socket, timeoutMs: number): Promise<ClientAnswer> {
  return new Promise((resolve) => {
    const u = new URL(r.url);
    const session = h2connect(u.origin, { createConnection: () => sock });
    const done = (a: ClientAnswer) => {
      clearTimeout(timer);
      session.close();
      resolve(a);
    };
    const timer = setTimeout(() => {
      session.destroy();
      resolve({ id: r.id, error: failed(sock, 'TIMEOUT', `connected, no answer within ${timeoutMs} ms`) });
    }, timeoutMs);
    session.on('error', (e) => done({ id: r.id, error: failed(sock, errnoOf(e), e.message) }));
    const headers: Record<string, string> = { ':method': r.method ?? 'GET', ':path': u.pathname + u.search, ...(r.headers ?? {}) };
    if (r.grpc) Object.assign(headers, { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' });
    const s = session.request(headers);
    let status = 0;
    let grpcStatus: string | undefined;
    const chunks: Buffer[] = [];
    s.on('response', (h) => {
      status = Number(h[':status']);
      if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
    });
    s.on('trailers', (h) => {
      if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
    });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = r.grpc && raw.length >= 5 ? raw.subarray(5).toString('utf8') : raw.toString('utf8');
      const a: ClientAnswer = { id: r.id, status, body };
      if (grpcStatus !== undefined) a.grpcStatus = grpcStatus;
      done(a);
    });
    s.on('error', (e) => done({ id: r.id, error: failed(sock, errnoOf(e), e.message) }));
    s.end(r.grpc ? grpcFrame(r.body ?? 'hello') : r.body);
  });
}

async function exchange(r: ClientRequest): Promise<ClientAnswer> {
  const timeoutMs = r.timeoutMs ?? 4000;
  const c = await handshake(new URL(r.url), timeoutMs);
  if ('error' in c) return { id: r.id, error: c.error };
  return r.h2 || r.grpc ? h2(r, c.sock, timeoutMs) : h1(r, c.sock, timeoutMs);
}

function client(): void {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let parsed: ReturnType<typeof requestSchema.safeParse>;
    try {
      parsed = requestSchema.safeParse(JSON.parse(line));
    } catch {
      // not JSON: not a request, and there is no id to answer to
      return;
    }
    if (!parsed.success) return;
    const r = parsed.data;
    void exchange(r).then((a) => process.stdout.write(`${JSON.stringify(a)}\n`));
  });
  process.stdout.write('ready\n');
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'serve') {
  const keepAlive = args.find((a) => a.startsWith('--keep-alive-ms='));
  serve(args[0] ?? 'S', args.slice(1).filter((a) => !a.startsWith('--')).map(Number), keepAlive === undefined ? undefined : Number(keepAlive.split('=')[1]));
} else if (cmd === 'client') client();
else {
  process.stderr.write('usage: l7-http-peer serve NAME PORT… [--keep-alive-ms=N] | client\n');
  process.exit(2);
}
