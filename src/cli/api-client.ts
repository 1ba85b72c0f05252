/**
 * The CLI side of the agent's local API: a request over the unix socket,
 * validated with the route's response schema (src/api), so commands work on
 * typed data. An error answer becomes a MeshdError with the agent's code and
 * kind (ApiRemoteError); an answer that does not match the schema is a
 * MESHD_API_RESPONSE_MISMATCH naming the route and the field paths.
 *
 *   const status = await callApi(socket, apiRoutes.status);        // StatusResponse
 *   const ep = await callApi(socket, apiRoutes.endpoint, { query: { id: 'default/web' } });
 */
import { Client } from 'undici';
import type { z } from 'zod';
import { ApiRemoteError, ApiResponseShapeError } from '../api/errors.js';
import { ApiErrorBody, type Method, type RouteDef } from '../api/route.js';
import { MeshdError } from '../util/errors.js';

export { DEFAULT_API_SOCKET } from './args.js';

export class AgentUnreachableError extends MeshdError {
  constructor(socketPath: string, cause: unknown) {
    super('MESHD_AGENT_UNREACHABLE', `cannot reach the meshd agent at ${socketPath} (${cause instanceof Error ? cause.message : String(cause)}); is "meshd agent" running?`, {
      kind: 'unavailable',
      cause,
    });
  }
}

export interface CallOptions<Q extends z.ZodType, B extends z.ZodType> {
  query?: z.input<Q> & Readonly<Record<string, string | undefined>>;
  body?: z.input<B>;
}

/** Calls a route and returns its validated, typed response. */
export async function callApi<Q extends z.ZodType, B extends z.ZodType, R extends z.ZodType>(socketPath: string, route: RouteDef<Q, B, R>, opts: CallOptions<Q, B> = {}): Promise<z.output<R>> {
  const params = new URLSearchParams(Object.entries(opts.query ?? {}).flatMap(([k, v]): Array<[string, string]> => (v === undefined ? [] : [[k, v]])));
  const path = params.size > 0 ? `${route.path}?${params.toString()}` : route.path;
  const answer = await request(socketPath, route.method, path, opts.body);
  const parsed = route.response.safeParse(answer);
  if (!parsed.success) throw ApiResponseShapeError.fromZod('MESHD_API_RESPONSE_MISMATCH', route, parsed.error);
  return parsed.data;
}

/** A GET by path, unvalidated: for callers that read a field or two; commands use callApi. */
export function apiGet(socketPath: string, path: string): Promise<unknown> {
  return request(socketPath, 'GET', path);
}

async function request(socketPath: string, method: Method, path: string, body?: unknown): Promise<unknown> {
  const client = new Client('http://meshd', { socketPath });
  const name = `${method} ${path.split('?')[0] ?? path}`;
  try {
    const req = { method, path, headersTimeout: 30_000, bodyTimeout: 30_000, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) };
    const res = await client.request(req).catch((e: unknown) => {
      throw new AgentUnreachableError(socketPath, e);
    });
    const text = await res.body.text();
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch (e) {
      throw new ApiResponseShapeError('MESHD_API_RESPONSE_MISMATCH', name, [], `HTTP ${res.statusCode} with a body that is not JSON (${e instanceof Error ? e.message : String(e)}): ${JSON.stringify(text.slice(0, 80))}`);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return answer;
    const err = ApiErrorBody.safeParse(answer);
    if (!err.success) throw new ApiResponseShapeError('MESHD_API_RESPONSE_MISMATCH', name, [], `HTTP ${res.statusCode} without a meshd error body: ${text.slice(0, 200)}`);
    throw new ApiRemoteError(err.data.error.code, err.data.error.kind, err.data.error.message, res.statusCode);
  } finally {
    await client.close();
  }
}
