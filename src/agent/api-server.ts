/**
 * The agent's local API for the CLI: HTTP/JSON on a unix socket (mode 0600),
 * never on a network address. Routes are data (src/api/): the wiring module
 * registers one handler per route; the server validates the query and body
 * with the route's schemas before the handler runs, and the handler's value
 * with the response schema before it is sent, so what leaves the socket is
 * exactly what the CLI validates against.
 *
 *   const api = new ApiServer(socketPath, log);
 *   api.route(apiRoutes.status, () => agent.status());
 *   await api.listen();
 *
 * Errors: a handler throws a MeshdError; the answer is its code, kind and
 * message with the HTTP status of the kind (src/api/route.ts: HTTP_STATUS).
 * Anything else is logged and answered as MESHD_API_INTERNAL.
 */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { z } from 'zod';
import { ApiNoRouteError, ApiRequestInvalidError, ApiResponseShapeError } from '../api/errors.js';
import { HTTP_STATUS, routeName, type ApiErrorBody, type RouteDef } from '../api/route.js';
import { MeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { prepareSocketPath } from '../util/unix-socket.js';

/** What a handler gets: the query and body as the route's schemas parsed them. */
export interface ApiRequest<Q extends z.ZodType, B extends z.ZodType> {
  query: z.output<Q>;
  body: z.output<B>;
}

/** A handler returns the response schema's input (Dates and bigints allowed); the server encodes it. */
export type RouteHandler<Q extends z.ZodType, B extends z.ZodType, R extends z.ZodType> = (req: ApiRequest<Q, B>) => z.input<R> | Promise<z.input<R>>;

type Erased = (query: URLSearchParams, body: unknown) => Promise<unknown>;

export class ApiServer {
  private readonly routes = new Map<string, Erased>();
  private server: Server | null = null;

  constructor(
    readonly socketPath: string,
    private readonly log: Logger,
  ) {}

  route<Q extends z.ZodType, B extends z.ZodType, R extends z.ZodType>(def: RouteDef<Q, B, R>, handler: RouteHandler<Q, B, R>): void {
    this.routes.set(routeName(def), async (params, rawBody) => {
      const query = def.query.safeParse(Object.fromEntries(params));
      if (!query.success) throw ApiRequestInvalidError.fromZod(def, 'query', query.error);
      const body = def.body.safeParse(rawBody);
      if (!body.success) throw ApiRequestInvalidError.fromZod(def, 'body', body.error);
      const value = await handler({ query: query.data, body: body.data });
      const out = def.response.safeParse(value);
      if (!out.success) throw ApiResponseShapeError.fromZod('MESHD_API_RESPONSE_INVALID', def, out.error);
      return out.data;
    });
  }

  async listen(): Promise<void> {
    await prepareSocketPath(this.socketPath, 'local API');
    const server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
    this.server = server;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://meshd');
    const method = req.method ?? 'GET';
    const send = (status: number, value: unknown) => {
      const body = JSON.stringify(value);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const fail = (e: unknown) => {
      if (e instanceof ApiResponseShapeError) this.log.error('api response does not match its schema', { route: e.route, issues: e.issues.join('; ') });
      else if (!(e instanceof MeshdError)) this.log.error('api handler failed', { path: url.pathname, err: e });
      const err = e instanceof MeshdError ? e : new MeshdError('MESHD_API_INTERNAL', e instanceof Error ? e.message : String(e), { kind: 'failed', cause: e });
      const body: ApiErrorBody = { error: { code: err.code, kind: err.kind, message: err.message } };
      send(HTTP_STATUS[err.kind], body);
    };
    const handler = this.routes.get(`${method} ${url.pathname}`);
    if (!handler) {
      req.resume();
      fail(new ApiNoRouteError(method, url.pathname));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        let body: unknown;
        if (chunks.length > 0) {
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch (e) {
            throw new ApiRequestInvalidError(`${method} ${url.pathname}`, 'body', `not JSON (${e instanceof Error ? e.message : String(e)})`);
          }
        }
        send(200, await handler(url.searchParams, body));
      })().catch(fail);
    });
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
