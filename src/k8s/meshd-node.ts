/**
 * meshd's node objects (`meshd.io/v1alpha1`, cluster scoped), defined once
 * here: the zod schemas the agent reads them with, the CRDs the agent
 * registers (src/k8s/crds.ts, unless skipCRDCreation) and
 * scripts/gen-crds.mjs writes to install/crds/meshd.io_meshdnodes.yaml, and
 * the builders of the bodies the agent writes.
 *
 * - MeshdNode, named by the node: its pod CIDRs, its addresses, and in
 *   status its health (healthy, last heartbeat), agent version and endpoint
 *   count. Written by that node's agent only (src/agent/node-object.ts).
 * - MeshdPodCIDR, named by the CIDR (`10.0.3.0-24`): the claim that makes a
 *   pod CIDR one node's. Creating it is the claim; the API server refuses a
 *   second create of the same name (409), so two agents carving the same
 *   block at once never both get it (src/agent/pod-cidr.ts). Deleted with
 *   its node's MeshdNode by the leader-elected housekeeping
 *   (src/agent/node-housekeeping.ts).
 *
 * Status is written with the object (no status subresource): one merge
 * patch carries a heartbeat, and only the node's own agent writes it.
 *
 *   const body = meshdNodeBody({ name: 'node-a', podCIDRs: ['10.0.3.0/24'], addresses, … });
 *   const obj = parseMeshdNode(json);      // MeshdNodeError MESHD_K8S_NODE_OBJECT_INVALID when it does not fit
 */
import { z } from 'zod';
import { MeshdError } from '../util/errors.js';
import { crdObject, type CrdObject, type StructuralSchema } from './crds.js';

export const MESHD_NODES_PATH = '/apis/meshd.io/v1alpha1/meshdnodes';
export const MESHD_POD_CIDRS_PATH = '/apis/meshd.io/v1alpha1/meshdpodcidrs';
/** The file under install/crds/ that ships these CRDs. */
export const NODE_CRDS_FILE = 'meshd.io_meshdnodes.yaml';

/** Address types: the Node object's (InternalIP, ExternalIP) and the addresses the agent found on the host. */
export const NODE_ADDRESS_TYPES = ['InternalIP', 'ExternalIP', 'MeshdHostIP'] as const;
export type NodeAddressType = (typeof NODE_ADDRESS_TYPES)[number];

/** Where a node's pod CIDR came from (`meshd status`, and the MeshdNode's spec.podCIDRSource). */
export const POD_CIDR_SOURCES = ['cluster-pool', 'kubernetes', 'explicit'] as const;
export type PodCidrSource = (typeof POD_CIDR_SOURCES)[number];

const Meta = z.object({
  name: z.string().min(1),
  resourceVersion: z.string().optional(),
  creationTimestamp: z.string().optional(),
});

export const MeshdNodeSchema = z.object({
  metadata: Meta,
  spec: z.object({
    podCIDRs: z.array(z.string()).default([]),
    podCIDRSource: z.enum(POD_CIDR_SOURCES).optional(),
    addresses: z.array(z.object({ type: z.enum(NODE_ADDRESS_TYPES), ip: z.string() })).default([]),
  }),
  status: z
    .object({
      health: z.object({ healthy: z.boolean(), lastHeartbeat: z.string() }).optional(),
      agentVersion: z.string().optional(),
      endpoints: z.number().int().nonnegative().optional(),
    })
    .optional(),
});
export type MeshdNode = z.infer<typeof MeshdNodeSchema>;

export const MeshdPodCidrSchema = z.object({
  metadata: Meta,
  spec: z.object({ cidr: z.string(), node: z.string().min(1) }),
});
export type MeshdPodCidr = z.infer<typeof MeshdPodCidrSchema>;

export class MeshdNodeError extends MeshdError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('MESHD_K8S_NODE_OBJECT_INVALID', message, { kind: 'invalid', ...opts });
  }
}

function parsed<T>(schema: z.ZodType<T>, v: unknown, what: string): T {
  const r = schema.safeParse(v);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new MeshdNodeError(`${what}: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}`);
}

/** A MeshdNode as the API server returned it; MESHD_K8S_NODE_OBJECT_INVALID naming the field when it does not fit. */
export const parseMeshdNode = (v: unknown, what = 'MeshdNode'): MeshdNode => parsed(MeshdNodeSchema, v, what);
export const parseMeshdPodCidr = (v: unknown, what = 'MeshdPodCIDR'): MeshdPodCidr => parsed(MeshdPodCidrSchema, v, what);

/** The MeshdPodCIDR name of a CIDR: `10.0.3.0/24` → `10.0.3.0-24` (an object name cannot hold '/'). */
export const podCidrObjectName = (cidr: string): string => cidr.replace('/', '-');

export interface MeshdNodeFields {
  name: string;
  podCIDRs: string[];
  podCIDRSource: PodCidrSource | undefined;
  addresses: Array<{ type: NodeAddressType; ip: string }>;
  healthy: boolean;
  /** RFC 3339. */
  lastHeartbeat: string;
  agentVersion: string;
  endpoints: number;
}

/** The whole MeshdNode the agent writes (create), or, without apiVersion/kind/name, the merge patch of a heartbeat. */
export function meshdNodeBody(f: MeshdNodeFields): Record<string, unknown> {
  return {
    apiVersion: 'meshd.io/v1alpha1',
    kind: 'MeshdNode',
    metadata: { name: f.name },
    spec: { podCIDRs: f.podCIDRs, ...(f.podCIDRSource ? { podCIDRSource: f.podCIDRSource } : {}), addresses: f.addresses },
    status: { health: { healthy: f.healthy, lastHeartbeat: f.lastHeartbeat }, agentVersion: f.agentVersion, endpoints: f.endpoints },
  };
}

export function meshdPodCidrBody(cidr: string, node: string): Record<string, unknown> {
  return { apiVersion: 'meshd.io/v1alpha1', kind: 'MeshdPodCIDR', metadata: { name: podCidrObjectName(cidr) }, spec: { cidr, node } };
}

/** The last heartbeat of a node object, in ms since the epoch (its creation when it never beat; undefined when neither parses). */
export function lastSeen(n: MeshdNode): number | undefined {
  const t = Date.parse(n.status?.health?.lastHeartbeat ?? n.metadata.creationTimestamp ?? '');
  return Number.isNaN(t) ? undefined : t;
}

const envelope = (spec: StructuralSchema, status?: StructuralSchema): StructuralSchema => ({
  type: 'object',
  required: ['spec'],
  properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec, ...(status ? { status } : {}) },
});

const nodeCrd = (kind: string, plural: string, shortNames: string[], columns: CrdObject['spec']['versions'][number]['additionalPrinterColumns'], schema: StructuralSchema): CrdObject =>
  crdObject({ group: 'meshd.io', kind, plural, shortNames, categories: ['meshd'], scope: 'Cluster', version: 'v1alpha1', statusSubresource: false, columns, schema });

/** MeshdNode and MeshdPodCIDR, in the order they are registered. */
export function nodeCrds(): CrdObject[] {
  const age = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
  return [
    nodeCrd(
      'MeshdNode',
      'meshdnodes',
      ['mn'],
      [
        { name: 'PodCIDR', type: 'string', jsonPath: '.spec.podCIDRs[0]' },
        { name: 'Healthy', type: 'boolean', jsonPath: '.status.health.healthy' },
        age,
      ],
      envelope(
        {
          type: 'object',
          properties: {
            podCIDRs: { description: 'The pod CIDRs meshd-cni on this node allocates from.', type: 'array', items: { type: 'string' } },
            podCIDRSource: { description: 'Where the pod CIDR came from.', type: 'string', enum: [...POD_CIDR_SOURCES] },
            addresses: {
              description: 'The node\'s addresses: InternalIP/ExternalIP from the Node object, MeshdHostIP as found on the host.',
              type: 'array',
              items: {
                type: 'object',
                required: ['type', 'ip'],
                properties: { type: { type: 'string', enum: [...NODE_ADDRESS_TYPES] }, ip: { type: 'string' } },
              },
            },
          },
        },
        {
          type: 'object',
          properties: {
            health: {
              type: 'object',
              required: ['healthy', 'lastHeartbeat'],
              properties: {
                healthy: { description: 'The agent is running and enforcing.', type: 'boolean' },
                lastHeartbeat: { description: 'When (RFC 3339) the agent last wrote this object.', type: 'string', format: 'date-time' },
              },
            },
            agentVersion: { type: 'string' },
            endpoints: { description: 'Endpoints (pods) the agent manages.', type: 'integer', minimum: 0 },
          },
        },
      ),
    ),
    nodeCrd(
      'MeshdPodCIDR',
      'meshdpodcidrs',
      [],
      [
        { name: 'CIDR', type: 'string', jsonPath: '.spec.cidr' },
        { name: 'Node', type: 'string', jsonPath: '.spec.node' },
        age,
      ],
      envelope({
        type: 'object',
        required: ['cidr', 'node'],
        properties: {
          cidr: { description: 'The pod CIDR this object claims.', type: 'string' },
          node: { description: 'The node holding it.', type: 'string', minLength: 1 },
        },
      }),
    ),
  ];
}

/** The header of the shipped file. */
export const NODE_CRDS_HEADER = [
  'meshd.io/v1alpha1 node objects (MeshdNode) and pod CIDR claims (MeshdPodCIDR).',
  'Generated by scripts/gen-crds.mjs from src/k8s/meshd-node.ts; do not edit.',
  'The agent registers them itself in Kubernetes mode unless skipCRDCreation is set (docs/kubernetes.md).',
];
