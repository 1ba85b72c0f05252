/**
 * Policy as the running agent holds it: the policies and their state
 * (`GET /v1/policy`), the computed endpoint policies, the endpoint's policy
 * map as the kernel holds it (`GET /v1/bpf/policy`), and the live trace
 * (`POST /v1/policy/trace`). Shapes follow src/policy/types.ts and
 * src/policy/trace.ts; a change there that is not mirrored here fails the
 * route with the field path (tested).
 */
import { z } from 'zod';

const verdict = z.enum(['ALLOW', 'DENY', 'REDIRECT']);
const nameValue = z.object({ name: z.string(), value: z.string().optional() });

const HttpRule = z.object({
  method: z.string().optional(),
  path: z.string().optional(),
  host: z.string().optional(),
  headers: z.array(nameValue).optional(),
  headerMatches: z.array(nameValue.extend({ mismatch: z.enum(['LOG', 'ADD', 'DELETE', 'REPLACE']).optional() })).optional(),
});
const KafkaRule = z.object({
  role: z.enum(['produce', 'consume']).optional(),
  apiKey: z.string().optional(),
  apiVersion: z.string().optional(),
  clientID: z.string().optional(),
  topic: z.string().optional(),
});
const DnsRule = z.object({ matchName: z.string().optional(), matchPattern: z.string().optional() });
const TlsRule = z.object({ serverNames: z.array(z.string()).optional() });

export const L7RulesSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('http'), rules: z.array(HttpRule) }),
  z.object({ kind: z.literal('kafka'), rules: z.array(KafkaRule) }),
  z.object({ kind: z.literal('dns'), rules: z.array(DnsRule) }),
  z.object({ kind: z.literal('tls'), rules: z.array(TlsRule) }),
]);

export const PolicyEntrySchema = z.object({
  remoteIdentity: z.number().int(),
  protocol: z.number().int(),
  port: z.number().int(),
  endPort: z.number().int(),
  verdict,
  l7: L7RulesSchema.optional(),
  derivedFrom: z.array(z.string()),
  conflict: z.string().optional(),
  /** The deciding rules' `log.value`s (PolicyEntry.log). */
  log: z.array(z.string()).optional(),
});
export type PolicyEntryJson = z.output<typeof PolicyEntrySchema>;

const DirectionPolicy = z.object({ defaultDeny: z.boolean(), entries: z.array(PolicyEntrySchema), enforcedBy: z.array(z.string()).optional() });

export const EndpointPolicySchema = z.object({
  endpointId: z.string(),
  identity: z.number().int(),
  ingress: DirectionPolicy,
  egress: DirectionPolicy,
  revision: z.number().int(),
});
export type EndpointPolicyJson = z.output<typeof EndpointPolicySchema>;

export const PolicyViewQuery = z.object({ endpoint: z.string().min(1).optional() });

export const PolicyViewResponse = z.object({
  policies: z.array(
    z.object({
      key: z.string(),
      origin: z.string(),
      state: z.enum(['enforced', 'rejected']),
      problems: z.array(z.object({ path: z.string(), message: z.string() })),
    }),
  ),
  endpointPolicies: z.array(EndpointPolicySchema),
  /** What the resource source could not parse, with file and field path. */
  problems: z.array(z.object({ file: z.string(), document: z.number().int().optional(), path: z.string().optional(), message: z.string(), at: z.string() })),
});
export type PolicyViewResponse = z.output<typeof PolicyViewResponse>;

export const BpfPolicyQuery = z.object({ endpoint: z.string().min(1) });

export const BpfPolicyResponse = z.object({
  endpoint: z.string(),
  epId: z.number().int(),
  identity: z.number().int(),
  policyGen: z.number().int(),
  flags: z.number().int(),
  entries: z.array(
    z.object({
      direction: z.enum(['ingress', 'egress']),
      identity: z.number().int(),
      /** ANY, TCP, UDP, … or the protocol number. */
      protocol: z.string(),
      /** "any", "80" or "8080-8087" (a port prefix). */
      ports: z.string(),
      verdict,
      proxyPort: z.number().int(),
      key: z.object({
        identity: z.number().int(),
        egress: z.union([z.literal(0), z.literal(1)]),
        proto: z.number().int(),
        port: z.number().int(),
        portBits: z.number().int(),
        anyProto: z.boolean(),
      }),
    }),
  ),
});
export type BpfPolicyResponse = z.output<typeof BpfPolicyResponse>;

const flowVerdict = z.enum(['ALLOWED', 'DENIED', 'REDIRECTED']);
const l7Verdict = z.enum(['ALLOWED', 'DENIED']).nullable();

const DirectionTrace = z.object({
  endpoint: z.string(),
  verdict,
  reason: z.enum(['entry', 'default-deny', 'not-enforced']),
  policies: z.array(z.string()),
  l7: z.object({ kind: z.enum(['http', 'kafka', 'dns', 'tls']), verdict: l7Verdict }).optional(),
});

export const FlowTraceSchema = z.object({
  name: z.string().optional(),
  src: z.string(),
  dst: z.string(),
  protocol: z.string(),
  dport: z.number().int(),
  srcIdentity: z.number().int(),
  dstIdentity: z.number().int(),
  service: z.object({ name: z.string(), backend: z.string(), port: z.number().int() }).optional(),
  verdict: flowVerdict,
  l4: flowVerdict,
  l7: l7Verdict,
  direction: z.enum(['ingress', 'egress', 'both']).nullable(),
  policies: z.array(z.string()),
  egress: DirectionTrace.nullable(),
  ingress: DirectionTrace.nullable(),
  error: z.string().optional(),
});

/** A scenario document (YAML or JSON text, the offline trace's format); only its `flows` are read. */
export const PolicyTraceRequest = z.object({ scenario: z.string() });

export const PolicyTraceResponse = z.object({ flows: z.array(FlowTraceSchema) });
export type PolicyTraceResponse = z.output<typeof PolicyTraceResponse>;
