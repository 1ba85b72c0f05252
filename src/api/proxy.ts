/**
 * The L7 proxy's status as the local API shows it (`GET /v1/proxy`, and the
 * `envoy` field of `GET /v1/status`): the supervised Envoy, what xDS sent,
 * ACKed and NACKed per resource type, the proxy ports and listeners.
 */
import { z } from 'zod';
import { timestamp } from './route.js';

export const EnvoyStatus = z.object({
  state: z.enum(['stopped', 'starting', 'ready', 'backoff', 'stopping']),
  pid: z.number().int().nullable(),
  version: z.string().nullable(),
  restarts: z.number().int().nonnegative(),
  readySince: z.string().nullable(),
  lastExit: z.object({ code: z.number().int().nullable(), signal: z.string().nullable(), at: z.string() }).nullable(),
  /** Every Envoy (proxy.replicas, plus a replaced one while it drains). */
  instances: z
    .array(
      z.object({
        id: z.string(),
        pid: z.number().int(),
        nodeId: z.string(),
        state: z.enum(['starting', 'live', 'draining']),
        /** Started by an earlier agent and adopted by this one. */
        adopted: z.boolean(),
        startedAt: z.string(),
        liveSince: z.string().nullable(),
      }),
    )
    .optional(),
  /** Planned replacements (meshd proxy restart, binary or bootstrap change) since the agent started. */
  replacements: z.number().int().nonnegative().optional(),
  /** Milliseconds without any live Envoy since the agent started. */
  unavailableMs: z.number().nonnegative().optional(),
  /** How new connections reach the Envoys: the agent's socket map, or the kernel's listener lookup (src/proxy/steering.ts). */
  steering: z
    .object({
      path: z.enum(['socket-map', 'socket-lookup']),
      ports: z.array(z.object({ port: z.number().int(), family: z.union([z.literal(4), z.literal(6)]), sockets: z.number().int(), instances: z.array(z.string()) })),
      counters: z.object({ tcMap: z.number(), tcLookup: z.number(), selected: z.number(), unsteered: z.number() }),
      error: z.string().nullable(),
    })
    .nullable()
    .optional(),
});

const ResponseInfo = z.object({
  version: z.string(),
  snapshotVersion: z.string(),
  seq: z.number().int(),
  complete: z.boolean(),
  nonce: z.string(),
  resources: z.number().int().nonnegative(),
  at: timestamp,
});

export const XdsTypeStatus = z.object({
  sent: ResponseInfo.optional(),
  acked: ResponseInfo.extend({ ackedAt: timestamp }).optional(),
  nacked: ResponseInfo.extend({ nackedAt: timestamp, message: z.string() }).optional(),
});

export const xdsKinds = ['clusters', 'endpoints', 'listeners', 'routes', 'secrets'] as const;

export const XdsNodeStatus = z.object({
  node: z.object({ id: z.string(), cluster: z.string() }),
  streams: z.number().int().nonnegative(),
  types: z.partialRecord(z.enum(xdsKinds), XdsTypeStatus),
});

export const ProxyStatus = z.object({
  envoy: EnvoyStatus,
  /** Absent until Envoy opened its first xDS stream. */
  xds: XdsNodeStatus.optional(),
  ports: z.array(z.object({ key: z.string(), port: z.number().int() })),
  listeners: z.array(z.object({ name: z.string(), port: z.number().int(), endpoints: z.array(z.string()), ackedVersion: z.string().nullable() })),
  lastNack: z.object({ version: z.string(), message: z.string(), at: z.string() }).nullable(),
  /** The last failure to get a configuration applied (NACK or ACK timeout) while nothing newer was ACKed, with its code. */
  lastError: z
    .object({
      code: z.string(),
      version: z.string(),
      message: z.string(),
      /** Envoy's own message (NACK only). */
      envoyMessage: z.string().nullable(),
      /** What the failed configuration changed against the last ACKed one. */
      change: z.object({ listeners: z.array(z.string()), endpoints: z.array(z.string()), policies: z.array(z.string()) }),
      at: z.string(),
    })
    .nullable(),
});

/** With envoy.enabled=false there is no proxy, and the API says so rather than answering null. */
export const ProxyDisabled = z.object({ state: z.literal('disabled') });

export const ProxyResponse = z.union([ProxyStatus, ProxyDisabled]);
export type ProxyResponse = z.output<typeof ProxyResponse>;

/** `POST /v1/proxy/restart` (meshd proxy restart): no parameters. */
export const ProxyRestartRequest = z.strictObject({});

export const ProxyRestartResponse = z.object({
  /** Envoys replaced (each by a new one that was configured before the old one drained). */
  replaced: z.number().int().nonnegative(),
  /** The live Envoys afterwards. */
  instances: z.array(z.string()),
});
export type ProxyRestartResponse = z.output<typeof ProxyRestartResponse>;
