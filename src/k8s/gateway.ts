/**
 * Gateway (gateway.networking.k8s.io/v1): listeners (port, protocol,
 * hostname, TLS certificates, which routes may attach) of one class.
 *
 *   const r = gateway.parse(json);   // listener protocols are free strings: unsupported ones become a listener condition
 */
import { z } from 'zod';
import { endpointSelector } from '../policy/api/schema.js';
import { defineKind, type KindModule } from './kind.js';
import type { ResourceProblem } from './problem.js';
import { ConditionSchema, GATEWAY_V1, gatewayTypeMeta, namespacedMeta, SecretObjectRefSchema } from './gateway-api-common.js';
import { portNumber } from './service.js';

export const ListenerSchema = z.object({
  name: z.string().min(1).max(253),
  hostname: z.string().min(1).optional(),
  port: portNumber,
  protocol: z.string().min(1),
  tls: z
    .object({
      mode: z.enum(['Terminate', 'Passthrough']).default('Terminate'),
      certificateRefs: z.array(SecretObjectRefSchema).default([]),
    })
    .optional(),
  allowedRoutes: z
    .object({
      namespaces: z
        .object({ from: z.enum(['All', 'Same', 'Selector', 'None']).default('Same'), selector: endpointSelector.optional() })
        .default({ from: 'Same' }),
      kinds: z.array(z.object({ group: z.string().default('gateway.networking.k8s.io'), kind: z.string().min(1) })).optional(),
    })
    .default({ namespaces: { from: 'Same' } }),
});
export type Listener = z.infer<typeof ListenerSchema>;

export const GatewayAddressSchema = z.object({ type: z.string().default('IPAddress'), value: z.string().min(1) });

export const GatewaySchema = z.object({
  ...gatewayTypeMeta('Gateway', GATEWAY_V1),
  metadata: namespacedMeta,
  spec: z.object({
    gatewayClassName: z.string().min(1),
    listeners: z.array(ListenerSchema).min(1),
    addresses: z.array(GatewayAddressSchema).optional(),
  }),
  status: z
    .object({
      addresses: z.array(GatewayAddressSchema).optional(),
      conditions: z.array(ConditionSchema).default([]),
      listeners: z
        .array(z.object({ name: z.string(), attachedRoutes: z.number().int().default(0), conditions: z.array(ConditionSchema).default([]), supportedKinds: z.array(z.object({ group: z.string().optional(), kind: z.string() })).default([]) }))
        .default([]),
    })
    .optional(),
});
export type Gateway = z.infer<typeof GatewaySchema>;

/** Listener names are unique within a Gateway (the CRD's own rule; a duplicate makes the object unusable). */
function check(g: Gateway): ResourceProblem[] {
  const seen = new Set<string>();
  const out: ResourceProblem[] = [];
  g.spec.listeners.forEach((l, i) => {
    if (seen.has(l.name)) out.push({ path: ['spec', 'listeners', i, 'name'], code: 'INVALID_VALUE', message: `duplicate listener name "${l.name}"` });
    seen.add(l.name);
  });
  return out;
}

export const gateway: KindModule<'Gateway', Gateway> = defineKind({ kind: 'Gateway', apiVersions: GATEWAY_V1, scope: 'namespaced', schema: GatewaySchema, check });
