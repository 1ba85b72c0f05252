/**
 * A flow event of the endpoint datapath (drop, verdict, proxy redirect) in
 * its JSON form: `GET /v1/flows` (the agent's recent ones) and
 * `meshd datapath flows -o json|yaml` (read live from the ring buffer).
 */
import { z } from 'zod';
import { uint64 } from './route.js';

export const FlowRecordSchema = z.object({
  /** CLOCK_MONOTONIC nanoseconds, as a decimal string. */
  monotonicNs: uint64,
  type: z.enum(['drop', 'verdict', 'redirect', 'audit']),
  dropReason: z.string().optional(),
  direction: z.enum(['ingress', 'egress']),
  verdict: z.enum(['ALLOW', 'DENY', 'REDIRECT']).optional(),
  endpointNumericId: z.number().int(),
  ifindex: z.number().int(),
  srcIdentity: z.number().int(),
  dstIdentity: z.number().int(),
  family: z.union([z.literal(4), z.literal(6)]),
  protocol: z.number().int(),
  src: z.object({ ip: z.string(), port: z.number().int() }),
  dst: z.object({ ip: z.string(), port: z.number().int() }),
  proxyPort: z.number().int().optional(),
});
export type FlowRecordJson = z.output<typeof FlowRecordSchema>;

export const FlowsResponse = z.object({ flows: z.array(FlowRecordSchema) });
export type FlowsResponse = z.output<typeof FlowsResponse>;
