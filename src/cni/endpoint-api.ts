/**
 * The endpoint API between meshd-cni and the local agent: HTTP/1.1 with JSON
 * bodies over a unix socket (mode 0600, root only). The plugin registers a
 * pod's endpoint after wiring it and removes it on DEL; the agent answers
 * from its endpoint manager. Both sides validate every body with these
 * schemas.
 *
 *   GET    /v1/health                          → Health
 *   PUT    /v1/endpoints/{containerId}/{ifname} EndpointRegistration → Endpoint (idempotent upsert)
 *   GET    /v1/endpoints/{containerId}/{ifname} → Endpoint | 404
 *   DELETE /v1/endpoints/{containerId}/{ifname} → 204 (also when it did not exist)
 *   GET    /v1/endpoints                        → { endpoints: Endpoint[] }
 *   POST   /v1/gc  GcRequest                    → GcResponse (removes endpoints of `network` not in `valid`)
 *   errors: 4xx/5xx with ApiError
 */
import * as z from 'zod';

export const DEFAULT_ENDPOINT_SOCKET = '/var/run/meshd/cni.sock';

export const EndpointKeySchema = z.object({
  containerId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/),
  ifname: z.string().min(1).max(15),
});
export type EndpointKey = z.infer<typeof EndpointKeySchema>;

export const EndpointRegistrationSchema = EndpointKeySchema.extend({
  /** CNI network name. */
  network: z.string().min(1),
  /** Path of the pod's network namespace as the runtime passed it. */
  netns: z.string().min(1),
  /** Host side of the pod's veth, where the datapath attaches its programs. */
  hostInterface: z.string().min(1).max(15).nullable(),
  /** MAC of the interface inside the pod. */
  podMac: z.string().nullable(),
  /** Pod addresses in CIDR notation. */
  ips: z.array(z.string().min(1)).min(1),
  /** From CNI_ARGS K8S_POD_NAMESPACE / K8S_POD_NAME / K8S_POD_UID when the runtime sets them. */
  k8s: z.object({
    namespace: z.string().optional(),
    name: z.string().optional(),
    uid: z.string().optional(),
  }),
  /** True when another plugin created the interface (meshd-cni ran chained). */
  chained: z.boolean(),
});
export type EndpointRegistration = z.infer<typeof EndpointRegistrationSchema>;

export const EndpointSchema = EndpointRegistrationSchema.extend({
  registeredAt: z.string(),
});
export type Endpoint = z.infer<typeof EndpointSchema>;

export const EndpointListSchema = z.object({ endpoints: z.array(EndpointSchema) });

export const HealthSchema = z.object({ status: z.literal('ok'), endpoints: z.number().int().nonnegative() });
export type Health = z.infer<typeof HealthSchema>;

export const GcRequestSchema = z.object({ network: z.string().min(1), valid: z.array(EndpointKeySchema) });
export type GcRequest = z.infer<typeof GcRequestSchema>;
export const GcResponseSchema = z.object({ removed: z.array(EndpointKeySchema) });
export type GcResponse = z.infer<typeof GcResponseSchema>;

export const ApiErrorSchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
export type ApiError = z.infer<typeof ApiErrorSchema>;

/** Stable error codes in ApiError.error.code. */
export const ApiErrorCode = {
  BAD_REQUEST: 'MESHD_CNI_API_BAD_REQUEST',
  NOT_FOUND: 'MESHD_CNI_API_NOT_FOUND',
  REJECTED: 'MESHD_CNI_API_REJECTED',
  INTERNAL: 'MESHD_CNI_API_INTERNAL',
} as const;

export function endpointPath(key: EndpointKey): string {
  return `/v1/endpoints/${encodeURIComponent(key.containerId)}/${encodeURIComponent(key.ifname)}`;
}
