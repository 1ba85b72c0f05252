/**
 * Services as the agent holds them (`GET /v1/services`) and the socket LB's
 * counters (also the `services` field of `GET /v1/status`).
 */
import { z } from 'zod';

export const LbStatus = z.object({
  services: z.number().int(),
  endpointSlices: z.number().int(),
  frontends: z.number().int(),
  backends: z.number().int(),
  duplicateFrontends: z.number().int(),
  cappedFrontends: z.number().int(),
  capacityRejected: z.number().int(),
  syncs: z.number().int(),
  writes: z.number().int(),
  lastSyncWrites: z.number().int(),
  reusedPinnedState: z.boolean(),
});

const protocol = z.enum(['TCP', 'UDP', 'SCTP']);

export const ServiceSummary = z.object({
  namespace: z.string(),
  name: z.string(),
  labels: z.record(z.string(), z.string()).optional(),
  selector: z.record(z.string(), z.string()).optional(),
  /** Backend IPs of a service without selector. */
  endpointIps: z.array(z.string()).optional(),
  clusterIPs: z.array(z.string()).optional(),
  ports: z.array(z.object({ port: z.number().int(), protocol: protocol.optional(), targetPort: z.union([z.number().int(), z.string()]).optional(), name: z.string().optional() })).optional(),
});

export const ServicesResponse = z.object({
  /** False when the socket LB is off (socketLB.enabled=false); services are then known to policy only. */
  enabled: z.boolean(),
  status: LbStatus.nullable(),
  services: z.array(ServiceSummary),
});
export type ServicesResponse = z.output<typeof ServicesResponse>;
