/**
 * The agent's local API for the CLI: HTTP/JSON on a unix socket (mode 0600),
 * never on a network address. Routes are registered by the wiring module;
 * each handler gets the parsed query and returns a JSON-able value or throws
 * an ApiError (status + stable code).
 *
 *   const api = new ApiServer(socketPath, log);
 *   api.route('GET', '/v1/status', () => agent.status());
 *   await api.listen();
 */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Logger } from '../util/log.js';
import { prepareSocketPath } from '../util/unix-socket.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Handler = (query: URLSearchParams, body: unknown) => unknown;

export class ApiServer {
  private readonly routes = new Map<string, Handler>();
  private server: Server | null = null;

  constructor(
    readonly socketPath: string,
    private readonly log: Logger,
  ) {}

  route(method: 'GET' | 'POST', path: string, handler: Handler): void {
    this.routes.set(`${method} ${path}`, handler);
  }

  async listen(): Promise<void> {
    await prepareSocketPath(this.socketPath, 'local API');
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://meshd');
      const handler = this.routes.get(`${req.method ?? 'GET'} ${url.pathname}`);
      const send = (status: number, value: unknown) => {
        // bigint (kernel counters, timestamps) as decimal strings; Maps as objects.
        const body = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Map ? Object.fromEntries(v) : v));
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (!handler) {
        send(404, { error: { code: 'NOT_FOUND', message: `no route ${req.method} ${url.pathname}` } });
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          try {
            let body: unknown;
            if (chunks.length > 0) {
              try {
                body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
              } catch {
                throw new ApiError(400, 'BAD_JSON', 'request body is not JSON');
              }
            }
            send(200, await handler(url.searchParams, body));
          } catch (e) {
            if (e instanceof ApiError) send(e.status, { error: { code: e.code, message: e.message } });
            else {
              this.log.error('api handler failed', { path: url.pathname, err: e });
              send(500, { error: { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e) } });
            }
          }
        })();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
    if (existsSync(this.socketPath)) unlinkSync(this.socketPath);
  }
}
