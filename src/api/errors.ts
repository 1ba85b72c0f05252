/**
 * The local API's coded errors. The server answers every failure with
 * `{error: {code, kind, message}}` (route.ts: ApiErrorBody) and an HTTP status
 * from the kind; the CLI turns that body back into a MeshdError with the same
 * code and kind, so `meshd` exits as if the error had been raised locally.
 */
import type { z } from 'zod';
import { MeshdError, type ErrorKind } from '../util/errors.js';
import { issuePaths, routeName, type RouteDef } from './route.js';

const summary = (error: z.ZodError): string => {
  const paths = issuePaths(error);
  return paths.length > 3 ? `${paths.slice(0, 3).join('; ')}; and ${paths.length - 3} more` : paths.join('; ');
};

/** A request the API refuses: body not JSON, a query parameter or body field missing or malformed. */
export class ApiRequestInvalidError extends MeshdError {
  constructor(route: string, what: 'query' | 'body', detail: string) {
    super('MESHD_API_REQUEST_INVALID', `${route}: ${what}: ${detail}`, { kind: 'invalid' });
  }

  static fromZod(route: Pick<RouteDef, 'method' | 'path'>, what: 'query' | 'body', error: z.ZodError): ApiRequestInvalidError {
    return new ApiRequestInvalidError(routeName(route), what, summary(error));
  }
}

export class ApiNoRouteError extends MeshdError {
  constructor(method: string, path: string) {
    super('MESHD_API_NO_ROUTE', `no route ${method} ${path}`, { kind: 'not-found' });
  }
}

const SHAPE_PROBLEM = {
  /** Server side: the agent produced a value its route's schema refuses (the agent and src/api drifted apart). */
  MESHD_API_RESPONSE_INVALID: "the agent's response does not match its schema",
  /** Client side: what the CLI received does not match the route's schema (an agent of another version, or not meshd). */
  MESHD_API_RESPONSE_MISMATCH: "the agent's answer does not match what this meshd expects (agent of another version?)",
} as const;

/** A response that does not match its route's schema; the message names the route and every field path. */
export class ApiResponseShapeError extends MeshdError {
  constructor(
    code: keyof typeof SHAPE_PROBLEM,
    readonly route: string,
    readonly issues: readonly string[],
    detail: string,
  ) {
    super(code, `${route}: ${SHAPE_PROBLEM[code]}: ${detail}`, { kind: 'failed' });
  }

  static fromZod(code: keyof typeof SHAPE_PROBLEM, route: Pick<RouteDef, 'method' | 'path'>, error: z.ZodError): ApiResponseShapeError {
    return new ApiResponseShapeError(code, routeName(route), issuePaths(error), summary(error));
  }
}

/** An error the agent answered with, carried back to the CLI under the agent's code and kind. */
export class ApiRemoteError extends MeshdError {
  constructor(
    code: string,
    kind: ErrorKind,
    message: string,
    /** The HTTP status the agent answered with. */
    readonly status: number,
  ) {
    super(code, message, { kind });
  }
}
