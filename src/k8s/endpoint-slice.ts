/**
 * EndpointSlice (discovery.k8s.io/v1): a service's backends, tied to it by
 * the `kubernetes.io/service-name` label.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { defineKind, labelsSchema, typeMeta, type KindModule } from './kind.js';
import type { ResourceProblem } from './problem.js';
import { l4Protocol, objectName, portNumber } from './service.js';

const API_VERSIONS = ['discovery.k8s.io/v1'] as const;

/** The label that ties an EndpointSlice to its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export const EndpointSliceSchema = z.object({
  ...typeMeta('EndpointSlice', API_VERSIONS),
  metadata: z.object({
    name: objectName,
    namespace: objectName.default('default'),
    labels: labelsSchema,
  }),
  addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
  endpoints: z
    .array(
      z.object({
        addresses: z.array(z.string()).min(1),
        /** The node the endpoint runs on (externalTrafficPolicy: Local keeps only this node's). */
        nodeName: z.string().optional(),
        conditions: z
          .object({ ready: z.boolean().optional(), serving: z.boolean().optional(), terminating: z.boolean().optional() })
          .optional(),
      }),
    )
    .default([]),
  ports: z.array(z.object({ name: z.string().optional(), protocol: l4Protocol, port: portNumber })).default([]),
});
export type EndpointSlice = z.infer<typeof EndpointSliceSchema>;

function check(s: EndpointSlice): ResourceProblem[] {
  const out: ResourceProblem[] = [];
  if (!s.metadata.labels[SERVICE_NAME_LABEL]) out.push({ path: ['metadata', 'labels', SERVICE_NAME_LABEL], code: 'MISSING_LABEL', message: 'required' });
  if (s.addressType !== 'FQDN') {
    const want = s.addressType === 'IPv4' ? 4 : 6;
    s.endpoints.forEach((e, i) =>
      e.addresses.forEach((a, j) => {
        if (isIP(a) !== want) out.push({ path: ['endpoints', i, 'addresses', j], code: 'WRONG_ADDRESS_FAMILY', message: `"${a}" is not an ${s.addressType} address` });
      }),
    );
  }
  return out;
}

export const endpointSlice: KindModule<'EndpointSlice', EndpointSlice> = defineKind({ kind: 'EndpointSlice', apiVersions: API_VERSIONS, scope: 'namespaced', schema: EndpointSliceSchema, check });

/** "namespace/service" of the Service this slice belongs to. */
export function sliceServiceName(s: EndpointSlice): string {
  return `${s.metadata.namespace}/${s.metadata.labels[SERVICE_NAME_LABEL] ?? ''}`;
}
