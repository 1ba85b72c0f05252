/**
 * Local endpoints (`GET /v1/endpoints`, `GET /v1/endpoint?id=`) and security
 * identities (`GET /v1/identities`).
 */
import { z } from 'zod';
import { EndpointPolicySchema } from './policy.js';

const enforcement = z.enum(['default-deny', 'allow-all']);

export const EndpointSummary = z.object({
  /** namespace/name of the pod. */
  id: z.string(),
  identity: z.number().int(),
  /** Addresses without prefix length. */
  ips: z.array(z.string()),
  ifname: z.string(),
  labels: z.record(z.string(), z.string()),
  ingressEnforcement: enforcement,
  egressEnforcement: enforcement,
  policyRevision: z.number().int(),
  /** Why the endpoint's datapath is not up to date yet, or null. */
  pending: z.string().nullable(),
});
export type EndpointSummary = z.output<typeof EndpointSummary>;

export const EndpointsResponse = z.object({ endpoints: z.array(EndpointSummary) });
export type EndpointsResponse = z.output<typeof EndpointsResponse>;

export const EndpointQuery = z.object({ id: z.string().min(1) });

export const EndpointResponse = EndpointSummary.extend({ policy: EndpointPolicySchema.nullable() });
export type EndpointResponse = z.output<typeof EndpointResponse>;

export const IdentitiesResponse = z.object({
  identities: z.array(z.object({ id: z.number().int(), labels: z.array(z.string()), scope: z.enum(['reserved', 'cluster', 'local']) })),
});
export type IdentitiesResponse = z.output<typeof IdentitiesResponse>;
