/**
 * `GET /v1/status`: the agent at a glance (what `meshd status` prints).
 */
import { z } from 'zod';
import { ProxyResponse } from './proxy.js';
import { LbStatus } from './service.js';

export const StatusResponse = z.object({
  agent: z.object({
    state: z.enum(['starting', 'running', 'stopping', 'stopped']),
    version: z.string(),
    nodeName: z.string(),
    mode: z.enum(['standalone', 'kubernetes']),
    uptimeS: z.number().int().nonnegative(),
  }),
  /** The L7 proxy (Envoy and xDS), or {state: 'disabled'}. */
  envoy: ProxyResponse,
  /** The last proxy configuration applied (or refused), null before the first. */
  proxy: z.object({ version: z.string(), error: z.string().nullable(), errorCode: z.string().nullable(), at: z.string() }).nullable(),
  datapath: z.object({
    endpoints: z.number().int(),
    ipcacheEntries: z.number().int(),
    pinDir: z.string(),
    /** Endpoint id → why its datapath is not programmed yet. */
    pending: z.record(z.string(), z.string()),
  }),
  /** The socket LB's counters, null when it is off. */
  services: LbStatus.nullable(),
  counts: z.object({
    endpoints: z.number().int(),
    policies: z.number().int(),
    rejectedPolicies: z.number().int(),
    identities: z.number().int(),
    problems: z.number().int(),
  }),
});
export type StatusResponse = z.output<typeof StatusResponse>;
