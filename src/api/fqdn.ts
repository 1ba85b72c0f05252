/**
 * `GET /v1/fqdn/cache` (`meshd fqdn cache list`): the toFQDNs cache per
 * endpoint — every name its allowed DNS answers resolved, with each
 * address's TTL, expiry and source — plus the DNS proxy's port and counters.
 */
import { z } from 'zod';
import { timestamp } from './route.js';

export const FqdnCacheQuery = z.object({ endpoint: z.string().min(1).optional() });

const epochMs = z.union([z.string(), z.number().transform((ms) => new Date(ms).toISOString())]);

export const FqdnCacheEntry = z.object({
  endpoint: z.string(),
  name: z.string(),
  ips: z.array(
    z.object({
      ip: z.string(),
      /** The TTL of the answer that last taught it (seconds). */
      ttl: z.number().int().min(0),
      learnedAt: epochMs,
      expiresAt: epochMs,
      source: z.enum(['dns', 'restored']),
      seq: z.number().int().min(0),
    }),
  ),
});

export const FqdnCacheResponse = z.object({
  /** Null when the agent runs no DNS proxy. */
  proxy: z
    .object({
      port: z.number().int(),
      queries: z.number().int(),
      allowed: z.number().int(),
      rejected: z.number().int(),
      malformed: z.number().int(),
      upstreamErrors: z.number().int(),
      delayedPastMax: z.number().int(),
      tcpConnections: z.number().int(),
      /** Datagrams the kernel dropped on the proxy's UDP sockets (receive buffers full). */
      receiveDrops: z.number().int(),
      /** Whether the proxy listens for IPv6 DNS flows too. */
      ipv6: z.boolean(),
    })
    .nullable(),
  entries: z.array(FqdnCacheEntry),
  at: timestamp,
});
export type FqdnCacheResponse = z.output<typeof FqdnCacheResponse>;

/**
 * `POST /v1/fqdn/cache/flush` (`meshd fqdn cache flush`, Cilium's `cilium fqdn cache clean`): removes
 * the entries of one endpoint and/or of names matching `name` (a name, or a matchPattern with `*`);
 * neither removes everything. Their addresses lose their identities and kernel entries; an address a
 * connection still uses expires instead and goes once unused.
 */
export const FqdnCacheFlushRequest = z
  .object({
    endpoint: z.string().min(1).max(253).optional(),
    name: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[-a-zA-Z0-9_.*]+$/, 'a DNS name or a matchPattern (letters, digits, -, _, ., *)')
      .optional(),
  })
  .strict();

export const FqdnCacheFlushResponse = z.object({
  removed: z.array(z.object({ endpoint: z.string(), name: z.string(), ips: z.array(z.string()) })),
  at: timestamp,
});
export type FqdnCacheFlushResponse = z.output<typeof FqdnCacheFlushResponse>;
