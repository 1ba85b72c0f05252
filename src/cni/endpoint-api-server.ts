/**
 * Server side of the endpoint API (see endpoint-api.ts). The agent hosts it
 * and supplies an EndpointHandler (its endpoint manager: attach programs,
 * compute policy); tests and standalone use take the in-memory handler.
 *
 *   const server = new EndpointApiServer({ socketPath, handler: new MemoryEndpointHandler() });
 *   await server.start();      // socket created with mode 0600; a stale socket file is replaced
 *   ...
 *   await server.close();      // idempotent; removes the socket file
 *
 * A handler that throws EndpointRejectedError answers 422 with its message;
 * the plugin then rolls the pod back and fails the ADD with that message.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isMeshdError, MeshdError } from '../util/errors.js';
import { prepareSocketPath } from '../util/unix-socket.js';
import {
  ApiErrorCode,
  EndpointKeySchema,
  EndpointRegistrationSchema,
  GcRequestSchema,
  type Endpoint,
  type EndpointKey,
  type EndpointRegistration,
} from './endpoint-api.js';

export interface EndpointHandler {
  /** Adds or replaces the endpoint. Throw EndpointRejectedError to refuse it. */
  register(reg: EndpointRegistration): Promise<Endpoint>;
  get(key: EndpointKey): Promise<Endpoint | undefined>;
  /** Removes the endpoint; returns false when it did not exist. */
  remove(key: EndpointKey): Promise<boolean>;
  list(): Promise<Endpoint[]>;
}

/** MESHD_CNI_API_REJECTED: the agent refuses the endpoint (answered 422). */
export class EndpointRejectedError extends MeshdError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(ApiErrorCode.REJECTED, message, { kind: 'invalid', cause: opts.cause });
  }
}

/** Keeps endpoints in a Map; what the tests and a standalone server use. */
export class MemoryEndpointHandler implements EndpointHandler {
  private readonly endpoints = new Map<string, Endpoint>();

  private static id(key: EndpointKey): string {
    return `${key.containerId}/${key.ifname}`;
  }

  register(reg: EndpointRegistration): Promise<Endpoint> {
    const ep: Endpoint = { ...reg, registeredAt: new Date().toISOString() };
    this.endpoints.set(MemoryEndpointHandler.id(reg), ep);
    return Promise.resolve(ep);
  }

  get(key: EndpointKey): Promise<Endpoint | undefined> {
    return Promise.resolve(this.endpoints.get(MemoryEndpointHandler.id(key)));
  }

  remove(key: EndpointKey): Promise<boolean> {
    return Promise.resolve(this.endpoints.delete(MemoryEndpointHandler.id(key)));
  }

  list(): Promise<Endpoint[]> {
    return Promise.resolve([...this.endpoints.values()]);
  }
}

const MAX_BODY = 1024 * 1024;

/** A request the server refuses, with the HTTP status to answer. */
class HttpError extends MeshdError {
  constructor(
    readonly status: 400 | 404 | 413,
    code: (typeof ApiErrorCode)['BAD_REQUEST' | 'NOT_FOUND'],
    message: string,
  ) {
    super(code, message, { kind: status === 404 ? 'not-found' : 'invalid' });
  }
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, ApiErrorCode.BAD_REQUEST, `request body larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new HttpError(400, ApiErrorCode.BAD_REQUEST, 'request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

function issues(e: { issues: ReadonlyArray<{ path: PropertyKey[]; message: string }> }): string {
  return e.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

export class EndpointApiServer {
  private server: Server | undefined;
  readonly socketPath: string;
  private readonly handler: EndpointHandler;

  constructor(opts: { socketPath: string; handler: EndpointHandler }) {
    this.socketPath = opts.socketPath;
    this.handler = opts.handler;
  }

  async start(): Promise<void> {
    if (this.server) return;
    await prepareSocketPath(this.socketPath, 'endpoint API'); // a stale socket of a previous agent is replaced
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (e instanceof HttpError) {
          send(res, e.status, { error: { code: e.code, message: e.message } });
        } else if (e instanceof EndpointRejectedError) {
          send(res, 422, { error: { code: e.code, message: e.message } });
        } else {
          // A handler failure: the client sees the handler's own code when it has one.
          send(res, 500, { error: { code: isMeshdError(e) ? e.code : ApiErrorCode.INTERNAL, message: e instanceof Error ? e.message : String(e) } });
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // The directory is 0700 when we created it; the socket itself is root-only too.
    chmodSync(this.socketPath, 0o600);
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://meshd');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';

    if (parts.length === 2 && parts[0] === 'v1' && parts[1] === 'health' && method === 'GET') {
      const endpoints = (await this.handler.list()).length;
      send(res, 200, { status: 'ok', endpoints });
      return;
    }
    if (parts.length === 2 && parts[0] === 'v1' && parts[1] === 'endpoints' && method === 'GET') {
      send(res, 200, { endpoints: await this.handler.list() });
      return;
    }
    if (parts.length === 2 && parts[0] === 'v1' && parts[1] === 'gc' && method === 'POST') {
      const parsed = GcRequestSchema.safeParse(await readBody(req));
      if (!parsed.success) throw new HttpError(400, ApiErrorCode.BAD_REQUEST, `gc request: ${issues(parsed.error)}`);
      const valid = new Set(parsed.data.valid.map((k) => `${k.containerId}/${k.ifname}`));
      const removed: EndpointKey[] = [];
      for (const ep of await this.handler.list()) {
        if (ep.network !== parsed.data.network || valid.has(`${ep.containerId}/${ep.ifname}`)) continue;
        if (await this.handler.remove(ep)) removed.push({ containerId: ep.containerId, ifname: ep.ifname });
      }
      send(res, 200, { removed });
      return;
    }
    if (parts.length === 4 && parts[0] === 'v1' && parts[1] === 'endpoints') {
      const key = EndpointKeySchema.safeParse({ containerId: parts[2], ifname: parts[3] });
      if (!key.success) throw new HttpError(400, ApiErrorCode.BAD_REQUEST, `endpoint key: ${issues(key.error)}`);
      if (method === 'GET') {
        const ep = await this.handler.get(key.data);
        if (ep) send(res, 200, ep);
        else send(res, 404, { error: { code: ApiErrorCode.NOT_FOUND, message: `no endpoint ${key.data.containerId}/${key.data.ifname}` } });
        return;
      }
      if (method === 'DELETE') {
        await this.handler.remove(key.data);
        send(res, 204);
        return;
      }
      if (method === 'PUT') {
        const body = EndpointRegistrationSchema.safeParse(await readBody(req));
        if (!body.success) throw new HttpError(400, ApiErrorCode.BAD_REQUEST, `endpoint registration: ${issues(body.error)}`);
        if (body.data.containerId !== key.data.containerId || body.data.ifname !== key.data.ifname) {
          throw new HttpError(400, ApiErrorCode.BAD_REQUEST, 'endpoint registration: containerId/ifname differ from the URL');
        }
        send(res, 200, await this.handler.register(body.data));
        return;
      }
    }
    throw new HttpError(404, ApiErrorCode.NOT_FOUND, `no route ${method} ${url.pathname}`);
  }

  /** Stops listening and removes the socket file; safe to call twice. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    try {
      unlinkSync(this.socketPath);
    } catch {
      // node removes the socket file on close already; close must not fail for it
    }
  }
}
