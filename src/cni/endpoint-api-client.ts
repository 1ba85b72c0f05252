/**
 * Client of the agent's endpoint API (see endpoint-api.ts), used by the
 * plugin. Uses node:http directly (no extra dependency) because the plugin
 * is a short-lived process whose start-up time counts.
 *
 *   const api = new EndpointApiClient('/var/run/meshd/cni.sock');
 *   await api.health();                 // throws EndpointApiError MESHD_CNI_API_UNREACHABLE if no agent
 *   await api.register(registration);
 *   await api.remove({ containerId, ifname });
 */
import { request } from 'node:http';
import type * as z from 'zod';
import {
  ApiErrorSchema,
  EndpointListSchema,
  EndpointSchema,
  GcResponseSchema,
  HealthSchema,
  endpointPath,
} from './endpoint-api.js';
import { MeshdError, type ErrorKind } from '../util/errors.js';
import { errno } from '../util/fs-errors.js';
import type { Endpoint, EndpointKey, EndpointRegistration, GcRequest, GcResponse, Health } from './endpoint-api.js';

export type EndpointApiErrorCode =
  | 'MESHD_CNI_API_UNREACHABLE'
  | 'MESHD_CNI_API_TIMEOUT'
  | 'MESHD_CNI_API_BAD_RESPONSE'
  | 'MESHD_CNI_API_REJECTED';

const KIND: Readonly<Record<EndpointApiErrorCode, ErrorKind>> = {
  MESHD_CNI_API_UNREACHABLE: 'unavailable',
  MESHD_CNI_API_TIMEOUT: 'unavailable',
  MESHD_CNI_API_BAD_RESPONSE: 'failed',
  MESHD_CNI_API_REJECTED: 'invalid',
};

export class EndpointApiError extends MeshdError {
  declare readonly code: EndpointApiErrorCode;

  constructor(
    code: EndpointApiErrorCode,
    message: string,
    /** The server's own error code when it answered with one. */
    readonly serverCode?: string,
    readonly status?: number,
  ) {
    super(code, message, { kind: KIND[code] });
  }
}

interface RawResponse {
  status: number;
  body: string;
}

export class EndpointApiClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 5000,
  ) {}

  private send(method: string, path: string, body?: unknown): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        {
          socketPath: this.socketPath,
          path,
          method,
          headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
          timeout: this.timeoutMs,
          agent: false, // one connection per request: the plugin exits right after
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => {
        req.destroy(new EndpointApiError('MESHD_CNI_API_TIMEOUT', `meshd agent at ${this.socketPath} did not answer ${method} ${path} within ${this.timeoutMs} ms`));
      });
      req.on('error', (e: unknown) => {
        if (e instanceof EndpointApiError) {
          reject(e);
          return;
        }
        const code = errno(e) ?? '';
        const why = e instanceof Error ? e.message : String(e);
        reject(
          new EndpointApiError(
            'MESHD_CNI_API_UNREACHABLE',
            code === 'ENOENT' || code === 'ECONNREFUSED'
              ? `meshd agent is not running: no endpoint API at ${this.socketPath} (${code})`
              : `meshd agent endpoint API at ${this.socketPath} failed: ${why}`,
          ),
        );
      });
      req.end(payload);
    });
  }

  private decode<T>(res: RawResponse, schema: z.ZodType<T>, what: string): T {
    let raw: unknown;
    try {
      raw = JSON.parse(res.body);
    } catch {
      throw new EndpointApiError('MESHD_CNI_API_BAD_RESPONSE', `${what}: agent answered ${res.status} with a body that is not JSON`, undefined, res.status);
    }
    if (res.status >= 400) {
      const err = ApiErrorSchema.safeParse(raw);
      const msg = err.success ? err.data.error.message : res.body.slice(0, 200);
      throw new EndpointApiError('MESHD_CNI_API_REJECTED', `${what}: agent answered ${res.status}: ${msg}`, err.success ? err.data.error.code : undefined, res.status);
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      throw new EndpointApiError('MESHD_CNI_API_BAD_RESPONSE', `${what}: unexpected response: ${issues}`, undefined, res.status);
    }
    return parsed.data;
  }

  async health(): Promise<Health> {
    return this.decode(await this.send('GET', '/v1/health'), HealthSchema, 'health');
  }

  async register(reg: EndpointRegistration): Promise<Endpoint> {
    return this.decode(await this.send('PUT', endpointPath(reg), reg), EndpointSchema, 'register endpoint');
  }

  /** The endpoint, or undefined when the agent does not know it. */
  async get(key: EndpointKey): Promise<Endpoint | undefined> {
    const res = await this.send('GET', endpointPath(key));
    if (res.status === 404) return undefined;
    return this.decode(res, EndpointSchema, 'get endpoint');
  }

  async remove(key: EndpointKey): Promise<void> {
    const res = await this.send('DELETE', endpointPath(key));
    if (res.status === 204 || res.status === 404) return;
    this.decode(res, EndpointSchema, 'remove endpoint');
  }

  async list(): Promise<Endpoint[]> {
    return this.decode(await this.send('GET', '/v1/endpoints'), EndpointListSchema, 'list endpoints').endpoints;
  }

  async gc(req: GcRequest): Promise<GcResponse> {
    return this.decode(await this.send('POST', '/v1/gc', req), GcResponseSchema, 'gc');
  }
}
