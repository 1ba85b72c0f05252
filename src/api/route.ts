/**
 * A route of the agent's local API as data: method, path, and the zod schemas
 * of its query, request body and response. The server (src/agent/api-server.ts)
 * validates what a handler returns with `response` before sending it; the CLI
 * (src/cli/api-client.ts) validates what it receives with the same schema, so
 * both sides hold the same typed value and a drift names the route and the
 * field path instead of surfacing as `undefined` in a table.
 *
 *   export const statusRoute = defineRoute({ method: 'GET', path: '/v1/status', query: NoQuery, body: NoBody, response: StatusResponse });
 *   api.route(statusRoute, () => agent.status());          // server: returns z.input<StatusResponse>
 *   const s = await callApi(socket, statusRoute);          // CLI: z.output<StatusResponse>
 *
 * Wire types: a response schema's input is what the agent holds in memory
 * (Dates, bigints), its output is the JSON that crosses the socket (ISO
 * strings, decimal strings). The output is also a valid input, so the CLI
 * parses the wire form with the very same schema.
 */
import { z } from 'zod';
import type { ErrorKind } from '../util/errors.js';

export type Method = 'GET' | 'POST';

export interface RouteDef<Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  method: Method;
  path: string;
  /** Query parameters (all strings on the wire). */
  query: Q;
  /** The JSON request body (undefined for routes that take none). */
  body: B;
  response: R;
}

/** For routes without query parameters (unknown ones are ignored). */
export const NoQuery = z.object({});
/** For routes without a request body. */
export const NoBody = z.undefined();

export function defineRoute<Q extends z.ZodType, B extends z.ZodType, R extends z.ZodType>(d: RouteDef<Q, B, R>): RouteDef<Q, B, R> {
  return d;
}

/** `METHOD /path`, how errors and logs name a route. */
export const routeName = (r: Pick<RouteDef, 'method' | 'path'>): string => `${r.method} ${r.path}`;

/** A point in time: a Date in the agent, an ISO 8601 string on the wire. */
export const timestamp = z.union([z.string(), z.date().transform((d) => d.toISOString())]);

/** A 64-bit kernel counter or timestamp: a bigint in the agent, a decimal string on the wire. */
export const uint64 = z.union([z.string().regex(/^\d+$/, 'expected a decimal integer string'), z.bigint().transform((n) => n.toString())]);

export const errorKinds = ['usage', 'invalid', 'not-found', 'conflict', 'unavailable', 'failed'] as const satisfies readonly ErrorKind[];

/** Every non-2xx answer of the API: the MeshdError the handler raised, by code and kind. */
export const ApiErrorBody = z.object({
  error: z.object({ code: z.string().min(1), kind: z.enum(errorKinds), message: z.string() }),
});
export type ApiErrorBody = z.output<typeof ApiErrorBody>;

/** The HTTP status for each error kind; the client reads the kind back from the body, not from the status. */
export const HTTP_STATUS: Readonly<Record<ErrorKind, number>> = {
  usage: 400,
  invalid: 422,
  'not-found': 404,
  conflict: 409,
  unavailable: 503,
  failed: 500,
};

/** Zod issues as `path: message` with JSON-style paths (`agent.state`, `endpoints[2].ips`). */
export function issuePaths(error: z.ZodError): string[] {
  return error.issues.map((i) => `${formatIssuePath(i.path)}: ${i.message}`);
}

function formatIssuePath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? '(root)' : out;
}
