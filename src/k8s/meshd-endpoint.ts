/**
 * MeshdEndpoint (`meshd.io/v1alpha1`, namespaced, short name `mep`): one
 * object per pod that a meshd agent runs, named and namespaced as the pod,
 * owned by it (ownerReference, so Kubernetes' garbage collector removes it
 * with the pod; the agent deletes it itself anyway). Written by the pod's
 * node's agent (src/agent/endpoint-object-writer.ts); read by every other
 * agent to put the pod's addresses into its ipcache with the pod's identity
 * (src/agent/remote-endpoints.ts). The kind is defined once here: the zod
 * schema parses objects from the API server, the CRD's structural schema is
 * generated from the same schema, scripts/gen-crds.mjs writes it to
 * install/crds/meshd.io_meshdendpoints.yaml, and the agent registers it.
 *
 * Like Cilium's CiliumEndpoint everything lives in `status` and there is no
 * status subresource: one write per change, a merge patch of the object.
 *
 *   const obj = buildMeshdEndpoint({ namespace: 'default', name: 'web', pod: { uid }, status });
 *   const r = parseMeshdEndpoint(json);     // { ok: true, value } | { ok: false, problems }
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { crdObject, structuralFromZod, type CrdObject } from './crds.js';
import { parseWith, type ParseResult } from './problem.js';

export const MEP_GROUP = 'meshd.io';
export const MEP_VERSION = 'v1alpha1';
export const MEP_API_VERSION = `${MEP_GROUP}/${MEP_VERSION}`;
export const MEP_KIND = 'MeshdEndpoint';
export const MEP_PLURAL = 'meshdendpoints';
/** The collection across all namespaces (what the agents watch). */
export const MEP_PATH = `/apis/${MEP_GROUP}/${MEP_VERSION}/${MEP_PLURAL}`;
/** The label naming the node whose agent writes the object, so an agent lists its own with a label selector. */
export const MEP_NODE_LABEL = 'meshd.io/node';
/** The file under install/crds/ that ships the CRD. */
export const MEP_CRD_FILE = 'meshd.io_meshdendpoints.yaml';

/** Path of one object (or of the namespace's collection without a name). */
export function mepPath(namespace: string, name?: string): string {
  const base = `/apis/${MEP_GROUP}/${MEP_VERSION}/namespaces/${encodeURIComponent(namespace)}/${MEP_PLURAL}`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

export const ENDPOINT_STATES = ['ready', 'waiting-for-identity', 'regenerating', 'not-ready'] as const;
export type EndpointObjectState = (typeof ENDPOINT_STATES)[number];

const ipv4 = z.string().refine((s) => isIPv4(s), { message: 'not an IPv4 address' });
const ipv6 = z.string().refine((s) => isIPv6(s), { message: 'not an IPv6 address' });

export const MeshdEndpointStatusSchema = z.object({
  nodeName: z.string().min(1).describe('The node whose agent runs the pod and writes this object.'),
  endpointID: z.number().int().min(0).describe("The endpoint's id in its node's datapath."),
  identity: z
    .object({
      id: z.number().int().min(1).describe('The numeric security identity (the name of its MeshdIdentity in identityAllocationMode=crd).'),
      labels: z.array(z.string()).describe('Security labels as source:key=value, sorted.'),
    })
    .describe('The security identity of the pod.'),
  networking: z.object({
    addresses: z.array(z.object({ ipv4: ipv4.optional(), ipv6: ipv6.optional() })).describe('The pod addresses meshd-cni assigned.'),
  }),
  namedPorts: z.array(z.object({ name: z.string().min(1), port: z.number().int().min(1).max(65535), protocol: z.enum(['TCP', 'UDP', 'SCTP']) })).describe('Named container ports.'),
  state: z.enum(ENDPOINT_STATES).describe('ready: the policy is in the datapath; regenerating: a newer one is being written; waiting-for-identity; not-ready.'),
  policy: z.object({
    ingress: z.object({ enforcing: z.boolean() }),
    egress: z.object({ enforcing: z.boolean() }),
  }).describe('Whether each direction is under default deny (some policy selects the pod).'),
  health: z.object({ healthy: z.boolean(), lastUpdate: z.string().describe('When the content last changed (RFC 3339).') }),
});
export type MeshdEndpointStatus = z.infer<typeof MeshdEndpointStatusSchema>;

export const MeshdEndpointSchema = z.object({
  apiVersion: z.literal(MEP_API_VERSION).default(MEP_API_VERSION),
  kind: z.literal(MEP_KIND).default(MEP_KIND),
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().min(1),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    labels: z.record(z.string(), z.string()).default({}),
  }),
  status: MeshdEndpointStatusSchema,
});
export type MeshdEndpoint = z.infer<typeof MeshdEndpointSchema>;

/** A MeshdEndpoint from the API server (or kubectl): typed, or the problems with their field paths. */
export function parseMeshdEndpoint(input: unknown): ParseResult<MeshdEndpoint> {
  return parseWith(MeshdEndpointSchema, input);
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  blockOwnerDeletion: boolean;
}

/** The object an agent writes for one of its pods: named as the pod, owned by it, labelled with the node. */
export function buildMeshdEndpoint(o: { namespace: string; name: string; podUid?: string; status: MeshdEndpointStatus }): MeshdEndpoint & { metadata: { ownerReferences?: OwnerReference[] } } {
  return {
    apiVersion: MEP_API_VERSION,
    kind: MEP_KIND,
    metadata: {
      name: o.name,
      namespace: o.namespace,
      labels: { [MEP_NODE_LABEL]: o.status.nodeName },
      // Not a controller reference: the pod's controller (a ReplicaSet, …) is its controller. No Pod
      // object (an endpoint registered outside Kubernetes): no owner, the agent alone removes it.
      ...(o.podUid ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: o.name, uid: o.podUid, blockOwnerDeletion: false }] } : {}),
    },
    status: o.status,
  };
}

/**
 * What a change of the object is compared by: everything but health.lastUpdate
 * (which moves only when something else does), in a fixed key order.
 */
export function statusDigest(s: MeshdEndpointStatus): string {
  return JSON.stringify([
    s.nodeName,
    s.endpointID,
    s.identity.id,
    [...s.identity.labels].sort(),
    s.networking.addresses.map((a) => [a.ipv4 ?? '', a.ipv6 ?? '']),
    s.namedPorts.map((p) => [p.name, p.port, p.protocol]),
    s.state,
    s.policy.ingress.enforcing,
    s.policy.egress.enforcing,
    s.health.healthy,
  ]);
}

/** Addresses in the object's form, from plain address strings (with or without a /32 or /128). */
export function addressesOf(ips: readonly string[]): MeshdEndpointStatus['networking']['addresses'] {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const raw of ips) {
    const ip = raw.replace(/\/\d+$/, '');
    if (isIPv4(ip)) v4.push(ip);
    else if (isIPv6(ip)) v6.push(ip);
  }
  v4.sort();
  v6.sort();
  // Cilium's shape: one entry per dual-stack pair, in order.
  return Array.from({ length: Math.max(v4.length, v6.length) }, (_, i) => ({ ...(v4[i] ? { ipv4: v4[i] } : {}), ...(v6[i] ? { ipv6: v6[i] } : {}) }));
}

/** Every address an object names. */
export function addressStrings(s: MeshdEndpointStatus): string[] {
  return s.networking.addresses.flatMap((a) => [a.ipv4, a.ipv6].filter((x): x is string => x !== undefined));
}

/** The CRD of MeshdEndpoint, with the printer columns kubectl shows. */
export function meshdEndpointCrd(): CrdObject {
  return crdObject({
    group: MEP_GROUP,
    kind: MEP_KIND,
    plural: MEP_PLURAL,
    shortNames: ['mep'],
    categories: ['meshd'],
    scope: 'Namespaced',
    version: MEP_VERSION,
    statusSubresource: false,
    columns: [
      { name: 'Node', type: 'string', jsonPath: '.status.nodeName' },
      { name: 'Identity', type: 'integer', jsonPath: '.status.identity.id' },
      { name: 'IPv4', type: 'string', jsonPath: '.status.networking.addresses[0].ipv4' },
      { name: 'State', type: 'string', jsonPath: '.status.state' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
    schema: {
      type: 'object',
      required: ['status'],
      properties: {
        apiVersion: { type: 'string' },
        kind: { type: 'string' },
        metadata: { type: 'object' },
        status: structuralFromZod(MeshdEndpointStatusSchema, 'status'),
      },
    },
  });
}

/** The header of the shipped file. */
export const MEP_CRD_HEADER = [
  'meshd.io/v1alpha1 MeshdEndpoint: one per pod, written by its node\'s agent, read by the others for their ipcache.',
  'Generated by scripts/gen-crds.mjs from src/k8s/meshd-endpoint.ts; do not edit.',
  'The agent registers it itself in Kubernetes mode unless skipCRDCreation is set (docs/kubernetes.md).',
];
