/**
 * `GET /v1/status`: the agent at a glance (what `meshd status` prints).
 */
import { z } from 'zod';
import { ProxyResponse } from './proxy.js';
import { LbStatus } from './service.js';

export const KindSyncStatus = z.object({
  synced: z.boolean(),
  served: z.boolean(),
  resourceVersion: z.string(),
  objects: z.number().int().nonnegative(),
  lists: z.number().int().nonnegative(),
});

export const SourceStatus = z.discriminatedUnion('type', [
  z.object({ type: z.literal('standalone'), dir: z.string() }),
  z.object({
    type: z.literal('kubernetes'),
    server: z.string(),
    state: z.enum(['connecting', 'connected', 'disconnected']),
    since: z.string(),
    lastError: z.object({ code: z.string(), status: z.number().int().optional(), message: z.string(), at: z.string() }).nullable(),
    kinds: z.record(z.string(), KindSyncStatus),
  }),
]);
export type SourceStatus = z.output<typeof SourceStatus>;

const LastError = z.object({ code: z.string(), message: z.string(), at: z.string() }).nullable();

/** MeshdEndpoint objects (Kubernetes mode): this node's writer, and the other nodes' objects read into the ipcache. */
export const EndpointObjectsStatus = z.object({
  writer: z.object({
    /** This node's objects adopted at start (listed, stale ones deleted). */
    adopted: z.boolean(),
    /** Objects this node has written and keeps. */
    objects: z.number().int().nonnegative(),
    /** Creates, updates and deletes not done yet (waiting for the coalescing delay or a retry). */
    pendingWrites: z.number().int().nonnegative(),
    writes: z.number().int().nonnegative(),
    lastError: LastError,
  }),
  remote: z.object({
    synced: z.boolean(),
    served: z.boolean(),
    /** Other nodes' objects in the ipcache. */
    objects: z.number().int().nonnegative(),
    lastError: LastError,
    /** Objects naming another number than this node has for their labels. */
    identityMismatches: z.array(z.object({ endpoint: z.string(), node: z.string(), objectIdentity: z.number().int(), localIdentity: z.number().int(), at: z.string() })),
  }),
});

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
  /**
   * Where the resources come from: the manifest directory, or the API server with its connection
   * state (how long it has been gone, the last error) and each kind's sync state.
   */
  source: SourceStatus,
  /** The node's pod CIDR (src/agent/pod-cidr.ts): where it came from, or why it is not known yet. */
  ipam: z.object({
    mode: z.enum(['standalone', 'cluster-pool', 'kubernetes']),
    state: z.enum(['ready', 'pending']),
    cidr: z.string().nullable(),
    source: z.enum(['config', 'cluster-pool', 'kubernetes', 'explicit']).nullable(),
    detail: z.string(),
    code: z.string().nullable(),
  }),
  /** MeshdEndpoint objects: absent in standalone mode. */
  endpointObjects: EndpointObjectsStatus.optional(),
  /** The socket LB's counters, null when it is off. */
  services: LbStatus.nullable(),
  /** Service load balancing for clients outside the node on the native devices (src/datapath/nodeport), null when off. */
  nodePort: z
    .object({
      enabled: z.literal(true),
      mode: z.enum(['snat']),
      devices: z.array(z.object({ name: z.string(), ifindex: z.number().int(), addresses: z.array(z.string()) })),
      counters: z.record(z.string(), z.number()),
    })
    .nullable()
    .optional(),
  /** Host policies enforced on the native devices (src/datapath/host), null when hostFirewall.enabled is off. */
  hostFirewall: z
    .object({
      enabled: z.literal(true),
      auditMode: z.boolean(),
      devices: z.array(z.object({ name: z.string(), ifindex: z.number().int(), addresses: z.array(z.string()) })),
    })
    .nullable()
    .optional(),
  counts: z.object({
    endpoints: z.number().int(),
    policies: z.number().int(),
    rejectedPolicies: z.number().int(),
    identities: z.number().int(),
    problems: z.number().int(),
  }),
});
export type StatusResponse = z.output<typeof StatusResponse>;
